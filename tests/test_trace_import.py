"""Importers: files written here in the documented formats become .tsw traces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tierscan.cli.main import main
from tierscan.errors import ConfigError
from tierscan.trace.format import TraceReader
from tierscan.trace.importers import (import_csv, import_damo, import_lackey, import_perf,
                                      perf_samples, perf_samples_reference)
from tierscan.trace.lackey import LackeyParser


def accesses(path):
    with TraceReader(path) as r:
        cols = list(r.accesses())
        return r.header, {k: np.concatenate([c[k] for c in cols]) for k in cols[0]}


def test_lackey_file(tmp_path):
    src = tmp_path / "lk.txt"
    src.write_text("==12== Lackey, an example Valgrind tool\n==12== Copyright (C) 2002-2017, and"
                   " GNU GPL'd, by Nicholas Nethercote\nI  04010173,3\n L 1ffefffd48,8\n"
                   " S 0402a000,4\nI  04010176,2\n M 0402a008,8\n L 0402b010,8\n S 0402b000,8\n"
                   "I  04010178,2\n L 1ffefffd40,8\n==12== \n")
    n = import_lackey(src, tmp_path / "a.tsw")
    h, c = accesses(tmp_path / "a.tsw")
    # run merging keeps the first access of a same-page run and its first write
    assert c["page"].tolist() == [0x1ffefff, 0x402a, 0x402b, 0x402b, 0x1ffefff]
    assert c["flags"].tolist() == [0, 1, 0, 1, 0]
    assert c["clock"].tolist() == [1, 1, 2, 2, 3]
    assert n == 5
    assert h.source == "lackey"


def test_lackey_parser_pieces_equal_whole(tmp_path):
    rng = np.random.default_rng(3)
    lines = []
    for _ in range(5000):
        k = rng.integers(0, 4)
        a = int(rng.integers(0, 1 << 40))
        lines.append(("I  %08x,3" if k == 0 else " %s %%08x,8" % "LSM"[k - 1]) % a)
    text = ("\n".join(lines) + "\n").encode()
    whole = LackeyParser().feed(text, final=True)
    p = LackeyParser()
    cuts = sorted(rng.integers(0, len(text), 30))
    parts = [p.feed(text[a:b]) for a, b in zip([0, *cuts], [*cuts, len(text)])]
    parts.append(p.feed(b"", final=True))
    for i in range(4):
        assert np.array_equal(whole[i], np.concatenate([x[i] for x in parts]))
    # a reference parse, line by line
    ref_pages = []
    for ln in lines:
        if ln.startswith(" "):
            page = int(ln[3:].split(",")[0], 16) >> 12
            ref_pages += [page, page] if ln[1] == "M" else [page]
    unmerged = LackeyParser(merge=False).feed(text, final=True)
    assert unmerged[0].tolist() == ref_pages


def test_csv_with_and_without_time(tmp_path):
    src = tmp_path / "a.csv"
    src.write_text("address,op,time\n0x7f0000001000,R,10\n 4096, W ,20\n# comment\n"
                   "0x7F0000002abc,w,35\n")
    import_csv(src, tmp_path / "a.tsw")
    h, c = accesses(tmp_path / "a.tsw")
    assert c["page"].tolist() == [0x7f0000001, 1, 0x7f0000002]
    assert c["flags"].tolist() == [0, 1, 1] and c["clock"].tolist() == [10, 20, 35]
    assert h.clock == "ns"
    src.write_text("8192,R\n12288,W\n")
    import_csv(src, tmp_path / "b.tsw")
    h, c = accesses(tmp_path / "b.tsw")
    assert c["page"].tolist() == [2, 3] and h.clock == "index"


@pytest.mark.parametrize("text,msg", [("0x10,R\n0x20,X\n", "line 2: expected R or W"),
                                      ("0x10,R\n0xzz,W\n", "line 2: expected a decimal"),
                                      ("0x10,R\n0x20\n", "line 2: expected 2 comma")])
def test_csv_errors_name_the_line(tmp_path, msg, text):
    src = tmp_path / "bad.csv"
    src.write_text(text)
    with pytest.raises(ConfigError, match=msg):
        import_csv(src, tmp_path / "x.tsw")
    assert not (tmp_path / "x.tsw").exists()


def test_perf_script_samples(tmp_path):
    src = tmp_path / "perf.txt"
    src.write_text(
        "   4242  1234.000100:          1 cpu/mem-loads,ldlat=30/P:     7ffd12345678\n"
        "   4243  1234.000350:          1 cpu/mem-stores/P:     55aa00001000\n"
        "   4242  1234.001100:      cpu/mem-loads,ldlat=30/P:     7ffd12346000\n")
    import_perf(src, tmp_path / "p.tsw")
    h, c = accesses(tmp_path / "p.tsw")
    assert c["page"].tolist() == [0x7ffd12345, 0x55aa00001, 0x7ffd12346]
    assert c["flags"].tolist() == [0, 1, 0]
    assert c["clock"].tolist() == [0, 250_000, 1_000_000]
    assert h.extra["replay"] == "rate" and h.threads == 2
    for bad, line in (("garbage line\n", 1), ("# c\n 1 2.5: ev: 10\n 1 2: ev: 10\n", 3),
                      (" 1 2.5: 7 ev: zz\n", 1), (" 1 2.5: ev:\n", 1), (" 1 2.5: ev 10\n", 1)):
        src.write_text(bad)
        for parse in (perf_samples, perf_samples_reference):
            with pytest.raises(ConfigError, match=f"line {line}"):
                parse(bad.encode(), 1, "f")
        with pytest.raises(ConfigError, match=f"line {line}"):
            import_perf(src, tmp_path / "q.tsw")


def test_perf_parser_matches_the_per_line_regex():
    """The vectorised perf parser against a regular expression per line, on generated samples
    with and without the period column, blank and comment lines, odd spacing and event case."""
    rng = np.random.default_rng(2)
    lines = []
    for i in range(3_000):
        ev = ["cpu/mem-loads,ldlat=30/P:", "cpu/mem-stores/P:", "MEM-STORES:", "ibs_op//:"][i % 4]
        period = f"{rng.integers(1, 99999)} " if rng.random() < 0.5 else ""
        frac = str(rng.integers(0, 10**9)).zfill(9)[:int(rng.integers(1, 10))]
        lines.append(f"{' ' * int(rng.integers(0, 4))}{rng.integers(1, 99999)}\t "
                     f"{rng.integers(0, 99999)}.{frac}:   {period}{ev} "
                     f"{int(rng.integers(0, 1 << 47)):x}")
        if i % 500 == 0:
            lines += ["", "# a comment line", "   "]
    data = ("\n".join(lines) + "\n").encode()
    got, want = perf_samples(data, 1, "f"), perf_samples_reference(data, 1, "f")
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert 0 < got[3].sum() < got[3].size


def test_damo_records(tmp_path):
    src = tmp_path / "damo.json"
    snap = lambda t, regs: {"start_time": t, "end_time": t + 100_000_000,
                            "regions": [{"start": a, "end": b, "nr_accesses": {"samples": n,
                                         "percent": n * 5}, "age": 1} for a, b, n in regs]}
    src.write_text(json.dumps([{"kdamond_idx": 0, "context_idx": 0, "snapshots": [
        snap(5_000_000_000, [(0x10000, 0x20000, 3), (0x20000, 0x80000, 0)]),
        snap(5_100_000_000, [(0x10000, 0x30000, 20)])]}]))
    import_damo(src, tmp_path / "d.tsw")
    with TraceReader(tmp_path / "d.tsw") as r:
        regs = list(r.regions())
        assert r.header.kind == "region" and r.header.duration == 200_000_000
    assert [c["time_ns"].tolist() for c in regs] == [[0, 0], [100_000_000]]
    assert regs[1]["nr_accesses"].tolist() == [20]
    src.write_text(json.dumps([{"snapshots": [{"start_time": 0, "end_time": 1,
                                               "regions": [{"start": 5}]}]}]))
    with pytest.raises(ConfigError, match=r"records\[0\].snapshots\[0\]"):
        import_damo(src, tmp_path / "e.tsw")


@pytest.mark.parametrize("doc,match", [
    ({"records": [{"snapshots": [{"start_time": 0, "end_time": 1, "regions": [
        {"start": 0, "end": 4096, "nr_accesses": 1}]}, 7]}]}, r"records\[0\].snapshots\[1\]"),
    ([{"snapshots": 3}], r"records\[0\].*snapshots"),
    ([{"x": 1}], r"records\[0\].*missing 'snapshots'"),
    ([], "expected a list of damo records"),
    ({"other": []}, "expected a list of damo records"),
    ([{"snapshots": []}], "no snapshots"),
])
def test_damo_bad_records_name_the_record(tmp_path, doc, match):
    src = tmp_path / "bad.json"
    src.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=match):
        import_damo(src, tmp_path / "bad.tsw")
    assert not (tmp_path / "bad.tsw").exists()
    src.write_text('[{"snapshots": [')                 # cut short
    with pytest.raises(ConfigError, match="not JSON"):
        import_damo(src, tmp_path / "bad.tsw")


def test_damo_import_is_streamed_in_bounded_memory(tmp_path):
    """An 18 MB record file (200 snapshots of 1,000 regions, {"records": [...]} form) imports
    with a Python heap peak below half the file's size: one snapshot is held at a time
    (json.load of the whole file holds the file and several times it in objects)."""
    import tracemalloc

    src = tmp_path / "big.json"
    with open(src, "w") as f:
        f.write('{"records": [{"kdamond_idx": 0, "snapshots": [')
        for i in range(200):
            regs = ",".join(f'{{"start": {0x10000 + j * 4096}, "end": {0x11000 + j * 4096}, '
                            f'"nr_accesses": {{"samples": {(i * j) % 20}, "percent": 0}}, '
                            f'"age": {j}}}' for j in range(1000))
            f.write(("," if i else "") + f'{{"start_time": {i * 100_000_000}, "end_time": '
                    f'{(i + 1) * 100_000_000}, "regions": [{regs}]}}')
        f.write("]}]}")
    size = src.stat().st_size
    assert size > 15e6
    tracemalloc.start()
    n = import_damo(src, tmp_path / "big.tsw")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert n == 200_000
    assert peak < size / 2, (peak, size)
    with TraceReader(tmp_path / "big.tsw") as r:
        assert r.header.duration == 20_000_000_000
        assert sum(c["nr_accesses"].size for c in r.regions()) == 200_000


def test_cli_import(tmp_path, capsys):
    src = tmp_path / "a.csv"
    src.write_text("4096,R\n8192,W\n")
    assert main(["trace", "import", "csv", str(src), "-o", str(tmp_path / "a.tsw")]) == 0
    assert main(["trace", "import", "csv", str(tmp_path / "none.csv"), "-o",
                 str(tmp_path / "b.tsw")]) == 2
    assert "none.csv: cannot open" in capsys.readouterr().err
