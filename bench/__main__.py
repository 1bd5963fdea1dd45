"""``python -m bench [--json] [--quick] [--only a,b [--merge-previous]] [--results-dir DIR] [--docs FILE]``

Runs every benchmark section (``SECTIONS``), writes ``bench/results/<date>.json`` (figures + machine
info) and the generated section of ``docs/benchmarks.md``; ``--json`` prints the figures as one JSON
object on stdout (progress goes to stderr). ``--quick`` uses tiny repetitions (for tests and smoke
runs; its figures are not meaningful). The top-level keys (``TOP_KEYS``) are documented in
docs/benchmarks.md; a section not selected with ``--only`` is ``{"skipped": "not selected"}``, or
with ``--merge-previous`` the same section of the newest earlier results file (named in
``machine.merged_sections``), so a partial run keeps the page whole.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional, Sequence

from bench import on_path  # noqa: E402 - before the calroute imports below

ROOT = on_path("layers/core", "tools")  # running from a checkout without `pip install -e`

from bench import harness  # noqa: E402

SECTIONS = ("serving", "cold_start", "memory", "training", "accuracy", "state_machine", "llm_economics")
TOP_KEYS = ("schema", "started_at", "duration_s", "quick", "machine", *SECTIONS, "targets", "claims")
SCHEMA = 1
AWS_SECTIONS = {"serving", "cold_start", "state_machine", "llm_economics"}


def _accuracy(quick: bool) -> dict:
    from calroute_dev.evaluation import evaluate_dir

    harness.progress("accuracy: calroute evaluate --data data/users --max-train-per-calendar 20")
    users = ["d2_researcher"] if quick else None
    r = evaluate_dir(harness.ROOT / "data" / "users", 20, users=users)
    keep = ("coverage", "accuracy_kept", "accuracy_all", "macro_f1", "threshold", "test_events")
    return {"max_train_per_calendar": 20, "overall": {k: r["overall"].get(k) for k in keep},
            "mean_of_users": {k: r["mean_of_users"].get(k) for k in keep if k in r["mean_of_users"]},
            "users": [{k: u.get(k) for k in ("user", "train_events", "coverage", "accuracy_kept", "skipped")}
                      for u in r["users"]]}


def run(sections: Sequence[str], quick: bool) -> dict:
    from bench import coldstart, llm_economics, memory, serving, state_machine, training_bench
    from bench.aws_env import emulator

    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    figures: dict = {"schema": SCHEMA, "started_at": started.isoformat(timespec="seconds"), "quick": quick,
                     "machine": harness.machine_info()}
    for s in SECTIONS:
        figures[s] = {"skipped": "not selected"}

    def guarded(name, fn):
        try:
            figures[name] = fn()
        except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
            traceback.print_exc(file=sys.stderr)
            figures[name] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}

    if "training" in sections:
        guarded("training", lambda: training_bench.run(quick))
    if "memory" in sections:
        guarded("memory", lambda: memory.run(quick))
    if "accuracy" in sections:
        guarded("accuracy", lambda: _accuracy(quick))
    if AWS_SECTIONS & set(sections):
        with emulator(max_concurrency=1) as em:
            if "serving" in sections:
                guarded("serving", lambda: serving.run(quick))
            if "cold_start" in sections:
                guarded("cold_start", lambda: _cold(quick))
            if "llm_economics" in sections:
                guarded("llm_economics", lambda: llm_economics.run(quick))
            if "state_machine" in sections:
                guarded("state_machine", lambda: state_machine.run(em, quick))
    figures["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["duration_s"] = round(time.perf_counter() - t0, 1)
    from bench.render import claims, targets

    figures["targets"] = targets(figures)
    figures["claims"] = claims(figures)
    return {k: figures[k] for k in TOP_KEYS}


def _cold(quick: bool) -> dict:
    from bench import coldstart, serving
    from bench.llm_standin import StandInLLM
    from bench.users import real_users

    ev = next(e for e in real_users()[serving.USER] if e.summary).to_flat()
    ev.pop("calendar_id", None)
    # the LLM function's cold start needs the user's model (labels) installed: serving does it; if
    # serving was not selected, install it now
    from calroute.adapters.dynamo.registry import DynamoRegistry
    from calroute.config import settings

    if DynamoRegistry(settings().registry_table).active(serving.USER) is None:
        from calroute.training import TrainConfig, train_user_model

        from bench.aws_env import install_model

        t = train_user_model(real_users()[serving.USER], TrainConfig(), user_id=serving.USER, version=serving.VERSION)
        install_model(serving.USER, t.onnx_bytes, version=t.version, threshold=t.threshold, labels=t.labels)
    with StandInLLM(latency=(0.0, 0.0)) as llm:
        return coldstart.run(quick, user=serving.USER, flat_event=ev,
                             llm_env={"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "sk-bench",
                                      "LLM_API_KEY_PARAM": ""},
                             llm_asked_at=lambda: llm.calls[-1]["received_at"] if llm.calls else None)


def merge_previous(figures: dict, results_dir: Path) -> dict:
    """Fill the skipped sections of ``figures`` from the newest ``<date>.json`` in ``results_dir``
    that has them (the targets and claims are recomputed); ``machine.merged_sections`` says which
    came from which run."""
    from bench.render import claims, targets

    merged: dict = {}
    files = sorted(p for p in results_dir.glob("????-??-??.json"))
    for path in reversed(files):
        try:
            prev = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for s in SECTIONS:
            cur, old = figures.get(s), prev.get(s)
            if cur == {"skipped": "not selected"} and isinstance(old, dict) and "skipped" not in old \
                    and "error" not in old and s not in merged:
                figures[s] = old
                # a section the earlier file had itself merged keeps the date of the run that measured it
                earlier = ((prev.get("machine") or {}).get("merged_sections") or {}).get(s)
                merged[s] = earlier or prev.get("started_at") or path.stem
    if merged:
        figures["machine"]["merged_sections"] = merged
        figures["targets"] = targets(figures)
        figures["claims"] = claims(figures)
    return figures


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object on stdout")
    p.add_argument("--quick", action="store_true", help="tiny repetitions (tests, smoke runs)")
    p.add_argument("--only", default="", help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    p.add_argument("--results-dir", default=str(harness.RESULTS_DIR), help="where <date>.json goes")
    p.add_argument("--docs", default=str(harness.DOCS_PATH), help="the Markdown file whose generated section is rewritten")
    p.add_argument("--no-write", action="store_true", help="write neither the results file nor the docs")
    p.add_argument("--merge-previous", action="store_true",
                   help="fill the sections not run from the newest earlier results file in --results-dir")
    args = p.parse_args(argv)
    sections = [s.strip() for s in args.only.split(",") if s.strip()] or list(SECTIONS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections: {', '.join(sorted(unknown))}")

    # the handlers print EMF metrics and logs on stdout: keep stdout for the JSON only
    real_stdout = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    sys.stdout = open(os.devnull, "w")
    try:
        figures = run(sections, args.quick)
    finally:
        sys.stdout = sys.__stdout__
    if args.merge_previous:
        merge_previous(figures, Path(args.results_dir))
    defaults = args.results_dir == str(harness.RESULTS_DIR) or args.docs == str(harness.DOCS_PATH)
    if args.quick and defaults and not args.no_write:
        harness.progress("--quick: not writing bench/results or docs/benchmarks.md (pass --results-dir and --docs)")
    elif not args.no_write:
        from bench.render import render

        path = harness.write_results(figures, Path(args.results_dir))
        harness.update_docs(render(figures), Path(args.docs))
        harness.progress(f"wrote {path} and {args.docs}")
    if args.json:
        real_stdout.write(json.dumps(figures, default=harness._json_default) + "\n")
    else:
        from bench.render import render_targets

        real_stdout.write(render_targets(figures) + "\n")
    real_stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
