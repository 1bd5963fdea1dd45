"""Labels with provenance in training: remembered LLM/model labels are trained on with their weight,
never certified on (threshold, calibration, out-of-fold metrics, champion/challenger holdout), and
the gates count the user's own labels only."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from calroute.errors import GateFailed
from calroute.features import featurize
from calroute.training import TrainConfig, label_weights, train_user_model
from test_training import NOW, VERSION, synthetic_events


def _split(events, user_per_calendar):
    """The first ``user_per_calendar`` events of each calendar are the user's, the rest the LLM's."""
    seen: dict[str, int] = {}
    prov = []
    for e in events:
        seen[e.calendar_id] = seen.get(e.calendar_id, 0) + 1
        prov.append("user" if seen[e.calendar_id] <= user_per_calendar else "llm")
    return prov


def test_a_model_is_never_certified_on_llm_labels():
    events = synthetic_events(per_calendar=60, calendars=("work", "gym"))
    cfg = TrainConfig(min_events=10, min_per_calendar=5)
    # all the user's: plenty of out-of-fold rows, certified
    all_user = train_user_model(events, cfg, user_id="u1", version=VERSION, now=NOW)
    assert all_user.metrics["risk"]["certified"] and all_user.threshold < 1.0
    # the same labels, but all except 8 per calendar from the LLM: only the user's rows are scored
    prov = _split(events, 8)
    llm = train_user_model(events, cfg, user_id="u1", version=VERSION, now=NOW, provenance=prov)
    assert llm.metrics["n_events"] == 120 and llm.metrics["labels_by_provenance"] == {"llm": 104, "user": 16}
    trusted = {e.event_id for e, p in zip(events, prov) if p == "user"}
    assert llm.metrics["oof_rows"] <= 16 and llm.metrics["risk"]["rows"] <= 16
    assert not llm.metrics["risk"]["certified"] and llm.threshold == 1.0
    assert set(llm.holdout_event_ids) <= trusted and llm.metrics["holdout_rows"] <= 16


def test_the_gates_count_the_users_labels_only():
    events = synthetic_events(per_calendar=40, calendars=("work", "gym"))
    cfg = TrainConfig(min_events=10, min_per_calendar=5)
    with pytest.raises(GateFailed, match="has 8"):
        train_user_model(events, cfg, user_id="u1", version=VERSION, now=NOW, provenance=_split(events, 4))
    m = train_user_model(events, cfg, user_id="u1", version=VERSION, now=NOW, provenance=_split(events, 5))
    assert m.metrics["gate"].startswith("ok")


def test_confirmed_labels_are_trusted_and_model_labels_weigh_label_weight_ml():
    cfg = TrainConfig(label_weight_llm=0.25, label_weight_ml=0.75)
    w, trusted = label_weights(["user", "confirmed", "sole", "llm", "ml", "unknown"], 6, cfg)
    # a sole label (as resolve_sole_labels left it) is trusted; a provenance nobody wrote weighs 0
    assert w.tolist() == [1.0, 1.0, 1.0, 0.25, 0.75, 0.0]
    assert trusted.tolist() == [True, True, True, False, False, False] and trusted.dtype == bool
    w, trusted = label_weights(None, 3, cfg)
    assert w.tolist() == [1.0] * 3 and trusted.all() and trusted.dtype == bool
    # the mask indexes rows: boolean even with no rows at all
    assert label_weights([], 0, cfg)[1].dtype == bool
    with pytest.raises(ValueError, match="provenance has 1 entries for 2 events"):
        label_weights(["user"], 2, cfg)


def test_a_wrong_llm_label_pulls_the_model_less_the_lower_its_weight():
    events = synthetic_events(per_calendar=30, calendars=("work", "gym"))
    # the LLM answered "work" for every gym event after the 10th: wrong labels
    flipped, prov = [], []
    k = 0
    for e in events:
        if e.calendar_id == "gym":
            k += 1
            if k > 10:
                flipped.append(e.model_copy(update={"calendar_id": "work"}))
                prov.append("llm")
                continue
        flipped.append(e)
        prov.append("user")
    gym = [e for e in events if e.calendar_id == "gym"][10:]
    X = featurize(gym)

    def p_gym(weight):
        from calroute.runtime import OnnxModel

        m = train_user_model(flipped, TrainConfig(min_events=10, min_per_calendar=5, label_weight_llm=weight),
                             user_id="u1", version=VERSION, now=NOW, provenance=prov)
        model = OnnxModel.from_bytes(m.onnx_bytes)
        return float(np.mean(model.predict_proba(X)[:, model.labels.index("gym")]))

    assert p_gym(0.1) > p_gym(1.0) + 0.05


def test_a_label_of_weight_zero_is_no_training_data():
    events = synthetic_events(per_calendar=20, calendars=("work", "gym"))
    prov = ["ml" if i % 3 == 0 else "user" for i in range(len(events))]
    cfg = TrainConfig(min_events=10, min_per_calendar=5, label_weight_ml=0.0)
    m = train_user_model(events, cfg, user_id="u1", version=VERSION, now=NOW, provenance=prov)
    kept = [e for e, p in zip(events, prov) if p == "user"]
    assert m.metrics["n_events"] == len(kept) and m.metrics["labels_by_provenance"] == {"user": len(kept)}
    plain = train_user_model(kept, cfg, user_id="u1", version=VERSION, now=NOW)
    assert np.array_equal(m.parity_proba, plain.parity_proba)


def test_user_labels_only_is_exactly_the_unweighted_model():
    events = synthetic_events(per_calendar=20, calendars=("work", "gym"))
    cfg = TrainConfig(min_events=10, min_per_calendar=5)
    a = train_user_model(events, cfg, user_id="u1", version=VERSION, now=NOW)
    b = train_user_model(events, cfg, user_id="u1", version=VERSION, now=NOW, provenance=["user"] * len(events))
    assert np.array_equal(a.parity_proba, b.parity_proba) and a.threshold == b.threshold


def test_train_user_reads_provenance_from_the_store_and_a_correction_makes_a_label_the_users():
    from calroute.config import Settings
    from calroute.services.ingest import correct_event, ingest_events
    from calroute.services.training.train_user import train_user
    from support.fakes import fake_stores

    stores = fake_stores()
    cfg = Settings(min_events=10, min_per_calendar=5)
    events = synthetic_events(per_calendar=20, calendars=("work", "gym"))
    prov = _split(events, 6)
    ingest_events("alice", [e.to_flat() for e, p in zip(events, prov) if p == "user"], stores, cfg)
    stores.events.remember("alice", [(e, "llm", {"margin": 0.1}) for e, p in zip(events, prov) if p == "llm"])
    out = train_user({"user_id": "alice", "run_id": "r1"}, stores, cfg)
    record = stores.registry.get_version("alice", out["version"])
    assert record["metrics"]["labels_by_provenance"] == {"llm": 28, "user": 12}
    assert record["confident_misses_total_at_training"] == 0  # what the retraining policy compares to
    llm_ids = {e.event_id for e, p in zip(events, prov) if p == "llm"}
    assert not set(record["holdout_event_ids"]) & llm_ids
    from calroute.services.models import ModelsService

    status = ModelsService(stores, cfg).status("alice")
    assert status["labels_by_provenance"] == {"llm": 28, "user": 12} and status["can_train"]["ok"]
    # a correction always wins and removes the LLM label
    eid = next(iter(sorted(llm_ids)))
    correct_event("alice", eid, "gym", stores)
    row = {s.event.event_id: s for s in stores.events.list_stored("alice")}[eid]
    assert row.provenance == "user" and row.event.calendar_id == "gym"


def test_blocks_are_cut_on_trusted_rows_so_the_holdout_always_has_some():
    from calroute.training import time_blocks, trusted_time_blocks

    labels = ["a"] * 10
    assert trusted_time_blocks(labels, np.ones(10, bool), 5).tolist() == time_blocks(labels, 5).tolist()
    # the user's labels first, then only the LLM's: the user's rows are spread over every block
    trusted = np.asarray([True] * 5 + [False] * 5)
    assert trusted_time_blocks(labels, trusted, 5).tolist() == [0, 1, 2, 3, 4, 4, 4, 4, 4, 4]
    events = synthetic_events(per_calendar=60, calendars=("work", "gym"))
    prov = _split(events, 20)  # the last two thirds of each calendar are the LLM's
    m = train_user_model(events, TrainConfig(min_events=10, min_per_calendar=5), user_id="u1", version=VERSION,
                         now=NOW, provenance=prov)
    assert m.metrics["holdout_rows"] == 8 and m.metrics["holdout_accuracy"] is not None  # 4 per calendar


def test_a_failed_remember_never_fails_the_answer():
    from dataclasses import replace

    from calroute import wiring
    from calroute.adapters.invoke import CallableInvoker
    from calroute.config import Settings
    from calroute.errors import ServiceUnavailable
    from calroute.schema import CalendarInfo
    from support.fakes import FakeEventStore, Recorder, fake_stores

    class Throttled(FakeEventStore):
        def remember(self, user_id, answers):
            raise ServiceUnavailable("throttled", retry_after=1)

    stores = fake_stores()
    for cal in ("work", "home"):  # two calendars: the LLM is asked (one would be answered without it)
        stores.users.put_calendar("alice", CalendarInfo(calendar_id=cal, name=cal))
    sink = Recorder()
    svc = wiring.predict_service(Settings(prediction_log_sample_rate=0, prediction_log_lines=False),
                                 stores=replace(stores, events=Throttled()), sink=sink,
                                 invoker=CallableInvoker(lambda p: {"calendar_id": "work", "reason": "r", "usd": 0.0}))
    event = {"event_id": "e1", "summary": "Standup", "start": "2026-03-03T10:00:00Z"}
    r = svc.classify("alice", event, remember=True)
    assert r["method"] == "llm_only" and r["calendar_id"] == "work" and r["remembered"] is False
    assert sink.total("RememberFailures") == 1
    assert stores.users.profile("alice").get("events_total") is None  # nothing counted
    ok = wiring.predict_service(Settings(prediction_log_sample_rate=0, prediction_log_lines=False), stores=stores,
                                invoker=CallableInvoker(lambda p: {"calendar_id": "work", "reason": "r", "usd": 0.0}))
    assert ok.classify("alice", event, remember=True)["remembered"] is True
    assert stores.users.profile("alice")["events_total"] == 1 and stores.events.get_stored("alice", "e1").provenance == "llm"


# ----------------------------------------------------------------------------- the series vote


def _ev(summary):
    return type("E", (), {"summary": summary})()


def test_series_key_groups_a_recurring_title():
    from calroute.training import series_key

    assert series_key(_ev("Lecture 12")) == series_key(_ev("lecture  13")) == "lecture #"
    assert series_key(_ev("CSCB63 Office Hours")) == "cscb# office hours"
    assert series_key(_ev("Office Hours")) != series_key(_ev("Office"))
    assert series_key(_ev("")) is None and series_key(_ev("   ")) is None and series_key(_ev(None)) is None


def test_series_labels_outvote_a_noisy_remembered_label_never_a_trusted_one():
    from calroute.training import series_labels

    y = np.asarray(["a"] * 8 + ["b", "b", "c"])
    keys = ["s"] * 10 + ["t"]
    trusted = np.asarray([False] * 8 + [False, True, False])
    every = np.ones(len(y), dtype=bool)
    got = series_labels(y, keys, trusted, every, 0.75)
    # 8 of the 10 rows of "s" say a (80% ≥ 75%): the remembered b becomes a, the user's b stays
    assert got.tolist() == ["a"] * 8 + ["a", "b", "c"]
    assert series_labels(y, keys, trusted, every, 0.85).tolist() == y.tolist()  # 80% < 85%: unchanged
    assert series_labels(y, keys, trusted, every, 0.0).tolist() == y.tolist()  # off
    # only the given rows vote, and only theirs are returned: with three of the a rows held out,
    # 5 of 7 (71%) is no longer a majority of 75%
    rows = every.copy()
    rows[:3] = False
    assert series_labels(y, keys, trusted, rows, 0.75).tolist() == y[rows].tolist()


def test_series_labels_need_a_few_rows_and_a_title():
    from calroute.training import SERIES_MIN_ROWS, series_labels

    y = np.asarray(["a", "a", "b"])
    assert SERIES_MIN_ROWS == 3
    assert series_labels(y, ["s", "s", "s"], np.zeros(3, bool), np.ones(3, bool), 0.6).tolist() == ["a"] * 3
    assert series_labels(y[:2], ["s", "s"], np.zeros(2, bool), np.ones(2, bool), 0.5).tolist() == ["a", "a"]
    assert series_labels(y, [None] * 3, np.zeros(3, bool), np.ones(3, bool), 0.6).tolist() == ["a", "a", "b"]


def test_out_of_fold_fits_each_fold_on_its_training_rows_labels_only():
    """No held-out row's label reaches a fold's fit: fit_labels only ever sees the fold's rows."""
    from calroute.training import out_of_fold

    y = np.asarray(["a", "b"] * 10)
    X = np.random.default_rng(0).normal(size=(20, 4))
    blocks = np.repeat(np.arange(4), 5)
    seen = []

    def fit_labels(rows):
        seen.append(rows.copy())
        return y[rows]

    class Model:
        def fit(self, X, y, sample_weight=None):
            self.classes_ = np.unique(y)
            return self

        def predict_proba(self, X):
            return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))

    out_of_fold(X, y, blocks, ["a", "b"], Model, fit_labels=fit_labels)
    assert [int(r.sum()) for r in seen] == [5, 10, 15]
    assert all(not (r & (blocks >= k)).any() for k, r in zip((1, 2, 3), seen))


def _noisy_series(n=60, noise_every=6):
    """Two calendars, one recurring title each; the user labels the first 10 of each, the LLM the
    rest, naming the other calendar for one answer in ``noise_every``."""
    events = synthetic_events(per_calendar=n, calendars=("work", "gym"))
    titles = {"work": "Team standup", "gym": "Climbing session"}
    out, prov, seen = [], [], {}
    for e in events:
        seen[e.calendar_id] = seen.get(e.calendar_id, 0) + 1
        k = seen[e.calendar_id]
        e = e.model_copy(update={"summary": titles[e.calendar_id]})
        if k <= 10:
            out.append(e)
            prov.append("user")
            continue
        wrong = k % noise_every == 0
        other = "gym" if e.calendar_id == "work" else "work"
        out.append(e.model_copy(update={"calendar_id": other}) if wrong else e)
        prov.append("llm")
    return events, out, prov


def test_the_series_vote_lifts_the_confidence_a_noisy_llm_caps():
    from calroute.runtime import OnnxModel

    truth, labelled, prov = _noisy_series()
    X = featurize(truth)
    y = np.asarray([e.calendar_id for e in truth])

    def confidence_of_truth(share):
        m = train_user_model(labelled, TrainConfig(min_events=10, min_per_calendar=5, label_series_share=share),
                             user_id="u1", version=VERSION, now=NOW, provenance=prov)
        model = OnnxModel.from_bytes(m.onnx_bytes)
        p = model.predict_proba(X)
        idx = np.asarray([model.labels.index(c) for c in y])
        return m, float(np.mean(p[np.arange(len(y)), idx]))

    voted, with_vote = confidence_of_truth(0.75)
    plain, without = confidence_of_truth(0.0)
    assert voted.metrics["labels_series_relabelled"] == 18 and plain.metrics["labels_series_relabelled"] == 0
    assert with_vote > without + 0.02
    # still certified on the user's own labels only
    assert voted.metrics["oof_rows"] <= 20 and voted.metrics["labels_by_provenance"] == {"llm": 100, "user": 20}


def test_series_labels_exactly_the_share_is_enough_and_a_small_series_skips_only_itself():
    from calroute.training import series_labels

    # a 2-row series first (too small to vote), then 3 of 4 agreeing: exactly 75% relabels
    y = np.asarray(["b", "a", "a", "a", "a", "c"])
    got = series_labels(y, ["small", "small", "s", "s", "s", "s"], np.zeros(6, bool), np.ones(6, bool), 0.75)
    assert got.tolist() == ["b", "a", "a", "a", "a", "a"]


# ----------------------------------------------------------------------------- sole-calendar labels


def _ts(day: int):
    from datetime import datetime, timedelta, timezone

    return datetime(2026, 1, 1, 9, tzinfo=timezone.utc) + timedelta(days=day)


def _at(cal: str, day: int, eid: str):
    from calroute.schema import parse_event

    return parse_event({"event_id": eid, "summary": "x", "start": _ts(day).isoformat(), "calendar_id": cal})


def test_a_sole_label_stands_until_another_calendar_has_a_label_at_or_before_it():
    from calroute.schema import resolve_sole_labels

    events = [_at("work", 0, "a"), _at("work", 5, "b"), _at("gym", 5, "c"), _at("work", 6, "d"), _at("work", 9, "e")]
    assert resolve_sole_labels(events, ["sole", "sole", "user", "sole", "llm"]) == ["sole", "llm", "user", "llm", "llm"]
    # whatever the other calendar's label is (here the LLM's), and in any order of the rows
    assert resolve_sole_labels(events[::-1], ["llm", "sole", "llm", "sole", "sole"]) == ["llm", "llm", "llm", "llm", "sole"]
    # no other calendar: every sole label stands; none at all: the list as it was
    assert resolve_sole_labels(events[:2], ["sole", "sole"]) == ["sole", "sole"]
    assert resolve_sole_labels(events, ["user", "ml", "llm", "confirmed", "user"]) == ["user", "ml", "llm", "confirmed", "user"]
    # two calendars each the only one once (the first deleted, another registered): the later one's
    # sole labels are contradicted by the earlier calendar's, the earlier one's stand
    later = [_at("home", 3, "f"), _at("home", 4, "g")]
    assert resolve_sole_labels(events[:2] + later, ["sole", "sole", "sole", "sole"]) == ["sole", "llm", "llm", "llm"]
    # an unlabelled row is no calendar's evidence
    blank = events[2].model_copy(update={"calendar_id": None})
    assert resolve_sole_labels([events[1], blank], ["sole", "user"]) == ["sole", "user"]
    # "earliest" is by start, not by calendar name: "zoo" was the only calendar, "bus" started a day
    # later (before the sole label on day 3), "art" (first by name) only on day 20
    three = [_at("zoo", 0, "h"), _at("zoo", 3, "i"), _at("bus", 1, "j"), _at("art", 20, "k")]
    assert resolve_sole_labels(three, ["user", "sole", "user", "user"]) == ["user", "llm", "user", "user"]


def _sole_stores(first: str):
    """Work events from day 0, gym's from day 70: the 51 work events before gym's first are
    remembered as ``first`` (``sole``: the user's only calendar then, or ``llm``), 8 of each
    calendar after it are the user's, the rest the LLM's, and one work event after gym's first
    carries a sole label (a client that kept answering ``only_calendar`` with gym unregistered)."""
    from calroute.config import Settings
    from calroute.services.ingest import ingest_events
    from support.fakes import fake_stores

    events = synthetic_events(per_calendar=90, calendars=("work",)) + [
        e.model_copy(update={"start": e.start + timedelta(weeks=10), "end": e.end + timedelta(weeks=10)})
        for e in synthetic_events(per_calendar=30, calendars=("gym",))]
    gym_first = min(e.start_utc for e in events if e.calendar_id == "gym")
    stores, cfg = fake_stores(), Settings(min_events=10, min_per_calendar=5)
    user, remembered, seen = [], [], {"work": 0, "gym": 0}
    for e in sorted(events, key=lambda e: e.start_utc):
        if e.calendar_id == "work" and e.start_utc < gym_first:
            remembered.append((e, first, {"method": "only_calendar"}))
            continue
        seen[e.calendar_id] += 1
        if seen[e.calendar_id] <= 8:
            user.append(e)
        elif seen[e.calendar_id] == 9 and e.calendar_id == "work":
            remembered.append((e, "sole", {"method": "only_calendar"}))
        else:
            remembered.append((e, "llm", {"margin": 0.1}))
    ingest_events("alice", [e.to_flat() for e in user], stores, cfg)
    stores.events.remember("alice", remembered)
    return stores, cfg, [e.event_id for e, p, _ in remembered if p == "sole"]


def test_sole_labels_certify_a_model_the_same_labels_from_the_llm_do_not():
    from calroute.services.models import ModelsService
    from calroute.services.training.train_user import train_user

    records = {}
    for first in ("sole", "llm"):
        stores, cfg, _ = _sole_stores(first)
        out = train_user({"user_id": "alice", "run_id": "r1"}, stores, cfg)
        records[first] = stores.registry.get_version("alice", out["version"])
        status = ModelsService(stores, cfg).status("alice")
        assert status["labels_by_provenance"] == records[first]["metrics"]["labels_by_provenance"]
    sole, llm = records["sole"]["metrics"], records["llm"]["metrics"]
    # the contradicted one (after gym's first event) reads as the LLM's in both
    assert sole["labels_by_provenance"] == {"llm": 53, "sole": 51, "user": 16}
    assert llm["labels_by_provenance"] == {"llm": 104, "user": 16}
    assert sole["oof_rows"] > 45 >= 16 >= llm["oof_rows"]
    assert sole["risk"]["certified"] and records["sole"]["threshold"] < 1.0
    assert not llm["risk"]["certified"] and records["llm"]["threshold"] == 1.0


def test_a_contradicted_sole_label_is_reviewed_and_confirming_a_sole_label_makes_it_confirmed():
    from calroute.services.review import confirm_event, review_queue

    stores, _, sole_ids = _sole_stores("sole")
    contradicted = max(sole_ids, key=lambda i: stores.events.get_stored("alice", i).event.start_utc)
    queue = review_queue("alice", stores, limit=100)
    assert queue["pending"] == 53  # the LLM's 52 and the contradicted sole label
    listed = {e["event_id"] for e in queue["events"]}
    assert contradicted in listed and not (set(sole_ids) - {contradicted}) & listed
    standing = min(sole_ids)
    assert confirm_event("alice", standing, stores) == {
        "event_id": standing, "calendar_id": "work", "provenance": "confirmed", "changed": True}
    assert confirm_event("alice", standing, stores)["changed"] is False
