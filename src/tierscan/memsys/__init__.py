"""The memory system's timing (DESIGN §3, §6): devices with bandwidth-latency curves
(devices.py), the closed-loop solve per tick (solve.py), TLB reach and page walks (tlb.py), the
last-level-cache filter (llc.py), and the per-tick glue the engine calls (system.py)."""
