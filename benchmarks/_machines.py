"""The machine the walk and memory benchmarks share: 2 GiB DRAM with the CPUs and 12 GiB CXL,
big enough to map 8 GiB on the CXL node."""

BENCH_14G = {
    "name": "bench-14g",
    "nodes": [
        {"id": 0, "capacity": "2GiB", "cpus": [0, 1], "tier": 0, "kind": "dram"},
        {"id": 1, "capacity": "12GiB", "cpus": [], "tier": 1, "kind": "cxl"},
    ],
    "latency": {
        "load_ns": [[90, 240], [240, 90]],
        "store_ns": [[90, 250], [250, 90]],
        "distance": [[10, 20], [20, 10]],
    },
}
