"""IngestFunction against moto (tables from template.yaml) through API Gateway HTTP API v2 events."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from calroute import wiring
from calroute.adapters.dynamo import base as dynamo_base
from calroute.adapters.dynamo.events import DynamoEventStore
from calroute.config import Settings, settings
from calroute.errors import ServiceUnavailable
from calroute.services import ingest as svc
from support.apigw import LambdaContext, call, http_event
from support.handlers import fresh_services

from conftest import load_handler

ROOT = Path(__file__).resolve().parents[2]
PYVO = ROOT / "data" / "ics" / "pyvo_cz_meetups.ics"
U = "alice"


def ev(i: int, cal: str = "work", **kw) -> dict:
    return {"event_id": f"e{i}", "summary": f"Meeting {i}", "start": f"2025-03-{1 + i % 28:02d}T10:00:00Z",
            "end": f"2025-03-{1 + i % 28:02d}T11:00:00Z", "calendar_id": cal, **kw}


@pytest.fixture
def app(aws, monkeypatch):
    mod = load_handler("ingest")
    fresh_services(monkeypatch, mod)  # adapters bound to this test's moto
    return mod


@pytest.fixture
def repos(aws):
    return wiring.stores(settings())


def post_events(app, events, user=U, **kw):
    return call(app.lambda_handler, "POST", f"/v1/users/{user}/events", body={"events": events}, **kw)


# ----------------------------------------------------------------------------- events


def test_ingest_is_idempotent(app, repos):
    batch = [ev(i) for i in range(30)] + [ev(100, "home")]
    status, _, body = post_events(app, batch)
    assert status == 200, body
    assert body["upserted"] == 31 and body["new"] == 31
    assert sorted(body["calendars_added"]) == ["home", "work"]
    status, _, body = post_events(app, batch)
    assert status == 200 and body == {"upserted": 31, "new": 0, "calendars_added": []}
    assert repos.events.count_events(U) == 31
    assert repos.users.profile(U)["events_total"] == 31  # re-post not double-counted
    stored = repos.events.get_event(U, "e100")
    assert stored.calendar_id == "home" and stored.summary == "Meeting 100"


def test_google_form_is_accepted(app, repos):
    g = {"id": "g1", "summary": "Lunch", "start": {"dateTime": "2025-03-02T12:00:00", "timeZone": "Europe/Paris"},
         "end": {"dateTime": "2025-03-02T13:00:00", "timeZone": "Europe/Paris"}, "calendar_id": "home",
         "status": "confirmed"}
    status, _, body = post_events(app, [g])
    assert status == 200 and body["upserted"] == 1
    assert repos.events.get_event(U, "g1").start.utcoffset().total_seconds() == 3600


@pytest.mark.parametrize("bad,field", [
    ({"event_id": "x1", "summary": "no label", "start": "2025-03-01T10:00:00Z"}, "events[3].calendar_id"),
    ({"summary": "no id", "start": "2025-03-01T10:00:00Z", "calendar_id": "work"}, "events[3].event_id"),
    ({"event_id": "x1", "start": "not a date", "calendar_id": "work"}, "events[3].start"),
    ({"event_id": "x1", "start": "2025-03-01T10:00:00Z", "calendar_id": "../etc"}, "events[3].calendar_id"),
    ({"event_id": "a/b", "start": "2025-03-01T10:00:00Z", "calendar_id": "work"}, "events[3].event_id"),
    ({"event_id": "x1", "start": "2025-03-01T10:00:00Z", "calendar_id": "work", "evil": 1}, "events[3].evil"),
])
def test_one_bad_event_means_nothing_is_written(app, repos, bad, field):
    batch = [ev(0), ev(1), ev(2), bad, ev(4)]
    status, _, body = post_events(app, batch)
    assert 400 <= status < 500, body
    assert set(body) >= {"error", "message"}
    assert body["field"] == field
    assert repos.events.count_events(U) == 0
    assert repos.users.profile(U) == {}
    assert repos.users.calendars(U) == []


def test_batch_limit_is_413_naming_the_field(app, repos, monkeypatch):
    monkeypatch.setenv("INGEST_MAX_EVENTS", "5")
    settings.cache_clear()
    status, _, body = post_events(app, [ev(i) for i in range(6)])
    assert status == 413 and body["field"] == "events" and "INGEST_MAX_EVENTS" in body["message"]
    assert repos.events.count_events(U) == 0
    status, _, body = post_events(app, [ev(i) for i in range(5)])
    assert status == 200 and body["upserted"] == 5


def test_empty_or_malformed_bodies_are_4xx_json(app):
    for kw in ({"body": {"events": []}}, {"body": {"events": "nope"}}, {"body": {}},
               {"body": {"events": [42]}}, {"body": [1, 2]}):
        status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/events", **kw)
        assert 400 <= status < 500, (kw, status, body)
        assert body["error"] and body["message"], body
    status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/events", raw_body="{not json",
                           headers={"content-type": "application/json"})
    assert (status, body["error"], body["field"]) == (400, "invalid_json", "body")
    status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/events", raw_body="{}",
                           headers={"content-type": "text/plain"})
    assert (status, body["error"]) == (415, "unsupported_media_type")


def test_sample_events_for_sam_local_invoke(app, repos, monkeypatch):
    """infra/events/ingest_*.json (the `sam local invoke -e` samples) all succeed, in order. The
    import window is relative to now: the clock is pinned so the recurring series' count is exact
    whatever the date the suite runs on."""
    from calroute.services import ingest as ingest_mod
    from support.apigw import LambdaContext as Ctx

    real_window = ingest_mod.import_window
    monkeypatch.setattr(ingest_mod, "import_window", lambda back, fwd, now=None: real_window(
        back, fwd, now=datetime(2026, 3, 1, tzinfo=timezone.utc)))

    names = ["events", "correction", "calendar_put", "import", "import_base64"]
    out = {}
    for name in names:
        event = json.loads((ROOT / "infra" / "events" / f"ingest_{name}.json").read_text())
        resp = app.lambda_handler(event, Ctx())
        assert resp["statusCode"] == 200, (name, resp["body"])
        out[name] = json.loads(resp["body"])
    assert repos.events.get_event("demo", "evt-2").calendar_id == "health"
    # on the pinned date the weekly series (8) is inside the import window, plus the single event
    assert out["import"]["vevents"] == 2 and out["import"]["events"] == 9
    assert out["import_base64"]["events"] == 21
    assert repos.events.count_events("demo") == 3 + out["import"]["events"] + 21
    assert {c.calendar_id: c.name for c in repos.users.calendars("demo")}["gym"] == "Gym"


def test_invalid_user_id_in_path_is_4xx(app):
    status, _, body = post_events(app, [ev(0)], user="bad..user")
    assert 400 <= status < 500 and body["error"]


def test_storage_throttling_is_503_with_retry_after(app, monkeypatch):
    def throttled(self, *a, **kw):
        raise ServiceUnavailable("storage is throttling writes; retry the request", retry_after=2)

    monkeypatch.setattr(DynamoEventStore, "put_events", throttled)
    status, headers, body = post_events(app, [ev(0)])
    assert status == 503 and headers["retry-after"] == "2" and body["error"] == "unavailable"


def test_throttle_client_error_from_a_single_call_is_503(app, repos, monkeypatch):
    post_events(app, [ev(0)])

    class ThrottledTable:
        """A table whose GetItem raises what boto3 raises once its retries are spent."""

        def __init__(self, table):
            self.table = table

        def get_item(self, **kw):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}},
                              "GetItem")

        def __getattr__(self, name):
            return getattr(self.table, name)

    real_table = dynamo_base.Tables.table
    monkeypatch.setattr(dynamo_base.Tables, "table", lambda self, name: ThrottledTable(real_table(self, name)))
    status, headers, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/events/e0/correction",
                                 body={"calendar_id": "home"})
    assert status == 503 and "retry-after" in headers


# ----------------------------------------------------------------------------- corrections


def test_correction_relabels_and_records_the_prediction(app, repos):
    post_events(app, [ev(1), ev(2)])
    repos.predictions.put_many(U, [{"event_id": "e1", "calendar_id": "work", "method": "ml",
                                       "model_version": "v20250101000000-abcdef", "confidence": 0.91}])
    status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/events/e1/correction",
                           body={"calendar_id": "home"})
    assert status == 200, body
    assert body["event_id"] == "e1" and body["from_calendar"] == "work" and body["to_calendar"] == "home"
    assert body["predicted_calendar"] == "work" and body["predicted_method"] == "ml"
    assert body["predicted_model_version"] == "v20250101000000-abcdef"
    assert body["was_correct"] is False and body["changed"] is True
    assert repos.events.get_event(U, "e1").calendar_id == "home"
    assert repos.predictions.get(U, "e1")["was_correct"] is False
    assert repos.users.profile(U)["corrections_total"] == 1
    corr = repos.users.table.query(
        KeyConditionExpression="user_id = :u AND begins_with(sk, :p)",
        ExpressionAttributeValues={":u": U, ":p": "CORR#"})["Items"]
    assert len(corr) == 1 and corr[0]["to_calendar"] == "home" and corr[0]["predicted_calendar"] == "work"
    assert "home" in {c.calendar_id for c in repos.users.calendars(U)}


def test_correction_without_logged_prediction_and_unchanged_label(app, repos):
    post_events(app, [ev(1)])
    status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/events/e1/correction",
                           body={"calendar_id": "work"})
    assert status == 200 and body["changed"] is False and body.get("predicted_calendar") is None
    assert repos.users.profile(U).get("corrections_total", 0) == 0


def test_correction_takes_the_clients_echo_of_the_answer(app, repos):
    """The prediction log keeps a sample of confident answers: the client may echo what classify
    answered, and the correction records it (validated; unknown fields refused)."""
    post_events(app, [ev(1)])
    echo = {"calendar_id": "work", "method": "ml", "model_version": "v20260101000001-000001"}
    status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/events/e1/correction",
                           body={"calendar_id": "home", "predicted": echo})
    assert status == 200, body
    assert body["predicted_source"] == "client" and body["predicted_calendar"] == "work"
    assert body["was_correct"] is False and body["changed"] is True
    for bad in ({**echo, "method": "magic"}, {**echo, "extra": 1}, {**echo, "model_version": "x"}):
        status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/events/e1/correction",
                               body={"calendar_id": "home", "predicted": bad})
        assert status in (400, 422), (bad, body)


def test_correction_of_unknown_event_is_404(app):
    status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/events/nope/correction",
                           body={"calendar_id": "home"})
    assert status == 404 and body["error"] == "not_found" and body["field"] == "eventId"


def test_correction_bad_calendar_id_is_4xx(app):
    post_events(app, [ev(1)])
    status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/events/e1/correction",
                           body={"calendar_id": "a b"})
    assert 400 <= status < 500 and "calendar_id" in body["field"]


# ----------------------------------------------------------------------------- calendars


def test_put_calendar(app, repos):
    status, _, body = call(app.lambda_handler, "PUT", f"/v1/users/{U}/calendars/work",
                           body={"name": "Work", "description": "Meetings, reviews, 1:1s"})
    assert status == 200 and body == {"calendar_id": "work", "name": "Work",
                                      "description": "Meetings, reviews, 1:1s"}
    status, _, body = call(app.lambda_handler, "PUT", f"/v1/users/{U}/calendars/work", body={"name": "Job"})
    assert status == 200
    cals = repos.users.calendars(U)
    assert [(c.calendar_id, c.name, c.description) for c in cals] == [("work", "Job", "")]


def test_put_calendar_bounds(app, repos):
    status, _, body = call(app.lambda_handler, "PUT", f"/v1/users/{U}/calendars/work",
                           body={"name": "x" * 201})
    assert 400 <= status < 500 and body["field"] == "name"
    status, _, body = call(app.lambda_handler, "PUT", f"/v1/users/{U}/calendars/bad%20id", body={"name": "x"})
    assert 400 <= status < 500
    assert repos.users.calendars(U) == []


# ----------------------------------------------------------------------------- ICS import


def test_import_real_calendar_over_the_api(app, repos):
    data = PYVO.read_bytes()
    path = f"/v1/users/{U}/calendars/meetups/import"
    status, _, body = call(app.lambda_handler, "POST", path, raw_body=data.decode("utf-8"),
                           headers={"content-type": "text/calendar; charset=utf-8"})
    assert status == 200, body
    assert body["events"] == 21 and body["new"] == 21 and body["vevents"] == 21 and body["skipped"] == 0
    assert body["calendar_registered"] is True
    assert repos.events.count_events(U) == 21
    assert {e.calendar_id for e in repos.events.list_events(U)} == {"meetups"}
    assert [c.calendar_id for c in repos.users.calendars(U)] == ["meetups"]
    # again, base64-encoded as API Gateway sends binary media: idempotent
    status, _, body = call(app.lambda_handler, "POST", path, raw_body=data,
                           headers={"content-type": "text/calendar"})
    assert status == 200 and body["events"] == 21 and body["new"] == 0 and body["calendar_registered"] is False
    assert repos.events.count_events(U) == 21
    assert repos.users.profile(U)["events_total"] == 21


def test_import_registers_x_wr_calname_and_keeps_user_names(repos, aws):
    data = (ROOT / "data" / "ics" / "swiss_hockey_men_2025_26.ics").read_bytes()
    cfg = Settings()
    now = datetime(2025, 12, 1, tzinfo=timezone.utc)
    out = svc.import_ics(U, "hockey", data, cfg, repos, now=now)
    assert out["events"] == 32 and out["calendar_registered"]
    assert [(c.name) for c in repos.users.calendars(U)] == ["Swiss Hockey Men"]
    svc.put_calendar(U, "hockey", "My hockey", "", repos)
    svc.import_ics(U, "hockey", data, cfg, repos, now=now)
    assert [(c.name) for c in repos.users.calendars(U)] == ["My hockey"]


def test_import_expands_recurring_series_within_the_window(repos, aws):
    data = (ROOT / "data" / "ics" / "nust_bcs_s3_timetable.ics").read_bytes()
    out = svc.import_ics(U, "uni", data, Settings(), repos, now=datetime(2026, 6, 1, tzinfo=timezone.utc))
    assert out["recurring_series"] == 38 and out["recurring_expanded"] == 1900 and out["events"] == 1900
    # a window that ends in mid-2025 keeps only part of each series
    out = svc.import_ics("bob", "uni", data, Settings(ics_window_days_forward=1),
                         repos, now=datetime(2025, 3, 1, tzinfo=timezone.utc))
    assert 0 < out["recurring_expanded"] < 1900
    assert repos.events.count_events("bob") == out["events"]


@pytest.mark.parametrize("kw", [
    {"raw_body": '{"events": []}', "headers": {"content-type": "text/calendar"}},
    {"raw_body": "hello", "headers": {"content-type": "text/calendar"}},
    {"raw_body": "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", "headers": {"content-type": "application/json"}},
    {"raw_body": "", "headers": {"content-type": "text/calendar"}},
])
def test_import_wrong_content_is_4xx_json(app, repos, kw):
    status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/calendars/meetups/import", **kw)
    assert 400 <= status < 500, body
    assert body["error"] and body["message"]
    assert repos.events.count_events(U) == 0


def test_import_too_large_is_413(app, monkeypatch):
    monkeypatch.setenv("ICS_MAX_BYTES", "2048")
    settings.cache_clear()
    status, _, body = call(app.lambda_handler, "POST", f"/v1/users/{U}/calendars/meetups/import",
                           raw_body=PYVO.read_text(encoding="utf-8"), headers={"content-type": "text/calendar"})
    assert status == 413 and body["field"] == "body"


def test_import_bad_base64_is_400(app):
    event = http_event("POST", f"/v1/users/{U}/calendars/meetups/import", raw_body="@@@not base64@@@",
                       headers={"content-type": "text/calendar"})
    event["isBase64Encoded"] = True
    resp = app.lambda_handler(event, LambdaContext())
    assert resp["statusCode"] == 400 and json.loads(resp["body"])["field"] == "body"


# ----------------------------------------------------------------------------- auth


def test_dev_auth_header_must_match_the_path_user(app, repos, monkeypatch):
    monkeypatch.setenv("AUTH_MODE", "dev")
    settings.cache_clear()
    status, _, body = post_events(app, [ev(0)])
    assert status == 403 and body["error"] == "forbidden"
    status, _, body = post_events(app, [ev(0)], headers={"x-calroute-user": "mallory"})
    assert status == 403
    for method, path, kw in [
        ("POST", f"/v1/users/{U}/events/e0/correction", {"body": {"calendar_id": "home"}}),
        ("PUT", f"/v1/users/{U}/calendars/work", {"body": {"name": "w"}}),
        ("PUT", f"/v1/users/{U}/settings", {"body": {"remember": True}}),
        ("GET", f"/v1/users/{U}/settings", {}),
        ("POST", f"/v1/users/{U}/calendars/work/import",
         {"raw_body": PYVO.read_text(encoding="utf-8"), "headers": {"content-type": "text/calendar"}}),
    ]:
        kw.setdefault("headers", {})["x-calroute-user"] = "mallory"
        status, _, _ = call(app.lambda_handler, method, path, **kw)
        assert status == 403, path
    assert repos.events.count_events(U) == 0 and repos.users.calendars(U) == [] and repos.users.settings(U) == {}
    status, _, body = post_events(app, [ev(0)], headers={"x-calroute-user": U})
    assert status == 200 and body["upserted"] == 1


def test_openapi_schema_documents_the_routes(app):
    schema = app.app.get_openapi_schema()
    paths = schema.paths
    assert "/v1/users/{userId}/events" in paths
    assert "/v1/users/{userId}/events/{eventId}/correction" in paths
    assert "/v1/users/{userId}/calendars/{calendarId}" in paths
    assert "/v1/users/{userId}/calendars/{calendarId}/import" in paths
    assert paths["/v1/users/{userId}/events"].post.summary == "Upsert labelled events"


def test_a_full_batch_of_500_events_goes_through(app):
    """500 events (the default limit) in one request; how long it takes is measured in bench/, not
    asserted here."""
    status, _, body = post_events(app, [ev(i) for i in range(500)])
    assert status == 200 and body["upserted"] == 500


# ----------------------------------------------------------------------------- settings


def test_settings_default_set_and_refuse_what_is_not_a_setting(app, repos):
    path = f"/v1/users/{U}/settings"
    status, _, body = call(app.lambda_handler, "GET", path)
    assert status == 200 and body == {"remember": False, "updated_at": None}
    status, _, body = call(app.lambda_handler, "PUT", path, body={"remember": True})
    assert status == 200 and body["remember"] is True and body["updated_at"]
    assert call(app.lambda_handler, "GET", path)[2] == body
    assert repos.users.settings(U)["remember"] is True and repos.users.settings("bob") == {}
    status, _, kept = call(app.lambda_handler, "PUT", path, body={})  # nothing named: nothing changes
    assert status == 200 and kept["remember"] is True
    for bad in ({"remember": "yes"}, {"remember": 1}, {"colour": "blue"}, []):
        status, _, err = call(app.lambda_handler, "PUT", path, body=bad)
        assert status in (400, 422) and err["error"] == "validation_error", (bad, status, err)
    assert repos.users.settings(U)["remember"] is True
    status, _, body = call(app.lambda_handler, "PUT", path, body={"remember": False})
    assert status == 200 and body["remember"] is False
