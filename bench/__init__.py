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


def replay_parser(prog: str, doc: str):
    """The arguments the replay benches share: ``--data`` (default ``../shared/datasets/users``),
    ``--max-events``, ``--users a,b`` and ``--out FILE``; a bench adds its own."""
    import argparse

    ap = argparse.ArgumentParser(prog=prog, description=doc.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "users"))
    ap.add_argument("--max-events", type=int)
    ap.add_argument("--users", type=lambda s: s.split(","), help="comma-separated users (default all)")
    ap.add_argument("--out")
    return ap


def emit(result: dict, out) -> int:
    """Print ``result`` as one JSON line and, with ``out``, write it there too; returns 0."""
    import json

    text = json.dumps(result, separators=(",", ":"))
    if out:
        Path(out).write_text(text + "\n")
    print(text)
    return 0
