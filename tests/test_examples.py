"""Every examples/*.toml loads and runs, scaled down, so the shipped configurations cannot rot.

Each example carries its own scale-down in its header: ``# smoke-set: KEY=VALUE ...`` (the
``--set`` overrides this test applies) and ``# smoke-positive: COUNTER ...`` (vmstat counters
that must be > 0 after the scaled-down run, so a run that silently does nothing fails)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tierscan.sim.config import load_config
from tierscan.sim.run import run_experiment

# examples/ also holds sweep files, lru-gen scenarios and the README's first experiment
# (tests/test_docs_examples.py runs those): this test takes every experiment that declares
# its scale-down.
EXAMPLES = sorted(p for p in (Path(__file__).resolve().parents[1] / "examples").glob("*.toml")
                  if "\n# smoke-set:" in p.read_text())


def header(path: Path, tag: str) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith(f"# {tag}:"):
            out += shlex.split(line.split(":", 1)[1])
    return out


def test_there_are_examples():
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_loads_unscaled(path):
    load_config(path)
    assert header(path, "smoke-set") and header(path, "smoke-positive"), \
        f"{path.name}: a header needs '# smoke-set:' and '# smoke-positive:' lines"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_scaled_down(path):
    cfg = load_config(path, overrides=header(path, "smoke-set"))
    vmstat = run_experiment(cfg).final["vmstat"]
    for counter in header(path, "smoke-positive"):
        assert vmstat[counter] > 0, f"{path.name}: {counter} stayed 0"


@pytest.mark.parametrize("step", ["base", "hot-selection", "rate-limit"])
def test_numa_tiering_series_runs_every_step(step):
    """The series example stands for all four steps (the file's own is "auto-threshold")."""
    path = next(p for p in EXAMPLES if p.stem == "numa-tiering-series")
    cfg = load_config(path, overrides=header(path, "smoke-set") +
                      [f"detectors[0].tiering_step={step}"])
    assert cfg.detectors[0].params["tiering_step"] == step
    assert run_experiment(cfg).final["vmstat"]["pgpromote_success"] > 0
