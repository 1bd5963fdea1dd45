"""Training a user's model: data gates, the trainer, time-ordered out-of-fold predictions, the
per-user confidence threshold, metrics, the champion/challenger holdout and the ONNX export with its
parity gate.

Imports scikit-learn: the training side only (TrainUserFunction, the evaluation CLI, benchmarks).
Serving code never imports this module; it loads the ONNX bytes with :mod:`calroute.runtime`.

Folds (see docs/learning.md). Events are put in time order (:func:`calroute.schema.sort_by_start`)
and, **within each calendar**, cut into ``n_blocks`` consecutive blocks by position (block 0 = the
calendar's oldest events). Fold ``k`` trains on blocks ``< k`` of every calendar and predicts block
``k`` (forward chaining; k = 1..n_blocks-1), so every out-of-fold prediction comes from a model that
only saw older events of each calendar — the situation the live model is in. Cutting per calendar
(not on the user's global timeline) matters: calendars cover different periods (a 2011 conference,
holidays until 2037), and a global cut would leave whole calendars out of the early folds.

The holdout for champion/challenger is the last block of each calendar (the last 20% with the
default 5 blocks); the challenger fit on the other blocks is exactly the last fold's model.

Threshold rule (:func:`choose_threshold`, feature spec 2): the out-of-fold rows' routing scores
(confidence discounted by novelty, :mod:`calroute.novelty`; each row's novelty measured against its
own fold's training events) go through fixed-sequence Learn-then-Test (:mod:`calroute.risk`): the
lowest threshold whose kept rows' error is certified below ``1 - target_precision`` at level
``risk_delta``, never below ``threshold_min``. When nothing can be certified (too few rows, too
many errors among the most confident) the threshold is 1.0: the model answers nothing on its own.
The bound and the rows it rests on are recorded with the model (``metrics["risk"]``).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional, Sequence

import numpy as np

from . import ids
from .calibration import calibration_summary
from .errors import GateFailed
from .features import FEATURE_SPEC_VERSION, N_DENSE, N_FEATURES, featurize
from .novelty import ANOMALY_VETO, NOVELTY_WEIGHT, CalendarShapes, NoveltyIndex, routing_score
from .risk import RiskBound, choose_threshold_ltt
from .gates import check_gates  # noqa: F401  (re-exported: the trainer's gates)
from .onnx_export import check_parity, to_onnx
from .profiles import build_profiles
from .schema import LABEL_LLM, LABEL_ML, TRUSTED_LABELS, Event

__all__ = [
    "FAMILIES", "DEFAULT_FAMILY", "TrainConfig", "GateFailed", "ParityFailed", "TrainedModel",
    "CalendarClassifier", "check_gates", "time_blocks", "out_of_fold", "choose_threshold",
    "classification_metrics", "train_user_model",
]

#: Model families the trainer knows. ``logreg``: multinomial logistic regression on all features
#: (14 dense + 4096 hashed); ``sgd``: the same model fitted by SGD; ``linsvc``: LinearSVC with
#: sigmoid calibration; ``gb_dense``: the seed's GradientBoostingClassifier(100, depth 5) on the 14
#: dense features; ``gb_all``: the same on every feature. See docs/model-selection.md.
FAMILIES = ("logreg", "sgd", "linsvc", "gb_dense", "gb_all")
DEFAULT_FAMILY = "logreg"
DEFAULT_C = 20.0
#: Linear families multiply the 14 dense columns by this before fitting (then fold it into the
#: weights): < 1 regularises the hand features harder than the hashed tokens. See model-selection.md.
DEFAULT_DENSE_SCALE = 0.1
LINEAR_FAMILIES = ("logreg", "sgd", "linsvc")
#: Rows of the parity fixture kept with the model (the gate itself runs on every training row).
PARITY_FIXTURE_ROWS = 256


class ParityFailed(Exception):
    """The ONNX graph does not reproduce sklearn's probabilities: the model must not be promoted.
    ``trained`` holds the :class:`TrainedModel` (with its ``parity`` report) for the audit log."""

    def __init__(self, message: str, trained: "TrainedModel"):
        super().__init__(message)
        self.trained = trained


@dataclass(frozen=True)
class TrainConfig:
    """Training gates and policy (from :class:`calroute.config.Settings`, plus trainer knobs)."""

    min_events: int = 10
    min_calendars: int = 2
    min_per_calendar: int = 5
    target_precision: float = 0.95
    default_threshold: float = 0.85
    threshold_min: float = 0.30
    threshold_max: float = 0.99  # spec 1 only: the certified threshold is never clamped down
    risk_delta: float = 0.1
    novelty_weight: float = NOVELTY_WEIGHT
    #: anomaly against the predicted calendar at which the routing score is 0 (> 1: no veto)
    anomaly_veto: float = ANOMALY_VETO
    family: str = DEFAULT_FAMILY
    max_train_events: int = 20000
    n_blocks: int = 5
    min_threshold_rows: int = 30
    C: float = DEFAULT_C
    dense_scale: float = DEFAULT_DENSE_SCALE
    class_weight: Optional[str] = "balanced"
    random_state: int = 0
    #: training weights of remembered labels (``llm``: the fallback's answer, ``ml``: the model's own)
    label_weight_llm: float = 0.5
    label_weight_ml: float = 0.5
    #: a remembered label is trained on as its series' label when this share of the series agrees
    #: (:func:`series_labels`; 0: off)
    label_series_share: float = 0.75

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family {self.family!r}; known: {', '.join(FAMILIES)}")
        if self.n_blocks < 2:
            raise ValueError("n_blocks must be at least 2")
        if not (0 <= self.threshold_min <= self.threshold_max <= 1):
            raise ValueError("need 0 <= threshold_min <= threshold_max <= 1")

    @classmethod
    def from_settings(cls, cfg: Any, **overrides: Any) -> "TrainConfig":
        """Build from :class:`calroute.config.Settings` (fields of the same name; ``model_family``
        → ``family`` when the settings have it); ``overrides`` win."""
        values: dict[str, Any] = {}
        for name in ("min_events", "min_calendars", "min_per_calendar", "target_precision",
                     "default_threshold", "threshold_min", "threshold_max", "max_train_events", "risk_delta",
                     "label_weight_llm", "label_weight_ml", "label_series_share"):
            if hasattr(cfg, name):
                values[name] = getattr(cfg, name)
        family = getattr(cfg, "model_family", None)
        if family:
            values["family"] = family
        values.update(overrides)
        return cls(**values)


@dataclass
class TrainedModel:
    """What :func:`train_user_model` hands to the orchestration (store, validate, promote)."""

    onnx_bytes: bytes
    sha256: str
    labels: list[str]
    threshold: float
    metrics: dict
    profiles: dict
    holdout_event_ids: list[str]
    parity: dict
    parity_X: np.ndarray
    parity_proba: np.ndarray
    family: str = DEFAULT_FAMILY
    version: str = ""
    user_id: str = ""
    trained_at: str = ""


# ----------------------------------------------------------------------------- gates


# ----------------------------------------------------------------------------- the estimator


def _linear_parts(est: Any) -> list:
    """The fitted linear models (objects with ``coef_``) inside a linear-family estimator."""
    if hasattr(est, "calibrated_classifiers_"):
        return [cc.estimator for cc in est.calibrated_classifiers_]
    return [est]


def _sample_weight(y: np.ndarray) -> np.ndarray:
    from sklearn.utils.class_weight import compute_sample_weight

    return compute_sample_weight("balanced", y)


class CalendarClassifier:
    """Predicts a calendar id from a :func:`calroute.features.featurize` matrix (float32, n ×
    N_FEATURES). Reads like a scikit-learn estimator: parameters in ``__init__``, learned state with
    a trailing underscore (``classes_``, ``estimator_``, ``n_features_in_``).

    ``estimator_`` is the fitted sklearn object that :func:`calroute.onnx_export.to_onnx` converts;
    every family takes the full feature vector (``gb_dense`` selects the 14 dense columns inside its
    pipeline) so the serving input is the same for every model.
    """

    def __init__(self, family: str = DEFAULT_FAMILY, C: float = DEFAULT_C, class_weight: Optional[str] = "balanced",
                 dense_scale: float = DEFAULT_DENSE_SCALE, n_estimators: int = 100, max_depth: int = 5,
                 random_state: int = 0):
        self.family = family
        self.C = C
        self.class_weight = class_weight
        self.dense_scale = dense_scale
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.random_state = random_state

    def get_params(self, deep: bool = True) -> dict:
        return {k: getattr(self, k) for k in ("family", "C", "class_weight", "dense_scale", "n_estimators",
                                              "max_depth", "random_state")}

    def _build(self, y: np.ndarray):
        from sklearn.compose import ColumnTransformer
        from sklearn.ensemble import GradientBoostingClassifier
        from sklearn.linear_model import LogisticRegression, SGDClassifier
        from sklearn.pipeline import Pipeline

        cw = self.class_weight
        if self.family == "logreg":
            return LogisticRegression(C=self.C, class_weight=cw, max_iter=3000, tol=1e-4)
        if self.family == "sgd":
            return SGDClassifier(loss="log_loss", alpha=1.0 / (self.C * max(len(y), 1)), class_weight=cw,
                                 max_iter=200, tol=1e-5, random_state=self.random_state)
        if self.family == "linsvc":
            from sklearn.calibration import CalibratedClassifierCV
            from sklearn.svm import LinearSVC

            folds = int(min(3, Counter(y.tolist()).most_common()[-1][1]))
            if folds < 2:
                raise ValueError("linsvc needs at least 2 events in every calendar")
            return CalibratedClassifierCV(LinearSVC(C=self.C / 10.0, class_weight=cw), method="sigmoid", cv=folds)
        gb = GradientBoostingClassifier(n_estimators=self.n_estimators, max_depth=self.max_depth,
                                        random_state=self.random_state)
        if self.family == "gb_dense":
            select = ColumnTransformer([("dense", "passthrough", list(range(N_DENSE)))], remainder="drop")
            return Pipeline([("select", select), ("gb", gb)])
        if self.family == "gb_all":
            return gb
        raise ValueError(f"unknown model family {self.family!r}")

    def fit(self, X: np.ndarray, y: Sequence[str], sample_weight: Optional[np.ndarray] = None) -> "CalendarClassifier":
        """``sample_weight``: per-row weights (remembered labels weigh less, :func:`label_weights`),
        multiplied with the balanced class weights."""
        y = np.asarray([str(v) for v in y])
        classes = np.unique(y)
        if len(classes) < 2:
            raise ValueError("needs events of at least 2 calendars")
        est = self._build(y)
        X = np.asarray(X, dtype=np.float32)
        fit_kw: dict[str, Any] = {}
        sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if sw is not None and np.all(sw == 1.0):
            sw = None  # every label the user's: exactly the unweighted fit
        if self.family in ("gb_dense", "gb_all"):
            if self.class_weight == "balanced":
                sw = _sample_weight(y) * (1.0 if sw is None else sw)
            if sw is not None:
                fit_kw["gb__sample_weight" if self.family == "gb_dense" else "sample_weight"] = sw
        elif sw is not None:
            fit_kw["sample_weight"] = sw
        linear = self.family in LINEAR_FAMILIES
        col_scale = None
        if linear and self.dense_scale != 1.0:
            col_scale = np.ones(X.shape[1], dtype=np.float64)
            col_scale[:N_DENSE] = self.dense_scale
        if self.family in ("logreg", "sgd", "linsvc", "gb_all"):
            from scipy import sparse

            Xf = sparse.csr_matrix(X)  # hashed features are sparse: much faster fits, same model
            if col_scale is not None:
                Xf = Xf @ sparse.diags(col_scale.astype(np.float32))
        else:
            Xf = X
        with _single_threaded_blas():
            est.fit(Xf, y, **fit_kw)
        if col_scale is not None:
            # Fold the column scaling into the weights: the model on raw X is then exactly the model
            # fitted on scaled X (so the ONNX graph needs no scaler).
            for lin in _linear_parts(est):
                lin.coef_ = lin.coef_ * col_scale
        self.estimator_ = est
        self.classes_ = np.asarray([str(c) for c in est.classes_])
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator_.predict_proba(np.asarray(X, dtype=np.float32)), dtype=np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


# ----------------------------------------------------------------------------- folds and threshold


def time_blocks(labels: Sequence[str], n_blocks: int) -> np.ndarray:
    """Block index (0..n_blocks-1) of each event, assigned per calendar by position in the given
    (time) order: a calendar's i-th of n events goes to block ``floor(i·n_blocks/n)``."""
    seen: Counter = Counter()
    totals = Counter(labels)
    out = np.empty(len(labels), dtype=np.int64)
    for i, lab in enumerate(labels):
        out[i] = (seen[lab] * n_blocks) // totals[lab]
        seen[lab] += 1
    return out


def trusted_time_blocks(labels: Sequence[str], trusted: np.ndarray, n_blocks: int) -> np.ndarray:
    """:func:`time_blocks` cut on each calendar's *trusted* rows (user/confirmed/sole labels), so every
    fold and the holdout (the last block) have trusted rows to be scored on however many remembered
    labels there are; a remembered row joins the block of the latest trusted row of its calendar
    before it (in the given time order), block 0 before the first. With every row trusted this is
    exactly :func:`time_blocks`."""
    out = np.zeros(len(labels), dtype=np.int64)
    totals = Counter(lab for lab, t in zip(labels, trusted) if t)
    seen: Counter = Counter()
    current: dict[str, int] = {}
    for i, lab in enumerate(labels):
        if trusted[i]:
            out[i] = (seen[lab] * n_blocks) // totals[lab]
            seen[lab] += 1
            current[lab] = int(out[i])
        else:
            out[i] = current.get(lab, 0)
    return out


def _aligned_proba(model: CalendarClassifier, X: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """``model``'s probabilities re-indexed to ``labels`` (0 for calendars the fold never saw)."""
    p = model.predict_proba(X)
    out = np.zeros((X.shape[0], len(labels)), dtype=np.float64)
    col = {c: i for i, c in enumerate(labels)}
    for j, c in enumerate(model.classes_):
        out[:, col[str(c)]] = p[:, j]
    return out


def label_weights(provenance: Optional[Sequence[str]], n: int, cfg: "TrainConfig") -> tuple[np.ndarray, np.ndarray]:
    """``(weights, trusted)`` of ``n`` rows from their label provenance (None: every label the
    user's): ``user``/``confirmed``/``sole`` (:data:`calroute.schema.TRUSTED_LABELS`) weigh 1 and are
    *trusted* (the only rows a model is certified, calibrated and challenged on), ``llm`` weighs
    ``label_weight_llm``, ``ml`` ``label_weight_ml``. A ``sole`` label arrives here already resolved
    (:func:`calroute.schema.resolve_sole_labels`: a contradicted one reads as ``llm``)."""
    if provenance is None:
        return np.ones(n), np.ones(n, dtype=bool)
    if len(provenance) != n:
        raise ValueError(f"provenance has {len(provenance)} entries for {n} events")
    weight = {LABEL_LLM: cfg.label_weight_llm, LABEL_ML: cfg.label_weight_ml}
    trusted = np.asarray([p in TRUSTED_LABELS for p in provenance], dtype=bool)
    w = np.asarray([1.0 if t else float(weight.get(p, 0.0)) for p, t in zip(provenance, trusted)])
    return w, trusted


_DIGITS = re.compile(r"\d+")

#: the fewest labelled rows of a series before its labels vote (:func:`series_labels`)
SERIES_MIN_ROWS = 3


def series_key(ev: Event) -> Optional[str]:
    """The recurring series an event belongs to, within one user: its title case-folded, runs of
    digits as ``#`` ("Lecture 12" and "Lecture 13" are one series), whitespace collapsed; None for
    an untitled event (no series)."""
    key = " ".join(_DIGITS.sub("#", (ev.summary or "").casefold()).split())
    return key or None


def series_labels(y: np.ndarray, keys: Sequence[Optional[str]], trusted: np.ndarray, rows: np.ndarray,
                  share: float) -> np.ndarray:
    """The labels to fit on for the training rows ``rows`` (a boolean mask): a *remembered* label
    (the LLM's or the model's answer, not ``trusted``) is replaced by the label of its series
    (:func:`series_key`) when at least ``share`` of that series' labels among ``rows`` (trusted and
    remembered, at least :data:`SERIES_MIN_ROWS`) agree on it. A noisy labeller asked again and
    again about one recurring event is outvoted by its own majority: at 90% accuracy, one answer in
    ten about "Office Hours" names another calendar, and a model fit on those answers as they are
    learns a confidence of ~0.9 for a series that is one calendar — below a certified threshold set
    on the user's own labels. A trusted label is never changed, and only ``rows`` vote, so in an
    out-of-fold fit no held-out row's label reaches the training labels. ``share`` 0: off."""
    out = np.asarray(y).copy()
    if share <= 0:
        return out[rows]
    groups: dict[str, list[int]] = {}
    for i in np.flatnonzero(rows):
        if keys[i] is not None:
            groups.setdefault(keys[i], []).append(int(i))
    for members in groups.values():
        if len(members) < SERIES_MIN_ROWS:
            continue
        label, votes = Counter(out[i] for i in members).most_common(1)[0]
        if votes >= share * len(members):
            for i in members:
                if not trusted[i]:
                    out[i] = label
    return out[rows]


def out_of_fold(X: np.ndarray, y: np.ndarray, blocks: np.ndarray, labels: Sequence[str],
                make_model: Callable[[], CalendarClassifier], *, sample_weight: Optional[np.ndarray] = None,
                predict: Optional[np.ndarray] = None,
                fit_labels: Optional[Callable[[np.ndarray], np.ndarray]] = None) -> tuple[np.ndarray, np.ndarray]:
    """Forward-chaining out-of-fold probabilities. Returns ``(proba, mask)``: rows where ``mask``
    is true were predicted by a model trained only on earlier blocks (block 0 never is).
    ``sample_weight`` weighs the training rows; ``predict`` (a boolean mask) limits the predicted rows
    (the trusted labels: a model is never scored on the LLM's word); ``fit_labels(train_mask)``:
    the labels a fold fits on (default ``y[train_mask]``; :func:`series_labels` in training)."""
    proba = np.zeros((len(y), len(labels)))  # float64
    mask = np.zeros(len(y), dtype=bool)
    for k in range(1, int(blocks.max(initial=0)) + 1):
        tr, te = blocks < k, blocks == k
        if predict is not None:
            te = te & predict
        y_tr = y[tr] if fit_labels is None else fit_labels(tr)
        if not te.any() or len(np.unique(y_tr)) < 2:
            continue
        sw = None if sample_weight is None else sample_weight[tr]
        model = make_model().fit(X[tr], y_tr, sample_weight=sw)
        proba[te] = _aligned_proba(model, X[te], labels)
        mask[te] = True
    return proba, mask


def choose_threshold(score: np.ndarray, correct: np.ndarray, cfg: TrainConfig) -> tuple[float, str]:
    """The per-user threshold on the routing score (module docstring): fixed-sequence Learn-then-Test
    at ``alpha = 1 - target_precision``, ``delta = risk_delta``. Returns ``(threshold, why)``;
    :func:`choose_threshold_bound` also returns the bound."""
    bound = choose_threshold_bound(score, correct, cfg)
    return bound.threshold, bound.why


def choose_threshold_bound(score: np.ndarray, correct: np.ndarray, cfg: TrainConfig) -> RiskBound:
    return choose_threshold_ltt(score, correct, alpha=round(1.0 - cfg.target_precision, 10), delta=cfg.risk_delta,
                                floor=cfg.threshold_min)


def _forward_chained(events: Sequence[Event], blocks: np.ndarray, index: Any,
                     score: Callable[[Any, int], float]) -> np.ndarray:
    """``score(index, i)`` for each event of block ``k`` with ``index`` holding the events of blocks
    ``< k`` (what the fold's model was trained on); block 0 rows get 1.0 (never out-of-fold)."""
    out = np.ones(len(events))  # float64
    for b in range(int(blocks.max(initial=0)) + 1):
        members = np.flatnonzero(blocks == b)
        if b > 0:
            for i in members:
                out[i] = score(index, i)
        for i in members:
            index.add(events[i])
    return out


def out_of_fold_novelty(events: Sequence[Event], blocks: np.ndarray) -> np.ndarray:
    """Novelty of each event of block ``k`` against the events of blocks ``< k``; block 0 rows get 1.0."""
    return _forward_chained(events, blocks, NoveltyIndex(), lambda idx, i: idx.score(events[i]))


def out_of_fold_anomaly(events: Sequence[Event], blocks: np.ndarray, predicted: Sequence[str]) -> np.ndarray:
    """Time/shape anomaly of each event of block ``k`` against the calendar the fold's model
    predicted for it, measured on the events of blocks ``< k``; block 0 rows get 1.0."""
    return _forward_chained(events, blocks, CalendarShapes(),
                            lambda idx, i: idx.anomaly(events[i], str(predicted[i])))


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1 (over calendars present in ``y_true``) and per-calendar precision,
    recall and support. Pure numpy: also used by the evaluation CLI on ONNX predictions."""
    yt = np.asarray(y_true, dtype=object)
    yp = np.asarray(y_pred, dtype=object)
    per: dict[str, dict] = {}
    f1s = []
    for lab in labels:
        tp = int(np.sum((yt == lab) & (yp == lab)))
        support = int(np.sum(yt == lab))
        predicted = int(np.sum(yp == lab))
        prec = tp / predicted if predicted else 0.0
        rec = tp / support if support else 0.0
        per[lab] = {"precision": round(prec, 4), "recall": round(rec, 4), "support": support}
        if support:
            f1s.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return {
        "accuracy": float(np.mean(yt == yp)) if len(yt) else None,
        "macro_f1": float(np.mean(f1s)) if f1s else None,
        "per_calendar": per,
    }


# ----------------------------------------------------------------------------- the use case


def _parity_rows(n: int, k: int = PARITY_FIXTURE_ROWS) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, num=min(n, k)).round().astype(np.int64)) if n else np.zeros(0, np.int64)


def _round(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(float(v), 4)


def _round_up(v: float, digits: int = 6) -> float:
    """``v`` to ``digits`` decimals, never below it: a threshold written with fewer digits must not
    admit a score the certified one did not."""
    r = round(float(v), digits)
    return r if r >= v else round(r + 10.0 ** -digits, digits)


def train_user_model(events: list[Event], cfg: TrainConfig, *, user_id: str, version: str,
                     now: Optional[datetime] = None, clock: Callable[[], float] = time.perf_counter,
                     raise_on_parity_failure: bool = True,
                     provenance: Optional[Sequence[str]] = None) -> TrainedModel:
    """Train, threshold, export and parity-check one user's model.

    ``provenance`` (parallel to ``events``; None = every label the user's) says where each label came
    from: remembered ``llm``/``ml`` labels are trained on with their weight (:func:`label_weights`)
    but never certify the model — the gates count, and the out-of-fold rows (threshold,
    calibration, cv metrics) and the champion/challenger holdout are, the trusted (user/confirmed/sole) labels only.

    Raises :class:`GateFailed` (reason in the message) when the gates fail, and
    :class:`ParityFailed` when the ONNX export does not reproduce sklearn on every training row
    (unless ``raise_on_parity_failure`` is false; then ``parity["passed"]`` is false and the caller
    must reject the model).
    """
    ids.user_id(user_id)
    ids.model_version(version)
    with _single_threaded_blas():
        return _train(events, cfg, user_id=user_id, version=version, now=now, clock=clock,
                      raise_on_parity_failure=raise_on_parity_failure, provenance=provenance)


@contextmanager
def _single_threaded_blas():
    """One BLAS/OpenMP thread while training: these fits are small, and multi-threaded OpenBLAS
    spin-waits on a busy or 1-2 vCPU machine (measured 10-30× slower under load)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        yield
        return
    with threadpool_limits(limits=1):
        yield


def _train(events: list[Event], cfg: TrainConfig, *, user_id: str, version: str, now: Optional[datetime],
           clock: Callable[[], float], raise_on_parity_failure: bool,
           provenance: Optional[Sequence[str]] = None) -> TrainedModel:
    t0 = clock()
    prov = list(provenance) if provenance is not None else ["user"] * len(events)
    if len(prov) != len(events):
        raise ValueError(f"provenance has {len(prov)} entries for {len(events)} events")
    pairs = sorted(((e, p) for e, p in zip(events, prov) if e.calendar_id is not None),
                   key=lambda ep: (ep[0].start_utc, ep[0].event_id or ""))  # sort_by_start's order
    ok, reason = check_gates([e for e, p in pairs if p in TRUSTED_LABELS], cfg)
    if not ok:
        raise GateFailed(reason)
    # a remembered label of weight 0 (LABEL_WEIGHT_ML=0: "never learn from the model's own answers")
    # is no training data at all: not in the fit, the novelty/shape indexes or the folds
    w_all, _ = label_weights([p for _, p in pairs], len(pairs), cfg)
    pairs = [ep for ep, w in zip(pairs, w_all) if w > 0]
    if len(pairs) > cfg.max_train_events:
        pairs = pairs[-cfg.max_train_events:]  # the most recent ones
    labelled = [e for e, _ in pairs]
    weights, trusted = label_weights([p for _, p in pairs], len(pairs), cfg)
    y = np.asarray([e.calendar_id for e in labelled])
    labels = sorted(set(y.tolist()))
    X = featurize(labelled)

    def make_model() -> CalendarClassifier:
        return CalendarClassifier(family=cfg.family, C=cfg.C, class_weight=cfg.class_weight,
                                  dense_scale=cfg.dense_scale, random_state=cfg.random_state)

    # time-ordered out-of-fold predictions -> threshold, calibration, cv metrics, holdout
    blocks = trusted_time_blocks(y.tolist(), trusted, cfg.n_blocks)
    keys = [series_key(e) for e in labelled]

    def fit_labels(rows: np.ndarray) -> np.ndarray:  # the same rule in every fold and the final fit
        return series_labels(y, keys, trusted, rows, cfg.label_series_share)

    oof, mask = out_of_fold(X, y, blocks, labels, make_model, sample_weight=weights, predict=trusted,
                            fit_labels=fit_labels)
    lab_arr = np.asarray(labels)
    oof_pred = lab_arr[np.argmax(oof[mask], axis=1)] if mask.any() else np.asarray([], dtype=str)
    oof_conf = oof[mask].max(axis=1) if mask.any() else np.zeros(0)
    oof_ok = oof_pred == y[mask]
    oof_nov = out_of_fold_novelty(labelled, blocks)[mask]
    oof_anom = out_of_fold_anomaly(labelled, blocks, lab_arr[np.argmax(oof, axis=1)])[mask]
    oof_score = np.asarray([routing_score(c, nv, cfg.novelty_weight, a, cfg.anomaly_veto)
                            for c, nv, a in zip(oof_conf, oof_nov, oof_anom)])
    bound = choose_threshold_bound(oof_score, oof_ok, cfg)
    threshold, why = bound.threshold, bound.why
    cls = classification_metrics(y[mask], oof_pred, labels)
    kept = oof_score >= threshold
    hold = blocks == cfg.n_blocks - 1
    hold_ok = oof_ok[hold[mask]] if mask.any() else np.zeros(0, dtype=bool)

    # the model itself, on every event
    y_fit = fit_labels(np.ones(len(y), dtype=bool))
    model = make_model().fit(X, y_fit, sample_weight=weights)
    sk_proba = model.predict_proba(X)
    train_acc = float(np.mean(lab_arr[np.argmax(sk_proba, axis=1)] == y))
    train_seconds = clock() - t0

    metrics = {
        "family": cfg.family,
        "n_events": int(len(y)),
        "n_calendars": len(labels),
        # rows by label provenance (docs/learning.md): only the trusted ones are out-of-fold rows
        "labels_by_provenance": dict(sorted(Counter(p for _, p in pairs).items())),
        # remembered labels trained on as their series' label (series_labels)
        "labels_series_relabelled": int(np.sum(y_fit != y)),
        "train_accuracy": _round(train_acc),
        "cv_accuracy": _round(cls["accuracy"]),
        "macro_f1": _round(cls["macro_f1"]),
        "per_calendar": cls["per_calendar"],
        "oof_rows": int(mask.sum()),
        "coverage_at_threshold": _round(kept.mean()) if kept.size else None,
        "accuracy_at_threshold": _round(oof_ok[kept].mean()) if kept.any() else None,
        "threshold": round(threshold, 4),
        "threshold_rule": why,
        "calibration": calibration_summary(oof_conf, oof_ok.astype(np.float64)),
        "risk": bound.to_dict(),
        "novelty_oof_mean": _round(oof_nov.mean()) if oof_nov.size else None,
        "anomaly_oof_vetoed": _round((oof_anom >= cfg.anomaly_veto).mean()) if oof_anom.size else None,
        "feature_spec": FEATURE_SPEC_VERSION,
        "holdout_accuracy": _round(hold_ok.mean()) if hold_ok.size else None,
        "holdout_rows": int(hold_ok.size),
        "train_seconds": round(train_seconds, 3),
        "gate": reason,
    }
    trained_at = (now or datetime.now(timezone.utc)).isoformat()
    onnx_bytes = to_onnx(model.estimator_, N_FEATURES, labels, {
        "threshold": _round_up(threshold), "version": version, "user": user_id, "family": cfg.family,
        "trained_at": trained_at, "metrics": {k: v for k, v in metrics.items() if k != "per_calendar"},
        "novelty_index": NoveltyIndex.fit(labelled).to_text(), "novelty_weight": cfg.novelty_weight,
        "shape_index": CalendarShapes.fit(labelled).to_text(), "anomaly_veto": cfg.anomaly_veto,
        "risk": bound.to_dict(),
    })
    parity = check_parity(onnx_bytes, X, sk_proba)
    rows = _parity_rows(len(y))
    trained = TrainedModel(
        onnx_bytes=onnx_bytes,
        sha256=hashlib.sha256(onnx_bytes).hexdigest(),
        labels=labels,
        threshold=float(threshold),
        metrics=metrics,
        profiles=build_profiles(labelled),
        holdout_event_ids=[e.event_id for e, h, t in zip(labelled, hold, trusted) if h and t and e.event_id],
        parity=parity,
        parity_X=X[rows],
        parity_proba=sk_proba[rows].astype(np.float32),
        family=cfg.family,
        version=version,
        user_id=user_id,
        trained_at=trained_at,
    )
    if not parity["passed"] and raise_on_parity_failure:
        raise ParityFailed(
            f"ONNX parity failed: max |Δp| {parity['max_abs_diff']:.3g}, {parity['argmax_flips']} argmax flips "
            f"over {parity['rows']} rows", trained)
    return trained


def summary(trained: TrainedModel) -> dict:
    """A JSON-friendly summary (no bytes, no arrays) for logs and registry items."""
    d = asdict(trained)
    for k in ("onnx_bytes", "parity_X", "parity_proba"):
        d.pop(k)
    d["size_bytes"] = len(trained.onnx_bytes)
    return d

