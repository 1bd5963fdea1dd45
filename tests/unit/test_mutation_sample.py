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

pytestmark = pytest.mark.slow


def test_every_sampled_mutant_is_killed():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(ROOT / "tools")  # calroute itself is the mutated copy in the stage
    proc = subprocess.run([sys.executable, "-m", "calroute_dev.mutation", "--sample", "--workers", "1"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "SURVIVED" not in out and "sample:" in out
