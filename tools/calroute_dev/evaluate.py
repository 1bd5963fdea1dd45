"""Offline evaluation: ``calroute evaluate --data DIR [--max-train-per-calendar N] [--json]``.

The command only: its arguments, the table (users worst first) and ``--report``. The data layout,
the protocol (time-ordered 70/30 per calendar, the Lambda's trainer, onnxruntime, the routing rule)
and every figure it prints are described in :mod:`calroute_dev.evaluation`, whose functions it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from .evaluation import (  # noqa: F401 - the evaluation functions, also reachable as calroute_dev.evaluate.*
    CURVE_POINTS, EVAL_VERSION, KEYS, TRAIN_FRACTION, evaluate_dir, evaluate_user, load_ics_dir, load_jsonl,
    load_users, split_events, worst_users, _worst_first,
)


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``calroute evaluate`` (the console script in ``calroute_dev/cli.py`` calls this)."""
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="folder of <user>.jsonl files or <user>/ folders of <calendar>.ics files")
    parser.add_argument("--max-train-per-calendar", type=int, default=None, metavar="N",
                        help="train on only the first N events of each calendar (gates relaxed as needed)")
    parser.add_argument("--family", default=None, help="model family (default: the trainer's default)")
    parser.add_argument("--user", action="append", default=None, help="evaluate only this user (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--report", default=None, metavar="OUTDIR",
                        help="also write OUTDIR/evaluation.json and the report (index.html, README.md, PNG plots)")


def _fmt(v: Any, pct: bool = True) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1%}" if pct else f"{v:.2f}"
    return str(v)


def format_table(result: dict) -> str:
    """The human-readable table of :func:`evaluate_dir`'s result."""
    head = f"{'user':<18} {'train':>6} {'test':>6} {'coverage':>9} {'acc_kept':>9} {'acc_all':>8} " \
           f"{'macroF1':>8} {'AURC':>7} {'thresh':>7} {'bound':>7} {'train_s':>8}"
    lines = [head, "-" * len(head)]

    def row(name: str, r: dict, train: Any = "") -> str:
        bound = (r.get("risk") or {}).get("upper_bound") if isinstance(r.get("risk"), dict) else None
        aurc_v = r.get("aurc")
        return (f"{name:<18} {train!s:>6} {r.get('test_events', '')!s:>6} {_fmt(r.get('coverage')):>9} "
                f"{_fmt(r.get('accuracy_kept')):>9} {_fmt(r.get('accuracy_all')):>8} {_fmt(r.get('macro_f1')):>8} "
                f"{'-' if aurc_v is None else f'{aurc_v:.4f}':>7} "
                f"{_fmt(r.get('threshold'), False):>7} {_fmt(bound):>7} {_fmt(r.get('train_seconds'), False):>8}")

    w = result.get("worst_user") or {}
    if w.get("accuracy_kept"):
        a = w["accuracy_kept"]
        lines.insert(0, f"worst user (accuracy of kept answers): {a['user']} {_fmt(a['value'])} at coverage "
                        f"{_fmt(a['coverage'])}")
    if w.get("coverage"):
        c = w["coverage"]
        lines.insert(1 if w.get("accuracy_kept") else 0,
                     f"lowest coverage: {c['user']} {_fmt(c['value'])} (accuracy kept {_fmt(c['accuracy_kept'])})")
    for u in sorted(result["users"], key=_worst_first):
        if "skipped" in u:
            lines.append(f"{u['user']:<18} skipped: {u['skipped']}")
        else:
            lines.append(row(u["user"], u, u["train_events"]))
    lines.append("-" * len(head))
    lines.append(row("overall (pooled)", result["overall"]))
    lines.append(row("mean of users", result["mean_of_users"]))
    s = result["settings"]
    lines.append(f"family={s['family']}  split={s['train_fraction']:.0%} per calendar (time-ordered)"
                 + (f"  max_train_per_calendar={s['max_train_per_calendar']}" if s["max_train_per_calendar"] else ""))
    for u in result["users"]:
        if u.get("note"):
            lines.append(f"note ({u['user']}): {u['note']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run ``calroute evaluate``; 0 on success, 2 on bad input."""
    try:
        from .text import progress

        result = evaluate_dir(args.data, getattr(args, "max_train_per_calendar", None),
                              family=getattr(args, "family", None), users=getattr(args, "user", None),
                              progress=progress)
    except (ValueError, OSError) as exc:
        print(f"calroute evaluate: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # InvalidInput from the schema/ICS reader
        if hasattr(exc, "message"):
            print(f"calroute evaluate: {exc.message}", file=sys.stderr)
            return 2
        raise
    text = json.dumps(result, indent=2, default=float)
    report = getattr(args, "report", None)
    if report:
        out = Path(report)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(text + "\n", encoding="utf-8")
        # plots + HTML/Markdown report (calroute_dev.report; matplotlib, developer tooling only)
        from .report import collect_details, write_report

        details = collect_details(args.data, users=getattr(args, "user", None), family=getattr(args, "family", None))
        write_report(result, out, details=details, data_dir=str(args.data))
    print(text if getattr(args, "json", False) else format_table(result))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="calroute evaluate", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
