"""The data-lifecycle routes (DataFunction's real handler) against moto, resources from template.yaml:
who may call, listing, deleting events and calendars, and the erasure — after which a scan of every
table and a versioned listing of the model bucket find nothing of the user (issue 17)."""

from __future__ import annotations

import json

import boto3
import pytest

from conftest import load_handler
from support.apigw import call
from support.handlers import fresh_services
from support.models import install_model, make_events

pytestmark = pytest.mark.integration

TABLES = ("EVENTS_TABLE", "USERS_TABLE", "REGISTRY_TABLE", "PREDICTIONS_TABLE", "USAGE_TABLE")


@pytest.fixture
def api(aws, monkeypatch, fresh_settings):
    monkeypatch.setenv("AUTH_MODE", "dev")
    monkeypatch.setenv("OPERATOR_IDS", "ops1")
    fresh_settings.cache_clear()
    mod = load_handler("data")
    fresh_services(monkeypatch, mod)

    def request(method, path, user="alice", **kw):
        headers = kw.pop("headers", {})
        if user:
            headers["x-calroute-user"] = user
        return call(mod.lambda_handler, method, path, headers=headers, **kw)

    return request


def _seed(user: str, calendars=("home", "kids", "work"), per_calendar: int = 12):
    from calroute import wiring
    from calroute.config import settings

    stores = wiring.stores(settings())
    events = [e.to_flat() for e in make_events(calendars, per_calendar)]
    wiring.ingest_service(settings(), stores=stores).ingest_events(user, events)
    return stores, events


def _everything_of(user: str) -> list:
    """Every item of every table and every object version / delete marker of the bucket that holds
    ``user`` anywhere (keys or values)."""
    from calroute.config import settings

    cfg = settings()
    ddb = boto3.client("dynamodb")
    found = []
    for env in TABLES:
        name = getattr(cfg, env.lower())
        for page in ddb.get_paginator("scan").paginate(TableName=name):
            found += [(env, item) for item in page["Items"] if user in json.dumps(item)]
    s3 = boto3.client("s3")
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=cfg.model_bucket):
        for v in (page.get("Versions") or []) + (page.get("DeleteMarkers") or []):
            body = b""
            if "Size" in v:
                body = s3.get_object(Bucket=cfg.model_bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
            if user in v["Key"] or user.encode() in body:
                found.append(("bucket", v["Key"], v["VersionId"]))
    return found


def test_only_the_user_and_operators_may_call(api):
    _seed("alice", per_calendar=2)
    paths = [("GET", "/v1/users/alice/calendars"), ("GET", "/v1/users/alice/events"),
             ("DELETE", "/v1/users/alice/events/home-0"), ("DELETE", "/v1/users/alice/calendars/home"),
             ("DELETE", "/v1/users/alice")]
    for method, path in paths:
        status, _, body = api(method, path, user="mallory")
        assert status == 403 and body["error"] == "forbidden", (method, path)
        assert api(method, path, user=None)[0] == 403
    assert api("GET", "/v1/users/alice/events", user="alice")[2]["count"] == 6
    status, _, body = api("GET", "/v1/users/alice/calendars", user="ops1")  # an operator
    assert status == 200 and [c["events"] for c in body["calendars"]] == [2, 2, 2]
    status, _, body = api("GET", "/v1/users/alice/events", query={"cursor": "%%%"})
    assert status == 400 and body["field"] == "cursor"
    assert api("GET", "/v1/users/alice/events", query={"limit": "0"})[0] == 422


def test_list_page_and_delete_an_event_twice(api):
    _seed("alice")
    ids, cursor = [], None
    while True:
        params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        status, _, page = api("GET", "/v1/users/alice/events", query=params)
        assert status == 200
        ids += [e["event_id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(ids) == len(set(ids)) == 36
    status, _, body = api("GET", "/v1/users/alice/events", query={"calendar_id": "kids", "limit": "200"})
    assert body["count"] == 12 and {e["calendar_id"] for e in body["events"]} == {"kids"}
    status, _, body = api("DELETE", "/v1/users/alice/events/kids-3")
    assert status == 200 and body["deleted"] is True
    status, _, body = api("DELETE", "/v1/users/alice/events/kids-3")
    assert status == 404 and body["error"] == "event_not_found"


def test_a_deleted_calendar_is_never_an_answer(api):
    from calroute import wiring
    from calroute.config import settings

    stores, events = _seed("alice")
    install_model("alice", calendars=("home", "kids", "work"))
    predict = wiring.predict_service(settings(), stores=stores, invoker=None)
    kids = [{k: v for k, v in e.items() if k != "calendar_id"} for e in events if e["calendar_id"] == "kids"]
    assert sum(r["calendar_id"] == "kids" for r in predict.classify_batch("alice", kids)) >= 9
    status, _, body = api("DELETE", "/v1/users/alice/calendars/kids")
    assert status == 200 and body["events_deleted"] == 12 and body["retrain_requested"] is True
    for r in predict.classify_batch("alice", kids):
        assert r["calendar_id"] != "kids" and "kids" not in {a["calendar_id"] for a in r["alternatives"]}
    status, _, cals = api("GET", "/v1/users/alice/calendars")
    assert [c["calendar_id"] for c in cals["calendars"]] == ["home", "work"]
    assert api("DELETE", "/v1/users/alice/calendars/kids")[2]["error"] == "calendar_not_found"
    status, _, body = api("DELETE", "/v1/users/alice/calendars/home", query={"move_to": "work"})
    assert status == 200 and body["events_moved"] == 12


def test_erase_leaves_nothing_of_the_user_in_any_table_or_object_version(api):
    from calroute.config import settings

    stores, _ = _seed("alice")
    _seed("bob", calendars=("home", "work"))
    install_model("alice", calendars=("home", "kids", "work"))
    install_model("alice", calendars=("home", "kids", "work"), n=2)
    install_model("bob")
    stores.models.put("alice", "v20260101000001-000001", b"again")  # another version of a key
    stores.users.record_correction("alice", "home-1", old="home", new="work", prediction=None)
    stores.predictions.put_many("alice", [{"event_id": "home-1", "calendar_id": "home", "method": "ml"}])
    stores.usage.add("alice", usd=0.01, input_tokens=5, output_tokens=1)
    stores.usage.add("bob", usd=0.02, input_tokens=5, output_tokens=1)
    stores.models.put_json("runs/r1/users.json", [{"user_id": "alice", "run_id": "r1", "reason": "x"}])
    stores.registry.put_run("r1", {"failures": [{"user_id": "alice", "stage": "train", "error": "e"}]})
    stores.users.put_settings("alice", {"remember": True})
    stores.registry.put_gate_skip("alice", {"reason": "needs at least 10 labelled events (has 3)",
                                            "at": "2026-05-01T00:00:00+00:00", "labels_total": 3, "gates": "10/2/5/20000"})
    assert api("DELETE", "/v1/users/alice/calendars/kids")[0] == 200  # a tombstone too
    bob_before = _everything_of("bob")
    assert _everything_of("alice")

    status, _, body = api("DELETE", "/v1/users/alice")
    assert status == 200 and body["erased"] is True
    removed = body["removed"]
    assert removed["events"] == 24 and removed["model_objects"] == 3 and removed["registry"] >= 5
    assert removed["usage"] == 1 and removed["predictions"] == 1 and removed["run_manifests"] == 1
    assert removed["run_records"] == 1 and removed["users"] >= 5
    assert _everything_of("alice") == []
    assert _everything_of("bob") == bob_before
    status, _, again = api("DELETE", "/v1/users/alice")
    assert status == 200 and again["total"] == 0 and again["user_hash"] == body["user_hash"]
    audits = stores.registry.erasures()
    assert len(audits) == 2 and audits[0]["actor"] == "self" and "alice" not in json.dumps(audits, default=str)
    assert audits[1]["removed"] == removed
    # an operator may erase too, and is named in the audit record
    assert api("DELETE", "/v1/users/bob", user="ops1")[0] == 200
    assert stores.registry.erasures()[0]["actor"] == "dev:ops1"
    assert stores.usage.spent("_global") > 0 and settings().auth_mode == "dev"


def test_export_reads_every_store_on_dynamodb(api):
    from calroute import wiring
    from calroute.config import settings
    from calroute.services.lifecycle import replay

    stores, events = _seed("alice", per_calendar=3)
    install_model("alice", calendars=("home", "kids", "work"))
    stores.predictions.put_many("alice", [{"event_id": "home-1", "calendar_id": "home", "method": "ml"}])
    stores.usage.add("alice", usd=0.01, input_tokens=5, output_tokens=1)
    stores.users.record_correction("alice", "home-1", old="home", new="work", prediction=None)
    stores.registry.put_gate_skip("alice", {"reason": "r", "at": "2026-05-01T00:00:00+00:00", "labels_total": 3,
                                            "gates": "10/2/5/20000"})
    stores.users.put_settings("alice", {"remember": True})
    lines = [json.loads(json.dumps(x, default=str)) for x in wiring.lifecycle_service(settings()).export("alice")]
    kinds = {x["type"] for x in lines}
    assert {"profile", "calendar", "event", "correction", "model", "active_model", "prediction", "usage",
            "training_gates", "settings"} <= kinds
    assert next(x for x in lines if x["type"] == "settings")["remember"] is True
    cals, evs = replay(lines)
    assert sorted(e["event_id"] for e in evs) == sorted(e["event_id"] for e in events)
