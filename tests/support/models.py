"""Tiny, real per-user ONNX models for serving tests (tests may import sklearn; serving never does).

``make_events`` produces labelled events whose titles separate the calendars cleanly;
``build_onnx`` trains a LogisticRegression on ``calroute.features.featurize`` output and converts it
with skl2onnx (``zipmap=False``, float32 input ``X``) carrying the metadata_props documented in
``calroute/runtime.py``; ``install_model`` stores it with ``S3ModelBlobs.put`` and registers/activates
it in the registry (under the ``aws`` fixture).
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from functools import lru_cache

from calroute.features import FEATURE_SPEC_VERSION, N_FEATURES, SUPPORTED_SPECS, featurize
from calroute.schema import Event, parse_event

VOCAB = {
    "work": ["standup", "sprint", "review", "roadmap", "client", "deploy", "retro", "planning"],
    "home": ["dentist", "groceries", "yoga", "dinner", "laundry", "birthday", "gym", "plumber"],
    "kids": ["school", "soccer", "piano", "homework", "playdate", "recital", "daycare", "field"],
}


def make_events(calendars=("work", "home"), per_calendar: int = 12, seed: int = 7) -> list[Event]:
    rng = random.Random(seed)
    base = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    out = []
    for cal in calendars:
        words = VOCAB[cal]
        for i in range(per_calendar):
            title = " ".join(rng.sample(words, 2))
            start = base + timedelta(days=rng.randrange(60), hours=rng.randrange(10))
            out.append(parse_event({"event_id": f"{cal}-{i}", "summary": title, "start": start.isoformat(),
                                    "end": (start + timedelta(minutes=30)).isoformat(), "calendar_id": cal}))
    return out


def version(n: int) -> str:
    """A valid model version string ``v<14 digits>-<6 hex>`` that sorts by ``n``."""
    return f"v{20260101000000 + n:014d}-{n % (16 ** 6):06x}"


@lru_cache(maxsize=16)
def _build_cached(calendars: tuple, per_calendar: int, threshold: float, model_version: str, spec: int,
                  user: str, C: float) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    events = make_events(calendars, per_calendar)
    X = featurize(events, spec=spec if spec in SUPPORTED_SPECS else FEATURE_SPEC_VERSION)
    y = [e.calendar_id for e in events]
    clf = LogisticRegression(C=C, max_iter=500).fit(X, y)
    onx = convert_sklearn(clf, initial_types=[("X", FloatTensorType([None, N_FEATURES]))],
                          options={id(clf): {"zipmap": False}}, target_opset=17)
    meta = {
        "calroute.labels": json.dumps([str(c) for c in clf.classes_]),
        "calroute.feature_spec": str(spec),
        "calroute.threshold": str(threshold),
        "calroute.version": model_version,
        "calroute.user": user,
        "calroute.family": "logreg",
        "calroute.trained_at": "2026-01-01T00:00:00Z",
        "calroute.metrics": json.dumps({"accuracy": 1.0}),
    }
    for k, v in meta.items():
        p = onx.metadata_props.add()
        p.key, p.value = k, v
    return onx.SerializeToString()


def build_onnx(calendars=("work", "home"), *, per_calendar: int = 12, threshold: float = 0.6,
               model_version: str | None = None, spec: int = FEATURE_SPEC_VERSION, user: str = "alice",
               C: float = 20.0) -> bytes:
    """ONNX bytes of a small LogisticRegression over the calroute features (cached per arguments)."""
    return _build_cached(tuple(calendars), per_calendar, threshold, model_version or version(1), spec, user, C)


def install_model(user: str, *, calendars=("work", "home"), threshold: float = 0.6, n: int = 1,
                  spec: int = FEATURE_SPEC_VERSION, activate: bool = True, data: bytes | None = None,
                  profiles: dict | None = None, expected: str | None = "auto") -> dict:
    """Store + register (+ activate) a model for ``user``; returns the registry record."""
    from calroute.adapters.dynamo.registry import DynamoRegistry
    from calroute.adapters.s3_models import S3ModelBlobs
    from calroute.config import settings

    cfg = settings()
    ver = version(n)
    data = data if data is not None else build_onnx(calendars, threshold=threshold, model_version=ver, spec=spec,
                                                    user=user)
    store, reg = S3ModelBlobs(cfg.model_bucket), DynamoRegistry(cfg.registry_table)
    key, sha = store.put(user, ver, data)
    record = {"version": ver, "s3_key": key, "sha256": sha, "threshold": threshold, "feature_spec": spec,
              "labels": list(sorted(calendars))}
    if profiles:
        record["profiles"] = profiles
    reg.put_version(user, ver, record)
    if activate:
        if expected == "auto":
            cur = reg.active(user, consistent=True)
            expected = cur["version"] if cur else None
        reg.activate(user, record, expected_version=expected, actor="test", reason="test")
    return record


class FakeTrainer:
    """The calroute.training contract with a small, real ONNX model (fast): the real gates and
    TrainConfig; ``holdout_accuracy`` and a probability ``perturb`` of the parity fixture chosen by
    the test. (Imports calroute.training, i.e. sklearn, when first built.)"""

    def __init__(self, holdout_accuracy: float = 1.0, perturb: float = 0.0):
        from calroute import training

        self.TrainConfig = training.TrainConfig
        self.check_gates = training.check_gates
        self.holdout_accuracy, self.perturb = holdout_accuracy, perturb

    def train_user_model(self, events, cfg, *, user_id, version, raise_on_parity_failure=True):
        import hashlib
        import types

        from calroute.runtime import OnnxModel

        labels = sorted({e.calendar_id for e in events})
        data = build_onnx(tuple(labels), per_calendar=12)
        X = featurize(events[:20])
        proba = OnnxModel.from_bytes(data).predict_proba(X)
        hold = [e.event_id for e in events[-max(1, len(events) // 5):]]
        return types.SimpleNamespace(
            onnx_bytes=data, sha256=hashlib.sha256(data).hexdigest(), labels=labels, threshold=0.6,
            metrics={"holdout_accuracy": self.holdout_accuracy, "n_events": len(events)}, profiles={},
            holdout_event_ids=hold, parity={"passed": True, "max_abs_diff": 0.0, "argmax_flips": 0},
            parity_X=X, parity_proba=proba + self.perturb, trained_at="2026-06-01T00:00:00+00:00",
            family="logreg")
