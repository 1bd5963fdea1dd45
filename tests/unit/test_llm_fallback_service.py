"""calroute.services.llm_fallback.FallbackService against in-memory fakes, exactly: the answer and
error documents (codes, messages, latency from the injected clock), the metrics it books, which
calendars the model may choose from when none are registered, where profiles come from, and which
candidates and past events reach the prompt. The mutation target for llm_fallback.py."""

from __future__ import annotations

import json

import pytest

from calroute.config import Settings
from calroute.llm.types import LlmError, LlmReply
from calroute.services.llm_fallback import FallbackService, _describe_profiles

from test_llm import FakeClient, Repo, ev, payload


class Sink:
    def __init__(self):
        self.metrics = []

    def add_metric(self, name, unit, value):
        self.metrics.append((name, unit, value))

    def add_dimensioned(self, name, unit, value, dims):
        self.metrics.append((name, unit, value, dims))


class Clock:
    """perf_counter stand-in: each call advances 0.25 s."""

    def __init__(self):
        self.t = 100.0

    def __call__(self):
        self.t += 0.25
        return self.t


class Log:
    def __init__(self):
        self.warnings, self.infos = [], []

    def warning(self, msg, extra=None):
        self.warnings.append((msg, extra))

    def info(self, msg, extra=None):
        self.infos.append((msg, extra))


def make(client, repo=None, **cfg):
    repo = repo or Repo()
    sink, log = Sink(), Log()
    s = FallbackService(Settings(openai_api_key="k", **cfg), client_factory=lambda: client, users=repo, events=repo,
                        registry=repo, usage=repo, metrics=sink, clock=Clock(), logger=log)
    return s, repo, sink, log


def data_block(call) -> dict:
    user = call["messages"][1]["content"]
    return json.loads(user.split("\n", 1)[1].rsplit("\n</data-", 1)[0])


def test_an_answer_with_its_cost_tokens_model_latency_and_metrics():
    client = FakeClient(LlmReply('{"calendar_id": "work", "reason": "standup"}', 1000, 20))
    s, repo, sink, log = make(client, llm_prices={"m1": {"input": 1.0, "output": 2.0}}, llm_model="m1")
    out = s.handle(payload())
    assert out == {"calendar_id": "work", "reason": "standup", "usd": round((1000 * 1.0 + 20 * 2.0) / 1e6, 8),
                   "input_tokens": 1000, "output_tokens": 20, "model": "m1", "latency_ms": 250.0}
    assert client.calls[0]["model"] == "m1"
    assert repo.usage == [("alice", {"usd": out["usd"], "input_tokens": 1000, "output_tokens": 20})]
    assert sink.metrics == [("LlmCalls", "Count", 1), ("LlmTokens", "Count", 1020),
                            ("LlmLatencyMs", "Milliseconds", 250.0)]
    assert log.warnings == []


def test_a_reply_without_tokens_books_no_usage():
    s, repo, _, _ = make(FakeClient(LlmReply('{"calendar_id": "work", "reason": ""}', 0, 0)))
    assert s.handle(payload())["calendar_id"] == "work"
    assert repo.usage == []


def test_usd_is_rounded_to_8_places():
    client = FakeClient(LlmReply('{"calendar_id": "work", "reason": ""}', 1, 1))
    s, _, _, _ = make(client, llm_prices={"m1": {"input": 0.123456789, "output": 0.0}}, llm_model="m1")
    assert s.handle(payload())["usd"] == round(0.123456789 / 1e6, 8) == 1.2e-07


@pytest.mark.parametrize("bad, message", [
    (None, "the payload must be an object"),
    ([], "the payload must be an object"),
])
def test_a_payload_that_is_not_an_object(bad, message):
    s, _, sink, log = make(FakeClient())
    assert s.handle(bad) == {"error": "invalid_input", "message": message, "latency_ms": 250.0}
    assert sink.metrics == [("LlmErrors", "Count", 1)]
    assert log.warnings == [("llm fallback failed", {"error": "invalid_input"})]


def test_an_invalid_user_or_event_names_the_field():
    s, _, _, _ = make(FakeClient())
    out = s.handle({"user_id": "../etc", "event": {"summary": "x", "start": "2026-03-02T09:00:00Z"}})
    assert out["error"] == "invalid_input" and out["message"].startswith("user_id '../etc' is not a valid user id")
    out = s.handle({"user_id": "alice", "event": {"summary": "x"}})
    assert out["error"] == "invalid_input" and "start" in out["message"]


def test_not_configured_no_calendars_and_budget_messages():
    repo, log = Repo(), Log()
    s = FallbackService(Settings(), client_factory=FakeClient, users=repo, events=repo, registry=repo, usage=repo,
                        logger=log)
    out = s.handle(payload())
    assert (out["error"], out["message"]) == ("not_configured", "no LLM endpoint is configured")
    # a deployment without an LLM is a state, not a fault: INFO, not a WARNING per deferred event
    assert log.warnings == [] and log.infos == [("llm fallback failed", {"error": "not_configured"})]
    s, _, _, _ = make(FakeClient(), Repo(cals=[]))
    out = s.handle(payload())
    assert (out["error"], out["message"]) == ("no_calendars", "the user has no calendars")
    repo = Repo()
    repo.spent_by = {"alice": 1e9}
    s, _, _, _ = make(FakeClient(), repo)
    out = s.handle(payload())
    assert (out["error"], out["message"]) == ("budget", "the daily LLM budget is spent (user_budget)")


def test_an_llm_fault_is_an_error_document():
    s, _, sink, log = make(FakeClient(exc=LlmError("timeout", "took too long")))
    assert s.handle(payload()) == {"error": "timeout", "message": "took too long", "latency_ms": 250.0}
    assert ("LlmErrors", "Count", 1) in sink.metrics
    assert log.warnings == [("llm fallback failed", {"error": "timeout"})]


def test_the_client_is_built_once():
    built = []

    def factory():
        built.append(1)
        return FakeClient(LlmReply('{"calendar_id": "work", "reason": ""}', 1, 1))

    repo = Repo()
    s = FallbackService(Settings(openai_api_key="k"), client_factory=factory, users=repo, events=repo,
                        registry=repo, usage=repo)
    s.handle(payload())
    s.handle(payload())
    assert built == [1]


class NoCalendars(Repo):
    def calendars(self, user_id):
        return []


def test_without_registered_calendars_the_active_models_valid_labels_are_the_choice():
    client = FakeClient(LlmReply('{"calendar_id": "gym", "reason": ""}', 1, 1))
    repo = NoCalendars(active={"version": "v1", "labels": ["gym", 7, "bad/id", "work"]})
    s, _, _, _ = make(client, repo)
    assert s.handle(payload())["calendar_id"] == "gym"
    assert client.calls[0]["response_format"]["json_schema"]["schema"]["properties"]["calendar_id"]["enum"] == \
        ["gym", "work"]


def test_without_calendars_or_a_model_the_labelled_events_calendars_are_the_choice():
    client = FakeClient(LlmReply('{"calendar_id": "home", "reason": ""}', 1, 1))
    repo = NoCalendars(events=[ev("a", calendar_id="work"), ev("b", calendar_id="home"), ev("c"),
                               ev("d", calendar_id="work")])
    s, _, _, _ = make(client, repo)
    assert s.handle(payload())["calendar_id"] == "home"
    assert client.calls[0]["response_format"]["json_schema"]["schema"]["properties"]["calendar_id"]["enum"] == \
        ["home", "work"]


def test_profiles_come_from_the_active_pointer_first_then_the_version_record():
    client = FakeClient(LlmReply('{"calendar_id": "home", "reason": ""}', 1, 1))
    repo = Repo(active={"version": "v1", "profiles": {"home": "on the pointer"}},
                version={"profiles": {"home": "on the record"}})
    s, _, _, _ = make(client, repo)
    s.handle(payload())
    cals = {c["id"]: c["description"] for c in data_block(client.calls[0])["calendars"]}
    assert cals == {"work": "Job meetings", "home": "on the pointer"}
    repo = Repo(active={"version": "v1"}, version={"profiles": {"home": "on the record"}})
    s, _, _, _ = make(client, repo)
    s.handle(payload())
    cals = {c["id"]: c["description"] for c in data_block(client.calls[1])["calendars"]}
    assert cals["home"] == "on the record"


def test_describe_profiles_keeps_text_and_readable_dicts_and_drops_the_rest():
    assert _describe_profiles(None) == {} and _describe_profiles({}) == {} and _describe_profiles([1]) == {}
    out = _describe_profiles({"a": "text", "b": {"count": 3, "top_terms": ["yoga"]}, "c": 5, "d": "",
                              "e": {"count": 1, "all_day_share": "not a number"}})
    assert out == {"a": "text", "b": "3 events; terms: yoga"}


def test_candidates_must_be_a_list_of_objects():
    client = FakeClient(LlmReply('{"calendar_id": "work", "reason": ""}', 1, 1))
    s, _, _, _ = make(client)
    s.handle(payload(candidates=[{"calendar_id": "home", "probability": 0.5}, "junk", 3]))
    assert data_block(client.calls[0])["model_candidates"] == [{"calendar_id": "home", "probability": 0.5}]
    s.handle(payload(candidates={"calendar_id": "home"}))
    assert data_block(client.calls[1])["model_candidates"] == []


def test_similar_past_events_only_when_asked_for():
    client = FakeClient(LlmReply('{"calendar_id": "work", "reason": ""}', 1, 1))
    repo = Repo(events=[ev("Sprint review", calendar_id="work"), ev("Sprint planning", calendar_id="home")])
    s, _, _, _ = make(client, repo)
    s.handle(payload())
    assert {e["calendar_id"] for e in data_block(client.calls[0])["similar_past_events"]} == {"work", "home"}
    s, _, _, _ = make(client, repo, llm_similar_examples=0)
    s.handle(payload())
    assert data_block(client.calls[1])["similar_past_events"] == []


def test_the_answer_is_checked_against_the_calendars_offered():
    client = FakeClient(LlmReply('{"calendar_id": "bobs-secret", "reason": ""}', 1, 1))
    s, _, _, _ = make(client)
    out = s.handle(payload())
    assert (out["error"], out["message"]) == ("invalid_answer", "the answer names a calendar the user does not have")


class Tenant(Repo):
    """Answers only for alice (the registry and the event scan are per user), records scan limits."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.limits = []

    def active(self, user_id, consistent=False):
        return self._active if user_id == "alice" else None

    def get_version(self, user_id, version):
        return self._version if (user_id, version) == ("alice", (self._active or {}).get("version")) else None

    def list_events(self, user_id, limit=None):
        self.limits.append(limit)
        return super().list_events(user_id, limit)


class NoCalendarsTenant(Tenant):
    def calendars(self, user_id):
        return []


def test_the_registry_is_read_for_the_caller():
    client = FakeClient(LlmReply('{"calendar_id": "gym", "reason": ""}', 1, 1))
    repo = NoCalendarsTenant(active={"version": "v1", "labels": ["gym"]}, version={"profiles": {"gym": "weights"}})
    s, _, _, _ = make(client, repo)
    assert s.handle(payload())["calendar_id"] == "gym"
    assert data_block(client.calls[0])["calendars"] == [{"id": "gym", "name": "", "description": "weights"}]


def test_event_scans_are_bounded():
    client = FakeClient(LlmReply('{"calendar_id": "home", "reason": ""}', 1, 1))
    repo = NoCalendarsTenant(events=[ev("Sprint review", calendar_id="home")])
    s, _, _, _ = make(client, repo)
    s.handle(payload())
    assert repo.limits and set(repo.limits) == {2000}


def test_an_invalid_event_names_the_event_field():
    s, _, _, _ = make(FakeClient())
    out = s.handle({"user_id": "alice", "event": {"summary": "x"}})
    assert (out["error"], out["message"]) == ("invalid_input", "event.start: Field required")


def test_usage_is_booked_when_either_token_count_is_set():
    for tokens in ((5, 0), (0, 5)):
        s, repo, _, _ = make(FakeClient(LlmReply('{"calendar_id": "work", "reason": ""}', *tokens)))
        s.handle(payload())
        assert len(repo.usage) == 1 and repo.usage[0][1]["input_tokens"] == tokens[0]


def test_one_similar_example_and_only_from_the_callers_calendars():
    client = FakeClient(LlmReply('{"calendar_id": "work", "reason": ""}', 1, 1))
    # the closest past event is on a calendar the user no longer offers: the one shown is the next
    repo = Repo(events=[ev("Sprint review", calendar_id="gone"), ev("Sprint planning", calendar_id="work")])
    s, _, _, _ = make(client, repo, llm_similar_examples=1)
    s.handle(payload())
    assert [e["title"] for e in data_block(client.calls[0])["similar_past_events"]] == ["Sprint planning"]


class FineClock(Clock):
    def __call__(self):
        self.t += 0.0001234567
        return self.t


def test_latency_is_in_milliseconds_with_three_decimals():
    repo = Repo()
    ok = FallbackService(Settings(openai_api_key="k"), client_factory=lambda: FakeClient(
        LlmReply('{"calendar_id": "work", "reason": ""}', 1, 1)), users=repo, events=repo, registry=repo,
        usage=repo, clock=FineClock())
    assert ok.handle(payload())["latency_ms"] == 0.123
    bad = FallbackService(Settings(openai_api_key="k"), client_factory=FakeClient, users=repo, events=repo,
                          registry=repo, usage=repo, clock=FineClock())
    assert bad.handle(None)["latency_ms"] == 0.123
