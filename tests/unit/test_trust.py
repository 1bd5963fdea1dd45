"""The trust promise on a real user (the demo user's public calendars, data/users/d1_student): the
threshold is certified, few rows raise it, novel events and events of calendars the model has not
met are deferred with their reason, the LLM's answer is checked at the boundary, and a model of
feature spec 1 keeps being served. Service-level: in-memory registry/store/directory, no AWS."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from calroute.adapters.invoke import CallableInvoker
from calroute.cache import ModelCache
from calroute.calendars import CalendarDirectory, calendar_words, may_belong_to_unmet, unmet_calendars
from calroute.config import Settings
from calroute.errors import ModelIntegrityError
from calroute_dev.evaluation import load_ics_dir, split_events
from calroute.features import featurize
from calroute.novelty import NoveltyIndex, routing_score
from calroute.policy import StaticFlags, decide
from calroute.runtime import OnnxModel
from calroute.schema import CalendarInfo, parse_event
from calroute.services.predict import PredictService
from calroute.training import TrainConfig, train_user_model
from support.models import build_onnx, version

ROOT = Path(__file__).resolve().parents[2]
VERSION = "v20261201000000-000001"


@pytest.fixture(scope="module")
def d1():
    events = load_ics_dir(ROOT / "data" / "users" / "d1_student")
    train, test = split_events(events)
    trained = train_user_model(train, TrainConfig(), user_id="d1_student", version=VERSION)
    return train, test, trained


class Store:
    def __init__(self):
        self.objects = {}

    def put(self, key, data):
        self.objects[key] = data
        return key, hashlib.sha256(data).hexdigest()

    def get(self, key, sha256=None):
        data = self.objects.get(key)
        if data is None or (sha256 and hashlib.sha256(data).hexdigest() != sha256):
            raise ModelIntegrityError("missing or tampered")
        return data


class Registry:
    def __init__(self):
        self.pointers = {}

    def active(self, user_id, consistent=False):
        return self.pointers.get(user_id)


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _service(data: bytes, *, calendars=None, llm=None, clock=None, spec=2, threshold=None):
    store, reg = Store(), Registry()
    key, sha = store.put("models/d1_student/v.onnx", data)
    reg.pointers["d1_student"] = {"version": VERSION, "s3_key": key, "sha256": sha, "feature_spec": spec,
                                  **({"threshold": threshold} if threshold is not None else {})}
    cache = ModelCache(reg, store, max_bytes=64 << 20, max_models=10)
    directory = None
    if calendars is not None:
        directory = CalendarDirectory(lambda user: list(calendars), ttl=60, clock=clock or Clock())
    invoker = CallableInvoker(llm) if llm else None
    return PredictService(Settings(), cache=cache, invoker=invoker, flags=StaticFlags(True), calendars=directory)


def test_threshold_is_certified_and_recorded(d1):
    _, _, trained = d1
    risk = trained.metrics["risk"]
    assert risk["certified"] and risk["method"] == "ltt-fixed-sequence-binomial"
    assert risk["upper_bound"] <= 1 - TrainConfig().target_precision and risk["delta"] == 0.1
    assert risk["kept"] >= 45 and risk["rows"] == trained.metrics["oof_rows"]
    model = OnnxModel.from_bytes(trained.onnx_bytes, expected_sha256=trained.sha256)
    assert model.feature_spec == 2 and model.novelty is not None and trained.threshold <= model.threshold <= trained.threshold + 1e-6


def test_a_small_out_of_fold_set_raises_the_threshold(d1):
    train, _, trained = d1
    by_cal: dict[str, list] = {}
    for e in train:
        by_cal.setdefault(e.calendar_id, []).append(e)
    few = [e for evs in by_cal.values() for e in evs[:12]]  # 48 events: 36 out-of-fold rows < 45
    small = train_user_model(few, TrainConfig(min_events=10, min_per_calendar=5), user_id="d1_student",
                             version=VERSION)
    assert small.threshold == 1.0 > trained.threshold
    assert not small.metrics["risk"]["certified"] and small.metrics["risk"]["why"].startswith("uncertified: 36 ")


def test_time_tokens_send_a_hockey_game_to_hockey(d1):
    """Every hockey game starts 20:20 and is titled "SUI – FIN": the README's example at that time
    goes to hockey with spec 2 (spec 1 sent it to the holidays calendar)."""
    _, _, trained = d1
    model = OnnxModel.from_bytes(trained.onnx_bytes)
    ev = parse_event({"summary": "Switzerland vs Finland", "start": "2026-02-12T20:20:00+01:00",
                      "end": "2026-02-12T22:50:00+01:00"})
    p = model.predict_proba(featurize([ev]))[0]
    assert model.labels[int(np.argmax(p))] == "swiss_hockey_men_2025_26"


def test_novel_event_is_deferred_with_its_reason(d1):
    train, _, trained = d1
    asked = []
    svc = _service(trained.onnx_bytes, llm=lambda payload: asked.append(payload) or {
        "calendar_id": "protestant_holidays", "reason": "llm says so"})
    # a known title: the model answers; the same time slot with words it never saw: deferred as novel
    known = next(e for e in train if e.calendar_id == "swiss_hockey_men_2025_26")
    flat = known.to_flat()
    flat.pop("calendar_id")
    ok = svc.classify("d1_student", {**flat, "event_id": "known"})
    assert ok["method"] == "ml" and ok["reason"] == "confident" and ok["novelty"] == 0.0
    assert ok["defer_reason"] is None
    novel = svc.classify("d1_student", {**flat, "event_id": "novel", "summary": "Qwxv Plorbington Zzyzx"})
    assert novel["novelty"] >= 0.9 and novel["method"] == "llm" and len(asked) == 1
    assert novel["reason"] == "llm says so" and novel["calendar_id"] == "protestant_holidays"
    conf = novel["alternatives"][0]["probability"]
    # the time slot alone makes the model confident: novelty is why it defers
    assert conf >= trained.threshold > routing_score(conf, novel["novelty"])
    assert novel["defer_reason"] == "novel_event"
    low = svc.classify("d1_student", {"event_id": "low", "summary": "Qwxv", "start": "2026-03-04T03:17:00Z"})
    assert low["defer_reason"] in ("low_confidence", "novel_event") and low["method"] == "llm"


def test_novel_event_without_llm_says_why():
    d = decide(top_prob=routing_score(0.97, 1.0), threshold=0.9, llm_available=False, confidence=0.97,
               llm_unavailable_reason="llm_not_configured")
    assert (d.method, d.reason) == ("ml_low_confidence", "novel_event+llm_not_configured")
    d = decide(top_prob=0.99, threshold=1.0, llm_available=True, confidence=0.99)
    assert (d.method, d.reason) == ("llm", "uncertified_model")  # threshold 1.0: nothing certified
    d = decide(top_prob=1.0, threshold=1.0, llm_available=False, confidence=1.0)
    assert d.method == "ml_low_confidence"  # a float32 probability of exactly 1.0 is still not kept


def test_new_gym_calendar_gets_gym_events_through_the_llm_within_a_minute(d1):
    _, _, trained = d1
    clock = Clock()
    cals = [CalendarInfo(calendar_id=c) for c in trained.labels]
    svc = _service(trained.onnx_bytes, calendars=cals, clock=clock,
                   llm=lambda payload: {"calendar_id": "gym", "reason": "a workout"})
    gym_event = {"event_id": "g1", "summary": "Gym: leg day workout", "start": "2026-03-04T18:00:00+01:00",
                 "end": "2026-03-04T19:00:00+01:00"}
    before = svc.classify("d1_student", gym_event)
    assert before["calendar_id"] != "gym"  # the model cannot answer gym; the LLM said gym but it is not a calendar yet
    cals.append(CalendarInfo(calendar_id="gym", name="Gym", description="Workouts and weights at the gym"))
    clock.t += 61  # the directory revalidates within a minute
    after = svc.classify("d1_student", {**gym_event, "event_id": "g2"})
    assert (after["method"], after["calendar_id"]) == ("llm", "gym")
    # an event unrelated to gym still gets the model's confident answer
    hockey = svc.classify("d1_student", {"event_id": "h", "summary": "SUI – FIN",
                                         "start": "2026-02-12T20:20:00+01:00", "end": "2026-02-12T22:50:00+01:00"})
    assert hockey["method"] == "ml" and hockey["calendar_id"] == "swiss_hockey_men_2025_26"


def test_unmet_calendar_matching():
    unmet = unmet_calendars([CalendarInfo(calendar_id="gym", description="weights"),
                             CalendarInfo(calendar_id="work")], ["work"])
    assert unmet == {"gym": calendar_words("gym", "", "weights")}
    assert may_belong_to_unmet(parse_event({"summary": "Weights session", "start": "2026-01-01T10:00:00Z"}),
                               unmet, 0.0) == "gym"
    plain = parse_event({"summary": "Team sync", "start": "2026-01-01T10:00:00Z"})
    assert may_belong_to_unmet(plain, unmet, 0.1) is None
    assert may_belong_to_unmet(plain, unmet, 0.9) == "*"  # novel enough to be anyone's
    assert may_belong_to_unmet(plain, {}, 1.0) is None


def test_llm_answer_outside_the_users_calendars_is_refused(d1):
    _, _, trained = d1
    svc = _service(trained.onnx_bytes, calendars=[CalendarInfo(calendar_id=c) for c in trained.labels],
                   llm=lambda payload: {"calendar_id": "someone-elses-calendar", "reason": "made up"})
    r = svc.classify("d1_student", {"event_id": "x", "summary": "Qwxv Plorbington", "start": "2026-03-04T03:00:00Z"})
    assert r["method"] == "ml_low_confidence" and r["reason"] == "llm_invalid_answer"
    assert r["calendar_id"] in trained.labels


def test_a_feature_spec_1_model_is_still_served():
    data = build_onnx(("work", "home"), model_version=version(1), user="d1_student", spec=1, threshold=0.6)
    svc = _service(data, spec=1)
    r = svc.classify("d1_student", {"event_id": "w", "summary": "Sprint standup", "start": "2026-03-03T10:00:00Z"})
    assert r["model_version"] == VERSION and r["novelty"] is None and r["calendar_id"] in ("work", "home")
    assert r["method"] in ("ml", "ml_low_confidence")
    model = OnnxModel.from_bytes(data)
    assert model.feature_spec == 1 and model.novelty is None
    # served with the spec-1 featurizer: the same probabilities as featurizing without time tokens
    ev = parse_event({"summary": "Sprint standup", "start": "2026-03-03T10:00:00Z"})
    p1 = model.predict_proba(featurize([ev], spec=1))[0]
    assert r["confidence"] == pytest.approx(float(p1.max()), abs=1e-4)


def test_novelty_index_round_trip_and_scores():
    evs = [parse_event({"summary": "Data Structures lecture", "start": "2026-03-03T10:00:00Z"})]
    idx = NoveltyIndex.fit(evs)
    back = NoveltyIndex.from_text(idx.to_text())
    assert back.bits == idx.bits and back.n_tokens == idx.n_tokens > 0
    assert back.score(evs[0]) == 0.0
    assert back.score(parse_event({"summary": "Qwxv", "start": "2026-03-03T10:00:00Z"})) == 1.0
    assert back.score(parse_event({"summary": "", "start": "2026-03-03T10:00:00Z"})) == 1.0
    half = back.score(parse_event({"summary": "Data Qwxv", "start": "2026-03-03T10:00:00Z"}))
    assert 0.3 < half < 0.8
    assert back.time_novelty(evs[0]) == 0.0
    assert back.time_novelty(parse_event({"summary": "x", "start": "2026-03-07T23:40:00Z",
                                          "end": "2026-03-08T01:10:00Z"})) == 1.0
    with pytest.raises(ValueError):
        NoveltyIndex.from_text("3:not-base64!")


def test_a_spec_1_champion_is_scored_with_spec_1_features():
    from calroute.services.training.promote import holdout_accuracy
    from support.models import make_events

    model = OnnxModel.from_bytes(build_onnx(("work", "home"), model_version=version(2), spec=1))
    events = make_events(("work", "home"), 12, seed=3)
    P = model.predict_proba(featurize(events, spec=1))
    expected = float(np.mean([model.labels[int(i)] == e.calendar_id for i, e in zip(np.argmax(P, axis=1), events)]))
    assert holdout_accuracy(model, events) == pytest.approx(expected)


def test_calendar_shapes_round_trip_and_anomaly():
    from calroute.novelty import CalendarShapes, shape_tokens

    game = parse_event({"summary": "SUI – FIN", "start": "2026-02-12T20:20:00+01:00",
                        "end": "2026-02-12T22:50:00+01:00", "calendar_id": "hockey"})
    holiday = parse_event({"summary": "Easter", "start": "2026-04-05", "end": "2026-04-06", "all_day": True,
                           "calendar_id": "holidays"})
    assert shape_tokens(game) == ["w3", "dur180", "h20"] and "allday" in shape_tokens(holiday)
    shapes = CalendarShapes.fit([game, holiday])
    back = CalendarShapes.from_text(shapes.to_text())
    assert back.seen == shapes.seen
    assert back.anomaly(game, "hockey") == 0.0
    assert back.anomaly(game, "holidays") == 1.0  # a 20:20 weekday game is nothing like an all-day holiday
    assert back.anomaly(game, "never_trained") == 1.0
    for bad in ("[", "[1]", '{"a": [1]}'):
        with pytest.raises(ValueError):
            CalendarShapes.from_text(bad)
    assert routing_score(0.99, 0.0, anomaly=0.75) == 0.0 and routing_score(0.99, 0.0, anomaly=0.5) == 0.99


def test_an_event_at_a_time_its_calendar_never_had_is_deferred_as_unusual_time(d1):
    """A known hockey title, but all-day on a weekday over a week: the text says hockey, and every
    hockey game is a 2.5-hour evening event — the model defers with ``unusual_time``."""
    train, _, trained = d1
    model = OnnxModel.from_bytes(trained.onnx_bytes)
    assert model.shapes is not None and model.anomaly_veto == pytest.approx(0.75)
    assert trained.metrics["anomaly_oof_vetoed"] is not None
    asked = []
    svc = _service(trained.onnx_bytes, llm=lambda payload: asked.append(payload) or {
        "calendar_id": "swiss_hockey_men_2025_26", "reason": "llm says so"})
    known = next(e for e in train if e.calendar_id == "swiss_hockey_men_2025_26")
    flat = {k: v for k, v in known.to_flat().items() if k not in ("calendar_id", "end", "all_day")}
    odd = svc.classify("d1_student", {**flat, "event_id": "odd", "start": "2026-03-02", "end": "2026-03-10",
                                      "all_day": True})
    assert odd["alternatives"][0]["calendar_id"] == "swiss_hockey_men_2025_26"
    assert odd["anomaly"] >= 0.75 and odd["method"] == "llm" and odd["defer_reason"] == "unusual_time"
    ok = svc.classify("d1_student", {**known.to_flat(), "event_id": "ok", "calendar_id": None})
    assert ok["method"] == "ml" and ok["anomaly"] == 0.0 and len(asked) == 1


def test_unusual_time_without_llm_says_why():
    d = decide(top_prob=0.0, threshold=0.6, llm_available=False, llm_unavailable_reason="llm_not_configured",
               confidence=0.95, anomalous=True)
    assert (d.method, d.reason) == ("ml_low_confidence", "unusual_time+llm_not_configured")
    assert decide(top_prob=0.0, threshold=0.6, llm_available=True, confidence=0.5, anomalous=True).reason \
        == "low_confidence"


def test_the_predict_path_tokenises_a_title_once(d1, monkeypatch):
    """Featurizer and novelty share one tokenisation per event (issue 10 item 7: novelty must cost
    at most ~20 µs): the shared tokens give exactly the features and novelty of tokenising twice,
    and classify never tokenises a title inside the novelty score."""
    import calroute.novelty as novelty_mod
    from calroute.features import spec_tokens

    train, test, trained = d1
    model = OnnxModel.from_bytes(trained.onnx_bytes)
    evs = [e.model_copy(update={"calendar_id": None}) for e in test[:40]]
    toks = [spec_tokens(e) for e in evs]
    assert np.array_equal(featurize(evs, tokens=toks), featurize(evs))
    assert model.novelty_of(evs, toks) == model.novelty_of(evs)
    with pytest.raises(ValueError):
        featurize(evs, tokens=toks[:-1])
    with pytest.raises(ValueError):
        model.novelty_of(evs, toks[:-1])
    first = [model.labels[0]] * len(evs)
    assert model.anomaly_of(evs, first, toks) == model.anomaly_of(evs, first)
    # the shape tokens read off the time tokens are exactly shape_tokens, all-day and multi-day included
    odd = [parse_event({"summary": "x", "start": "2026-03-07", "end": "2026-03-10", "all_day": True}),
           parse_event({"summary": "x", "start": "2026-03-07", "end": "2026-03-08", "all_day": True}),
           parse_event({"summary": "x", "start": "2026-03-07T22:00:00Z", "end": "2026-03-09T01:00:00Z"})]
    for e in [*train, *test, *odd]:
        assert novelty_mod.shape_tokens_of(spec_tokens(e)["k"]) == novelty_mod.shape_tokens(e)
    svc = _service(trained.onnx_bytes)
    expected = [svc.classify("d1_student", {**e.to_flat(), "event_id": f"e{i}"}) for i, e in enumerate(evs[:5])]

    def no_second_tokenisation(text):
        raise AssertionError("novelty tokenised a title the featurizer had already tokenised")

    monkeypatch.setattr(novelty_mod, "words", no_second_tokenisation)
    monkeypatch.setattr(novelty_mod, "shape_tokens", no_second_tokenisation)
    again = [svc.classify("d1_student", {**e.to_flat(), "event_id": f"e{i}"}) for i, e in enumerate(evs[:5])]
    assert [(a["calendar_id"], a["novelty"], a["method"]) for a in again] == \
        [(a["calendar_id"], a["novelty"], a["method"]) for a in expected]
