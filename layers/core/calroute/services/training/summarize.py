"""SummarizeFunction: count the Map's results, store the run record, emit the run's metrics. Core
layer only.

The Map writes its results to S3 (``ResultWriter``): its output, ``$.results``, is only
``{"MapRunArn", "ResultWriterDetails": {"Bucket", "Key"}}``, the key of a ``manifest.json`` under
``runs/{runId}/results/`` that lists the result files by child status (``ResultFiles.SUCCEEDED`` /
``FAILED`` / ``PENDING``: ``[{"Key", "Size"}]``); each file is a JSON array of one entry per child
execution (``ExecutionArn``, ``Input``, ``Status``, ... and, for a child that succeeded, its
``Output`` as a JSON *string*; for one that failed ``Error``/``Cause``). :func:`child_results` turns
that back into the list of child outputs the inline Map returned (which is still accepted).

The Map's results are one entry per child workflow: a list of per-user results (a batch of the
``ItemBatcher``), or, from a child that failed as a whole (an Express child past its 5 minutes, a
runtime error), something else (``null`` or an error object) that names no user. Such users are
found from ``runs/{runId}/users.json`` (read only when results are missing) and their outcome is
taken from the registry, where every state writes it: the version this run registered for them is
ACTIVE (``promoted``), ``rejected`` or ``conflict``, else the user is ``failed`` at stage ``batch``.
So the run record counts every planned user once, whatever happened to its child workflow."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from datetime import datetime
from typing import Any, Mapping, Optional

from ... import ids
from ...config import Settings
from ...errors import InvalidInput, NotFound
from ...ports import Stores
from ...timeutil import parse_ts
from .common import MAX_LISTED, STATUSES, _now, results_prefix, run_id_of, run_key

#: the ResultWriter's result-file statuses, as the manifest lists them
RESULT_STATUSES = ("SUCCEEDED", "FAILED", "PENDING")


def summarize(run: Mapping, stores: Stores, cfg: Settings, *, now: Optional[datetime] = None,
              metrics: Any = None) -> dict:
    """Count the Map's results, store the run record (registry pk ``_run``) and emit
    ``TrainingUsers{Trained,Skipped,Rejected,Failed,Conflict}`` (no per-user dimension)."""
    now = _now(now)
    run_id = run_id_of(run.get("run_id"))
    results, lost = per_user_results(child_results(run.get("results"), run_id, stores))
    planned = int(run.get("count") or len(results))
    recovered = 0
    if lost or len({r.get("user_id") for r in results}) < planned:
        extra = recover_missing(run_id, results, stores, error=lost[0] if lost else "")
        recovered, results = len(extra), results + extra
        # no manifest to name them (never in a run Plan started): still counted, as failed
        short = planned - len({r.get("user_id") for r in results})
        results += [{"user_id": None, "status": "failed", "stage": "batch",
                     "error": lost[0] if lost else "no result"}] * max(0, short)
    counts: Counter = Counter()
    durations: list[int] = []
    failures: list[dict] = []
    rejections: list[dict] = []
    for r in results:
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
        "planned": planned,
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
        # users whose child workflow failed as a whole: outcome taken from the registry
        "recovered": recovered,
        "lost_batches": len(lost),
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


def child_results(results: Any, run_id: str, stores: Stores) -> list:
    """The Map's results as one entry per child workflow: the inline list as it is, or, from a
    ``ResultWriter`` reference, read from its manifest and result files (each SUCCEEDED entry's
    ``Output`` parsed; a FAILED/PENDING entry, or one without its output, becomes
    ``{"Error", "Cause"}``, a child that names no user). The manifest must be in the model bucket
    under ``runs/{runId}/results/`` and its files too (anything else is refused: the run fails
    visibly, as it does when the manifest or a listed file is missing)."""
    if results is None:
        return []
    if isinstance(results, list):
        return results
    details = results.get("ResultWriterDetails") if isinstance(results, dict) else None
    if not isinstance(details, dict):
        raise InvalidInput("results must be the Map's result list or its ResultWriter output", field="results")
    prefix = results_prefix(run_id) + "/"

    def checked(key: Any) -> str:
        if not isinstance(key, str) or not key.startswith(prefix) or ".." in key:
            raise InvalidInput(f"result object {key!r} is not under {prefix}", field="results")
        return key

    bucket = details.get("Bucket")
    if bucket != stores.models.bucket:
        raise InvalidInput(f"result bucket {bucket!r} is not the model bucket", field="results")
    key = checked(details.get("Key"))
    try:
        manifest = stores.models.get_json(key)
    except NotFound:
        raise NotFound(f"the Map's result manifest {key} is missing", field="results") from None
    files = (manifest or {}).get("ResultFiles") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise InvalidInput(f"{key} is not a ResultWriter manifest", field="results")
    out: list = []
    for status in RESULT_STATUSES:
        for f in files.get(status) or []:
            entries = stores.models.get_json(checked(f.get("Key") if isinstance(f, dict) else None))
            for e in entries if isinstance(entries, list) else []:
                out.append(_child_output(e, status))
    return out


def _child_output(entry: Any, status: str) -> Any:
    if not isinstance(entry, dict):
        return None
    if status == "SUCCEEDED" and isinstance(entry.get("Output"), str):
        try:
            return json.loads(entry["Output"])
        except ValueError:
            return {"Error": "States.ResultWriterFailed", "Cause": "a child's Output is not JSON"}
    if status == "SUCCEEDED":
        return {"Error": "NoOutput", "Cause": "the child's output was not included in its result file"}
    return {"Error": entry.get("Error") or status,
            "Cause": entry.get("Cause") or ("the child workflow had not finished" if status == "PENDING" else "")}


def per_user_results(results: list) -> tuple[list[dict], list[str]]:
    """The Map's results as one dict per user, and the entries that name no user (a child workflow
    that failed as a whole: ``null`` in moto, an error object), as short error strings. Accepts both
    shapes: one result per child (unbatched) and a list of results per child (``ItemBatcher``)."""
    flat: list[dict] = []
    lost: list[str] = []

    def one(r: Any) -> None:
        if isinstance(r, dict) and r.get("user_id") and "status" in r:
            flat.append(r)
        elif isinstance(r, dict) and (r.get("Error") or r.get("error")):
            lost.append(f"{r.get('Error') or r.get('error')}: {str(r.get('Cause') or r.get('cause') or '')[:150]}")
        else:
            lost.append("the child workflow failed (no result)")

    for r in results:
        if isinstance(r, list):
            for x in r:
                one(x)
        else:
            one(r)
    return flat, lost


def recover_missing(run_id: str, results: list[dict], stores: Stores, *, error: str = "") -> list[dict]:
    """A result for every user of ``runs/{runId}/users.json`` that has none in ``results``, from the
    registry: the version this run registered for the user is ACTIVE → ``promoted``; ``rejected`` /
    ``conflict`` → that; otherwise (no version, or one left ``candidate``/``validated``) →
    ``failed`` at stage ``batch``."""
    seen = {r.get("user_id") for r in results}
    try:
        planned = stores.models.get_json(run_key(run_id))
    except NotFound:  # no manifest: nothing to name; the caller still counts them (a storage fault propagates)
        return []
    out: list[dict] = []
    for item in planned if isinstance(planned, list) else []:
        user = item.get("user_id") if isinstance(item, dict) else None
        if not isinstance(user, str) or not ids.USER_ID_RE.fullmatch(user) or user in seen:
            continue
        seen.add(user)
        out.append(_outcome_from_registry(user, run_id, stores, error))
    return out


def _outcome_from_registry(user: str, run_id: str, stores: Stores, error: str) -> dict:
    base = {"user_id": user, "run_id": run_id, "recovered": True}
    mine = [v for v in stores.registry.versions(user) if v.get("run_id") == run_id]
    if mine:
        v = mine[-1]
        base["version"] = v.get("version", "")
        active = stores.registry.active(user, consistent=True)
        if v.get("status") == "active" or (active or {}).get("version") == v.get("version"):
            return {**base, "status": "promoted", "reason": "recovered from the registry"}
        if v.get("status") in ("rejected", "conflict"):
            return {**base, "status": v["status"], "stage": v.get("rejected_stage", v["status"]),
                    "reason": str(v.get("status_reason") or v.get("reason") or "")[:300]}
    return {**base, "status": "failed", "stage": "batch",
            "error": error or "the child workflow failed before this user's result"}
