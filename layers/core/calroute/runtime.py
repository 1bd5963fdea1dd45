"""Serving a model: an ONNX session with its metadata. Imports onnxruntime and numpy only — never
sklearn (importing sklearn costs ~1.2 s of cold start; onnxruntime ~0.14 s).

A calroute ONNX model has one float32 input ``X`` (n × N_FEATURES) and, converted with
``zipmap=False``, outputs ``label`` and ``probabilities`` (n × k). Its ``metadata_props`` carry:

* ``calroute.labels`` — JSON list of calendar ids, in probability-column order
* ``calroute.feature_spec`` — the FEATURE_SPEC version it was trained with
* ``calroute.threshold`` — the per-user confidence threshold
* ``calroute.version``, ``calroute.user``, ``calroute.family``, ``calroute.trained_at``,
  ``calroute.metrics`` (JSON) — training metadata
* feature spec 2 and later: ``calroute.novelty_index`` (:class:`calroute.novelty.NoveltyIndex`, the
  user's training tokens), ``calroute.novelty_weight`` and ``calroute.risk`` (JSON: the threshold's
  guarantee, :class:`calroute.risk.RiskBound`); models trained since the time/shape anomaly also
  ``calroute.shape_index`` (:class:`calroute.novelty.CalendarShapes`, JSON) and
  ``calroute.anomaly_veto``. The threshold then applies to the routing score
  ``confidence × (1 - novelty_weight × novelty)`` (0 when the anomaly against the predicted calendar
  reaches the veto); a spec-1 model has none of these and its threshold applies to the confidence
  alone.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .errors import ModelIntegrityError
from .features import FEATURE_SPEC_VERSION, N_FEATURES, SUPPORTED_SPECS

META_PREFIX = "calroute."

_ort = None


def _onnxruntime():
    global _ort
    if _ort is None:
        import onnxruntime

        onnxruntime.set_default_logger_severity(3)
        _ort = onnxruntime
    return _ort


def preload() -> None:
    """Import onnxruntime now instead of at the first model load (a SnapStart init snapshots it)."""
    _onnxruntime()


def session_options():
    """One intra-op and one inter-op thread: otherwise every cached model owns a thread pool."""
    ort = _onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_cpu_mem_arena = False  # small models: the arena would dominate RAM per session
    so.log_severity_level = 3
    return so


#: RSS growth of one loaded session per byte of its ONNX model, per family: bench/model_selection.py
#: (``rss_per_session_bytes / onnx_bytes``, bench/results/model_selection_spec1.json) plus 5%;
#: tests/unit/test_cache.py holds every family's charge at or above what the bench measured. A
#: family not listed is charged the largest figure.
RSS_PER_ONNX_BYTE = {"logreg": 3.45, "sgd": 5.2, "linsvc": 4.45, "gb_dense": 5.7, "gb_all": 5.15}
#: The decoded novelty index (a 2**18-bit bitmap) and the calendar shape index of spec-2 models.
NOVELTY_INDEX_BYTES = 32_768 + 4_096


@dataclass
class OnnxModel:
    """A loaded per-user model: ``predict_proba(X)`` returns (n × k) probabilities over ``labels``."""

    session: object
    labels: list[str]
    threshold: float
    feature_spec: int
    metadata: dict[str, str]
    sha256: str
    size_bytes: int
    input_name: str = "X"
    prob_index: int = 1
    extra: dict = field(default_factory=dict)
    novelty: Optional[object] = None  # NoveltyIndex (spec 2+), None for spec-1 models
    novelty_weight: float = 0.0
    shapes: Optional[object] = None  # CalendarShapes (models trained with the anomaly veto), else None
    anomaly_veto: float = 2.0

    @classmethod
    def from_bytes(cls, data: bytes, expected_sha256: Optional[str] = None,
                   expected_spec: Optional[int | tuple[int, ...]] = SUPPORTED_SPECS) -> "OnnxModel":
        """Verify and load ONNX bytes.

        Raises :class:`ModelIntegrityError` when the sha256 does not match, the bytes are not a
        valid model (truncated, corrupted), or the model was built for a feature spec not in
        ``expected_spec`` (one spec or a tuple; default: every spec the featurizer serves).
        """
        sha = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and sha != expected_sha256:
            raise ModelIntegrityError("model bytes do not match their sha256")
        ort = _onnxruntime()
        try:
            sess = ort.InferenceSession(data, sess_options=session_options(),
                                        providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own error types for bad graphs
            raise ModelIntegrityError(f"model bytes are not a loadable ONNX model: {type(exc).__name__}") from exc
        meta = dict(sess.get_modelmeta().custom_metadata_map)
        try:
            labels = json.loads(meta[META_PREFIX + "labels"])
            spec = int(meta[META_PREFIX + "feature_spec"])
            threshold = float(meta[META_PREFIX + "threshold"])
        except (KeyError, ValueError) as exc:
            raise ModelIntegrityError("model metadata is missing calroute labels/spec/threshold") from exc
        allowed = (expected_spec,) if isinstance(expected_spec, int) else expected_spec
        if allowed is not None and spec not in allowed:
            raise ModelIntegrityError(f"model was built for feature spec {spec}, serving spec is "
                                      f"{'/'.join(map(str, allowed))}")
        novelty, weight, shapes, veto = None, 0.0, None, 2.0
        if META_PREFIX + "novelty_index" in meta:
            from .novelty import CalendarShapes, NoveltyIndex

            try:
                novelty = NoveltyIndex.from_text(meta[META_PREFIX + "novelty_index"])
                weight = float(meta.get(META_PREFIX + "novelty_weight", "0"))
                if META_PREFIX + "shape_index" in meta:
                    shapes = CalendarShapes.from_text(meta[META_PREFIX + "shape_index"])
                    veto = float(meta.get(META_PREFIX + "anomaly_veto", "2"))
            except ValueError as exc:
                raise ModelIntegrityError(f"model novelty index is unreadable: {exc}") from exc
        inputs = sess.get_inputs()
        outputs = [o.name for o in sess.get_outputs()]
        prob_index = next((i for i, n in enumerate(outputs) if "prob" in n.lower()), len(outputs) - 1)
        return cls(session=sess, labels=list(labels), threshold=threshold, feature_spec=spec, metadata=meta,
                   sha256=sha, size_bytes=len(data), input_name=inputs[0].name, prob_index=prob_index,
                   novelty=novelty, novelty_weight=weight, shapes=shapes, anomaly_veto=veto)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities (n × len(labels)), float32 input required."""
        if X.dtype != np.float32:
            X = X.astype(np.float32)
        out = self.session.run(None, {self.input_name: X})
        return np.asarray(out[self.prob_index], dtype=np.float32)

    @property
    def version(self) -> str:
        return self.metadata.get(META_PREFIX + "version", "")

    @property
    def memory_estimate(self) -> int:
        """Bytes this model is charged in the cache: the RSS one loaded session of its family costs
        per ONNX byte (:data:`RSS_PER_ONNX_BYTE`, measured) plus the decoded novelty index."""
        family = self.metadata.get(META_PREFIX + "family", "")
        per_byte = RSS_PER_ONNX_BYTE.get(family, max(RSS_PER_ONNX_BYTE.values()))
        return int(per_byte * self.size_bytes) + (NOVELTY_INDEX_BYTES if self.novelty is not None else 0)

    def novelty_of(self, events, tokens=None) -> Optional[list[float]]:
        """Text novelty of each event against the user's training events (None for spec-1 models).
        ``tokens``: the events' featurizer tokens (:func:`calroute.features.spec_tokens`), in order,
        when the caller computed them for :func:`calroute.features.featurize` (tokenise once)."""
        if self.novelty is None:
            return None
        score = self.novelty.score
        if tokens is None:
            return [score(ev) for ev in events]
        return [score(ev, t) for ev, t in zip(events, tokens, strict=True)]

    def anomaly_of(self, events, predicted: "list[str]", tokens=None) -> Optional[list[float]]:
        """Time/shape anomaly of each event against the calendar predicted for it (None for models
        without a shape index). ``tokens``: the events' featurizer tokens of the model's spec, as for
        :meth:`novelty_of` (their time group ``k`` holds the shape tokens)."""
        if self.shapes is None:
            return None
        anomaly = self.shapes.anomaly
        if tokens is None or self.feature_spec < 2:
            return [anomaly(ev, cal) for ev, cal in zip(events, predicted)]
        return [anomaly(ev, cal, t["k"]) for ev, cal, t in zip(events, predicted, tokens, strict=True)]

    def routing_scores(self, top: "np.ndarray", novelty: Optional[list[float]],
                       anomaly: Optional[list[float]] = None) -> list[float]:
        """The score the threshold applies to, per event (see the module docstring)."""
        from .novelty import routing_score

        if novelty is None:
            return [float(p) for p in top]
        if anomaly is None:
            return [routing_score(p, nv, self.novelty_weight) for p, nv in zip(top, novelty)]
        return [routing_score(p, nv, self.novelty_weight, a, self.anomaly_veto)
                for p, nv, a in zip(top, novelty, anomaly)]
