"""PlanFunction: who trains in this run (``runs/{runId}/users.json``, the Map's ``ItemReader``), and
the drift monitor of every ACTIVE model on the way. Core layer only."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping, Optional

from ... import ids
from ...config import Settings
from ...errors import InvalidInput
from ...ports import ModelRegistry, PredictionLog, Stores
from ...retrain import counter_gate, latest_training, needs_training
from .common import MAX_LISTED, RUN_ID_RE, _now, new_run_id, results_prefix, run_id_of, run_key


def plan(run_input: Mapping, stores: Stores, cfg: Settings, *, now: Optional[datetime] = None,
         execution_name: Optional[str] = None) -> dict:
    """Who trains in this run. ``run_input["user_ids"]`` (POST /train) names the users explicitly;
    otherwise every user's profile is paged through and the retraining policy decides.

    Writes ``runs/{runId}/users.json`` (a JSON array of ``{"user_id","run_id","reason"}``) and
    returns ``{run_id, bucket, key, results_prefix, count, skipped, skipped_total, started_at, trigger}``.
    """
    now = _now(now)
    run_input = dict(run_input or {})
    if run_input.get("run_id"):
        run_id = run_id_of(run_input["run_id"])
    elif execution_name and RUN_ID_RE.fullmatch(execution_name) and execution_name != "None":
        run_id = execution_name
    else:
        run_id = new_run_id(now)
    trigger = str(run_input.get("trigger") or "schedule")[:32]
    items: list[dict] = []
    skipped: list[dict] = []
    skipped_total = 0
    if run_input.get("user_ids") is not None:
        requested = run_input["user_ids"]
        if not isinstance(requested, list):
            raise InvalidInput("user_ids must be a list of user ids", field="user_ids")
        seen: set[str] = set()
        for i, u in enumerate(requested):
            u = ids.user_id(u, field=f"user_ids[{i}]")
            if u not in seen:
                seen.add(u)
                items.append({"user_id": u, "run_id": run_id, "reason": f"requested ({trigger})"})
    else:
        from ..ops import DriftTally, check_user_drift

        users, registry = stores.users, stores.registry
        predictions = stores.predictions
        tally = DriftTally()
        for profile in users.iter_profiles():
            u = profile.get("user_id", "")
            if not isinstance(u, str) or not ids.USER_ID_RE.fullmatch(u):
                continue  # "_run"/"_global" and anything malformed
            active = registry.active(u)
            versions = registry.versions(u)
            last = latest_training(versions)
            if active is not None and predictions is not None:
                active, last = _monitor_drift(u, active, versions, last, registry, predictions, cfg, now, tally,
                                              check_user_drift)
            # a run the gates stopped waits for a new label (one GetItem per user and night)
            need, reason = needs_training(profile=profile, active=active, last=last, cfg=cfg, now=now,
                                          can_train=counter_gate(profile, cfg), gate_memo=registry.gate_skip(u))
            if need:
                items.append({"user_id": u, "run_id": run_id, "reason": reason})
            else:
                skipped_total += 1
                if len(skipped) < MAX_LISTED:
                    skipped.append({"user_id": u, "reason": reason})
    key = run_key(run_id)
    stores.models.put_json(key, items)
    out = {"run_id": run_id, "bucket": stores.models.bucket, "key": key,
           "results_prefix": results_prefix(run_id), "count": len(items),
           "skipped": skipped, "skipped_total": skipped_total, "started_at": now.isoformat(),
           "trigger": trigger}
    if run_input.get("user_ids") is None:
        out["drift"] = tally.as_dict()
    return out


def _monitor_drift(user: str, active: dict, versions: list[dict], last: Optional[dict], registry: ModelRegistry,
                   predictions: PredictionLog, cfg: Settings, now: datetime, tally: Any, check: Callable) -> tuple:
    """Drift of the active model (see :mod:`calroute.services.ops`): the report is stored on the
    registry (ACTIVE + version) when it concludes, and the returned ``(active, last)`` carry the
    verdict for the retraining policy. A failure here never fails the plan (drift is advisory)."""
    record = next((v for v in versions if v.get("version") == active.get("version")), None)
    try:
        report = check(user, active, record, predictions, cfg, now)
    except Exception:  # noqa: BLE001 - a storage fault in the monitor must not stop training
        tally.add(None)
        return active, last
    tally.add(report)
    if report is None or not report.get("psi"):
        return active, last  # no reference, or too few requests: nothing concluded, nothing written
    if not registry.mark_drift(user, active["version"], report, at=now.isoformat()):
        tally.stale += 1
        return active, last
    flags = {"drift": report, "drifted": bool(report["drifted"])}
    active = {**active, **flags}
    if last is not None and last.get("version") == active.get("version"):
        last = {**last, **flags}
    return active, last

