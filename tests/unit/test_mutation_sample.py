"""The CI sample of mutation testing: every mutant of a few fixed functions (``[[sample]]`` in
tools/calroute_dev/mutation/targets.toml) must be killed by the tests mapped to its module, so the
score of `make mutation` (docs/reliability.md) cannot rot unnoticed. It runs mutmut in a subprocess
(its own stage under build/mutation-sample/), and writes its time into docs/reliability.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

@pytest.mark.slow
def test_every_sampled_mutant_is_killed():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT / "tools")  # calroute itself is the mutated copy in the stage
    proc = subprocess.run([sys.executable, "-m", "calroute_dev.mutation", "--sample", "--workers", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "SURVIVED" not in out and "sample:" in out


def _result(survivors=(), mutants=3):
    return {"name": "x", "file": "calroute/x.py", "tests": ["tests/unit/test_x.py"], "mutants": mutants,
            "killed": mutants - len(survivors), "equivalent": 0, "survived": len(survivors), "seconds": 1.0,
            "survivors": [{"name": n, "status": "survived", "diff": "-a\n+b"} for n in survivors]}


def _runner(monkeypatch, result):
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    mod = importlib.import_module("calroute_dev.mutation.__main__")
    written = []
    monkeypatch.setattr(mod, "run_target", lambda t, **kw: result)
    monkeypatch.setattr(mod, "_write_between", lambda b, e, block: written.append(block))
    return mod, written


def test_the_sample_fails_when_a_sampled_mutant_survives(monkeypatch, capsys):
    mod, written = _runner(monkeypatch, _result(["calroute.x.x_f__mutmut_2"]))
    assert mod.run_sample(workers=1) == 1
    assert "SURVIVED: calroute.x.x_f__mutmut_2" in capsys.readouterr().out and written == []


def test_the_sample_fails_when_a_sampled_function_has_no_mutants(monkeypatch):
    mod, written = _runner(monkeypatch, _result(mutants=0))
    assert mod.run_sample(workers=1) == 1 and written == []


def test_a_passing_sample_records_its_time(monkeypatch):
    mod, written = _runner(monkeypatch, _result())
    assert mod.run_sample(workers=1) == 0
    assert len(written) == 1 and "| `calroute/ids.py` | `x__check` |" in written[0] and "s** in all" in written[0]
