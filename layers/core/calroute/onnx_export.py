"""THE ONNX boundary: a fitted scikit-learn classifier → ONNX bytes with calroute metadata, and the
parity gate that proves the ONNX graph computes what sklearn computed.

* One float32 input named ``X`` (n × ``n_features``); classifiers converted with ``zipmap=False`` so
  the outputs are ``label`` and ``probabilities`` (n × k, columns in ``labels`` order).
* ``metadata_props`` keys are exactly those documented in :mod:`calroute.runtime`
  (``calroute.labels``, ``calroute.feature_spec``, ``calroute.threshold``, ``calroute.version``,
  ``calroute.user``, ``calroute.family``, ``calroute.trained_at``, ``calroute.metrics``).
* :func:`check_parity` loads the bytes through :class:`calroute.runtime.OnnxModel` — the serving
  loader — and compares with sklearn's probabilities on every row: max |Δp| ≤ ``tol`` and no argmax
  flip. A model that fails is never promoted.

Imports skl2onnx/onnx (training side only). Notes from our measurements: HashingVectorizer has no
converter (we featurize in Python anyway); HistGradientBoosting conversion breaks under protobuf 7
(``protobuf<7`` is pinned); tree ensembles export as float32 only.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import numpy as np

from .features import FEATURE_SPEC_VERSION
from .runtime import META_PREFIX, OnnxModel

PARITY_TOL = 1e-4
#: The metadata keys a calroute model carries (without the ``calroute.`` prefix).
METADATA_KEYS = ("labels", "feature_spec", "threshold", "version", "user", "family", "trained_at", "metrics",
                 "novelty_index", "novelty_weight", "risk", "shape_index", "anomaly_veto")
_JSON_KEYS = ("labels", "metrics", "risk")


class ExportError(Exception):
    """The model could not be converted to ONNX (unsupported estimator, bad metadata)."""


def _final_classifier(model: Any) -> Any:
    """The classifier at the end of a Pipeline (the object that takes the ``zipmap`` option)."""
    steps = getattr(model, "steps", None)
    return steps[-1][1] if steps else model


def _meta_value(key: str, value: Any) -> str:
    if key in _JSON_KEYS:
        return json.dumps(value, sort_keys=key != "labels", separators=(",", ":"), default=float)
    return str(value)


def to_onnx(model: Any, n_features: int, labels: Sequence[str], metadata: Mapping[str, Any]) -> bytes:
    """Convert a fitted sklearn classifier (or Pipeline) to ONNX bytes.

    ``labels`` must be the classifier's ``classes_`` in order (checked: a label order that differs
    from the probability-column order would silently route events to the wrong calendar).
    ``metadata`` holds values for :data:`METADATA_KEYS` (``labels`` and ``feature_spec`` are filled
    in); keys are written with the ``calroute.`` prefix, ``labels``/``metrics`` as JSON.
    """
    from onnx import helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    classes = [str(c) for c in getattr(model, "classes_", [])]
    if list(labels) != classes:
        raise ExportError(f"labels {list(labels)!r} do not match the model's classes_ {classes!r}")
    unknown = set(metadata) - set(METADATA_KEYS)
    if unknown:
        raise ExportError(f"unknown metadata keys: {sorted(unknown)}")
    clf = _final_classifier(model)
    try:
        onx = convert_sklearn(
            model,
            initial_types=[("X", FloatTensorType([None, int(n_features)]))],
            options={id(clf): {"zipmap": False}},
        )
    except Exception as exc:  # skl2onnx raises many types (MissingShapeCalculator, RuntimeError, ...)
        raise ExportError(f"cannot convert {type(model).__name__} to ONNX: {exc}") from exc
    meta = {"feature_spec": FEATURE_SPEC_VERSION, **dict(metadata), "labels": list(labels)}  # spec: override allowed
    helper.set_model_props(onx, {META_PREFIX + k: _meta_value(k, v) for k, v in meta.items()})
    onx.doc_string = "calroute per-user calendar classifier"
    return onx.SerializeToString()


def check_parity(onnx_bytes: bytes, X: np.ndarray, sk_proba: np.ndarray, tol: float = PARITY_TOL) -> dict:
    """Compare ONNX (loaded exactly as serving loads it) with sklearn's probabilities on every row.

    Returns ``{"max_abs_diff", "argmax_flips", "rows", "tol", "passed"}``; ``passed`` needs
    max |Δp| ≤ ``tol`` and zero argmax flips. A model that does not load, or whose output shape
    differs, fails (``error`` says why) instead of raising.
    """
    X = np.asarray(X, dtype=np.float32)
    sk = np.asarray(sk_proba, dtype=np.float64)
    rows = int(X.shape[0])
    result = {"max_abs_diff": float("inf"), "argmax_flips": rows, "rows": rows, "tol": tol, "passed": False}
    try:
        model = OnnxModel.from_bytes(onnx_bytes)
        ox = model.predict_proba(X).astype(np.float64)
    except Exception as exc:  # a broken graph must fail the gate, not crash the trainer
        result["error"] = f"{type(exc).__name__}: {exc}"[:300]
        return result
    if ox.shape != sk.shape:
        result["error"] = f"probability shape {ox.shape} differs from sklearn's {sk.shape}"
        return result
    if rows == 0:
        result.update(max_abs_diff=0.0, argmax_flips=0, passed=True)
        return result
    diff = float(np.max(np.abs(ox - sk)))
    flips = int(np.sum(np.argmax(ox, axis=1) != np.argmax(sk, axis=1)))
    result.update(max_abs_diff=diff, argmax_flips=flips, passed=bool(np.isfinite(diff) and diff <= tol and flips == 0))
    return result


def read_metadata(onnx_bytes: bytes) -> dict[str, Any]:
    """The calroute metadata of ONNX bytes, decoded (``labels``/``metrics`` parsed from JSON)."""
    model = OnnxModel.from_bytes(onnx_bytes, expected_spec=None)
    out: dict[str, Any] = {}
    for key, raw in model.metadata.items():
        if key.startswith(META_PREFIX):
            name = key[len(META_PREFIX):]
            out[name] = json.loads(raw) if name in _JSON_KEYS else raw
    return out
