"""TrainUserFunction: gates → train (sklearn, imported lazily: only TrainUserFunction has the
training layer) → candidate ONNX + parity fixtures to S3 → registry record, in that order, so a
registry record never names a missing object."""

from __future__ import annotations

import io
import time
from datetime import datetime
from typing import Any, Callable, Mapping, Optional

from ... import ids
from ...config import Settings
from ...ports import Stores
from ...schema import TRUSTED_LABELS
from .common import _base, _finite, _ms, _now, load_training_labels, new_version

#: holdout event ids kept on the registry record (DynamoDB items are ≤ 400 KB)
MAX_HOLDOUT_IDS = 2000


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


def train_user(item: Mapping, stores: Stores, cfg: Settings, *, now: Optional[datetime] = None,
               clock: Callable[[], float] = time.perf_counter, trainer: Any = None) -> dict:
    """Gates → train → store candidate (ONNX + parity fixtures) → register it.

    ``trainer`` is the :mod:`calroute.training` module (imported here, lazily: it pulls in sklearn at
    fit time); tests may pass a stand-in with the same ``TrainConfig``/``check_gates``/
    ``train_user_model``.
    """
    from ...drift import reference_profile
    from ...features import FEATURE_SPEC_VERSION
    from ...retrain import gate_skip_record

    t0 = clock()
    user = ids.user_id(item.get("user_id"), field="user_id")
    out = _base(item)
    if trainer is None:
        from ... import training as trainer
    # read before the events: a label written meanwhile bumps labels_total past what is recorded
    profile = stores.users.profile(user)
    events, provenance = load_training_labels(user, stores, cfg)
    tcfg = trainer.TrainConfig.from_settings(cfg)
    # the gates count the user's own labels (docs/learning.md "Labels with provenance")
    ok, why = trainer.check_gates([e for e, p in zip(events, provenance) if p in TRUSTED_LABELS], tcfg)
    if not ok:
        # the planner does not send the user again until a label is written (calroute.retrain)
        try:
            stores.registry.put_gate_skip(user, gate_skip_record(profile, cfg, reason=why, now=_now(now)))
            recorded = True
        except Exception:  # noqa: BLE001 - the run is skipped either way; the next one records it
            recorded = False
        return {**out, "status": "skipped", "reason": why, "gate_skip_recorded": recorded,
                "duration_ms": _ms(t0, clock)}
    now = _now(now)
    version = new_version(now)
    kwargs = {"raise_on_parity_failure": False} if _accepts(trainer.train_user_model, "raise_on_parity_failure") else {}
    if _accepts(trainer.train_user_model, "provenance"):
        kwargs["provenance"] = provenance
    if _accepts(trainer.train_user_model, "now"):  # the record's trained_at is this run's clock
        kwargs["now"] = now
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
            "confident_misses_total_at_training": int(profile.get("confident_misses_total") or 0),
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


def _accepts(fn: Callable, name: str) -> bool:
    import inspect

    return name in inspect.signature(fn).parameters
