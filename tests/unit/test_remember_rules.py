"""Classify and remember, rule by rule (calroute.services.predict.PredictService: ``_remember``,
``_check_rememberable``, ``remember_setting``; the mutation target ``services.predict (remember)``):
which answers are kept and with what provenance and meta, what the profile counts, what a failure
reports — against the in-memory stores."""

from __future__ import annotations

import pytest

from calroute import wiring
from calroute.config import Settings
from calroute.errors import InvalidInput
from calroute.ids import hashed_user
from calroute.schema import parse_event
from support.fakes import Recorder, fake_stores

CFG = Settings(prediction_log_sample_rate=0, prediction_log_lines=False)


class Warnings:
    def __init__(self):
        self.seen: list[tuple[str, dict]] = []

    def warning(self, msg, extra=None):
        self.seen.append((msg, extra))


def service(stores=None, **kw):
    stores = stores or fake_stores()
    rec = Recorder()
    svc = wiring.predict_service(CFG, stores=stores, sink=rec, invoker=None, lines=None)
    svc.logger = Warnings()
    for k, v in kw.items():
        setattr(svc, k, v)
    return svc, stores, rec


def ev(eid, summary="Standup"):
    return parse_event({"event_id": eid, "summary": summary, "start": "2026-03-03T10:00:00Z"})


def answer(cal, method, alts=(), novelty=0.1, confidence=0.7, version="v1"):
    return {"calendar_id": cal, "method": method, "alternatives": [{"calendar_id": c, "probability": p} for c, p in alts],
            "novelty": novelty, "confidence": confidence, "model_version": version}


def test_each_answering_method_is_kept_with_its_provenance_and_others_are_not():
    svc, stores, rec = service()
    events = [ev(f"e{i}") for i in range(7)] + [parse_event({"summary": "no id", "start": "2026-03-03T10:00:00Z"})]
    results = [answer("work", "ml"), answer("work", "llm"), answer("home", "llm_only"), answer("home", "only_calendar"),
               answer(None, "none"), answer("work", "ml_low_confidence"), answer("work", "llm_declined"),
               answer("work", "ml")]
    svc._remember("alice", events, results)
    kept = {s.event.event_id: (s.provenance, s.event.calendar_id) for s in stores.events.list_stored("alice")}
    assert kept == {"e0": ("ml", "work"), "e1": ("llm", "work"), "e2": ("llm", "home"), "e3": ("sole", "home")}
    assert [r["remembered"] for r in results] == [True] * 4 + [False] * 4
    assert rec.metrics == [("Remembered", "Count", 4)]


def test_the_meta_is_the_answers_margin_novelty_confidence_and_version():
    svc, stores, _ = service()
    svc._remember("alice", [ev("a"), ev("b"), ev("c"), ev("d")], [
        answer("work", "llm", alts=[("work", 0.712345), ("home", 0.2), ("gym", 0.05)]),
        answer("work", "llm", alts=[("work", 0.6), ("home", 0.4)]),
        answer("work", "ml", alts=[("work", 0.9)], novelty=None, confidence=0.9, version=None),
        answer("home", "only_calendar", alts=(), novelty=0.0, confidence=1.0)])
    meta = {s.event.event_id: s.meta for s in stores.events.list_stored("alice")}
    assert meta["a"] == {"method": "llm", "margin": 0.5123, "novelty": 0.1, "confidence": 0.7, "model_version": "v1"}
    assert meta["b"]["margin"] == 0.2  # two alternatives: the top two
    assert meta["c"] == {"method": "ml", "margin": 0.9, "confidence": 0.9}  # one alternative: margin over 0; None dropped
    assert meta["d"] == {"method": "only_calendar", "novelty": 0.0, "confidence": 1.0, "model_version": "v1"}  # no model


def test_new_events_are_counted_per_calendar_and_sole_labels_as_labels():
    svc, stores, _ = service()
    svc._remember("alice", [ev("a"), ev("b"), ev("c"), ev("d")],
                  [answer("work", "ml"), answer("work", "llm"), answer("home", "only_calendar"),
                   answer("home", "only_calendar")])
    p = stores.users.profile("alice")
    assert (p["events_total"], p["calev#work"], p["calev#home"], p["labels_total"]) == (4, 2, 2, 2)
    # the same ids again, one of them new: only the new one counts
    svc._remember("alice", [ev("a"), ev("e")], [answer("work", "ml"), answer("work", "llm")])
    p = stores.users.profile("alice")
    assert (p["events_total"], p["calev#work"], p["calev#home"], p["labels_total"]) == (5, 3, 2, 2)


def test_nothing_new_bumps_nothing():
    calls = []

    class Users:
        def bump(self, user_id, **kw):
            calls.append((user_id, kw))

    svc, stores, _ = service()
    svc.users = Users()
    svc._remember("alice", [ev("a")], [answer("work", "llm")])
    assert calls == [("alice", {"events": 1, "calendars": {"work": 1}, "labels": 0})]
    svc._remember("alice", [ev("a")], [answer("home", "llm")])  # stored before: relabelled, not new
    assert len(calls) == 1
    assert stores.events.get_stored("alice", "a").event.calendar_id == "home"


def test_a_failed_write_is_a_metric_and_a_warning_never_an_error():
    class Broken:
        def remember(self, user_id, answers):
            raise RuntimeError("down")

    svc, _, rec = service()
    svc.events = Broken()
    results = [answer("work", "llm")]
    svc._remember("alice", [ev("a")], results)
    assert results[0]["remembered"] is False
    assert rec.metrics == [("RememberFailures", "Count", 1)]
    assert svc.logger.seen == [("remember failed", {"user": hashed_user("alice"), "error": "RuntimeError"})]


def test_remember_needs_an_event_store_and_event_ids():
    svc, _, _ = service()
    svc._check_rememberable([ev("a"), ev("b")])  # fine
    with pytest.raises(InvalidInput) as err:
        svc._check_rememberable([parse_event({"summary": "x", "start": "2026-03-03T10:00:00Z"})])
    assert (err.value.message, err.value.field) == (
        "event: remember needs an event_id (events are remembered by id)", "event.event_id")
    with pytest.raises(InvalidInput) as err:
        svc._check_rememberable([ev("a"), parse_event({"summary": "x", "start": "2026-03-03T10:00:00Z"})])
    assert (err.value.message, err.value.field) == (
        "events[1]: remember needs an event_id (events are remembered by id)", "events[1].event_id")
    svc.events = None
    with pytest.raises(InvalidInput) as err:
        svc._check_rememberable([ev("a")])
    assert (err.value.message, err.value.field) == ("remember is not available here (no event store wired)", "remember")


def test_without_a_settings_view_the_setting_is_off():
    svc, stores, _ = service()
    stores.users.put_settings("alice", {"remember": True})
    assert svc.remember_setting("alice") is True
    svc.settings = None
    assert svc.remember_setting("alice") is False
