"""PromoteFunction: champion/challenger on the candidate's holdout, then a conditional write of
ACTIVE (retried once on a race, else ``conflict``)."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping, Optional

from ... import ids
from ...config import Settings
from ...errors import Conflict, ModelIntegrityError
from ...ports import ModelBlobs, Stores
from ...timeutil import parse_ts
from .common import _base, _ms


def holdout_accuracy(model: Any, events: list) -> Optional[float]:
    """Top-1 accuracy of an :class:`~calroute.runtime.OnnxModel` on labelled events (None: no events)."""
    if not events:
        return None
    import numpy as np

    from ...features import featurize

    P = model.predict_proba(featurize(events, spec=getattr(model, "feature_spec", 2)))  # spec-1 champion: spec-1 features
    pred = [model.labels[i] for i in np.argmax(P, axis=1)]
    return float(np.mean([p == e.calendar_id for p, e in zip(pred, events)]))


def unseen_by(champion: Optional[dict], holdout: list[tuple[Any, str]]) -> Optional[list]:
    """The holdout events the champion cannot have trained on: written (ingested, imported or
    corrected) after its ``trained_at``. None when the champion's training time is unknown."""
    cutoff = parse_ts((champion or {}).get("trained_at"))
    if cutoff is None:
        return None
    out = []
    for ev, updated in holdout:
        t = parse_ts(updated)  # None for "" or None: not known to be newer
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
    ``holdout_accuracy`` stands in, capped by its accuracy on those few: a champion wrong on an event
    written after it (a correction of its own confident answer, say) is not kept on a stale score
    while a candidate that learnt the correction waits for ``champion_min_rows`` newer events. A
    champion whose training time is unknown (older records) is scored on the whole holdout, as
    before.
    """
    from ...runtime import OnnxModel

    if active is None:
        return {"promote": True, "reason": "first model (no active model)"}
    cand = (candidate.get("metrics") or {}).get("holdout_accuracy")
    pairs = [h if isinstance(h, tuple) else (h, None) for h in holdout]
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
        newer = holdout_accuracy(champ_model, unseen) if champ is not None else None
        if newer is not None and newer < champ:
            # too few newer events to score the champion on, but it is wrong on some of them (a
            # correction of its own answer, typically): its recorded score is stale, they cap it
            basis = (f"recorded out-of-sample holdout accuracies, the champion's capped by its accuracy on the "
                     f"{len(unseen)} holdout events newer than it")
            champ = newer
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
    holdout: Optional[list] = None  # read once, and only when there is a champion to score on it
    actor = f"training-run:{run_id}" if run_id else "training-run"
    for attempt in (1, 2):
        active = registry.active(user, consistent=True)
        if active is not None and active.get("version") == version:
            return done("promoted", reason="already active")
        champion = registry.get_version(user, active["version"]) if active else None
        if holdout is None and active is not None:
            holdout = [(e, t) for e, t in stores.events.list_events_updated(user)
                       if e.event_id in wanted and e.calendar_id] if wanted else []
        decision = challenge(record, active, holdout or [], store, cfg, champion)
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

