"""The LLM fallback function through its real handler (moto + the fake OpenAI-compatible server),
and the invoke adapters."""

import io
import json
from pathlib import Path

import pytest

from calroute.adapters.dynamo import base
from calroute.adapters.dynamo.events import DynamoEventStore
from calroute.adapters.dynamo.usage import DynamoUsageLedger
from calroute.adapters.dynamo.users import DynamoUserStore
from calroute.adapters.invoke import CallableInvoker, LambdaInvoker
from calroute.config import settings
from calroute.schema import CalendarInfo, parse_event
from conftest import load_handler
from support.fake_llm import answer, enum_of, fake_llm, garbage, prompt_of, slow, status  # noqa: F401
from support.models import install_model

ROOT = Path(__file__).resolve().parents[2]


class Ctx:
    function_name = "llm_fallback"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:llm"
    aws_request_id = "req-2"


@pytest.fixture
def fallback(aws, fake_llm):
    cfg = settings()
    users, events = DynamoUserStore(cfg.users_table), DynamoEventStore(cfg.events_table)
    users.put_calendar("demo", CalendarInfo(calendar_id="work", name="Work", description="Acme Corp job"))
    users.put_calendar("demo", CalendarInfo(calendar_id="home", name="Home"))
    users.put_calendar("mallory", CalendarInfo(calendar_id="mallory-cal", name="Mallory's"))
    events.put_events("demo", [parse_event({"event_id": f"d{i}", "summary": s, "start": "2026-02-02T10:00:00Z",
                                            "calendar_id": c})
                               for i, (s, c) in enumerate([("Quarterly sync Acme", "work"), ("Dentist", "home"),
                                                           ("Acme quarterly planning", "work")])])
    events.put_events("mallory", [parse_event({"event_id": "m1", "summary": "Quarterly sync Acme secret",
                                               "start": "2026-02-02T10:00:00Z", "calendar_id": "mallory-cal"})])
    mod = load_handler("llm_fallback")
    mod.service.cache_clear()  # a service bound to this test's moto and fake LLM
    yield mod
    mod.service.cache_clear()


def sample():
    return json.loads((ROOT / "infra/events/llm_fallback.json").read_text())


def test_answers_with_similar_events_of_the_caller_only(fallback, fake_llm):
    fake_llm.behave(answer("work", reason="Acme is a client", usage=(800, 15)))
    out = fallback.lambda_handler(sample(), Ctx())
    assert out["calendar_id"] == "work" and out["reason"] == "Acme is a client"
    assert out["input_tokens"] == 800 and out["output_tokens"] == 15 and out["usd"] > 0 and out["latency_ms"] > 0
    assert len(fake_llm.requests) == 1
    req = fake_llm.requests[0]
    prompt = prompt_of(req)
    assert enum_of(req) == ["home", "work"]
    assert "Quarterly sync Acme" in prompt and "Acme quarterly planning" in prompt  # similar labelled events
    assert "mallory" not in prompt.lower() and "secret" not in prompt
    assert "Acme Corp job" in prompt  # calendar description
    ledger = DynamoUsageLedger(settings().usage_table)
    assert ledger.spent("demo") == pytest.approx(out["usd"]) and ledger.spent("_global") == pytest.approx(out["usd"])


@pytest.mark.parametrize("behaviour,code", [(garbage(), "invalid_answer"), (status(500), "upstream_error"),
                                            (status(429), "rate_limited"), (slow(3.0), "timeout")])
def test_faults_are_error_answers_not_exceptions(fallback, fake_llm, monkeypatch, behaviour, code):
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "0.2")
    settings.cache_clear()
    fake_llm.behave(behaviour)
    out = fallback.lambda_handler(sample(), Ctx())
    assert out["error"] == code and "calendar_id" not in out


def test_user_budget_skips_the_call(fallback, fake_llm, monkeypatch):
    monkeypatch.setenv("LLM_USER_DAILY_BUDGET_USD", "0.001")
    settings.cache_clear()
    DynamoUsageLedger(settings().usage_table).add("demo", usd=0.002, input_tokens=10, output_tokens=1)
    out = fallback.lambda_handler(sample(), Ctx())
    assert out["error"] == "budget" and fake_llm.requests == []


def test_profiles_of_the_active_model_describe_calendars(fallback, fake_llm):
    install_model("demo", profiles={"home": {"count": 9, "top_terms": ["dentist", "groceries"]}})
    fallback.lambda_handler(sample(), Ctx())
    assert "dentist, groceries" in prompt_of(fake_llm.requests[0])


def test_bad_payload_is_an_error_answer(fallback, fake_llm):
    assert fallback.lambda_handler({"user_id": "../x", "event": {}}, Ctx())["error"] == "invalid_input"
    assert fallback.lambda_handler("nope", Ctx())["error"] == "invalid_input"
    assert fake_llm.requests == []


def test_api_key_from_ssm_parameter(fallback, fake_llm, monkeypatch):
    import boto3

    from calroute.adapters.llm_openai import resolve_api_key

    boto3.client("ssm").put_parameter(Name="/calroute/openai-api-key", Value="sk-from-ssm", Type="SecureString")
    monkeypatch.setenv("LLM_API_KEY_PARAM", "/calroute/openai-api-key")
    settings.cache_clear()
    assert resolve_api_key(settings()) == "sk-from-ssm"
    boto3.client("secretsmanager").create_secret(Name="calroute/openai", SecretString="sk-from-sm")
    monkeypatch.setenv("LLM_API_KEY_PARAM", "secretsmanager:calroute/openai")
    settings.cache_clear()
    assert resolve_api_key(settings()) == "sk-from-sm"


# ----------------------------------------------------------------------------- invoke adapters


class StubLambda:
    def __init__(self, payload: bytes, function_error=None, exc=None):
        self.payload, self.function_error, self.exc, self.calls = payload, function_error, exc, []

    def invoke(self, **kw):
        self.calls.append(kw)
        if self.exc:
            raise self.exc
        resp = {"StatusCode": 200, "Payload": io.BytesIO(self.payload)}
        if self.function_error:
            resp["FunctionError"] = self.function_error
        return resp


def test_lambda_invoker_request_response():
    stub = StubLambda(b'{"calendar_id": "work", "reason": "r"}')
    inv = LambdaInvoker("calroute-llm", client=stub)
    assert inv.invoke({"user_id": "demo"})["calendar_id"] == "work"
    call = stub.calls[0]
    assert call["FunctionName"] == "calroute-llm" and call["InvocationType"] == "RequestResponse"
    assert json.loads(call["Payload"]) == {"user_id": "demo"}


@pytest.mark.parametrize("stub", [StubLambda(b'{"errorMessage": "boom"}', function_error="Unhandled"),
                                  StubLambda(b"not json"), StubLambda(b"[1]"),
                                  StubLambda(b"", exc=TimeoutError("read timeout"))])
def test_lambda_invoker_faults_become_error_answers(stub):
    assert LambdaInvoker("f", client=stub).invoke({})["error"] == "invoke_failed"


def test_lambda_invoker_through_moto_reaches_a_clean_error(aws):
    # no such function in moto: a ClientError, mapped to an error answer (never raised)
    assert LambdaInvoker("calroute-missing").invoke({"x": 1})["error"] == "invoke_failed"


def test_the_wired_lambda_client_shares_the_stores_boto3_session(no_network):
    """One botocore session per process: the Lambda client reuses the endpoint and service data the
    DynamoDB/S3 clients loaded (a second session would read and parse them again on the first
    unsure request)."""
    from calroute import wiring
    from calroute.adapters.dynamo import base
    from calroute.config import Settings

    arn = "arn:aws:lambda:us-east-1:123456789012:function:calroute-prod-llm-fallback:live"
    inv = wiring.invoker(Settings(llm_function_name=arn))
    assert isinstance(inv, LambdaInvoker) and inv.function_name == arn
    assert inv._session is base.shared_tables().session
    assert inv.client._loader is base.shared_tables().s3._loader


def test_callable_invoker_round_trips_json_and_contains_faults():
    seen = []
    inv = CallableInvoker(lambda p: seen.append(p) or {"calendar_id": "home"})
    assert inv.invoke({"a": (1, 2)}) == {"calendar_id": "home"} and seen == [{"a": [1, 2]}]
    failed = CallableInvoker(lambda p: 1 / 0).invoke({})
    assert failed["error"] == "invoke_failed" and failed["message"].startswith("ZeroDivisionError: ")


def test_callable_invoker_runs_one_call_at_a_time():
    """Predict's LLM threads enter the in-process fallback service one at a time, as one Lambda
    sandbox would (the service shares boto3 resources and, in tests, moto, which are not built for
    concurrent entry: a batch once lost one of its ten LLM answers to that)."""
    from concurrent.futures import ThreadPoolExecutor

    inv = CallableInvoker(lambda p: {"held": inv.lock.locked(), "i": p["i"]})
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: inv.invoke({"i": i}), range(8)))
    assert answers == [{"held": True, "i": i} for i in range(8)]
    assert not inv.lock.locked()
    assert CallableInvoker(lambda p: 1 / 0).invoke({}) and not inv.lock.locked()


def test_the_lambda_client_and_the_stores_clients_are_created_once_under_a_lock():
    """A boto3 session is not safe to create clients from in several threads at once: the first
    batch's LLM threads (and after-response writes) must not race to create them."""
    from concurrent.futures import ThreadPoolExecutor

    made = []

    class Session:
        def client(self, name, config=None):
            made.append((name, owner.locked()))
            return object()

        def resource(self, name, config=None):
            made.append((name, owner.locked()))
            return object()

    inv = LambdaInvoker("fn", session=Session())
    owner = inv._lock
    with ThreadPoolExecutor(4) as pool:
        clients = list(pool.map(lambda _: inv.client, range(8)))
    assert made == [("lambda", True)] and all(c is clients[0] for c in clients)

    made.clear()
    tables = base.Tables(session=Session())
    owner = tables._lock
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: tables.ddb if i % 2 else tables.s3, range(8)))
    assert sorted(made) == [("dynamodb", True), ("s3", True)]
    assert len({id(g) for g in got}) == 2


def test_unreadable_api_key_parameter_means_not_configured(aws):
    """A missing SSM parameter (or no permission) turns the fallback off with `not_configured` —
    which predict then stops invoking for a while — instead of an unhandled error."""
    import pytest as _pytest

    from calroute.adapters.llm_openai import resolve_api_key
    from calroute.config import Settings
    from calroute.llm.types import LlmError

    with _pytest.raises(LlmError) as exc:
        resolve_api_key(Settings(llm_api_key_param="/calroute/missing-key"))
    assert exc.value.code == "not_configured"
