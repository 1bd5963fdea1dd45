"""Operations (issue 7), against moto with resources from template.yaml where AWS is involved:

* the registry API's audit trail (who / when / why) for promote AND rollback, and for a lost race;
* template alarms and dashboard widgets: each one the runbook names is there, and every calroute
  metric they reference is one the code emits — with the same dimensions (EMF documents captured);
* ``GET /v1/stats`` and ``GET /v1/experiments/{name}`` (operators only, bounded scans, no user ids).
"""

from __future__ import annotations

import io
import json
import re
from contextlib import redirect_stdout
from datetime import datetime, timedelta, timezone

import pytest

from calroute.adapters.dynamo.predictions import DynamoPredictionLog
from calroute.adapters.dynamo.registry import DynamoRegistry
from calroute.adapters.dynamo.usage import DynamoUsageLedger
from calroute.config import settings
from calroute.local.template import ROOT, _Tag, load_template
from support.apigw import call
from support.fakes import fake_stores
from support.handlers import fresh_services
from support.models import install_model

from conftest import load_handler

T = load_template()
RES = T["Resources"]
CODE_DIRS = (ROOT / "layers" / "core" / "calroute", ROOT / "functions")


# ------------------------------------------------------------------------------------------ registry audit


def _validated(user, n):
    rec = install_model(user, calendars=("home", "work"), n=n, activate=False)
    DynamoRegistry(settings().registry_table).set_status(user, rec["version"], "validated", "parity ok", validated=True)
    return rec


def _recent(ts: str, t0: datetime) -> bool:
    at = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    return t0 - timedelta(seconds=1) <= at <= datetime.now(timezone.utc) + timedelta(seconds=1)


def test_audit_trail_records_actor_time_reason_for_promote_and_rollback(models_api):
    t0 = datetime.now(timezone.utc)
    v1 = install_model("alice", calendars=("home", "work"), n=1)
    v2 = _validated("alice", 2)
    status, _, _ = models_api("POST", f"/v1/users/alice/models/{v2['version']}/promote",
                              body={"reason": "better on  mobile"}, user="ops")
    assert status == 200
    status, _, _ = models_api("POST", "/v1/users/alice/models/rollback", body={"reason": "user complaints"}, user="ops")
    assert status == 200
    status, _, listing = models_api("GET", "/v1/users/alice/models")
    assert status == 200 and listing["active_version"] == v1["version"]
    by_action = {a["action"]: a for a in listing["audit"]}
    promote, rollback = by_action["manual_promote"], by_action["rollback"]
    assert promote["actor"] == "dev:ops" and promote["reason"] == "better on mobile"  # whitespace folded
    assert (promote["from_version"], promote["to_version"]) == (v1["version"], v2["version"])
    assert rollback["actor"] == "dev:ops" and rollback["reason"] == "user complaints"
    assert (rollback["from_version"], rollback["to_version"]) == (v2["version"], v1["version"])
    assert _recent(promote["at"], t0) and _recent(rollback["at"], t0) and promote["at"] <= rollback["at"]
    # newest first
    assert [a["action"] for a in listing["audit"]].index("rollback") < [
        a["action"] for a in listing["audit"]].index("manual_promote")


def test_rollback_without_reason_is_audited_with_a_default(models_api):
    install_model("alice", calendars=("home", "work"), n=1)
    v2 = _validated("alice", 2)
    assert models_api("POST", f"/v1/users/alice/models/{v2['version']}/promote", user="ops")[0] == 200
    assert models_api("POST", "/v1/users/alice/models/rollback", user="ops")[0] == 200
    trail = DynamoRegistry(settings().registry_table).audit_trail("alice")
    rb = [a for a in trail if a["action"] == "rollback"]
    assert rb and rb[0]["reason"] == "rollback" and rb[0]["actor"] == "dev:ops" and rb[0]["at"]


def test_a_lost_race_is_refused_and_audited(models_api, monkeypatch):
    v1 = install_model("alice", calendars=("home", "work"), n=1)
    v2 = _validated("alice", 2)
    v3 = _validated("alice", 3)
    real_active = DynamoRegistry.active

    def stale(self, user_id, consistent=False):  # the operator read ACTIVE before a training run moved it
        item = real_active(self, user_id, consistent)
        return {**item, "version": v1["version"]} if item else item

    assert models_api("POST", f"/v1/users/alice/models/{v2['version']}/promote", user="ops")[0] == 200
    monkeypatch.setattr(DynamoRegistry, "active", stale)
    status, _, body = models_api("POST", f"/v1/users/alice/models/{v3['version']}/promote",
                                 body={"reason": "try v3"}, user="ops")
    assert status == 409 and body["error"] == "active_changed"
    monkeypatch.setattr(DynamoRegistry, "active", real_active)
    trail = DynamoRegistry(settings().registry_table).audit_trail("alice")
    lost = [a for a in trail if a["action"] == "manual_promote_conflict"]
    assert lost and lost[0]["actor"] == "dev:ops" and lost[0]["reason"] == "try v3"
    assert lost[0]["version"] == v3["version"] and lost[0]["expected_version"] == v1["version"]
    assert DynamoRegistry(settings().registry_table).active("alice")["version"] == v2["version"]  # no lost update


# ------------------------------------------------------------------------------------------ alarms, dashboard
def _plain(value):
    """Template values with intrinsic tags as [tag, value] (for JSON dumps)."""
    return json.loads(json.dumps(value, default=lambda o: [o.tag, o.value]))


def _alarm_metrics(props: dict) -> list[tuple[str, str, dict]]:
    """(namespace, metric name, {dimension: value}) of an alarm (single metric or metric math)."""
    if "MetricName" in props:
        return [(props["Namespace"], props["MetricName"], {d["Name"]: d["Value"] for d in props.get("Dimensions", [])})]
    out = []
    for m in props.get("Metrics", []):
        if "MetricStat" in m:
            met = m["MetricStat"]["Metric"]
            out.append((met["Namespace"], met["MetricName"], {d["Name"]: d["Value"] for d in met.get("Dimensions", [])}))
    return out


def _emitted_metric_names() -> set[str]:
    """Metric names the code emits: add_metric(name="X"...), add_metric("X", ...), add_dimensioned("X", ...)."""
    names: set[str] = set()
    pat = re.compile(r"add_(?:metric|dimensioned)\(\s*(?:name\s*=\s*)?[\"']([A-Za-z0-9]+)[\"']")
    for base in CODE_DIRS:
        for path in base.rglob("*.py"):
            src = path.read_text(encoding="utf-8")
            names.update(pat.findall(src))
            # tuples of (metric name, record key) handed to add_metric in a loop (training_run.summarize)
            names.update(re.findall(r"\(\"(Training[A-Za-z]+)\",\s*\"[a-z]+\"\)", src))
    return names


def _dashboard() -> dict:
    body = RES["Dashboard"]["Properties"]["DashboardBody"]
    assert isinstance(body, _Tag) and body.tag == "Sub"
    text = body.value[0] if isinstance(body.value, list) else body.value
    text = re.sub(r"\$\{AWS::Region\}", "us-east-1", text)
    text = re.sub(r"\$\{([A-Za-z:]+)\}", "0", text)  # parameters and the state machine ARN
    return json.loads(text)


def _widget_metrics(widget: dict) -> list[tuple[str, str, dict]]:
    """(namespace, name, properties) per metric row, resolving CloudWatch's "." / "..." shorthand."""
    out, prev = [], None
    for row in widget["properties"].get("metrics", []):
        opts = row[-1] if row and isinstance(row[-1], dict) else {}
        parts = row[:-1] if opts else row
        if parts and parts[0] == "...":
            parts = prev
        elif parts:
            parts = [p if p != "." else prev[i] for i, p in enumerate(parts)]
        if "expression" in opts:
            for name in re.findall(r'MetricName=\\?"([A-Za-z0-9]+)', opts["expression"]):
                out.append(("calroute", name, opts))
            continue
        prev = parts
        out.append((parts[0], parts[1], {**opts, "dims": dict(zip(parts[2::2], parts[3::2]))}))
    return out


ALARM_ACTIONS = ["If", ["HasAlarmTopic", [["Ref", "AlarmTopicArn"]], ["Ref", "AWS::NoValue"]]]


def test_the_runbook_alarms_exist_with_their_thresholds_and_notify_the_topic():
    alarms = {k: _plain(v["Properties"]) for k, v in RES.items() if v["Type"] == "AWS::CloudWatch::Alarm"}

    def find(metric: str) -> dict:
        hits = [a for a in alarms.values() if any(m[1] == metric for m in _alarm_metrics(a))]
        assert hits, f"no alarm on {metric}"
        return hits[0]

    share = find("Predictions")  # LLM-fallback share above a parameter (default 15%)
    assert share["Threshold"] == ["Ref", "LlmFallbackShareAlarm"] and share["ComparisonOperator"] == "GreaterThanThreshold"
    assert T["Parameters"]["LlmFallbackShareAlarm"]["Default"] == 0.15
    assert {m[2]["method"] for m in _alarm_metrics(share)} == {"ml", "llm", "ml_low_confidence"}
    lat = find("ClassifyLatencyMs")
    assert lat["ExtendedStatistic"] == "p99" and lat["Threshold"] == 100 and lat["ComparisonOperator"] == "GreaterThanThreshold"
    ok = find("5xx")
    assert ok["Threshold"] == 0.95 and ok["ComparisonOperator"] == "LessThanThreshold"
    assert find("ExecutionsFailed")["Threshold"] == 1  # a training run failed
    users = find("TrainingUsersFailed")  # a training run with failed users
    assert users["Threshold"] == 1 and users["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    drift = find("DriftPsi")
    assert drift["Threshold"] == 0.15 and drift["Statistic"] == "Maximum"
    spend = find("LlmCostUsd")
    assert spend["Threshold"] == ["Ref", "LlmDailyBudgetUsd"] and spend["Period"] == 86400 and spend["Statistic"] == "Sum"
    for name, a in alarms.items():
        assert a["AlarmActions"] == ALARM_ACTIONS, name
    assert T["Parameters"]["AlarmTopicArn"]["Type"] == "String"


def test_the_dashboard_has_the_runbook_widgets():
    widgets = _dashboard()["widgets"]
    by_metric: dict[str, list] = {}
    for w in widgets:
        for ns, name, opts in _widget_metrics(w):
            by_metric.setdefault(name, []).append((w, opts))
    assert "SEARCH(" in json.dumps(by_metric["Predictions"][0][0])            # predictions by method
    assert any("ML share" in json.dumps(w) for w in widgets)                 # ML share
    conf = {o.get("stat") for _, o in by_metric["Confidence"]}               # confidence histogram (PR bins)
    assert {"PR(:0.5)", "PR(0.95:)"} <= conf and len([s for s in conf if s.startswith("PR(")]) >= 4
    cost = by_metric["LlmCostUsd"][0][0]["properties"]                        # LLM cost per day
    assert cost["period"] == 86400 and cost["stat"] == "Sum"
    assert {o.get("stat") for _, o in by_metric["ClassifyLatencyMs"]} >= {"p50", "p99"}
    assert "ModelCacheHit" in by_metric and "ModelCacheMiss" in by_metric    # cache hit rate
    assert {"TrainingUsersTrained", "TrainingUsersFailed", "TrainingUsersRejected"} <= set(by_metric)
    assert "DriftPsi" in by_metric


def test_every_calroute_metric_of_alarms_and_widgets_is_emitted_by_the_code():
    emitted = _emitted_metric_names()
    referenced = set()
    for v in RES.values():
        if v["Type"] == "AWS::CloudWatch::Alarm":
            referenced |= {name for ns, name, _ in _alarm_metrics(_plain(v["Properties"])) if ns == "calroute"}
    for w in _dashboard()["widgets"]:
        referenced |= {name for ns, name, _ in _widget_metrics(w) if ns == "calroute"}
    assert referenced >= {"Predictions", "ClassifyLatencyMs", "LlmCostUsd", "TrainingUsersFailed", "DriftPsi",
                          "Confidence", "ModelCacheHit"}
    assert not referenced - emitted, f"referenced but never emitted: {sorted(referenced - emitted)}"


def _emf_docs(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"_aws"' in line]


def _dims_of(doc: dict, metric: str) -> set[str] | None:
    for d in doc["_aws"]["CloudWatchMetrics"]:
        if any(m["Name"] == metric for m in d["Metrics"]):
            assert d["Namespace"] == "calroute"
            return set(d["Dimensions"][0])
    return None


def test_emitted_dimensions_match_what_alarms_query(monkeypatch):
    """Real EMF documents (namespace calroute, service calroute as the template sets them) carry exactly
    the dimension sets the alarms query."""
    from aws_lambda_powertools import Metrics

    from calroute.services import training_run
    from calroute.adapters.emf import EmfSink

    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    alarm_dims = {}
    for v in RES.values():
        if v["Type"] == "AWS::CloudWatch::Alarm":
            for ns, name, dims in _alarm_metrics(_plain(v["Properties"])):
                if ns == "calroute":
                    alarm_dims.setdefault(name, set(dims))

    m = Metrics(namespace="calroute", service="calroute")
    buf = io.StringIO()
    with redirect_stdout(buf):
        sink = EmfSink(m)
        sink.add_dimensioned("Predictions", "Count", 3, {"method": "ml", "cohort": "treatment"})
        sink.add_metric("ClassifyLatencyMs", "Milliseconds", 12.0)
        sink.add_metric("LlmCostUsd", "None", 0.001)
        m.flush_metrics()

        class Reg:
            def put_run(self, run_id, record):
                pass

        run = {"run_id": "r1", "results": [{"status": "failed", "user_id": "u1"}], "count": 1,
               "drift": {"checked": 2, "drifted": 1, "max_psi": 0.4}}
        training_run.summarize(run, fake_stores(registry=Reg()), settings(), metrics=m)
        m.flush_metrics()
    docs = _emf_docs(buf.getvalue())
    seen = {}
    for doc in docs:
        for name in alarm_dims:
            dims = _dims_of(doc, name)
            if dims is not None:
                seen[name] = dims
                if name == "DriftPsi":
                    assert doc["DriftPsi"] in (0.4, [0.4])
    assert set(seen) == set(alarm_dims), f"not emitted: {set(alarm_dims) - set(seen)}"
    for name, dims in alarm_dims.items():
        assert seen[name] == dims, (name, seen[name], dims)


def test_plan_may_write_only_the_drift_attributes_of_the_registry():
    sts = [s for p in RES["PlanFunction"]["Properties"]["Policies"] for s in p["Statement"]]
    writes = [s for s in sts if set(s["Action"] if isinstance(s["Action"], list) else [s["Action"]]) & {
        "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}]
    assert len(writes) == 1 and writes[0]["Action"] == "dynamodb:UpdateItem"
    attrs = set(writes[0]["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"])
    assert set(DynamoRegistry.DRIFT_ATTRIBUTES) <= attrs <= set(DynamoRegistry.DRIFT_ATTRIBUTES) | {"user_id", "sk", "version"}
    reads = {a for s in sts if _plain(s["Resource"]) == ["GetAtt", "PredictionsTable.Arn"] for a in (
        s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert reads == {"dynamodb:Query"}


# ------------------------------------------------------------------------------------------ stats, experiments
NOW = datetime.now(timezone.utc)


def _log(user: str, rows: list[dict]) -> None:
    log = DynamoPredictionLog(settings().predictions_table)
    log.put_many(user, [{"event_id": f"{user}-{i}", **r} for i, r in enumerate(rows)])


def _row(method, *, cohort="treatment", latency=5.0, usd=None, conf=None, correct=None, age_days=0.0, cal="work"):
    r = {"method": method, "cohort": cohort, "latency_ms": latency, "calendar_id": cal, "reason": "secret reason",
         "created_at": (NOW - timedelta(days=age_days)).isoformat(timespec="milliseconds")}
    if usd is not None:
        r["llm_usd"] = usd
    if conf is not None:
        r["confidence"] = conf
    if correct is not None:
        r["was_correct"] = correct
    return r


@pytest.fixture
def stats_api(aws, monkeypatch, fresh_settings):
    monkeypatch.setenv("AUTH_MODE", "dev")
    monkeypatch.setenv("OPERATOR_IDS", "ops-1")
    mod = load_handler("stats")
    fresh_services(monkeypatch, mod)
    fresh_settings.cache_clear()

    def request(path, user="ops-1", **kw):
        return call(mod.lambda_handler, "GET", path, headers={"x-calroute-user": user}, **kw)

    request.mod = mod
    return request


def test_global_stats_ml_share_histogram_spend_and_savings(stats_api):
    _log("alice", [_row("ml", conf=0.97, latency=4.0, correct=True), _row("ml", conf=0.9, latency=6.0),
                   _row("llm", conf=0.4, latency=604.0, usd=0.002, correct=True),
                   _row("ml_low_confidence", conf=0.6, latency=5.0)])
    _log("bob", [_row("ml", conf=0.99, latency=5.0, correct=False), _row("llm_only", latency=500.0, usd=0.004),
                 _row("ml", conf=0.96, latency=5.0, age_days=3)])
    _log("carol", [_row("ml", conf=0.99, age_days=30)])  # outside every window
    DynamoUsageLedger(settings().usage_table).add("alice", usd=0.002, input_tokens=1000, output_tokens=20)
    status, _, body = stats_api("/v1/stats", query={"days": "1"})
    assert status == 200, body
    assert body["requests"] == 6 and body["scan"]["days"] == 1 and body["scan"]["truncated"] is False
    assert body["ml_share"] == pytest.approx(3 / 6) and body["llm_calls"] == 2
    hist = {(b["from"], b["to"]): b["count"] for b in body["confidence_histogram"]}
    assert hist == {(0.0, 0.5): 1, (0.5, 0.7): 1, (0.7, 0.85): 0, (0.85, 0.95): 1, (0.95, 1.0): 2}
    assert body["spent_usd"] == pytest.approx(0.006)
    saved = body["saved"]
    assert saved["usd_per_llm_call"] == pytest.approx(0.003) and saved["usd"] == pytest.approx(3 * 0.003)
    assert saved["llm_only_usd"] == pytest.approx(0.006 + 0.009) and saved["share"] == pytest.approx(0.6)
    # LLM path latency measured on the llm_only request: 500 ms; ML answers took 4 + 6 + 5 ms
    assert saved["llm_path_ms"] == 500.0 and saved["time_seconds"] == pytest.approx((1500 - 15) / 1000)
    assert body["by_method"]["ml"]["accuracy"] == 0.5 and body["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert body["llm"]["calls"] == 1  # the usage ledger part
    text = json.dumps(body)
    assert "alice" not in text and "bob" not in text and "secret reason" not in text
    _, _, week = stats_api("/v1/stats", query={"days": "30"})
    assert week["requests"] == 7 and week["scan"]["days"] == 7 and "STATS_MAX_DAYS" in week["scan"]["note"]


def test_global_stats_are_bounded_and_say_so(stats_api, monkeypatch, fresh_settings):
    _log("alice", [_row("ml", conf=0.99) for _ in range(130)])
    monkeypatch.setenv("STATS_MAX_ITEMS", "100")
    fresh_services(monkeypatch, stats_api.mod)
    fresh_settings.cache_clear()
    status, _, body = stats_api("/v1/stats")
    assert status == 200 and body["requests"] == 100
    assert body["scan"]["truncated"] is True and "item bound" in body["scan"]["note"]
    # no LLM call in the window: priced with the prompt-size estimate
    assert body["saved"]["usd_per_llm_call_source"].startswith("estimate") and body["saved"]["usd"] > 0


def test_operator_endpoints_refuse_users(stats_api):
    for path in ("/v1/stats", "/v1/experiments/hybrid-vs-llm"):
        status, _, body = stats_api(path, user="alice")
        assert status == 403 and body["error"] == "forbidden", (path, body)


def test_experiment_report_compares_the_arms(stats_api, monkeypatch, fresh_settings):
    monkeypatch.setenv("EXPERIMENT_CONTROL_PERCENT", "50")
    fresh_services(monkeypatch, stats_api.mod)
    fresh_settings.cache_clear()
    control = [_row("llm_only", cohort="control", latency=600.0 + i, usd=0.001, correct=i % 10 != 0)
               for i in range(60)]
    treatment = ([_row("ml", latency=5.0, conf=0.95, correct=i % 20 != 0) for i in range(50)]
                 + [_row("llm", latency=610.0, usd=0.001, conf=0.5, correct=True) for _ in range(10)])
    _log("ctl-user", control)
    _log("trt-user", treatment)
    status, _, body = stats_api("/v1/experiments/hybrid-vs-llm")
    assert status == 200, body
    c, t = body["arms"]["control"], body["arms"]["treatment"]
    assert c["requests"] == 60 and c["llm_calls"] == 60 and c["cost_usd"] == pytest.approx(0.06)
    assert c["accuracy"] == pytest.approx(54 / 60)
    assert t["requests"] == 60 and t["llm_calls"] == 10 and t["cost_usd"] == pytest.approx(0.01)
    assert t["ml_accuracy"] == pytest.approx(47 / 50) and t["latency_p50_ms"] == 5.0
    assert t["latency_p99_ms"] == 610.0 and c["latency_p50_ms"] == 629.0
    cmp = body["comparison"]
    assert cmp["cost_change"] == pytest.approx(-5 / 6, abs=1e-3) and cmp["latency_p50_change"] < -0.5
    assert cmp["seed_targets"] == {"ml_accuracy_ge_0_90": True, "latency_minus_50pct": True, "cost_minus_60pct": True}
    z = cmp["accuracy_z_test"]
    assert z["p_a"] == pytest.approx(54 / 60) and z["p_b"] == pytest.approx(57 / 60) and 0 < z["p_value"] < 1
    assert body["config"]["experiment_control_percent"] == 50 and body["notes"] == []
    assert "ctl-user" not in json.dumps(body)

    status, _, body = stats_api("/v1/experiments/other-test")
    assert status == 404 and body["field"] == "name"
    status, _, body = stats_api("/v1/experiments/bad%20name")
    assert status == 422 and body["field"] == "name"
