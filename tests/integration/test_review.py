"""The review queue (issue 12 item 4) through the ingest handler on moto: LLM-labelled, unconfirmed
events, a stratified sample of them first (calendars in proportion to their pending answers; the
ranking itself: tests/unit/test_review_rank.py); confirming one makes its label trusted."""

from __future__ import annotations

import pytest

from calroute import wiring
from calroute.config import settings
from calroute.schema import parse_event
from conftest import load_handler
from support.apigw import call
from support.handlers import fresh_services

U = "alice"


def _ev(i, cal="work"):
    return parse_event({"event_id": f"e{i}", "summary": f"Meeting {i}", "start": f"2025-03-{1 + i:02d}T10:00:00Z",
                        "calendar_id": cal})


@pytest.fixture
def app(aws, monkeypatch):
    mod = load_handler("ingest")
    fresh_services(monkeypatch, mod)
    return mod


@pytest.fixture
def repos(aws):
    s = wiring.stores(settings())
    s.events.put_events(U, [_ev(1), _ev(2, "home")])  # the user's own labels: never in the queue
    s.events.remember(U, [
        (_ev(3), "llm", {"margin": 0.6, "novelty": 0.0, "method": "llm"}),   # priority 0.6
        (_ev(4), "llm", {"margin": 0.6, "novelty": 1.0, "method": "llm"}),   # priority 0.3
        (_ev(5, "home"), "llm", {"method": "llm_only"}),                      # no model: priority 0
        (_ev(6), "ml", {"margin": 0.01, "novelty": 1.0, "method": "ml"}),    # the model's own: not asked
        (_ev(7), "llm", {"margin": 0.1, "novelty": 0.0, "method": "llm"}),   # priority 0.1
    ])
    s.events.remember("bob", [(_ev(8), "llm", {"margin": 0.0})])
    return s


def test_review_lists_the_llm_labels_the_larger_calendar_sampled_first(app, repos):
    status, _, body = call(app.lambda_handler, "GET", f"/v1/users/{U}/review")
    assert status == 200, body
    got = [e["event_id"] for e in body["events"]]
    # the user's own labels, the model's own answer (e6) and bob's are never asked; work holds 3 of
    # the 4 pending answers, so home's one comes last
    assert body["pending"] == 4 and sorted(got) == ["e3", "e4", "e5", "e7"] and got[-1] == "e5"
    e4 = next(e for e in body["events"] if e["event_id"] == "e4")
    assert e4 == {**e4, "calendar_id": "work", "margin": 0.6, "novelty": 1.0, "priority": 0.3, "method": "llm"}
    assert sum(e["represents"] for e in body["events"]) == 4
    status, _, body = call(app.lambda_handler, "GET", f"/v1/users/{U}/review", query={"limit": "2"})
    assert status == 200 and [e["event_id"] for e in body["events"]] == got[:2] and body["pending"] == 4
    status, _, body = call(app.lambda_handler, "GET", f"/v1/users/{U}/review", query={"limit": "0"})
    assert status in (400, 422)


def test_confirm_makes_the_label_trusted_and_leaves_the_queue(app, repos):
    status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/events/e7/confirm")
    assert status == 200, body
    assert body == {"event_id": "e7", "calendar_id": "work", "provenance": "confirmed", "changed": True}
    assert repos.events.get_stored(U, "e7").provenance == "confirmed"
    status, _, body = call(app.lambda_handler, "GET", f"/v1/users/{U}/review")
    assert sorted(e["event_id"] for e in body["events"]) == ["e3", "e4", "e5"] and body["pending"] == 3
    # a user's own label stays the user's; an unknown event (or another user's) is 404
    status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/events/e1/confirm")
    assert status == 200 and body["provenance"] == "user" and body["changed"] is False
    status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/events/e8/confirm")
    assert status == 404 and body["field"] == "eventId"
    assert repos.events.get_stored("bob", "e8").provenance == "llm"
