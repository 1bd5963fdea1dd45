"""The predict function through its real handler, against moto (resources from template.yaml), a
real ONNX model and the fake OpenAI-compatible server (LLM fallback in-process)."""

import json

import pytest

from calroute.adapters.dynamo.predictions import DynamoPredictionLog
from calroute.adapters.dynamo.usage import DynamoUsageLedger
from calroute.adapters.dynamo.users import DynamoUserStore
from calroute.config import settings
from calroute.runtime import OnnxModel
from calroute.schema import CalendarInfo
from conftest import load_handler
from support.apigw import http_event
from support.fake_llm import answer, enum_of, fake_llm, garbage, prompt_of, slow, status, unknown  # noqa: F401
from support.handlers import current, fresh_services
from support.models import install_model, version

CONFIDENT = {"event_id": "e-conf", "summary": "Sprint standup", "start": "2026-03-03T10:00:00Z"}
UNSURE = {"event_id": "e-unsure", "summary": "zzz", "start": "2026-03-03T10:00:00Z"}
GOOGLE = {"id": "g-1", "summary": "Sprint standup", "start": {"dateTime": "2026-03-03T10:00:00", "timeZone": "Europe/Prague"},
          "end": {"dateTime": "2026-03-03T10:30:00", "timeZone": "Europe/Prague"}}


class Ctx:
    function_name = "predict"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:predict"
    aws_request_id = "req-1"


def http(path, body, method="POST", raw=None):
    return http_event(method, path, headers={"content-type": "application/json"},
                      raw_body=raw if raw is not None else json.dumps(body))


@pytest.fixture
def predict(aws, monkeypatch):
    mod = load_handler("predict")
    fresh_services(monkeypatch, mod)
    settings.cache_clear()

    def call(user, body=None, batch=False, raw=None):
        path = f"/v1/users/{user}/classify" + ("/batch" if batch else "")
        resp = mod.lambda_handler(http(path, body, raw=raw), Ctx())
        doc = json.loads(resp["body"])
        if resp["statusCode"] == 200:
            # every answer of every test matches the response model the OpenAPI document promises
            # (the handler sends the service's answers without re-validating them)
            (mod.BatchResult if batch else mod.Classification).model_validate(doc, strict=True)
        return resp["statusCode"], doc

    call.mod = mod
    call.service = lambda: current(mod)
    return call


@pytest.fixture
def with_llm(fake_llm, monkeypatch):
    monkeypatch.setenv("LAMBDA_INVOKE_MODE", "inprocess")
    settings.cache_clear()
    users = DynamoUserStore(settings().users_table)
    for c in (CalendarInfo(calendar_id="work", name="Work"), CalendarInfo(calendar_id="home", name="Home")):
        users.put_calendar("alice", c)
    users.put_calendar("bob", CalendarInfo(calendar_id="bob-private", name="Bob's secret club"))
    return fake_llm


def emf(out: str) -> list[dict]:
    docs = []
    for line in out.splitlines():
        if '"_aws"' in line and line.startswith("{"):
            docs.append(json.loads(line))
    return docs


def metric_total(out: str, name: str, **dims) -> float:
    total = 0.0
    for blob in emf(out):
        if name in blob and all(blob.get(k) == v for k, v in dims.items()):
            total += sum(blob[name]) if isinstance(blob[name], list) else blob[name]
    return total


def test_confident_is_ml_without_llm_call_and_is_logged(predict, with_llm, capsys):
    install_model("alice")
    code, body = predict("alice", {"event": CONFIDENT})
    assert code == 200, body
    assert body["method"] == "ml" and body["calendar_id"] == "work" and body["confidence"] >= 0.6
    assert body["model_version"] == version(1) and body["threshold"] == 0.6 and body["cohort"] == "treatment"
    assert body["alternatives"][0]["calendar_id"] == "work" and len(body["alternatives"]) == 2
    assert body["event_id"] == "e-conf" and body["latency_ms"] > 0
    assert with_llm.requests == []
    item = DynamoPredictionLog(settings().predictions_table).get("alice", "e-conf")
    assert item["method"] == "ml" and item["calendar_id"] == "work" and item["model_version"] == version(1)
    assert item["expires_at"] > 0 and item["cohort"] == "treatment" and "drift" in item
    out = capsys.readouterr().out
    assert metric_total(out, "Predictions", method="ml", cohort="treatment") == 1
    assert metric_total(out, "ModelCacheMiss") == 1
    assert "Sprint standup" not in out  # no event text in logs or metrics
    assert "alice" not in out  # no user id either (hashed only)


def test_unsure_calls_llm_once_with_only_the_callers_calendars(predict, with_llm):
    install_model("alice")
    with_llm.behave(answer("home", reason="looks personal"))
    code, body = predict("alice", {"event": UNSURE})
    assert code == 200 and body["method"] == "llm" and body["calendar_id"] == "home"
    assert body["reason"] == "looks personal" and body["model_version"] == version(1)
    assert len(with_llm.requests) == 1
    req = with_llm.requests[0]
    assert enum_of(req) == ["home", "work"]
    assert "bob-private" not in json.dumps(req) and "secret club" not in prompt_of(req)
    assert '"calendar_id": "work"' in prompt_of(req)  # the model's candidates are in the prompt
    assert DynamoUsageLedger(settings().usage_table).spent("alice") > 0


def test_generated_event_id_is_returned_and_logged(predict, with_llm):
    install_model("alice")
    code, body = predict("alice", {"event": {"summary": "Sprint standup", "start": "2026-03-03T10:00:00Z"}})
    assert code == 200 and body["event_id"].startswith("p-")
    assert DynamoPredictionLog(settings().predictions_table).get("alice", body["event_id"])["method"] == "ml"


@pytest.mark.parametrize("behaviour,reason", [(unknown("evil"), "llm_invalid_answer"),
                                              (garbage(), "llm_invalid_answer"),
                                              (status(500), "llm_upstream_error"),
                                              (status(429), "llm_rate_limited"),
                                              (slow(3.0), "llm_timeout")])
def test_llm_faults_fall_back_to_low_confidence(predict, with_llm, monkeypatch, behaviour, reason):
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "0.2")
    settings.cache_clear()
    install_model("alice")
    with_llm.behave(behaviour)
    code, body = predict("alice", {"event": UNSURE})
    assert code == 200, body
    assert body["method"] == "ml_low_confidence" and body["reason"] == reason
    assert body["calendar_id"] == body["alternatives"][0]["calendar_id"]
    assert 1 <= len(with_llm.requests) <= 2


def test_budget_spent_means_no_llm_call(predict, with_llm):
    install_model("alice")
    DynamoUsageLedger(settings().usage_table).add("alice", usd=1.0, input_tokens=1, output_tokens=1)
    code, body = predict("alice", {"event": UNSURE})
    assert code == 200 and body["method"] == "ml_low_confidence" and body["reason"] == "budget"
    assert with_llm.requests == []


def test_kill_switch_routes_to_llm_only(predict, with_llm, monkeypatch):
    install_model("alice")
    monkeypatch.setenv("ML_ENABLED", "false")
    settings.cache_clear()
    code, body = predict("alice", {"event": CONFIDENT})
    assert code == 200 and body["method"] == "llm_only" and body["model_version"] is None
    assert body["alternatives"] == [] and body["confidence"] is None and len(with_llm.requests) == 1


def test_kill_switch_without_llm_is_none(predict, monkeypatch):
    install_model("alice")
    monkeypatch.setenv("ML_ENABLED", "false")
    settings.cache_clear()
    code, body = predict("alice", {"event": CONFIDENT})
    assert code == 200 and body["method"] == "none" and body["calendar_id"] is None
    assert "kill_switch" in body["reason"]


def test_no_model_with_llm_is_llm_only(predict, with_llm):
    code, body = predict("alice", {"event": CONFIDENT})
    assert code == 200 and body["method"] == "llm_only" and body["calendar_id"] in ("work", "home")
    assert body["reason"] and len(with_llm.requests) == 1


def test_a_single_calendar_is_answered_without_asking_the_llm(predict, with_llm):
    """bob has one registered calendar and no model: the fallback could answer nothing else, so the
    answer is that calendar (``only_calendar``, matching the response model) and the LLM is never
    called, for a single classify and for a batch."""
    code, body = predict("bob", {"event": CONFIDENT})
    assert code == 200 and (body["method"], body["calendar_id"], body["reason"]) == (
        "only_calendar", "bob-private", "only_calendar")
    assert body["confidence"] is None and body["defer_reason"] is None and with_llm.requests == []
    code, body = predict("bob", {"events": [CONFIDENT, UNSURE]}, batch=True)
    assert code == 200 and [r["method"] for r in body["results"]] == ["only_calendar"] * 2
    assert with_llm.requests == []


def test_no_model_no_llm_is_none(predict):
    code, body = predict("alice", {"event": CONFIDENT})
    assert code == 200 and body["method"] == "none" and body["calendar_id"] is None
    assert body["reason"] == "no_model+llm_not_configured"


def test_unconfigured_fallback_function_is_not_invoked_again(predict):
    """In AWS mode predict cannot see the fallback's configuration: after one not_configured answer
    it stops invoking the function for a while instead of paying a Lambda call per request."""
    from calroute.adapters.invoke import CallableInvoker

    calls = []
    predict("alice", {"event": CONFIDENT})  # builds the service
    svc = predict.service()
    svc.invoker = CallableInvoker(lambda payload: calls.append(payload) or
                                  {"error": "not_configured", "message": "no LLM endpoint is configured"})
    svc._llm_off_until = float("-inf")
    for _ in range(3):
        code, body = predict("alice", {"event": CONFIDENT})
        assert code == 200 and body["method"] == "none" and body["calendar_id"] is None
    assert len(calls) == 1


def test_control_cohort_is_llm_only(predict, with_llm, monkeypatch):
    install_model("alice")
    monkeypatch.setenv("EXPERIMENT_CONTROL_PERCENT", "100")
    settings.cache_clear()
    code, body = predict("alice", {"event": CONFIDENT})
    assert body["cohort"] == "control" and body["method"] == "llm_only"
    # stable across calls
    assert {predict("alice", {"event": CONFIDENT})[1]["cohort"] for _ in range(3)} == {"control"}


@pytest.mark.parametrize("breakage", ["sha", "missing", "spec"])
def test_broken_model_is_not_used(predict, with_llm, capsys, breakage):
    from calroute.adapters.dynamo.registry import DynamoRegistry
    from calroute.adapters.s3_models import S3ModelBlobs
    from support.models import build_onnx

    cfg = settings()
    if breakage == "spec":
        install_model("alice", data=build_onnx(model_version=version(1), user="alice", spec=7))
    else:
        rec = install_model("alice")
        if breakage == "missing":
            S3ModelBlobs(cfg.model_bucket).delete(rec["s3_key"])
        else:
            S3ModelBlobs(cfg.model_bucket).put("alice", version(1), b"tampered bytes")
    code, body = predict("alice", {"event": CONFIDENT})
    assert code == 200 and body["method"] == "llm_only" and body["model_version"] is None
    code, body = predict("alice", {"event": CONFIDENT})
    out = capsys.readouterr().out
    assert metric_total(out, "ModelLoadFailures") == 1  # negative-cached: one failure, one S3 GET
    assert predict.service().cache.load_failures == 1


def test_active_pointing_to_deleted_version_falls_back(predict):
    from calroute.adapters.dynamo.registry import DynamoRegistry
    from calroute.adapters.s3_models import S3ModelBlobs

    rec = install_model("alice")
    S3ModelBlobs(settings().model_bucket).delete(rec["s3_key"])
    code, body = predict("alice", {"event": CONFIDENT})
    assert code == 200 and body["method"] == "none" and body["reason"] == "model_unavailable+llm_not_configured"


def test_promotion_visible_after_revalidation_interval(predict):
    install_model("alice", n=1)
    assert predict("alice", {"event": CONFIDENT})[1]["model_version"] == version(1)
    t = [10_000.0]
    predict.service().cache.clock = lambda: t[0]
    predict.service().cache.invalidate("alice")
    assert predict("alice", {"event": CONFIDENT})[1]["model_version"] == version(1)
    install_model("alice", n=2)
    t[0] += 30
    assert predict("alice", {"event": CONFIDENT})[1]["model_version"] == version(1)
    t[0] += 31  # > MODEL_REVALIDATE_SECONDS (60)
    assert predict("alice", {"event": CONFIDENT})[1]["model_version"] == version(2)


def test_batch_of_100_runs_the_model_once(predict, with_llm, monkeypatch):
    install_model("alice")
    calls = []
    real = OnnxModel.predict_proba

    def spy(self, X):
        calls.append(X.shape)
        return real(self, X)

    monkeypatch.setattr(OnnxModel, "predict_proba", spy)
    events = [dict(CONFIDENT, event_id=f"b{i}") for i in range(90)] + \
             [dict(UNSURE, event_id=f"u{i}") for i in range(10)]
    code, body = predict("alice", {"events": events}, batch=True)
    assert code == 200, body
    assert calls == [(100, calls[0][1])]
    methods = [r["method"] for r in body["results"]]
    assert methods.count("ml") == 90 and methods.count("llm") == 10, [(r["method"], r["reason"]) for r in body["results"] if r["method"] != "ml"]
    assert [r["event_id"] for r in body["results"]] == [e["event_id"] for e in events]
    assert len(with_llm.requests) == 10
    assert len(DynamoPredictionLog(settings().predictions_table).since("alice", "2000-01-01")) == 100


def test_batch_limit_and_bad_items(predict):
    code, body = predict("alice", {"events": [CONFIDENT] * 101}, batch=True)
    assert code == 413 and body["error"] == "payload_too_large" and body["field"] == "events"
    code, body = predict("alice", {"events": [CONFIDENT, {"summary": "no start"}]}, batch=True)
    assert code == 400 and body["field"].startswith("events[1]")
    code, body = predict("alice", {"events": []}, batch=True)
    assert 400 <= code < 500 and "error" in body


def test_google_and_flat_forms_both_classify(predict):
    install_model("alice")
    c1, flat = predict("alice", {"event": CONFIDENT})
    c2, google = predict("alice", {"event": GOOGLE})
    assert c1 == c2 == 200 and flat["calendar_id"] == google["calendar_id"] == "work"
    assert google["event_id"] == "g-1"


@pytest.mark.parametrize("user,body,raw,status_,field", [
    ("alice", {"event": {"summary": "x", "start": "not a date"}}, None, 400, "event.start"),
    ("alice", {}, None, None, None),
    ("alice", {"event": "string"}, None, None, None),
    ("alice", None, "{not json", 400, None),
    ("..", {"event": CONFIDENT}, None, None, None),
    ("a" * 80, {"event": CONFIDENT}, None, None, None),
])
def test_bad_input_is_4xx_json(predict, user, body, raw, status_, field):
    code, out = predict(user, body, raw=raw)
    assert 400 <= code < 500, out
    if status_:
        assert code == status_
    assert set(out) >= {"error", "message"}
    if field:
        assert out["field"] == field


def test_user_stats_from_log_corrections_and_ledger(predict, with_llm, monkeypatch):
    install_model("alice")
    with_llm.behave(answer("home", usage=(1000, 10)))
    events = [dict(CONFIDENT, event_id=f"c{i}") for i in range(3)] + [dict(UNSURE, event_id="u0")]
    assert predict("alice", {"events": events}, batch=True)[0] == 200
    log = DynamoPredictionLog(settings().predictions_table)
    log.mark("alice", "c0", "work")   # right
    log.mark("alice", "c1", "home")   # wrong
    log.mark("alice", "u0", "home")   # right (llm)
    stats = load_handler("stats")
    fresh_services(monkeypatch, stats)
    resp = stats.lambda_handler(http("/v1/users/alice/stats", None, method="GET", raw=""), Ctx())
    assert resp["statusCode"] == 200, resp
    body = json.loads(resp["body"])
    assert body["predictions"] == 4 and body["judged"] == 3 and body["accuracy"] == pytest.approx(2 / 3, abs=1e-3)
    assert body["by_method"]["ml"] == {"count": 3, "logged": 3, "judged": 2, "correct": 1, "accuracy": 0.5}
    assert body["by_method"]["llm"]["accuracy"] == 1.0
    assert body["llm"]["calls"] == 1 and body["llm"]["usd"] > 0 and body["llm"]["input_tokens"] == 1000
    # another user sees nothing of alice's
    other = json.loads(stats.lambda_handler(http("/v1/users/bob/stats", None, method="GET", raw=""), Ctx())["body"])
    assert other["predictions"] == 0 and other["llm"]["calls"] == 0
    bad = stats.lambda_handler(http("/v1/users/../stats", None, method="GET", raw=""), Ctx())
    assert 400 <= bad["statusCode"] < 500
    glob = json.loads(stats.lambda_handler(http("/v1/stats", None, method="GET", raw=""), Ctx())["body"])
    assert glob["llm"]["calls"] == 1 and glob["llm"]["usd"] == pytest.approx(body["llm"]["usd"])


def test_answers_are_checked_against_the_documented_response_model(predict):
    """The answer check in the ``predict`` fixture can fail: a field of the wrong type is caught."""
    from pydantic import ValidationError

    install_model("alice", calendars=("home", "work"))
    status_, doc = predict("alice", {"event": CONFIDENT})
    assert status_ == 200
    with pytest.raises(ValidationError):
        predict.mod.Classification.model_validate({**doc, "confidence": "high"}, strict=True)
    with pytest.raises(ValidationError):
        predict.mod.Classification.model_validate({k: v for k, v in doc.items() if k != "cohort"}, strict=True)


def test_disabled_metrics_are_dropped_not_printed_later(predict, monkeypatch, capsys):
    """Powertools keeps metric values when POWERTOOLS_METRICS_DISABLED skips the flush, and prints
    them at 100 values anyway; the handlers drop them after every invocation."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    install_model("alice")
    capsys.readouterr()
    for _ in range(110):  # ModelCacheHit would reach 100 values
        assert predict("alice", {"event": CONFIDENT})[0] == 200
    assert emf(capsys.readouterr().out) == []
    assert not predict.mod.metrics.metric_set


def test_the_log_is_written_after_the_response_inside_the_same_invoke(predict, monkeypatch):
    """In Lambda the predict function registers an internal extension (calroute.wiring.after_response):
    the handler answers, then the extension writes the log item before the invoke phase ends. Driven
    here by a local stand-in of the Extensions API that holds the write until the answer is back."""
    import threading

    from calroute.adapters.lambda_extension import NAME, AfterResponseExtension
    from calroute_dev.local.extensions_api import ExtensionsApi

    install_model("alice")
    log = DynamoPredictionLog(settings().predictions_table)
    with ExtensionsApi(wait_s=10) as api:
        monkeypatch.setenv("AWS_LAMBDA_RUNTIME_API", api.address)
        monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        monkeypatch.setenv("PREDICTION_LOG_AFTER_RESPONSE", "true")  # opt-in
        settings.cache_clear()
        ext = wiring_after = __import__("calroute.wiring", fromlist=["after_response"]).after_response(settings())
        assert isinstance(ext, AfterResponseExtension)
        monkeypatch.setattr(predict.mod, "AFTER", wiring_after)
        fresh_services(monkeypatch, predict.mod)
        release, wrote_in = threading.Event(), []
        real_put = DynamoPredictionLog.put_many

        def held_put(self, user, records):
            wrote_in.append(threading.current_thread().name)
            release.wait(5)
            return real_put(self, user, records)

        monkeypatch.setattr(DynamoPredictionLog, "put_many", held_put)
        api.begin_invoke(Ctx.aws_request_id)
        code, body = predict("alice", {"event": CONFIDENT})
        assert code == 200 and body["method"] == "ml"  # answered while the write is held
        assert log.get("alice", "e-conf") is None and not api.idle()
        release.set()
        api.end_invoke()
        assert wrote_in == [NAME] and ext.ran == 1
        item = log.get("alice", "e-conf")
        assert item["method"] == "ml" and item["calendar_id"] == "work"
