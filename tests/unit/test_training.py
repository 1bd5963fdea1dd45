"""Training core: gates, time-ordered folds, the threshold rule, metrics, holdout, determinism,
calendar profiles."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from calroute.config import Settings
from calroute.errors import GateFailed
from calroute.features import featurize
from calroute.profiles import build_profiles, describe_profile
from calroute.runtime import OnnxModel
from calroute.schema import parse_event
from calroute.training import (
    CalendarClassifier,
    TrainConfig,
    check_gates,
    choose_threshold,
    time_blocks,
    train_user_model,
)

VERSION = "v20260101000000-abcdef"
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)

# calendar -> (titles, hour, weekdays, location)
_KINDS = {
    "work": (["Team standup", "Sprint planning", "Design review", "1:1 with manager"], 9, (0, 1, 2, 3, 4), "Office"),
    "gym": (["Gym workout", "Yoga class", "Running club", "Swim session"], 19, (0, 2, 4), "Fitness centre"),
    "family": (["Dinner with family", "Kids football", "Grandma visit", "Birthday party"], 13, (5, 6), ""),
}


def synthetic_flat(per_calendar: int = 30, calendars=("work", "gym", "family"), seed: int = 1) -> list[dict]:
    """Deterministic, learnable flat events: each calendar has its own titles, hours and days."""
    rng = random.Random(seed)
    out = []
    base = datetime(2025, 1, 6, tzinfo=timezone.utc)  # a Monday
    for cal in calendars:
        titles, hour, days, loc = _KINDS[cal]
        for i in range(per_calendar):
            day = base + timedelta(weeks=i // len(days), days=days[i % len(days)])
            start = day.replace(hour=hour + rng.choice((0, 0, 1)), minute=rng.choice((0, 30)))
            out.append({
                "event_id": f"{cal}-{i:03d}",
                "summary": f"{rng.choice(titles)} {rng.choice(('', 'weekly', 'notes'))}".strip(),
                "location": loc,
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=rng.choice((30, 60, 90)))).isoformat(),
                "calendar_id": cal,
            })
    return out


def synthetic_events(**kw):
    return [parse_event(e) for e in synthetic_flat(**kw)]


# ----------------------------------------------------------------------------- gates


def test_gate_reasons():
    cfg = TrainConfig(min_events=50, min_per_calendar=10)
    ok, why = check_gates(synthetic_events(per_calendar=4), cfg)
    assert not ok and why == "needs at least 50 labelled events (has 12)"
    evs = synthetic_events(per_calendar=60, calendars=("work",)) + synthetic_events(per_calendar=3, calendars=("family",))
    ok, why = check_gates(evs, cfg)
    assert not ok and why == "needs at least 2 calendars with 10+ events each (work: 60, family: 3)"
    ok, why = check_gates(synthetic_events(per_calendar=20), cfg)
    assert ok and why == "ok: 60 events in 3 calendars"


def test_unlabelled_events_do_not_count():
    evs = [e.model_copy(update={"calendar_id": None}) for e in synthetic_events(per_calendar=30)]
    ok, why = check_gates(evs, TrainConfig())
    assert not ok and "(has 0)" in why


def test_train_raises_gate_failed_with_reason():
    with pytest.raises(GateFailed, match="needs at least 10 labelled events"):
        train_user_model(synthetic_events(per_calendar=3, calendars=("work", "gym")), TrainConfig(), user_id="u1",
                         version=VERSION)


def test_default_gates_are_two_calendars_with_five_user_labels_each():
    cfg = TrainConfig.from_settings(Settings())
    assert (cfg.min_events, cfg.min_calendars, cfg.min_per_calendar) == (10, 2, 5)
    ok, why = check_gates(synthetic_events(per_calendar=5, calendars=("work", "gym")), cfg)
    assert ok and why == "ok: 10 events in 2 calendars"
    ok, why = check_gates(synthetic_events(per_calendar=20, calendars=("work",))
                          + synthetic_events(per_calendar=4, calendars=("gym",)), cfg)
    assert not ok and why == "needs at least 2 calendars with 5+ events each (work: 20, gym: 4)"


def test_config_from_settings():
    cfg = TrainConfig.from_settings(Settings(min_events=20, target_precision=0.9, model_family="sgd"))
    assert (cfg.min_events, cfg.target_precision, cfg.family) == (20, 0.9, "sgd")
    assert TrainConfig.from_settings(Settings()).family == "logreg"
    with pytest.raises(ValueError, match="unknown model family"):
        TrainConfig(family="forest")


# ----------------------------------------------------------------------------- folds and threshold


def test_time_blocks_are_per_calendar_and_ordered():
    labels = ["a"] * 10 + ["b"] * 5
    blocks = time_blocks(labels, 5)
    assert blocks[:10].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert blocks[10:].tolist() == [0, 1, 2, 3, 4]


def _cfg(**kw):
    return TrainConfig(**kw)


def test_threshold_stops_before_the_band_with_errors():
    # 100 confident correct rows, then a band at 0.6 with 10 errors in 50, then 50 correct at 0.5
    conf = np.r_[np.full(100, 0.95), np.full(50, 0.6), np.full(50, 0.5)]
    ok = np.r_[np.ones(100), np.r_[np.zeros(10), np.ones(40)], np.ones(50)].astype(bool)
    t, why = choose_threshold(conf, ok, _cfg(target_precision=0.95))
    assert t == pytest.approx(0.95) and why.startswith("certified: 100/200")
    # a looser target (20% error allowed) certifies the 0.6 band too, and then the 0.5 one
    t, _ = choose_threshold(conf, ok, _cfg(target_precision=0.8))
    assert t == pytest.approx(0.5)


def test_few_rows_mean_a_higher_threshold_never_the_floor():
    """The same model (2% errors at score 0.7, none at 0.99), seen through fewer out-of-fold rows,
    must keep less: 400 + 400 rows certify the 0.7 band, 50 + 50 rows do not."""
    def rows(n):
        conf = np.r_[np.full(n, 0.99), np.full(n, 0.7)]
        ok = np.ones(2 * n, bool)
        ok[n::50] = False  # one error in every 50 rows of the 0.7 band
        return conf, ok

    t_many, why_many = choose_threshold(*rows(400), _cfg())
    t_few, why_few = choose_threshold(*rows(50), _cfg())
    assert t_many == pytest.approx(0.7) and why_many.startswith("certified: 800/800 ")
    assert t_few == pytest.approx(0.99) and why_few.startswith("certified: 50/100 ")
    # below the 45 rows a zero-error band needs (0.95^45 <= 0.1), nothing is certified: threshold 1.0
    for n in (10, 44):
        t, why = choose_threshold(np.full(n, 0.99), np.ones(n, bool), _cfg())
        assert t == 1.0 and why.startswith(f"uncertified: {n} out-of-fold rows")
    t, _ = choose_threshold(np.full(45, 0.99), np.ones(45, bool), _cfg())
    assert t == pytest.approx(0.99)


def test_a_threshold_is_written_rounded_up():
    from calroute.training import _round_up

    assert _round_up(0.3630354) == 0.363036 and _round_up(0.3630356) == 0.363036
    assert _round_up(0.5) == 0.5 and _round_up(1.0) == 1.0 and _round_up(0.1234567, 4) == 0.1235
    for v in np.random.default_rng(1).random(200):
        assert v <= _round_up(v) <= v + 1e-6


def test_threshold_uncertified_when_the_top_band_errs_or_scores_are_below_the_floor():
    t, why = choose_threshold(np.linspace(0.5, 1, 60), np.zeros(60, bool), _cfg())
    assert t == 1.0 and why.startswith("uncertified: the 45 most confident")
    t, why = choose_threshold(np.linspace(0.1, 0.25, 60), np.ones(60, bool), _cfg())
    assert t == 1.0 and "floor" in why


def test_threshold_guarantee_holds_over_repeated_draws():
    """Learn-then-Test's promise, checked by simulation: over many users drawn from a model whose
    accuracy falls with the score, the chosen threshold's *true* error exceeds α in at most δ of
    them (here: the error of p(correct | s) = s averaged over the kept scores)."""
    from calroute.risk import choose_threshold_ltt

    rng = np.random.default_rng(7)
    alpha, delta, violations, trials = 0.05, 0.1, 0, 400
    grid = np.linspace(0.0, 1.0, 20001)
    for _ in range(trials):
        s = rng.uniform(0.6, 1.0, 150)
        ok = rng.uniform(size=150) < s
        b = choose_threshold_ltt(s, ok, alpha=alpha, delta=delta)
        if b.certified:
            kept = grid[(grid >= b.threshold) & (grid >= 0.6)]
            true_err = float(np.mean(1 - kept))
            violations += true_err > alpha
            assert b.upper_bound <= alpha + 1e-9
    assert violations / trials <= delta


# ----------------------------------------------------------------------------- train_user_model


@pytest.fixture(scope="module")
def trained():
    return train_user_model(synthetic_events(per_calendar=30), TrainConfig(), user_id="u1", version=VERSION, now=NOW)


def test_trained_model_metrics_and_metadata(trained):
    m = trained.metrics
    for key in ("train_accuracy", "cv_accuracy", "macro_f1", "per_calendar", "coverage_at_threshold",
                "accuracy_at_threshold", "n_events", "n_calendars", "train_seconds", "family", "holdout_accuracy"):
        assert key in m
    assert m["n_events"] == 90 and m["n_calendars"] == 3 and m["family"] == "logreg"
    assert m["train_accuracy"] == 1.0 and m["cv_accuracy"] >= 0.9
    assert set(m["per_calendar"]) == {"family", "gym", "work"}
    assert set(m["per_calendar"]["gym"]) == {"precision", "recall", "support"}
    assert 0.30 <= trained.threshold <= 0.99
    assert trained.labels == ["family", "gym", "work"]
    assert trained.parity["passed"] and trained.parity["rows"] == 90
    json.dumps(m)  # JSON-serialisable
    model = OnnxModel.from_bytes(trained.onnx_bytes, expected_sha256=trained.sha256)
    assert model.labels == trained.labels
    # written to 6 decimals, rounded up: serving never admits a score the certified threshold did not
    assert trained.threshold <= model.threshold <= trained.threshold + 1e-6
    assert model.metadata["calroute.user"] == "u1" and model.version == VERSION
    assert model.metadata["calroute.trained_at"] == NOW.isoformat()


def test_holdout_is_last_fifth_of_each_calendar(trained):
    ids = set(trained.holdout_event_ids)
    assert len(ids) == 18  # 6 of each calendar's 30
    for cal in ("work", "gym", "family"):
        assert {f"{cal}-{i:03d}" for i in range(24, 30)} <= ids
    assert 0.0 <= trained.metrics["holdout_accuracy"] <= 1.0


def test_parity_fixture_matches_onnx(trained):
    model = OnnxModel.from_bytes(trained.onnx_bytes)
    assert trained.parity_X.dtype == np.float32
    assert np.allclose(model.predict_proba(trained.parity_X), trained.parity_proba, atol=1e-4)


def test_determinism_same_events_same_probabilities(trained):
    evs = synthetic_events(per_calendar=30)
    again = train_user_model(list(reversed(evs)), TrainConfig(), user_id="u1", version=VERSION, now=NOW)
    X = featurize(evs)
    p1 = OnnxModel.from_bytes(trained.onnx_bytes).predict_proba(X)
    p2 = OnnxModel.from_bytes(again.onnx_bytes).predict_proba(X)
    assert np.array_equal(p1, p2)
    assert again.threshold == trained.threshold


def test_classifier_reads_like_an_estimator():
    evs = synthetic_events(per_calendar=15)
    X, y = featurize(evs), [e.calendar_id for e in evs]
    clf = CalendarClassifier(family="gb_dense")
    assert not hasattr(clf, "classes_")
    clf.fit(X, y)
    assert clf.classes_.tolist() == ["family", "gym", "work"] and clf.n_features_in_ == X.shape[1]
    assert clf.predict_proba(X).shape == (45, 3) and (clf.predict(X) == np.asarray(y)).mean() > 0.9
    with pytest.raises(ValueError):
        CalendarClassifier().fit(X[:5], ["a"] * 5)


def test_dense_scale_is_folded_into_weights():
    evs = synthetic_events(per_calendar=15)
    X, y = featurize(evs), [e.calendar_id for e in evs]
    clf = CalendarClassifier(dense_scale=0.1).fit(X, y)
    # the exported estimator on raw X equals the model fitted on scaled X
    Xs = X.copy()
    Xs[:, :14] *= 0.1
    from sklearn.linear_model import LogisticRegression

    from scipy import sparse

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        ref = LogisticRegression(C=clf.C, class_weight="balanced", max_iter=3000, tol=1e-4).fit(sparse.csr_matrix(Xs), y)
    assert np.allclose(clf.predict_proba(X), ref.predict_proba(Xs), atol=1e-3)
    unscaled = CalendarClassifier(dense_scale=1.0).fit(X, y)
    assert not np.allclose(unscaled.estimator_.coef_, clf.estimator_.coef_)


# ----------------------------------------------------------------------------- profiles


def test_profiles_are_small_readable_json():
    profiles = build_profiles(synthetic_events(per_calendar=30))
    assert list(profiles) == ["family", "gym", "work"]
    work = profiles["work"]
    assert work["count"] == 30 and work["places"] == ["Office"]
    assert set(work["weekdays"]) <= {"Mon", "Tue", "Wed", "Thu", "Fri"} and len(work["top_terms"]) <= 8
    assert work["hours"][0] in (9, 10)
    assert json.loads(json.dumps(profiles)) == profiles
    line = describe_profile(work)
    assert "\n" not in line and line.startswith("30 events") and "Office" in line
    assert "Sat" in describe_profile(profiles["family"]) or "Sun" in describe_profile(profiles["family"])
    assert build_profiles([]) == {}


def test_the_trainer_keeps_only_the_most_recent_max_train_events():
    """TrainConfig.max_train_events: a model trained on more events learns from the newest only."""
    from calroute.training import TrainConfig as _TC, train_user_model as _train
    from support.models import make_events

    events = make_events(("home", "work"), 60)  # 120 events
    trained = _train(events, _TC(max_train_events=80, min_events=20), user_id="alice",
                     version="v20261201000000-000001")
    assert trained.metrics["n_events"] == 80
    newest = {e.event_id for e in sorted(events, key=lambda e: e.start)[-80:]}
    assert set(trained.holdout_event_ids) <= newest
