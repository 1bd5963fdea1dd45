"""Secrets and event text never reach the logs (user ids only hashed), and tenants stay apart:
user A can never read, modify or classify with user B's data or models.

Logs are what the Powertools Logger and Metrics print on stdout (what CloudWatch would store),
captured while the real ingest, predict (+ LLM fallback in-process against the fake OpenAI server)
and models handlers run at DEBUG level."""

from __future__ import annotations

import json
import logging

import pytest

from calroute.adapters.dynamo.events import DynamoEventStore
from calroute.adapters.dynamo.predictions import DynamoPredictionLog
from calroute.adapters.dynamo.registry import DynamoRegistry
from calroute.adapters.dynamo.users import DynamoUserStore
from calroute.config import settings
from calroute.ids import hashed_user
from calroute.schema import CalendarInfo
from support.apigw import call
from support.fake_llm import answer, fake_llm, prompt_of  # noqa: F401 - fixture
from support.handlers import fresh_services
from support.models import install_model

from conftest import load_handler

TITLE = "SECRET-TITLE-123"
KEY = "sk-test-SECRET"
USER = "tenant42xq"


@pytest.fixture
def handlers(aws, fake_llm, monkeypatch, fresh_settings):
    monkeypatch.setenv("LAMBDA_INVOKE_MODE", "inprocess")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.base_url)
    monkeypatch.setenv("AUTH_MODE", "dev")
    fresh_settings.cache_clear()
    mods = {n: load_handler(n) for n in ("ingest", "predict", "models", "llm_fallback", "stats")}
    fresh_services(monkeypatch, *mods.values())
    from calroute.api import logger

    old = logger.log_level
    logger.setLevel(logging.DEBUG)
    yield mods
    logger.setLevel(old)


def req(mods, name, method, path, user, **kw):
    return call(mods[name].lambda_handler, method, path, headers={"x-calroute-user": user}, **kw)


def test_secrets_event_text_and_raw_user_ids_never_logged(handlers, fake_llm, capsys):
    m = handlers
    fake_llm.behave(answer("home"))
    events = [{"event_id": f"s{i}", "summary": f"{TITLE} standup {i}", "description": f"{TITLE} notes",
               "location": f"{TITLE} room", "start": "2026-03-02T10:00:00Z", "calendar_id": "work"} for i in range(3)]
    status, _, body = req(m, "ingest", "POST", f"/v1/users/{USER}/events", USER, body={"events": events})
    assert status == 200, body
    req(m, "ingest", "PUT", f"/v1/users/{USER}/calendars/home", USER, body={"name": "Home", "description": TITLE})
    # bad input whose message could echo the text back
    req(m, "ingest", "POST", f"/v1/users/{USER}/events", USER, body={"events": [{"summary": TITLE}]})
    # classify with no model: the LLM fallback runs in-process with the API key
    status, _, body = req(m, "predict", "POST", f"/v1/users/{USER}/classify", USER,
                          body={"event": {"event_id": "q1", "summary": TITLE, "start": "2026-03-03T10:00:00Z"}})
    assert status == 200 and body["method"] == "llm_only", body
    assert fake_llm.requests and TITLE in prompt_of(fake_llm.requests[-1])  # the text did reach the LLM ...
    install_model(USER, calendars=("work", "home"))
    status, _, body = req(m, "predict", "POST", f"/v1/users/{USER}/classify/batch", USER,
                          body={"events": [{"summary": f"{TITLE} zzz", "start": "2026-03-03T10:00:00Z"}] * 3})
    assert status == 200, body
    req(m, "models", "GET", f"/v1/users/{USER}/model", USER)
    req(m, "stats", "GET", f"/v1/users/{USER}/stats", USER)
    out = capsys.readouterr()
    logs = out.out + out.err
    assert logs.strip(), "expected some log/metric output to inspect"
    assert TITLE not in logs  # ... but never the logs
    assert KEY not in logs and "SECRET" not in logs
    assert USER not in logs  # user ids appear only hashed
    lines = [json.loads(x) for x in logs.splitlines() if x.startswith("{") and '"level"' in x]
    if any("user" in ln for ln in lines):
        assert any(hashed_user(USER) in json.dumps(ln) for ln in lines)


# ----------------------------------------------------------------------------- tenant isolation


def _seed_two_tenants():
    cfg = settings()
    users, events = DynamoUserStore(cfg.users_table), DynamoEventStore(cfg.events_table)
    from calroute.schema import parse_event

    users.put_calendar("alice", CalendarInfo(calendar_id="work", name="Work"))
    users.put_calendar("alice", CalendarInfo(calendar_id="home", name="Home"))
    users.put_calendar("bob", CalendarInfo(calendar_id="bob-private", name="Bob's secret club"))
    events.put_events("bob", [parse_event({"event_id": "b1", "summary": "Bob's secret meeting",
                                           "start": "2026-03-02T10:00:00Z", "calendar_id": "bob-private"})])
    DynamoPredictionLog(cfg.predictions_table).put_many("bob", [{"event_id": "b1", "calendar_id": "bob-private",
                                                          "method": "ml", "confidence": 0.9}])
    return install_model("bob", calendars=("work", "home"))


def test_a_tenant_cannot_read_modify_or_use_anothers_data(handlers, fake_llm):
    m = handlers
    bob_model = _seed_two_tenants()
    before_events = DynamoEventStore(settings().events_table).get_event("bob", "b1")

    # acting as alice on bob's paths: always 403, nothing changes
    for name, method, path, kw in [
        ("models", "GET", "/v1/users/bob/model", {}),
        ("models", "GET", "/v1/users/bob/models", {}),
        ("models", "POST", "/v1/users/bob/models/rollback", {"body": {}}),
        ("models", "POST", f"/v1/users/bob/models/{bob_model['version']}/promote", {"body": {}}),
        ("models", "POST", "/v1/users/bob/train", {"body": {}}),
        ("stats", "GET", "/v1/users/bob/stats", {}),
        ("ingest", "POST", "/v1/users/bob/events", {"body": {"events": [{"event_id": "b1", "summary": "pwned",
                                                                         "start": "2026-03-02T10:00:00Z",
                                                                         "calendar_id": "x"}]}}),
        ("ingest", "POST", "/v1/users/bob/events/b1/correction", {"body": {"calendar_id": "x"}}),
        ("ingest", "PUT", "/v1/users/bob/calendars/bob-private", {"body": {"name": "pwned"}}),
        ("predict", "POST", "/v1/users/bob/classify", {"body": {"event": {"summary": "x", "start": "2026-03-02"}}}),
    ]:
        status, _, body = req(m, name, method, path, "alice", **kw)
        assert status == 403 and body["error"] == "forbidden", (path, status, body)
    assert DynamoEventStore(settings().events_table).get_event("bob", "b1") == before_events
    assert [c.name for c in DynamoUserStore(settings().users_table).calendars("bob")] == ["Bob's secret club"]
    assert DynamoRegistry(settings().registry_table).active("bob")["version"] == bob_model["version"]

    # alice on her own paths never sees bob's model, versions, stats or calendars
    status, _, body = req(m, "predict", "POST", "/v1/users/alice/classify", "alice",
                          body={"event": {"summary": "Sprint standup", "start": "2026-03-03T10:00:00Z"}})
    assert status == 200 and body["model_version"] is None  # bob's model is not used for alice
    prompt = prompt_of(fake_llm.requests[-1])
    assert "bob-private" not in prompt and "Bob's secret" not in prompt
    status, _, body = req(m, "models", "POST", f"/v1/users/alice/models/{bob_model['version']}/promote", "alice",
                          body={})
    assert status == 403 and DynamoRegistry(settings().registry_table).active("alice") is None  # operators only
    status, _, body = req(m, "models", "GET", "/v1/users/alice/models", "alice")
    assert status == 200 and bob_model["version"] not in json.dumps(body)
    status, _, body = req(m, "stats", "GET", "/v1/users/alice/stats", "alice")
    assert status == 200 and "bob" not in json.dumps(body)
    status, _, body = req(m, "ingest", "POST", "/v1/users/alice/events/b1/correction", "alice",
                          body={"calendar_id": "work"})
    assert status == 404  # bob's event id under alice's path is simply not there
