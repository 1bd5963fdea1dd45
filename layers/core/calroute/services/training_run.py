"""A training run, one function per state of ``infra/statemachine/training.asl.json``:

``plan`` → (Distributed Map, one child workflow per user) ``train_user`` → ``validate`` →
``promote`` → ``summarize``.

* ``plan`` writes the users to train to ``s3://<bucket>/runs/{runId}/users.json`` (the Map's
  ``ItemReader``) — always, for the scheduled run and for a one-user ``POST /train`` alike.
* ``train_user`` applies the gates, trains (sklearn, imported lazily: only TrainUserFunction has the
  training layer), writes the candidate ONNX and its parity fixtures to S3 and registers the
  candidate. Writes happen in that order, so a registry record never names a missing object.
* ``validate`` runs in the inference runtime (onnxruntime + numpy, **no sklearn**): sha256 of the
  stored bytes and fixtures, the model loads as serving loads it, and its probabilities reproduce
  sklearn's on the fixtures (max |Δp| ≤ 1e-4, no argmax flip). Failing → ``rejected``.
* ``promote``: champion/challenger on the candidate's holdout, then a conditional write of ACTIVE
  (retried once on a race, else ``conflict``).
* ``summarize``: counts, durations, the run record, metrics.

Every function returns a small JSON-serialisable dict carrying ``user_id``, ``run_id`` and the
accumulated ``duration_ms``. numpy, the featurizer and onnxruntime are imported inside the states that
need them: Plan and Summarize run with the core layer only. A crash is turned into a ``failed`` result by the state machine's
``Catch`` (one user's failure never fails the run).
"""

from __future__ import annotations

import io
import math
import re
import secrets
import statistics
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Optional

from .. import ids
from ..config import Settings
from ..errors import Conflict, InvalidInput, ModelIntegrityError
from ..ports import ModelBlobs, ModelRegistry, PredictionLog, Stores
from ..retrain import counter_gate, latest_training, needs_training
from ..schema import sort_by_start

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
PARITY_TOL = 1e-4
#: holdout event ids kept on the registry record (DynamoDB items are ≤ 400 KB)
MAX_HOLDOUT_IDS = 2000
#: per-run lists kept in the plan output / run record (Step Functions payloads are ≤ 256 KB)
MAX_LISTED = 100
#: result statuses of one user's child workflow
STATUSES = ("promoted", "skipped", "rejected", "failed", "conflict")


def _now(now: Optional[datetime]) -> datetime:
    return now or datetime.now(timezone.utc)


def new_version(now: Optional[datetime] = None) -> str:
    """``v<YYYYmmddHHMMSS>-<6 hex>`` (ids.VERSION_RE); sorts by time."""
    return f"v{_now(now):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"


def new_run_id(now: Optional[datetime] = None) -> str:
    return f"r{_now(now):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"


def run_id_of(value: object, field: str = "run_id") -> str:
    if not isinstance(value, str) or not RUN_ID_RE.fullmatch(value) or ".." in value:
        raise InvalidInput(f"{field} must match {RUN_ID_RE.pattern}", field=field)
    return value


def run_key(run_id: str) -> str:
    return f"runs/{run_id}/users.json"


def _ms(t0: float, clock: Callable[[], float]) -> int:
    return int(round((clock() - t0) * 1000))


def _base(item: Mapping) -> dict:
    """What every state passes on (the Catch handlers read ``user_id``/``run_id``)."""
    out = {"user_id": item.get("user_id"), "run_id": item.get("run_id")}
    if item.get("version"):
        out["version"] = item["version"]
    return out


# ----------------------------------------------------------------------------- Plan


def plan(run_input: Mapping, stores: Stores, cfg: Settings, *, now: Optional[datetime] = None,
         execution_name: Optional[str] = None) -> dict:
    """Who trains in this run. ``run_input["user_ids"]`` (POST /train) names the users explicitly;
    otherwise every user's profile is paged through and the retraining policy decides.

    Writes ``runs/{runId}/users.json`` (a JSON array of ``{"user_id","run_id","reason"}``) and
    returns ``{run_id, bucket, key, count, skipped, skipped_total, started_at, trigger}``.
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
        from .ops import DriftTally, check_user_drift

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
            need, reason = needs_training(profile=profile, active=active, last=last, cfg=cfg, now=now,
                                          can_train=counter_gate(profile, cfg))
            if need:
                items.append({"user_id": u, "run_id": run_id, "reason": reason})
            else:
                skipped_total += 1
                if len(skipped) < MAX_LISTED:
                    skipped.append({"user_id": u, "reason": reason})
    key = run_key(run_id)
    stores.models.put_json(key, items)
    out = {"run_id": run_id, "bucket": stores.models.bucket, "key": key, "count": len(items),
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


# ----------------------------------------------------------------------------- TrainUser


def load_training_events(user_id: str, stores: Stores, cfg: Settings) -> list:
    """The user's labelled events, the ``max_train_events`` most recent, in time order."""
    events = [e for e in stores.events.list_events(user_id) if e.calendar_id]
    return sort_by_start(events)[-cfg.max_train_events:]


def _npz(X: Any, sk_proba: Any) -> bytes:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, X=np.asarray(X, dtype=np.float32), sk_proba=np.asarray(sk_proba, dtype=np.float32))
    return buf.getvalue()


def _thin(ids_: list[str], k: int = MAX_HOLDOUT_IDS) -> list[str]:
    if len(ids_) <= k:
        return list(ids_)
    import numpy as np

    idx = np.unique(np.linspace(0, len(ids_) - 1, num=k).round().astype(np.int64))
    return [ids_[i] for i in idx]


def run_item(step: Callable[..., dict], event: Mapping, stores: Stores, cfg: Settings, logger: Any) -> dict:
    """What each per-user state's handler (TrainUser, Validate, Promote) does: validate the item's
    user id, tag the logs with the hashed user and the run id, run ``step`` on ``stores`` and log its
    outcome (never event text)."""
    user = ids.user_id(event.get("user_id"), field="user_id")
    logger.append_keys(user=ids.hashed_user(user), run_id=event.get("run_id"))
    out = step(event, stores, cfg)
    logger.info(f"{step.__name__} done",
                extra={k: out.get(k) for k in ("status", "version", "reason", "duration_ms") if k in out})
    return out


def train_user(item: Mapping, stores: Stores, cfg: Settings, *, now: Optional[datetime] = None,
               clock: Callable[[], float] = time.perf_counter, trainer: Any = None) -> dict:
    """Gates → train → store candidate (ONNX + parity fixtures) → register it.

    ``trainer`` is the :mod:`calroute.training` module (imported here, lazily: it pulls in sklearn at
    fit time); tests may pass a stand-in with the same ``TrainConfig``/``check_gates``/
    ``train_user_model``.
    """
    from ..drift import reference_profile
    from ..features import FEATURE_SPEC_VERSION

    t0 = clock()
    user = ids.user_id(item.get("user_id"), field="user_id")
    out = _base(item)
    if trainer is None:
        from .. import training as trainer
    profile = stores.users.profile(user)
    events = load_training_events(user, stores, cfg)
    tcfg = trainer.TrainConfig.from_settings(cfg)
    ok, why = trainer.check_gates(events, tcfg)
    if not ok:
        return {**out, "status": "skipped", "reason": why, "duration_ms": _ms(t0, clock)}
    now = _now(now)
    version = new_version(now)
    kwargs = {"raise_on_parity_failure": False} if _accepts(trainer.train_user_model, "raise_on_parity_failure") else {}
    model = trainer.train_user_model(events, tcfg, user_id=user, version=version, **kwargs)
    store = stores.models
    key, sha = store.put(user, version, model.onnx_bytes)
    try:
        pkey, psha = store.put(user, version, _npz(model.parity_X, model.parity_proba), suffix=".parity.npz")
        metrics = dict(model.metrics)
        record = {
            "status": "candidate",
            "run_id": item.get("run_id") or "",
            "metrics": metrics,
            "s3_key": key,
            "sha256": sha,
            "size_bytes": len(model.onnx_bytes),
            "parity_key": pkey,
            "parity_sha256": psha,
            "train_parity": _finite({k: v for k, v in (model.parity or {}).items() if k != "error"}),
            "feature_spec": FEATURE_SPEC_VERSION,
            "threshold": float(model.threshold),
            "labels": list(model.labels),
            "profiles": model.profiles,
            "holdout_event_ids": _thin(list(model.holdout_event_ids)),
            "holdout_total": len(model.holdout_event_ids),
            "events_total_at_training": int(profile.get("events_total") or len(events)),
            "corrections_total_at_training": int(profile.get("corrections_total") or 0),
            "n_events": len(events),
            "trained_at": getattr(model, "trained_at", "") or now.isoformat(),
            "family": getattr(model, "family", ""),
            # text-free histograms of the training events: what drift is measured against
            "drift_reference": reference_profile(events),
        }
        stores.registry.put_version(user, version, record)
    except Exception:
        # no registry record may name a missing object, and no object may outlive a failed registration
        for k in (key, store.key(user, version, ".parity.npz")):
            try:
                store.delete(k)
            except Exception:  # noqa: BLE001 - best effort; the run records the original failure
                pass
        raise
    return {**out, "version": version, "status": "candidate",
            "holdout_accuracy": metrics.get("holdout_accuracy"), "n_events": len(events),
            "duration_ms": _ms(t0, clock)}


def _finite(d: Mapping) -> dict:
    """DynamoDB has no NaN/Infinity: non-finite floats become strings."""
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _accepts(fn: Callable, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


# ----------------------------------------------------------------------------- Validate


def check_candidate(record: dict, store: ModelBlobs, tol: float = PARITY_TOL) -> dict:
    """The parity gate, in the inference runtime: returns ``{"passed", "reason", ...parity}``."""
    import numpy as np

    from ..onnx_export import check_parity  # numpy + onnxruntime via runtime.OnnxModel; no sklearn
    from ..runtime import OnnxModel

    train_parity = record.get("train_parity") or {}
    if train_parity and train_parity.get("passed") is False:
        return {"passed": False, "reason": (f"ONNX parity failed at training: max |Δp| "
                                            f"{train_parity.get('max_abs_diff')}, {train_parity.get('argmax_flips')} "
                                            "argmax flips")}
    try:
        data = store.get(record["s3_key"], record["sha256"])
        model = OnnxModel.from_bytes(data, expected_sha256=record["sha256"])
        raw = store.get(record["parity_key"], record["parity_sha256"])
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            X, sk = np.asarray(npz["X"]), np.asarray(npz["sk_proba"])
    except ModelIntegrityError as exc:
        return {"passed": False, "reason": f"integrity: {exc}"}
    except (KeyError, ValueError, OSError) as exc:
        return {"passed": False, "reason": f"parity fixtures unreadable: {type(exc).__name__}"}
    if list(model.labels) != list(record.get("labels") or []):
        return {"passed": False, "reason": "the model's labels differ from the registered labels"}
    if X.ndim != 2 or X.shape[0] == 0:
        return {"passed": False, "reason": "no parity fixtures"}
    parity = check_parity(data, X, sk, tol=tol)
    out = {k: v for k, v in parity.items() if k != "error"}
    if not parity["passed"]:
        out["reason"] = parity.get("error") or (
            f"ONNX parity failed: max |Δp| {parity['max_abs_diff']:.3g} (tol {tol:g}), "
            f"{parity['argmax_flips']} argmax flips over {parity['rows']} rows")
        out["passed"] = False
        return out
    out["reason"] = f"parity ok: max |Δp| {parity['max_abs_diff']:.2g} over {parity['rows']} rows"
    return out


def validate(item: Mapping, stores: Stores, cfg: Settings, *,
             clock: Callable[[], float] = time.perf_counter) -> dict:
    t0 = clock()
    user = ids.user_id(item.get("user_id"), field="user_id")
    version = ids.model_version(item.get("version"))
    out = {**_base(item), "version": version}
    prior = int(item.get("duration_ms") or 0)
    registry = stores.registry
    record = registry.get_version(user, version)
    if record is None:
        raise ModelIntegrityError(f"candidate {version} is not in the registry")
    verdict = check_candidate(record, stores.models)
    parity = _finite({k: v for k, v in verdict.items() if k not in ("reason", "passed")})
    if not verdict["passed"]:
        registry.set_status(user, version, "rejected", verdict["reason"], rejected_stage="validate", parity=parity)
        return {**out, "status": "rejected", "stage": "validate", "reason": verdict["reason"],
                "duration_ms": prior + _ms(t0, clock)}
    registry.set_status(user, version, "validated", verdict["reason"], validated=True, parity=parity)
    return {**out, "status": "valid", "holdout_accuracy": item.get("holdout_accuracy"),
            "duration_ms": prior + _ms(t0, clock)}


# ----------------------------------------------------------------------------- Promote


def holdout_accuracy(model: Any, events: list) -> Optional[float]:
    """Top-1 accuracy of an :class:`~calroute.runtime.OnnxModel` on labelled events (None: no events)."""
    if not events:
        return None
    import numpy as np

    from ..features import featurize

    P = model.predict_proba(featurize(events, spec=getattr(model, "feature_spec", 2)))  # spec-1 champion: spec-1 features
    pred = [model.labels[i] for i in np.argmax(P, axis=1)]
    return float(np.mean([p == e.calendar_id for p, e in zip(pred, events)]))


def _parse_time(value: Any) -> Optional[datetime]:
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def unseen_by(champion: Optional[dict], holdout: list[tuple[Any, str]]) -> Optional[list]:
    """The holdout events the champion cannot have trained on: written (ingested, imported or
    corrected) after its ``trained_at``. None when the champion's training time is unknown."""
    cutoff = _parse_time((champion or {}).get("trained_at"))
    if cutoff is None:
        return None
    out = []
    for ev, updated in holdout:
        t = _parse_time(updated) if updated else None
        if t is not None and t > cutoff:
            out.append(ev)
    return out


def challenge(candidate: dict, active: Optional[dict], holdout: list, store: ModelBlobs, cfg: Settings,
              champion: Optional[dict] = None) -> dict:
    """Champion/challenger: promote the candidate iff it is not worse than the ACTIVE model
    (``candidate_accuracy + champion_tolerance >= champion_accuracy``), both scored out of sample.

    ``holdout``: the candidate's holdout events as ``(event, updated_at)`` pairs (or bare events);
    ``champion``: the ACTIVE version's registry record (its ``trained_at`` and metrics).

    The candidate's score is its ``holdout_accuracy`` from training (out-of-fold: the last time block
    of each calendar, predicted by a model that never saw it). The champion was trained on every event
    that existed when it was trained, so scoring it on those would flatter it; it is scored, with
    onnxruntime and the events' current labels, only on the holdout events written after its
    ``trained_at``. With fewer than ``champion_min_rows`` of them, its own recorded out-of-sample
    ``holdout_accuracy`` stands in; a champion whose training time is unknown (older records) is
    scored on the whole holdout, as before.
    """
    from ..runtime import OnnxModel

    if active is None:
        return {"promote": True, "reason": "first model (no active model)"}
    cand = (candidate.get("metrics") or {}).get("holdout_accuracy")
    pairs = [h if isinstance(h, tuple) else (h, "") for h in holdout]
    try:
        champ_model = OnnxModel.from_bytes(repo_get(store, active), expected_sha256=active.get("sha256"))
    except ModelIntegrityError as exc:
        return {"promote": True, "reason": f"the active model {active['version']} is unusable ({exc})"}
    unseen = unseen_by(champion, pairs)
    if unseen is None:
        basis, rows = "holdout", [ev for ev, _ in pairs]
        champ = holdout_accuracy(champ_model, rows)
    elif len(unseen) >= cfg.champion_min_rows:
        basis, rows = "holdout events newer than the champion", unseen
        champ = holdout_accuracy(champ_model, rows)
    else:
        basis, rows = "recorded out-of-sample holdout accuracies", unseen
        champ = ((champion or {}).get("metrics") or {}).get("holdout_accuracy")
    decision = {"candidate_accuracy": cand, "champion_accuracy": champ, "champion_version": active["version"],
                "holdout_rows": len(pairs), "champion_rows": len(rows), "basis": basis,
                "tolerance": cfg.champion_tolerance}
    if champ is None:
        if basis == "recorded out-of-sample holdout accuracies":
            return {**decision, "promote": True,
                    "reason": (f"the champion has no out-of-sample score to compare with (only {len(rows)} "
                               f"holdout events are newer than it)")}
        return {**decision, "promote": False, "reason": "no holdout events left to compare on"}
    if cand is None:
        return {**decision, "promote": False, "reason": "the candidate has no holdout accuracy"}
    if cand + cfg.champion_tolerance >= champ:
        return {**decision, "promote": True,
                "reason": (f"holdout accuracy {cand:.4f} vs champion {champ:.4f} on {basis} "
                           f"(tolerance {cfg.champion_tolerance})")}
    return {**decision, "promote": False,
            "reason": (f"worse than the active model {active['version']}: holdout accuracy {cand:.4f} vs "
                       f"{champ:.4f} on {basis} (tolerance {cfg.champion_tolerance})")}


def repo_get(store: ModelBlobs, record: dict) -> bytes:
    return store.get(record["s3_key"], record.get("sha256"))


def promote(item: Mapping, stores: Stores, cfg: Settings, *,
            clock: Callable[[], float] = time.perf_counter) -> dict:
    """Champion/challenger, then ``Registry.activate(expected_version=<active read before>)``.

    On :class:`Conflict` (a racing run or an operator changed ACTIVE) the conflict is audited, ACTIVE
    re-read and the challenge re-run once; a second conflict → status ``conflict``.
    """
    t0 = clock()
    user = ids.user_id(item.get("user_id"), field="user_id")
    version = ids.model_version(item.get("version"))
    run_id = str(item.get("run_id") or "")
    out = {**_base(item), "version": version}
    prior = int(item.get("duration_ms") or 0)
    registry, store = stores.registry, stores.models
    record = registry.get_version(user, version)
    if record is None:
        raise ModelIntegrityError(f"candidate {version} is not in the registry")

    def done(status: str, **extra: Any) -> dict:
        return {**out, "status": status, **extra, "duration_ms": prior + _ms(t0, clock)}

    if record.get("status") == "active":
        return done("promoted", reason="already active")
    if record.get("status") != "validated":
        return done("rejected", stage="promote", reason=f"candidate status is {record.get('status')!r}, not validated")
    # the candidate's object must be there (and intact) before ACTIVE may point at it
    try:
        repo_get(store, record)
    except ModelIntegrityError as exc:
        reason = f"integrity: {exc}"
        registry.set_status(user, version, "rejected", reason, rejected_stage="promote")
        return done("rejected", stage="promote", reason=reason)
    wanted = set(record.get("holdout_event_ids") or [])
    holdout = [(e, t) for e, t in stores.events.list_events_updated(user)
               if e.event_id in wanted and e.calendar_id] if wanted else []
    actor = f"training-run:{run_id}" if run_id else "training-run"
    for attempt in (1, 2):
        active = registry.active(user, consistent=True)
        if active is not None and active.get("version") == version:
            return done("promoted", reason="already active")
        champion = registry.get_version(user, active["version"]) if active else None
        decision = challenge(record, active, holdout, store, cfg, champion)
        if not decision["promote"]:
            registry.set_status(user, version, "rejected", decision["reason"], rejected_stage="champion",
                                challenge={k: v for k, v in decision.items() if k != "promote"})
            return done("rejected", stage="champion", reason=decision["reason"])
        expected = active["version"] if active else None
        try:
            registry.activate(user, record, expected_version=expected, actor=actor, reason=decision["reason"])
        except Conflict:
            registry.audit(user, action="promote_conflict", actor=actor, version=version,
                           expected_version=expected or "", attempt=attempt)
            continue
        return done("promoted", reason=decision["reason"], previous_version=expected or "")
    reason = "the active model changed concurrently (twice); not promoted"
    registry.set_status(user, version, "conflict", reason)
    return done("conflict", reason=reason)


# ----------------------------------------------------------------------------- Summarize


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
    try:
        seconds = round((now - datetime.fromisoformat(str(started))).total_seconds(), 3)
    except ValueError:
        seconds = None
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


__all__ = ["plan", "train_user", "validate", "promote", "summarize", "challenge", "check_candidate",
           "holdout_accuracy", "new_version", "new_run_id", "run_key", "load_training_events"]
