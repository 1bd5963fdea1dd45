"""ModelsFunction (functions/models/app.py) through API Gateway HTTP events, against moto with
resources from template.yaml: status with gates and retraining reasons, versions and audit,
POST /train (Step Functions), manual promote (conditional, audited) and rollback."""

from __future__ import annotations

import json

import pytest

from calroute import wiring
from calroute.adapters.dynamo.registry import DynamoRegistry
from calroute.config import settings
from support.handlers import fresh_services
from support.models import install_model, make_events, version


@pytest.fixture
def api(models_api):
    return models_api


def _seed(user, calendars=("home", "work"), per_calendar=30):
    repos = wiring.stores(settings())
    events = make_events(calendars, per_calendar)
    repos.events.put_events(user, events)
    repos.users.bump(user, events=len(events))


def _validated(user, n, calendars=("home", "work")):
    rec = install_model(user, calendars=calendars, n=n, activate=False)
    DynamoRegistry(settings().registry_table).set_status(user, rec["version"], "validated", "parity ok", validated=True,
                                                   metrics={"holdout_accuracy": 0.9})
    return rec


def test_status_explains_gates_and_policy(api):
    status, _, body = api("GET", "/v1/users/alice/model")
    assert status == 200
    assert body["status"] == "no_model" and body["active_version"] is None
    assert body["can_train"]["ok"] is False and "needs at least 10" in body["can_train"]["reason"]
    assert body["needs_training"] == {"needed": False,
                                      "reason": "cannot train yet: " + body["can_train"]["reason"]}

    _seed("alice")
    _, _, body = api("GET", "/v1/users/alice/model")
    assert body["can_train"]["ok"] is True and body["needs_training"] == {"needed": True, "reason": "never trained"}
    assert body["labelled_events"] == 60 and body["events_total"] == 60

    rec = install_model("alice", calendars=("home", "work"), profiles={"work": {"n": 30}})
    DynamoRegistry(settings().registry_table).set_status("alice", rec["version"], "active", "",
                                                   events_total_at_training=10, metrics={"holdout_accuracy": 0.97})
    _, _, body = api("GET", "/v1/users/alice/model")
    assert body["status"] == "active" and body["active_version"] == rec["version"]
    assert body["threshold"] == pytest.approx(0.6) and body["labels"] == ["home", "work"]
    assert body["metrics"] == {"holdout_accuracy": 0.97} and body["profiles"] == {"work": {"n": 30}}
    assert body["needs_training"] == {"needed": True, "reason": "50 new events since training (threshold 50)"}


def test_tenant_boundary_and_bad_ids(api):
    status, _, body = api("GET", "/v1/users/alice/model", user="mallory")
    assert status == 403 and body["error"] == "forbidden"
    status, _, body = api("GET", "/v1/users/al%2Fice/model", user="al/ice")
    assert 400 <= status < 500
    status, _, body = api("POST", "/v1/users/alice/models/not-a-version/promote", body={})
    assert status == 422 and body["field"] == "version"


def test_train_starts_a_one_user_execution(api, monkeypatch, fresh_settings):
    status, _, body = api("POST", "/v1/users/alice/train")
    assert status == 503 and body["error"] == "unavailable"  # STATE_MACHINE_ARN not configured

    import boto3

    sfn = boto3.client("stepfunctions")
    arn = sfn.create_state_machine(name="calroute-test-training", roleArn="arn:aws:iam::123456789012:role/x",
                                   definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}})
                                   )["stateMachineArn"]
    monkeypatch.setenv("STATE_MACHINE_ARN", arn)
    fresh_services(monkeypatch, api.mod)
    fresh_settings.cache_clear()
    status, _, body = api("POST", "/v1/users/alice/train")
    assert status == 202, body
    assert body["run_id"].startswith("r") and body["execution_arn"].endswith(":" + body["run_id"])
    desc = sfn.describe_execution(executionArn=body["execution_arn"])
    assert json.loads(desc["input"]) == {"trigger": "api", "user_ids": ["alice"], "run_id": body["run_id"]}
    _, _, models = api("GET", "/v1/users/alice/models")
    assert [a["action"] for a in models["audit"]] == ["train_requested"]
    assert models["audit"][0]["actor"] == "dev:alice"


def test_promote_and_rollback_are_conditional_and_audited(api):
    v1 = install_model("alice", calendars=("home", "work"), n=1)
    v2 = _validated("alice", 2)
    status, _, body = api("POST", f"/v1/users/alice/models/{v2['version']}/promote", body={"reason": "better on mobile"},
                          user="ops")
    assert status == 200, body
    assert body == {"user_id": "alice", "active_version": v2["version"], "previous_version": v1["version"],
                    "rolled_back_from": None, "changed": True}

    _, _, listing = api("GET", "/v1/users/alice/models")
    assert listing["active_version"] == v2["version"]
    assert [v["version"] for v in listing["versions"]] == [v2["version"], v1["version"]]  # newest first
    assert all("holdout_event_ids" not in v for v in listing["versions"])
    manual = [a for a in listing["audit"] if a["action"] == "manual_promote"]
    assert manual and manual[0]["actor"] == "dev:ops" and manual[0]["reason"] == "better on mobile"

    status, _, body = api("POST", "/v1/users/alice/models/rollback", body={"reason": "complaints"}, user="ops")
    assert status == 200 and body["active_version"] == v1["version"] and body["rolled_back_from"] == v2["version"]
    reg = DynamoRegistry(settings().registry_table)
    assert reg.get_version("alice", v2["version"])["status"] == "rolled_back"
    rb = [a for a in reg.audit_trail("alice") if a["action"] == "rollback"]
    assert rb and rb[0]["from_version"] == v2["version"] and rb[0]["to_version"] == v1["version"]


def test_promote_refusals(api):
    install_model("alice", calendars=("home", "work"), n=1)
    cand = install_model("alice", calendars=("home", "work"), n=2, activate=False)  # never validated
    status, _, body = api("POST", f"/v1/users/alice/models/{cand['version']}/promote", body={"reason": "x"}, user="ops")
    assert status == 409 and body["error"] == "not_validated"
    status, _, body = api("POST", f"/v1/users/alice/models/{version(9)}/promote", user="ops")
    assert status == 404
    status, _, body = api("POST", f"/v1/users/alice/models/{cand['version']}/promote", raw_body="[1,", user="ops")
    assert status == 400 and body["field"] == "body"
    status, _, body = api("POST", f"/v1/users/alice/models/{cand['version']}/promote", body={"reason": 5}, user="ops")
    assert status == 400 and body["field"] == "reason"
    status, _, body = api("POST", "/v1/users/bob/models/rollback", user="ops")
    assert status == 404
    status, _, body = api("POST", "/v1/users/alice/models/rollback", user="ops")
    assert status == 409 and body["error"] == "no_previous_version"


def test_promote_and_rollback_are_operator_only(api):
    """Who may change a model is explicit: a user may read their models, not promote or roll back
    (not even a validated version: champion/challenger decides, operators override)."""
    v1 = install_model("alice", calendars=("home", "work"), n=1)
    v2 = _validated("alice", 2)
    for path in (f"/v1/users/alice/models/{v2['version']}/promote", "/v1/users/alice/models/rollback"):
        status, _, body = api("POST", path, body={"reason": "I prefer it"})
        assert status == 403 and body["error"] == "forbidden" and "operators only" in body["message"], path
    assert DynamoRegistry(settings().registry_table).active("alice")["version"] == v1["version"]
    status, _, _ = api("GET", "/v1/users/alice/models")
    assert status == 200


def test_rollback_walks_the_history_and_never_flips(api):
    """v1 → v2 → v3; rollback → v2, rollback → v1, rollback → 409 (nothing older). The second
    rollback used to re-activate the version just rolled back (ACTIVE's previous_version)."""
    v1 = install_model("alice", calendars=("home", "work"), n=1)
    v2 = install_model("alice", calendars=("home", "work"), n=2)
    v3 = install_model("alice", calendars=("home", "work"), n=3)
    seen = []
    for _ in range(2):
        status, _, body = api("POST", "/v1/users/alice/models/rollback", body={"reason": "r"}, user="ops")
        assert status == 200, body
        seen.append((body["rolled_back_from"], body["active_version"]))
    assert seen == [(v3["version"], v2["version"]), (v2["version"], v1["version"])]
    status, _, body = api("POST", "/v1/users/alice/models/rollback", body={"reason": "r"}, user="ops")
    assert status == 409 and body["error"] == "no_previous_version"
    reg = DynamoRegistry(settings().registry_table)
    assert reg.active("alice")["version"] == v1["version"]
    assert {v["version"]: v["status"] for v in reg.versions("alice")} == {
        v1["version"]: "active", v2["version"]: "rolled_back", v3["version"]: "rolled_back"}
def test_promote_loses_a_race_with_409_and_no_lost_update(api, monkeypatch):
    v1 = install_model("alice", calendars=("home", "work"), n=1)
    v2 = _validated("alice", 2)
    v3 = install_model("alice", calendars=("home", "work"), n=3)  # a training run promoted v3 meanwhile
    real_active = DynamoRegistry.active
    stale = {"done": False}

    def stale_active(self, user_id, consistent=False):
        if not stale["done"]:
            stale["done"] = True
            return {**real_active(self, user_id, consistent), "version": v1["version"]}
        return real_active(self, user_id, consistent)

    monkeypatch.setattr(DynamoRegistry, "active", stale_active)
    status, _, body = api("POST", f"/v1/users/alice/models/{v2['version']}/promote", body={"reason": "x"}, user="ops")
    assert status == 409 and body["error"] == "active_changed"
    assert real_active(DynamoRegistry(settings().registry_table), "alice")["version"] == v3["version"]


def test_promote_refuses_a_version_whose_model_object_is_gone(api):
    install_model("alice", calendars=("home", "work"), n=1)
    v2 = _validated("alice", 2)
    wiring.stores(settings()).models.delete(v2["s3_key"])
    status, _, body = api("POST", f"/v1/users/alice/models/{v2['version']}/promote", user="ops")
    assert status == 409 and body["error"] == "model_unavailable"


def test_configure_openapi_merge_finds_none_of_our_resolvers():
    """Why the merged document is built by hand (docs/architecture.md, "The merged OpenAPI
    document"): Powertools' discovery keeps files that assign ``app = <ResolverClass>(...)``, and our
    HTTP handlers assign ``app = make_resolver()``. When this fails, Powertools may serve: re-evaluate."""
    from pathlib import Path

    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    functions = Path(__file__).resolve().parents[2] / "functions"
    http = [p for p in sorted(functions.glob("*/app.py")) if "app = make_resolver(" in p.read_text(encoding="utf-8")]
    assert len(http) == 6  # data, ingest, models, parse, predict, stats
    probe = APIGatewayHttpResolver()
    probe.configure_openapi_merge(path=str(functions), pattern="*/app.py")
    assert probe._openapi_merge.discovered_files == []  # noqa: SLF001 - what it would merge: nothing


def test_openapi_document(api):
    status, headers, doc = api("GET", "/v1/openapi.json", user=None)
    assert status == 200 and headers["content-type"].startswith("application/json")
    paths = doc["paths"]
    for p in ("/v1/users/{userId}/model", "/v1/users/{userId}/train", "/v1/users/{userId}/models",
              "/v1/users/{userId}/models/{version}/promote", "/v1/users/{userId}/models/rollback"):
        assert p in paths, p
    assert "202" in paths["/v1/users/{userId}/train"]["post"]["responses"]
    # the other HTTP functions' routes are merged in when their code sits next to this one
    assert "/v1/users/{userId}/events" in paths
