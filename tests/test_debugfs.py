"""lru_gen debugfs and the lru_gen sysfs knobs (mglru-spec §8)."""

import errno
from pathlib import Path

import numpy as np
import pytest

from tierscan import Kernel, Machine
from tierscan.cli.main import main
from tierscan.mm.debugfs import kstrtouint

GOLDEN = Path(__file__).parent / "golden" / "lru_gen_scenario.txt"


def golden_steps():
    steps, cur = {}, None
    for line in GOLDEN.read_text().splitlines(keepends=True):
        if line.startswith("# step "):
            cur = int(line.split()[2].rstrip(":"))
            steps[cur] = ""
        else:
            steps[cur] += line
    return steps


def test_golden_scenario():
    """The expected text was derived by hand from the spec, not from a run:

    1. 8 MiB anon + 4 MiB shared file, populated on node 1: faulted pages land in
       max_seq-1 = 2 (§3.1), so node 1 seq 2 holds 2048 anon and 1024 file pages; all
       timestamps are the boot jiffies (INITIAL_JIFFIES), read at 2000 ms.
    2. '+ 1 1 3 200 1' (force_scan): every PTE is young from the fault but seen for the first
       time, so folio_update_gen only sets PG_referenced (§3.4) and nothing moves.
       inc_max_seq: both types have 4 gens, gen(min_seq=0) is empty, so min_seq -> [1, 1];
       timestamps[gen 4 = 0] = boot + 2000; max_seq = 4. mm stats: 3072 PTEs visited, all young,
       6 tables found and added (young*8 >= total).
    3. At 3000 ms lru_gen starts at evictable_min_seq = 1; seq 4 is 1000 ms old.
    4. The first 2 MiB of anon are read again, then '+ 1 1 4 200 0': not forced, but the
       first walk was forced, so no non-leaf bit was cleared and the Bloom filter it built
       (filters[4 % 2]) holds all six tables; all are walked, 512 PTEs are young and their
       folios (referenced since step 2) move to gen(4) = 0; only that table is dense enough
       for the next filter. Stats add up to 6144/3584/12/7. inc_max_seq: min_seq -> [2, 2],
       timestamps[gen 5 = 1] = boot + 3000, max_seq = 5.
    5. At 4500 ms lru_gen_full shows seqs 2..5: seq 2 (= min_seq of both types, "rep"),
       1536 anon + 1024 file; seq 4 holds the 512 promoted pages, 2500 ms old; seq 5 is
       max_seq ("RTx" tiers, "TYFA" stats). No refaults are modelled, so tier counters are 0.
    """
    want = golden_steps()
    k = Kernel(Machine.preset("laptop"), seed=0, debug=True)
    mm = k.spawn("a", cpu_node=0)
    anon = mm.mmap(8 << 20, populate=True, policy="bind", nodes=[1])
    mm.mmap(4 << 20, kind="file", shared=True, populate=True, policy="bind", nodes=[1])
    k.clock_ns = 2000 * 10**6
    assert k.debugfs.read("lru_gen") == want[1]
    assert k.debugfs.write("lru_gen", "+ 1 1 3 200 1") == len("+ 1 1 3 200 1")
    k.clock_ns = 3000 * 10**6
    assert k.debugfs.read("lru_gen") == want[3]
    mm.access(np.arange(anon.start, anon.start + (2 << 20), 4096, dtype=np.uint64), False)
    k.debugfs.write("lru_gen", "+ 1 1 4 200 0")
    k.clock_ns = 4500 * 10**6
    assert k.debugfs.read("lru_gen_full") == want[6]


def test_reading_twice_without_change_is_identical():
    k = Kernel(Machine.preset("laptop"), seed=0)
    k.spawn("a").mmap(4 << 20, populate=True)
    assert k.debugfs.read("lru_gen_full") == k.debugfs.read("lru_gen_full")


def aged_kernel():
    k = Kernel(Machine.preset("laptop"), seed=0, faithful_quirks=False, debug=True)
    k.spawn("a").mmap(4 << 20, populate=True, policy="bind", nodes=[1])
    return k


@pytest.mark.parametrize("cmd", [
    "+ 1 1 9",            # seq > max_seq
    "+ 2 1 3",            # no memcg 2
    "+ 0 1 3",            # memcg ids start at 1 with memcg enabled
    "+ 1 2 3",            # no node 2
    "+ 1 1 3 202",        # swappiness > 201
    "+ 1 1 3 abc",        # not a number
    "* 1 1 3",            # unknown command
    "+ 1 1",              # too few fields
    "+ 1 1 3 200 1 9",    # trailing garbage
    "+ -1 1 3",           # not unsigned
    "- 1 1 3",            # eviction needs seq + 2 <= max_seq
])
def test_bad_commands_fail_with_einval_and_change_nothing(cmd):
    k = aged_kernel()
    lv = k.lruvec(k.root_memcg, 1)
    before = k.debugfs.read("lru_gen_full")
    with pytest.raises(OSError) as e:
        k.debugfs.write("lru_gen", cmd)
    assert e.value.errno == errno.EINVAL
    assert k.debugfs.read("lru_gen_full") == before
    assert lv.lrugen.max_seq == 3


def test_commands_run_in_order_and_stop_at_the_first_error():
    k = aged_kernel()
    lv = k.lruvec(k.root_memcg, 1)
    with pytest.raises(OSError):
        k.debugfs.write("lru_gen", "+ 1 1 3 200 1; + 1 1 4 200 1\n+ 1 1 9, + 1 1 5")
    assert lv.lrugen.max_seq == 5  # the two before the error stayed applied


def test_stale_seq_still_ages_from_current_max_seq():
    k = aged_kernel()
    lv = k.lruvec(k.root_memcg, 1)
    k.debugfs.write("lru_gen", "+ 1 1 3 200 1")
    k.debugfs.write("lru_gen", "+ 1 1 2 200 1")      # stale: 2 < max_seq 4
    assert lv.lrugen.max_seq == 5


def test_max_token_means_swappiness_201_and_memcg_disabled_root_is_0():
    k = Kernel(Machine.preset("laptop"), seed=0, memcg=False)
    k.spawn("a").mmap(1 << 20, populate=True)
    k.debugfs.write("lru_gen", "+ 0 0 3 max")
    assert k.lruvec(k.root_memcg, 0).lrugen.max_seq == 4
    assert k.debugfs.read("lru_gen").startswith("memcg     0 \n node     0\n")


def test_lru_gen_full_is_read_only_and_unknown_files_do_not_exist():
    k = Kernel(Machine.preset("laptop"), seed=0)
    with pytest.raises(OSError) as e:
        k.debugfs.write("lru_gen_full", "+ 1 1 3")
    assert e.value.errno == errno.EACCES
    with pytest.raises(OSError) as e:
        k.debugfs.read("lru_gen_nope")
    assert e.value.errno == errno.ENOENT


@pytest.mark.parametrize("text,value", [("0", 0), ("10", 10), ("0x1f", 31), ("017", 15),
                                        ("7\n", 7), ("4294967295", 2**32 - 1)])
def test_kstrtouint_accepts(text, value):
    assert kstrtouint(text) == value


@pytest.mark.parametrize("text", ["", "-1", "1.5", "0x", "08", "4294967296", " 1", "1 "])
def test_kstrtouint_rejects(text):
    assert kstrtouint(text) is None


def test_enabled_reads_hex_and_switches_the_walk_and_nonleaf_features():
    k = Kernel(Machine.preset("laptop"), seed=0)
    assert k.sysfs.read("lru_gen/enabled") == "0x0007\n"
    k.sysfs.write("lru_gen/enabled", "0x3")
    assert k.sysfs.read("lru_gen/enabled") == "0x0003\n"
    k.sysfs.write("lru_gen/enabled", "y")
    assert k.sysfs["lru_gen/enabled"] == 0x7
    for bad in ("banana", "-1"):
        with pytest.raises(OSError) as e:
            k.sysfs.write("lru_gen/enabled", bad)
        assert e.value.errno == errno.EINVAL
    k.sysfs.write("lru_gen/enabled", "n")       # the classic LRU (tests/test_classic_lru.py)
    assert k.sysfs.read("lru_gen/enabled") == "0x0000\n"


def test_min_ttl_ms_round_trips():
    k = Kernel(Machine.preset("laptop"), seed=0)
    assert k.sysfs.read("lru_gen/min_ttl_ms") == "0\n"
    k.sysfs.write("lru_gen/min_ttl_ms", "1000\n")
    assert k.sysfs.read("lru_gen/min_ttl_ms") == "1000\n"


def test_cli_lru_gen_prints_and_accepts_commands(capsys):
    assert main(["lru-gen", "-w", "+ 1 1 3 200 1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("memcg     1 /\n node     0\n")
    assert "          4" in out   # max_seq 4 after aging


def test_cli_lru_gen_bad_command_is_one_line_exit_2(capsys):
    # bad input (issue 14): exit 2, the reason, and the kernel's errno kept in the message
    assert main(["lru-gen", "-w", "+ 1 1 99"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Invalid argument (EINVAL)" in err and "Traceback" not in err
    assert "-w '+ 1 1 99'" in err and "generation out of range" in err


def test_cli_lru_gen_bad_scenario_names_file_and_key(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text('[[process]]\nname = "a"\n[[process.mmap]]\nsize = "8 GB"\n')
    assert main(["lru-gen", "--scenario", str(f)]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and "process[0].mmap[0].size" in err and err.count("\n") == 1
