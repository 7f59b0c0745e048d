"""memcg limits (issue 13 item 7): memory.max reclaims from the memcg and OOMs past it,
memory.high reclaims on return to user space, memory.min/low protect from reclaim, and
memory.stat in the kernel's format."""

import numpy as np
import pytest
from conftest import PAGE, make_kernel, page_addrs

from tierscan.errors import OutOfMemory
from tierscan.kernel import Kernel
from tierscan.machine import Machine
from tierscan.mm.evict import ScanControl
from tierscan.mm.memcontrol import memory_stat, page_counter_read
from tierscan.mm.reclaim import try_to_free_pages


def kernel(lru="y"):
    k = Kernel(Machine.preset("laptop"), seed=0, debug=True)
    k.sysfs.write("lru_gen/enabled", lru)
    return k


def fill_file(mm, n, start=0):
    vma = mm.mmap(n * PAGE, kind="file")
    mm.access(page_addrs(vma.start, n), False)
    return vma


@pytest.mark.parametrize("lru", ["y", "n"])
def test_memory_max_reclaims_the_memcgs_own_pages(lru):
    k = kernel(lru)
    cg = k.memcg_create("a")
    cg.memory_max = 256
    mm = k.spawn("a", memcg=cg)
    other = k.spawn("b")
    fill_file(other, 512)                            # root's pages: never reclaimed for /a
    vma = mm.mmap(1024 * PAGE, kind="file")
    for i in range(0, 1024, 64):
        mm.access(page_addrs(vma.start, 64, i), False)
        assert page_counter_read(k, cg) <= 256
    assert (vma.file.pages[-64:] >= 0).all()         # the last touched are cached
    assert page_counter_read(k, k.root_memcg) - page_counter_read(k, cg) == 512
    assert k.vmstat["memcg_max_events"] > 0


def test_memory_max_ooms_when_nothing_can_be_reclaimed():
    k = kernel()
    cg = k.memcg_create("a")
    cg.memory_max = 64
    mm = k.spawn("a", memcg=cg)
    anon = mm.mmap(128 * PAGE)
    with pytest.raises(OutOfMemory, match="memcg /a.*memory.max"):
        mm.access(page_addrs(anon.start, 128), True)   # no swap, no demotion: anon stays
    k.check()
    assert k.vmstat["memcg_oom_events"] == 1


def test_memory_high_reclaims_the_excess_on_return_to_user():
    k = kernel("n")
    cg = k.memcg_create("a")
    cg.memory_high = 100
    mm = k.spawn("a", memcg=cg)
    fill_file(mm, 300)
    assert page_counter_read(k, cg) <= 100
    assert k.vmstat["memcg_high_events"] >= 1


@pytest.mark.parametrize("knob", ["memory_min", "memory_low"])
def test_protection_keeps_a_memcgs_pages_from_global_reclaim(knob):
    k = kernel("n")
    a, b = k.memcg_create("a"), k.memcg_create("b")
    setattr(a, knob, 1 << 20)
    va = fill_file(k.spawn("a", memcg=a), 256)
    vb = fill_file(k.spawn("b", memcg=b), 256)
    try_to_free_pages(k, [0], 0, 128)
    assert (va.file.pages[:256] >= 0).all()          # protected
    assert (vb.file.pages[:256] < 0).sum() >= 128      # reclaimed from the other


def test_memory_low_gives_way_when_nothing_else_is_reclaimable():
    k = kernel("n")
    a = k.memcg_create("a")
    a.memory_low = 1 << 20
    va = fill_file(k.spawn("a", memcg=a), 256)
    got = try_to_free_pages(k, [0], 0, 64)
    assert got >= 64 and (va.file.pages[:256] < 0).sum() >= 64
    assert k.vmstat["memcg_low_events"] > 0
    k2 = kernel("n")
    m = k2.memcg_create("a")
    m.memory_min = 1 << 20                           # memory.min never gives way
    vm_ = fill_file(k2.spawn("a", memcg=m), 256)
    assert try_to_free_pages(k2, [0], 0, 64) == 0 and (vm_.file.pages[:256] >= 0).all()


@pytest.mark.parametrize("lru", ["y", "n"])
def test_memory_stat_format(lru):
    k = kernel(lru)
    cg = k.memcg_create("a")
    mm = k.spawn("a", memcg=cg)
    fill_file(mm, 16)
    anon = mm.mmap(8 * PAGE)
    mm.access(page_addrs(anon.start, 8), True)
    text = memory_stat(k, cg)
    stat = dict(line.split(" ") for line in text.splitlines())
    assert list(stat)[:3] == ["anon", "file", "shmem"]
    assert int(stat["anon"]) == 8 * PAGE and int(stat["file"]) == 16 * PAGE
    lists = sum(int(stat[x]) for x in ("inactive_anon", "active_anon", "inactive_file",
                                        "active_file"))
    assert lists == 24 * PAGE
    if lru == "n":
        assert int(stat["inactive_file"]) == 16 * PAGE     # faulted folios start inactive
    root = dict(line.split(" ") for line in memory_stat(k, k.root_memcg).splitlines())
    assert int(root["file"]) >= int(stat["file"])          # recursive


def test_memcg_limits_from_the_config_and_memory_stat_in_the_result(tmp_path, capsys):
    from tierscan.cli.main import main

    cfg = tmp_path / "exp.toml"
    cfg.write_text('''
duration = "100ms"
[machine]
preset = "laptop"
[workload]
name = "uniform"
size = "8MiB"
kind = "file"
shared = true
memcg = "/small"
[[memcgs]]
path = "/small"
max = "4MiB"
''')
    out = tmp_path / "r.json"
    assert main(["run", str(cfg), "--json", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["vmstat", str(out), "--memcg", "/small"]) == 0
    stat = dict(ln.split(" ") for ln in capsys.readouterr().out.splitlines())
    assert 0 < int(stat["file"]) <= 4 << 20
    assert main(["vmstat", str(out), "--memcg", "/nope"]) != 0
    assert "no memory.stat for memcg '/nope'" in capsys.readouterr().err


def test_memcgs_config_errors_name_the_field():
    from tierscan.errors import ConfigError
    from tierscan.sim.config import config_from_dict

    base = {"machine": {"preset": "laptop"}, "workload": {"name": "hotset"}}
    for bad, field in ((["x"], "memcgs[0]"), ([{"path": "a"}], "memcgs[0].path"),
                       ([{"path": "/a", "max": "lots"}], "memcgs[0].max"),
                       ([{"path": "/a", "hgh": 1}], "memcgs[0]")):
        with pytest.raises(ConfigError) as e:
            config_from_dict({**base, "memcgs": bad}, "<t>")
        assert (e.value.field or "").startswith(field), (bad, e.value.field)
    cfg = config_from_dict({**base, "memcgs": [{"path": "/a", "max": "1MiB", "low": "max"}]},
                           "<t>")
    assert config_from_dict(cfg.resolved(), "<t>") == cfg


# ---- proportional protection (mm/page_counter.c effective_protection, get_scan_count) ---------
def test_overcommitted_protection_is_shared_in_proportion_to_protected_usage():
    """/p (low 100) has two children each claiming low 100 and using 100 pages: together they
    claim 200 of the 100 /p affords, so each gets 100 * 100 / 200 = 50 and is reclaimable at
    once (before: each kept min(100, 100) and reclaim had to retry with memcg_low_reclaim)."""
    from tierscan.mm.memcontrol import effective_protection

    k = kernel("n")
    p = k.memcg_create("p")
    a, b = k.memcg_create("a", parent=p), k.memcg_create("b", parent=p)
    p.memory_low = a.memory_low = b.memory_low = 100
    va = fill_file(k.spawn("a", memcg=a), 100)
    fill_file(k.spawn("b", memcg=b), 100)
    assert effective_protection(k, p, "memory_low") == 100
    assert effective_protection(k, a, "memory_low") == 50
    assert effective_protection(k, a, "memory_low", target=p) == 100   # p's own reclaim
    got = try_to_free_pages(k, [0], 0, 64)
    assert got >= 64 and k.vmstat["memcg_low_events"] == 0
    assert (va.file.pages[:100] < 0).any()


def test_get_scan_count_scales_a_protected_memcgs_lists():
    """A memcg using 100 pages with memory.low 50 is scanned 100 - 100 * 50 / 101 = 51 pages
    of its 100 inactive file pages at priority 0, and the pass notes memcg_low_skipped."""
    from tierscan.mm.classic_lru import LRU_INACTIVE_FILE, get_scan_count

    k = kernel("n")
    a = k.memcg_create("a")
    fill_file(k.spawn("a", memcg=a), 100)
    lv = k.lruvec(a, 0)
    assert get_scan_count(lv, ScanControl(priority=0))[LRU_INACTIVE_FILE] == 100
    a.memory_low = 50
    sc = ScanControl(priority=0)
    assert get_scan_count(lv, sc)[LRU_INACTIVE_FILE] == 51 and sc.memcg_low_skipped
    sc = ScanControl(priority=0, memcg_low_reclaim=True)     # memory.min (0) then applies
    assert get_scan_count(lv, sc)[LRU_INACTIVE_FILE] == 100


@pytest.mark.parametrize("mglru", [True, False])
def test_a_fault_keeps_the_page_it_maps_or_copies_while_its_charge_reclaims(mglru):
    """Stores to a private file mapping in a memcg at memory.max: each batch reads the file
    pages in (phase 2) and copies them (wp_page_copy, phase 3); charging the new pages
    reclaims the memcg, which must not free a page the fault is about to map or copy (the
    kernel holds a reference across the charge). Before: the charge ran after the pin ended,
    reclaim freed a page being copied and the copy decremented a free pfn's mapcount
    ("a free pfn carries folio state"); the classic LRU also ignored the pin."""
    k = make_kernel(("24MiB", "16MiB"))
    if not mglru:
        k.sysfs["lru_gen/enabled"] = 0
    limited = k.memcg_create("b")
    limited.memory_max = 256
    mm = k.spawn("r", memcg=limited)
    vma = mm.mmap(700 * PAGE, kind="file")
    for i in (0, 100):
        mm.access(page_addrs(vma.start, 100, i), True)     # Kernel.check() after each op
    assert page_counter_read(k, limited) <= 256
    assert mm.rss()["anon"] == 200                          # every store has its own copy
    with pytest.raises(OutOfMemory, match="memory.max"):     # 300 anon pages cannot fit
        mm.access(page_addrs(vma.start, 100, 200), True)
