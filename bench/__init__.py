"""calroute benchmarks: ``python -m bench [--json] [--quick]`` (see docs/benchmarks.md)."""

from __future__ import annotations

import sys
from pathlib import Path

#: the checkout the benchmarks run from
ROOT = Path(__file__).resolve().parents[1]


def on_path(*dirs: str) -> Path:
    """Put ``ROOT / d`` for each of ``dirs`` (``"layers/core"``, ``"tools"``, ``"tests"``, ``"."``)
    at the front of ``sys.path`` unless it is there already, so a bench runs from a checkout without
    ``pip install -e``; returns ``ROOT``."""
    for d in dirs:
        p = str(ROOT / d) if d != "." else str(ROOT)
        if p not in sys.path:
            sys.path.insert(0, p)
    return ROOT
