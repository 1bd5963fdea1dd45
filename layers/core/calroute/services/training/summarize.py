"""SummarizeFunction: count the Map's results, store the run record, emit the run's metrics. Core
layer only."""

from __future__ import annotations

import statistics
from collections import Counter
from datetime import datetime
from typing import Any, Mapping, Optional

from ...config import Settings
from ...ports import Stores
from ...timeutil import parse_ts
from .common import MAX_LISTED, STATUSES, _now, run_id_of


def summarize(run: Mapping, stores: Stores, cfg: Settings, *, now: Optional[datetime] = None,
              metrics: Any = None) -> dict:
    """Count the Map's results, store the run record (registry pk ``_run``) and emit
    ``TrainingUsers{Trained,Skipped,Rejected,Failed,Conflict}`` (no per-user dimension)."""
    now = _now(now)
    run_id = run_id_of(run.get("run_id"))
    results = run.get("results") or []
    counts: Counter = Counter()
    durations: list[int] = []
    failures: list[dict] = []
    rejections: list[dict] = []
    for r in results:
        if not isinstance(r, dict):
            counts["failed"] += 1
            continue
        status = r.get("status")
        status = status if status in STATUSES else "failed"
        counts[status] += 1
        if isinstance(r.get("duration_ms"), (int, float)):
            durations.append(int(r["duration_ms"]))
        if status == "failed" and len(failures) < MAX_LISTED:
            failures.append({"user_id": r.get("user_id"), "stage": r.get("stage", ""),
                             "error": str(r.get("error") or r.get("status") or "")[:200]})
        if status in ("rejected", "conflict") and len(rejections) < MAX_LISTED:
            rejections.append({"user_id": r.get("user_id"), "version": r.get("version", ""),
                               "stage": r.get("stage", status), "reason": str(r.get("reason", ""))[:300]})
    started = run.get("started_at") or now.isoformat()
    started_at = parse_ts(started)
    seconds = round((now - started_at).total_seconds(), 3) if started_at is not None else None
    record = {
        "trigger": run.get("trigger", ""),
        "started_at": started,
        "finished_at": now.isoformat(),
        "seconds": seconds,
        "planned": int(run.get("count") or len(results)),
        "not_needed": int(run.get("skipped_total") or 0),
        "trained": counts["promoted"],
        "skipped": counts["skipped"],
        "rejected": counts["rejected"],
        "failed": counts["failed"],
        "conflict": counts["conflict"],
        "user_ms_p50": int(statistics.median(durations)) if durations else None,
        "user_ms_max": max(durations) if durations else None,
        "failures": failures,
        "rejections": rejections,
        "drift": run.get("drift") if isinstance(run.get("drift"), dict) else None,
    }
    stores.registry.put_run(run_id, {k: v for k, v in record.items() if v is not None})
    if metrics is not None:
        from aws_lambda_powertools.metrics import MetricUnit

        for name, key in (("TrainingUsersTrained", "trained"), ("TrainingUsersSkipped", "skipped"),
                          ("TrainingUsersRejected", "rejected"), ("TrainingUsersFailed", "failed"),
                          ("TrainingUsersConflict", "conflict")):
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=record[key])
        if durations:
            metrics.add_metric(name="TrainingUserMaxMs", unit=MetricUnit.Milliseconds, value=max(durations))
        drift = record["drift"] or {}
        if drift.get("checked"):
            # the largest PSI of the run (the DriftAlarm's statistic is Maximum) and how many drifted
            metrics.add_metric(name="DriftPsi", unit=MetricUnit.NoUnit, value=float(drift.get("max_psi") or 0.0))
            metrics.add_metric(name="DriftUsersDrifted", unit=MetricUnit.Count, value=int(drift.get("drifted") or 0))
    return {"run_id": run_id, **record}
