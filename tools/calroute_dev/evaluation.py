"""Offline evaluation, the functions: load users' labelled events (``.jsonl`` or folders of ``.ics``),
split each calendar in time order, train with the Lambda's trainer, predict through onnxruntime with
the routing rule, score. ``calroute evaluate`` (:mod:`calroute_dev.evaluate`), the report
(:mod:`calroute_dev.report`) and the benchmarks (``bench/``) call these.

``DIR`` holds, per user, either ``<user>.jsonl`` (one flat labelled event per line:
``{"event_id","summary","description","location","start","end","all_day","attendees",
"calendar_id"}``) or a folder ``<user>/`` with one ``.ics`` per calendar (file stem = calendar id,
read with :func:`calroute.ics.reader.parse_ics`).

Per user, each calendar's events in time order: the first 70% train, the rest test (with
``--max-train-per-calendar N`` only the first N of those 70% train; the test events stay the same).
Training is :func:`calroute.training.train_user_model` — the Lambda's code — and prediction goes
through onnxruntime (:class:`calroute.runtime.OnnxModel`) with the routing rule of
:func:`calroute.policy.decide` (the model answers when its top probability ≥ the user's threshold).
Gates are relaxed only for N-limited runs, and the output says so.

Figures: ``coverage`` (share of test events the model keeps), ``accuracy_kept`` (accuracy on
those), ``accuracy_all`` (argmax on every test event), ``macro_f1``, ``threshold``,
``train_seconds``, ``aurc`` (area under the risk-coverage curve of the routing score on the test
events: lower is better), ``risk`` (the threshold's Learn-then-Test bound on the out-of-fold rows:
``upper_bound``, ``kept``/``rows``, ``certified``) and ``risk_coverage`` (the curve, at most 21
points). ``overall`` pools every test event of every user (one big timetable dominates it);
``mean_of_users`` averages the users' figures; ``worst_user`` names the user with the lowest
accuracy of kept answers and the one with the lowest coverage — judge by those. The table lists
users worst first.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from calroute import ids
from calroute.features import featurize
from calroute.risk import aurc, risk_coverage_curve
from calroute.runtime import OnnxModel
from calroute.schema import Event, parse_event, sort_by_start
from calroute.training import GateFailed, TrainConfig, check_gates, classification_metrics, train_user_model

TRAIN_FRACTION = 0.7
EVAL_VERSION = "v20000101000000-000000"
KEYS = ("coverage", "accuracy_kept", "accuracy_all", "macro_f1", "threshold", "train_seconds", "aurc")
CURVE_POINTS = 21


# ----------------------------------------------------------------------------- loading


def load_jsonl(path: Path) -> list[Event]:
    """Labelled events of one JSONL file (blank lines skipped; a bad line names its number)."""
    events = []
    with path.open("r", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path.name}:{n}: not JSON ({exc.msg})") from None
            ev = parse_event(raw, field=f"{path.name}:{n}")
            if ev.calendar_id is None:
                raise ValueError(f"{path.name}:{n}: event has no calendar_id")
            ids.calendar_id(ev.calendar_id, field=f"{path.name}:{n}.calendar_id")
            events.append(ev)
    return events


def load_ics_dir(path: Path) -> list[Event]:
    """Events of every ``*.ics`` in a user's folder, labelled with the file stem."""
    from calroute.ics.reader import parse_ics

    events: list[Event] = []
    for f in sorted(path.glob("*.ics")):
        events.extend(parse_ics(f.read_bytes(), ids.calendar_id(f.stem, field=str(f.name))))
    return events


def load_users(data_dir: str | Path) -> dict[str, list[Event]]:
    """``{user_id: events}`` for every ``*.jsonl`` file and every folder with ``.ics`` files."""
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    users: dict[str, list[Event]] = {}
    for entry in sorted(root.iterdir()):
        if entry.is_file() and entry.suffix == ".jsonl":
            users[ids.user_id(entry.stem, field=entry.name)] = load_jsonl(entry)
        elif entry.is_dir() and any(entry.glob("*.ics")):
            users[ids.user_id(entry.name, field=entry.name)] = load_ics_dir(entry)
    if not users:
        raise ValueError(f"{root} has no <user>.jsonl files and no <user>/ folders of .ics files")
    return users


def split_events(events: Sequence[Event], max_train_per_calendar: Optional[int] = None,
                 train_fraction: float = TRAIN_FRACTION) -> tuple[list[Event], list[Event]]:
    """Per calendar in time order: first ``train_fraction`` train (at least one event when the
    calendar has two), the rest test; ``max_train_per_calendar`` keeps only the first N of the train
    part."""
    by_cal: dict[str, list[Event]] = {}
    for ev in sort_by_start([e for e in events if e.calendar_id is not None]):
        by_cal.setdefault(ev.calendar_id, []).append(ev)
    train: list[Event] = []
    test: list[Event] = []
    for cal in sorted(by_cal):
        evs = by_cal[cal]
        k = int(math.floor(train_fraction * len(evs)))
        if len(evs) >= 2:
            k = min(max(k, 1), len(evs) - 1)
        cut = evs[:k]
        if max_train_per_calendar is not None:
            cut = cut[:max_train_per_calendar]
        train.extend(cut)
        test.extend(evs[k:])
    return sort_by_start(train), sort_by_start(test)


# ----------------------------------------------------------------------------- evaluation


def _relaxed(train: list[Event], cfg: TrainConfig, n: int) -> tuple[TrainConfig, Optional[str]]:
    """Gates relaxed just enough for an N-limited training set (None when no relaxing is needed)."""
    ok, _ = check_gates(train, cfg)
    if ok:
        return cfg, None
    min_events = min(cfg.min_events, len(train))
    min_per = min(cfg.min_per_calendar, n)
    new = replace(cfg, min_events=max(2, min_events), min_per_calendar=max(1, min_per))
    return new, f"gates relaxed to min_events={new.min_events}, min_per_calendar={new.min_per_calendar}"


def _scores(y: np.ndarray, pred: np.ndarray, kept: np.ndarray, labels: Sequence[str]) -> dict:
    cls = classification_metrics(y, pred, labels)
    return {
        "test_events": int(len(y)),
        "coverage": float(kept.mean()) if len(y) else None,
        "accuracy_kept": float(np.mean(pred[kept] == y[kept])) if kept.any() else None,
        "accuracy_all": cls["accuracy"],
        "macro_f1": cls["macro_f1"],
    }


def evaluate_user(user_id: str, events: Sequence[Event], cfg: Optional[TrainConfig] = None,
                  max_train_per_calendar: Optional[int] = None) -> dict:
    """Train on the user's train split with :func:`train_user_model`, predict the test split through
    ONNX. Returns the user's figures plus ``y``/``pred``/``kept`` arrays (dropped from JSON)."""
    from calroute.policy import decide

    cfg = cfg or TrainConfig()
    train, test = split_events(events, max_train_per_calendar)
    note = None
    if max_train_per_calendar is not None:
        cfg, note = _relaxed(train, cfg, max_train_per_calendar)
    out: dict[str, Any] = {"user": user_id, "train_events": len(train), "test_events": len(test),
                           "calendars": len({e.calendar_id for e in events if e.calendar_id})}
    if note:
        out["note"] = note
    try:
        trained = train_user_model(train, cfg, user_id=user_id, version=EVAL_VERSION)
    except GateFailed as exc:
        out.update(skipped=str(exc), y=np.asarray([]), pred=np.asarray([]), kept=np.zeros(0, bool))
        return out
    model = OnnxModel.from_bytes(trained.onnx_bytes, expected_sha256=trained.sha256)
    y = np.asarray([e.calendar_id for e in test], dtype=object)
    proba = model.predict_proba(featurize(test)) if test else np.zeros((0, len(model.labels)), np.float32)
    labels = np.asarray(model.labels, dtype=object)
    pred = labels[np.argmax(proba, axis=1)] if len(y) else np.asarray([], dtype=object)
    top = proba.max(axis=1) if len(y) else np.zeros(0)
    novelty = model.novelty_of(test)
    anomaly = model.anomaly_of(test, [str(p) for p in pred])
    score = np.asarray(model.routing_scores(top, novelty, anomaly), dtype=np.float64)
    kept = np.asarray([decide(top_prob=float(p), threshold=model.threshold, llm_available=False).method == "ml"
                       for p in score], dtype=bool)
    all_labels = sorted(set(model.labels) | set(y.tolist()))
    out.update(_scores(y, pred, kept, all_labels))
    out.update(threshold=model.threshold, train_seconds=trained.metrics["train_seconds"],
               family=trained.family, cv_accuracy=trained.metrics["cv_accuracy"],
               threshold_rule=trained.metrics["threshold_rule"], parity_passed=trained.parity["passed"],
               onnx_bytes=len(trained.onnx_bytes), y=y, pred=pred, kept=kept, labels=all_labels,
               risk=trained.metrics.get("risk"), aurc=aurc(score, pred == y) if len(y) else None,
               risk_coverage=_curve_points(score, pred == y),
               confidence=top, score=score)  # per-event arrays: for calroute_dev.report (dropped from JSON)
    return out


def _curve_points(score: np.ndarray, correct: np.ndarray, k: int = CURVE_POINTS) -> list[list[float]]:
    """The risk-coverage curve thinned to about ``k`` ``[coverage, risk]`` points (JSON-sized)."""
    cov, risk = risk_coverage_curve(score, correct)
    if cov.size == 0:
        return []
    idx = np.unique(np.searchsorted(cov, np.linspace(cov[0], 1.0, k), side="left").clip(0, cov.size - 1))
    return [[round(float(cov[i]), 4), round(float(risk[i]), 4)] for i in idx]


def worst_users(users: list[dict]) -> dict:
    """The user with the lowest accuracy of kept answers, and the one with the lowest coverage."""
    done = [u for u in users if "skipped" not in u]
    out: dict[str, Any] = {"accuracy_kept": None, "coverage": None}
    scored = [u for u in done if u.get("accuracy_kept") is not None]
    if scored:
        w = min(scored, key=lambda u: (u["accuracy_kept"], u.get("coverage") or 0.0))
        out["accuracy_kept"] = {"user": w["user"], "value": w["accuracy_kept"], "coverage": w.get("coverage")}
    if done:
        w = min(done, key=lambda u: (u.get("coverage") or 0.0, u["user"]))
        out["coverage"] = {"user": w["user"], "value": w.get("coverage"), "accuracy_kept": w.get("accuracy_kept")}
    return out


def _worst_first(u: dict) -> tuple:
    if "skipped" in u:
        return (2, 0.0, 0.0, u["user"])
    acc = u.get("accuracy_kept")
    return (0 if acc is not None else 1, acc if acc is not None else 0.0, u.get("coverage") or 0.0, u["user"])


def _mean(values: list) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def evaluate_dir(data_dir: str | Path, max_train_per_calendar: Optional[int] = None, *,
                 cfg: Optional[TrainConfig] = None, family: Optional[str] = None,
                 users: Optional[Sequence[str]] = None, progress: Optional[Callable] = None) -> dict:
    """Evaluate every user of ``data_dir``. Returns ``{"overall", "mean_of_users", "users",
    "settings"}`` (JSON-serialisable). ``progress(items, total, label)`` wraps the loop over users
    (``calroute_dev.text.progress``: a progress bar on a terminal)."""
    cfg = cfg or TrainConfig()
    if family:
        cfg = replace(cfg, family=family)
    if max_train_per_calendar is not None and max_train_per_calendar < 1:
        raise ValueError("--max-train-per-calendar must be at least 1")
    loaded = load_users(data_dir)
    if users:
        missing = [u for u in users if u not in loaded]
        if missing:
            raise ValueError(f"no data for user(s) {', '.join(missing)} in {data_dir}")
        loaded = {u: loaded[u] for u in users}
    pairs = list(loaded.items())
    if progress is not None:
        pairs = progress(pairs, len(pairs), "evaluate")
    results = [evaluate_user(u, evs, cfg, max_train_per_calendar) for u, evs in pairs]
    done = [r for r in results if "skipped" not in r]
    kept = np.concatenate([r["kept"] for r in done]) if done else np.zeros(0, bool)
    labels = sorted({f"{r['user']}/{lab}" for r in done for lab in r["labels"]})
    # pooled macro-F1 over (user, calendar) pairs: calendars of different users are different classes
    yq = np.asarray([f"{r['user']}/{v}" for r in done for v in r["y"]], dtype=object)
    pq = np.asarray([f"{r['user']}/{v}" for r in done for v in r["pred"]], dtype=object)
    overall = _scores(yq, pq, kept, labels) if done else {"test_events": 0}
    overall.update(threshold=_mean([r["threshold"] for r in done]),
                   train_seconds=float(sum(r["train_seconds"] for r in done)), users=len(done))
    if done:
        pooled_score = np.concatenate([r["score"] for r in done])
        overall["aurc"] = aurc(pooled_score, yq == pq) if len(yq) else None
    mean = {k: _mean([r.get(k) for r in done]) for k in KEYS}
    users_out = [{k: v for k, v in r.items() if k not in ("y", "pred", "kept", "labels", "confidence", "score")} for r in results]
    return {
        "overall": overall,
        "mean_of_users": mean,
        "worst_user": worst_users(users_out),
        "users": users_out,
        "settings": {"family": cfg.family, "max_train_per_calendar": max_train_per_calendar,
                     "train_fraction": TRAIN_FRACTION, "target_precision": cfg.target_precision,
                     "risk_delta": cfg.risk_delta},
    }
