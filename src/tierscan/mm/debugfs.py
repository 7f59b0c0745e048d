"""/sys/kernel/debug/lru_gen and lru_gen_full (mglru-spec §8.3, §8.4; lru_gen_seq_show and
lru_gen_seq_write in mm/vmscan.c of the baseline tree).

``read`` renders the kernel's text exactly; ``write`` parses commands as the kernel's sscanf
does and raises OSError(errno) on the first failing command, leaving earlier ones applied.
"""

from __future__ import annotations

import errno
import os
import re

from .constants import (
    ANON_AND_FILE, HZ, MAX_NR_GENS, MAX_NR_TIERS, MAX_SWAPPINESS, NR_HIST_GENS,
    NR_MM_STATS, SWAPPINESS_ANON_ONLY, ULONG_MAX,
)
from .lru_gen import lru_gen_from_seq, lru_hist_from_seq
from .vmscan import evictable_min_seq, try_to_inc_max_seq

FILES = ("lru_gen", "lru_gen_full")


def _oserror(code: int, what: str) -> OSError:
    return OSError(code, f"{what}: {os.strerror(code)}")


def jiffies_to_msecs(j: int) -> int:
    return j * 1000 // HZ


class Debugfs:
    def __init__(self, kernel):
        self.kernel = kernel

    # ---- read -------------------------------------------------------------------------------
    def read(self, name: str) -> str:
        if name not in FILES:
            raise _oserror(errno.ENOENT, f"/sys/kernel/debug/{name}")
        full = name == "lru_gen_full"
        out = []
        nodes = range(self.kernel.machine.nr_nodes)  # every node has memory (N_MEMORY)
        for memcg in self.kernel.memcgs:
            for nid in nodes:
                out.append(self._show(self.kernel.lruvec(memcg, nid), full, nid == nodes[0]))
        return "".join(out)

    def _show(self, lruvec, full: bool, first_node: bool) -> str:
        """lru_gen_seq_show() for one lruvec."""
        k = self.kernel
        g = lruvec.lrugen
        lines = []
        if first_node:
            path = lruvec.memcg.path if k.memcgs.enabled else ""
            lines.append(f"memcg {lruvec.memcg.id:5d} {path}\n")
        lines.append(f" node {lruvec.nid:5d}\n")
        max_seq, min_seq = g.max_seq, g.min_seq
        if not full:
            seq = evictable_min_seq(min_seq, MAX_SWAPPINESS // 2)
        elif max_seq >= MAX_NR_GENS:
            seq = max_seq - MAX_NR_GENS + 1
        else:
            seq = 0
        for seq in range(seq, max_seq + 1):
            gen = lru_gen_from_seq(seq)
            age = jiffies_to_msecs(k.jiffies - g.timestamps[gen]) & 0xFFFFFFFF
            line = f" {seq:10d} {age:10d}"
            for t in range(ANON_AND_FILE):
                size = int(g.nr_pages[gen, t].clip(min=0).sum())
                mark = "x" if full and seq < min_seq[t] else " "
                line += f" {size:10d}{mark}"
            lines.append(line + "\n")
            if full:
                lines.append(self._show_full(lruvec, seq))
        return "".join(lines)

    @staticmethod
    def _show_full(lruvec, seq: int) -> str:
        """lru_gen_seq_show_full(): the tier lines and the mm-walk stats line."""
        g, st = lruvec.lrugen, lruvec.mm_state
        max_seq, min_seq = g.max_seq, g.min_seq
        hist = lru_hist_from_seq(seq)
        lines = []
        for tier in range(MAX_NR_TIERS):
            line = f"            {tier:10d}"
            for t in range(ANON_AND_FILE):
                s, n = "xxx", (0, 0, 0)
                if seq == max_seq:
                    s, n = "RTx", (g.avg_refaulted[t, tier], g.avg_total[t, tier], 0)
                elif seq == min_seq[t] or NR_HIST_GENS > 1:
                    s = "rep"
                    n = (g.refaulted[hist, t, tier], g.evicted[hist, t, tier],
                         g.protected[hist, t, tier])
                line += "".join(f" {int(v):10d}{c}" for v, c in zip(n, s))
            lines.append(line + "\n")
        line = "                      "
        for i in range(NR_MM_STATS):
            s, n = "xxxx", 0
            if seq == max_seq and NR_HIST_GENS == 1:
                s, n = "TYFA", st.stats[hist, i]
            elif seq != max_seq and NR_HIST_GENS > 1:
                s, n = "tyfa", st.stats[hist, i]
            line += f" {int(n):10d}{s[i]}"
        lines.append(line + "\n")
        return "".join(lines)

    # ---- write ------------------------------------------------------------------------------
    _CMD = re.compile(r"(?s)(.)\s*(\d+)\s+(\d+)\s+(\d+)\s*(?:(\S{1,4})\s*(?:(\d+)\s*)?)?")

    def write(self, name: str, text: str) -> int:
        """lru_gen_seq_write(): commands separated by ',', ';' or newlines. Returns len(text)."""
        if name != "lru_gen":
            raise _oserror(errno.EACCES if name in FILES else errno.ENOENT,
                           f"/sys/kernel/debug/{name}")
        for cur in re.split(r"[,;\n]", text):
            cur = cur.lstrip()
            if not cur:
                continue
            m = self._CMD.fullmatch(cur)
            if not m:
                raise _oserror(errno.EINVAL, f"lru_gen: bad command {cur.strip()!r}")
            cmd, memcg_id, nid, seq, swap, opt = m.groups()
            if swap is None:
                swappiness = -1
            elif swap == "max":
                swappiness = SWAPPINESS_ANON_ONLY
            else:
                swappiness = kstrtouint(swap)
                if swappiness is None:
                    raise _oserror(errno.EINVAL, f"lru_gen: bad swappiness {swap!r}")
            opt = ULONG_MAX if opt is None else int(opt)
            err = self.run_cmd(cmd, int(memcg_id), int(nid), int(seq), swappiness, opt)
            if err:
                raise _oserror(-err, f"lru_gen: {cur.strip()!r}")
        return len(text)

    def run_cmd(self, cmd: str, memcg_id: int, nid: int, seq: int, swappiness: int,
                opt: int) -> int:
        """run_cmd(): validate the lruvec and run aging ('+') or eviction ('-')."""
        from .evict import ScanControl, get_swappiness, run_eviction

        k = self.kernel
        if nid < 0 or nid >= k.machine.nr_nodes:
            return -errno.EINVAL
        memcg = k.memcgs.by_id.get(memcg_id)
        if memcg is None:
            return -errno.EINVAL
        lruvec = k.lruvec(memcg, nid)
        sc = ScanControl(may_writepage=True, may_unmap=True, may_swap=True, proactive=True)
        if swappiness < 0:
            swappiness = get_swappiness(lruvec, sc)
        elif swappiness > SWAPPINESS_ANON_ONLY:
            return -errno.EINVAL
        if cmd == "+":
            return run_aging(lruvec, seq, swappiness, bool(opt))
        if cmd == "-":
            return run_eviction(lruvec, seq, sc, swappiness, opt)
        return -errno.EINVAL


def run_aging(lruvec, seq: int, swappiness: int, force_scan: bool) -> int:
    """run_aging(): -EINVAL past max_seq; otherwise age from the current max_seq (a stale seq
    still ages), -EEXIST when no generation could be added."""
    max_seq = lruvec.lrugen.max_seq
    if seq > max_seq:
        return -errno.EINVAL
    return 0 if try_to_inc_max_seq(lruvec, max_seq, swappiness, force_scan) else -errno.EEXIST


def kstrtouint(text: str, base: int = 0) -> int | None:
    """kstrtouint(): an unsigned 32-bit integer (base 0: 0x.. hex, 0.. octal), one trailing
    newline allowed; None when invalid."""
    s = text[:-1] if text.endswith("\n") else text
    if base == 0:
        if re.fullmatch(r"0[xX][0-9a-fA-F]+", s):
            v = int(s, 16)
        elif re.fullmatch(r"0[0-7]*", s):
            v = int(s, 8)
        elif re.fullmatch(r"[1-9][0-9]*", s):
            v = int(s)
        else:
            return None
    else:
        if not re.fullmatch(r"[0-9]+", s):
            return None
        v = int(s, base)
    return v if v <= 0xFFFFFFFF else None

