"""Classify and remember (issue 12 item 2) through the predict handler on moto: the answered event is
stored with its provenance, idempotently, tenant-scoped, counted for the retraining policy; nothing
is stored for none, a declined or over-budget fallback; a user's own label is never overwritten and a
later correction relabels a remembered event as the user's."""

import pytest

from calroute.adapters.dynamo.events import DynamoEventStore
from calroute.adapters.dynamo.usage import DynamoUsageLedger
from calroute.adapters.dynamo.users import DynamoUserStore
from calroute.config import settings
from calroute.schema import parse_event
from calroute.services.ingest import correct_event
from calroute import wiring
from support.fake_llm import answer, fake_llm, status  # noqa: F401  (fake_llm: a fixture)
from support.models import install_model, version
from test_predict import CONFIDENT, UNSURE, predict, with_llm  # noqa: F401  (fixtures)


def _stored(user):
    return {s.event.event_id: s for s in DynamoEventStore(settings().events_table).list_stored(user)}


def test_remember_stores_ml_and_llm_answers_with_provenance_once(predict, with_llm):
    install_model("alice")
    with_llm.behave(answer("home", reason="looks personal"))
    code, body = predict("alice", {"events": [CONFIDENT, UNSURE], "remember": True}, batch=True)
    assert code == 200, body
    conf, unsure = body["results"]
    assert conf["method"] == "ml" and unsure["method"] == "llm"
    assert conf["remembered"] is True and unsure["remembered"] is True
    got = _stored("alice")
    assert got["e-conf"].provenance == "ml" and got["e-conf"].event.calendar_id == "work"
    assert got["e-unsure"].provenance == "llm" and got["e-unsure"].event.calendar_id == "home"
    assert got["e-unsure"].meta["model_version"] == version(1) and "margin" in got["e-unsure"].meta
    assert _stored("bob") == {}
    assert DynamoUserStore(settings().users_table).profile("alice")["events_total"] == 2
    # idempotent by event id: asking again stores nothing new and counts nothing new
    predict("alice", {"events": [CONFIDENT, UNSURE], "remember": True}, batch=True)
    assert len(_stored("alice")) == 2
    assert DynamoUserStore(settings().users_table).profile("alice")["events_total"] == 2


def test_without_remember_nothing_is_stored_and_no_field_is_added(predict, with_llm):
    install_model("alice")
    code, body = predict("alice", {"event": CONFIDENT})
    assert code == 200 and "remembered" not in body and _stored("alice") == {}


def test_nothing_is_stored_for_declined_or_over_budget_answers(predict, with_llm):
    install_model("alice")
    with_llm.behave(status(500))
    code, body = predict("alice", {"event": UNSURE, "remember": True})
    assert code == 200 and body["method"] == "ml_low_confidence" and body["remembered"] is False
    DynamoUsageLedger(settings().usage_table).add("alice", usd=1.0, input_tokens=1, output_tokens=1)
    code, body = predict("alice", {"event": {**UNSURE, "event_id": "e-2"}, "remember": True})
    assert code == 200 and body["reason"] == "budget" and body["remembered"] is False
    assert _stored("alice") == {}


def test_method_none_is_not_stored(predict):
    code, body = predict("alice", {"event": CONFIDENT, "remember": True})
    assert code == 200 and body["method"] == "none" and body["remembered"] is False and _stored("alice") == {}


def test_remember_needs_an_event_id(predict, with_llm):
    code, body = predict("alice", {"event": {"summary": "x", "start": "2026-03-03T10:00:00Z"}, "remember": True})
    assert code == 400 and body["field"] == "event.event_id" and "event_id" in body["message"]


def test_a_users_label_stands_and_a_correction_relabels_as_the_users(predict, with_llm):
    install_model("alice")
    store = DynamoEventStore(settings().events_table)
    store.put_events("alice", [parse_event({**CONFIDENT, "calendar_id": "home"})])  # the user's label
    with_llm.behave(answer("home"))
    predict("alice", {"events": [CONFIDENT, UNSURE], "remember": True}, batch=True)
    got = _stored("alice")
    assert got["e-conf"].provenance == "user" and got["e-conf"].event.calendar_id == "home"
    correct_event("alice", "e-unsure", "work", wiring.stores(settings()))
    got = _stored("alice")
    assert got["e-unsure"].provenance == "user" and got["e-unsure"].event.calendar_id == "work"
    predict("alice", {"event": UNSURE, "remember": True})  # a later answer never overwrites it
    assert _stored("alice")["e-unsure"].event.calendar_id == "work"


def test_the_users_remember_setting_applies_to_requests_that_do_not_say(predict, with_llm):
    """``PUT .../settings {"remember": true}``: classify keeps answered events unless the request says
    remember=false; an event without an id is answered and not kept (no 400: the client never asked)."""
    install_model("alice")
    users = DynamoUserStore(settings().users_table)
    users.put_settings("alice", {"remember": True})
    code, body = predict("alice", {"event": CONFIDENT})
    assert code == 200 and body["remembered"] is True and set(_stored("alice")) == {"e-conf"}
    no_id = {k: v for k, v in UNSURE.items() if k != "event_id"}
    with_llm.behave(answer("home"))
    code, body = predict("alice", {"events": [no_id, UNSURE]}, batch=True)
    assert code == 200 and [r["remembered"] for r in body["results"]] == [False, True]
    assert set(_stored("alice")) == {"e-conf", "e-unsure"}
    code, body = predict("alice", {"event": {**CONFIDENT, "event_id": "e-3"}, "remember": False})
    assert code == 200 and "remembered" not in body and "e-3" not in _stored("alice")
    assert users.profile("alice")["events_total"] == 2
    # another user's setting is theirs
    code, body = predict("bob", {"event": CONFIDENT})
    assert code == 200 and "remembered" not in body
