"""Validation everywhere: hostile ids, bodies, dates, strings, JSON shapes and ICS bombs, sent both
(a) to the real handlers as API Gateway v2 events against in-process moto and (b) over HTTP to the
local stack. Every bad input must be a 4xx JSON ``{"error", "message", "field"}`` naming the field —
never a 5xx — and must not change a single stored item.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import quote

import pytest

from support.apigw import LambdaContext, http_event
from support.handlers import fresh_services

import figures
from conftest import load_handler
from rel_support import http, snapshot_user, stack, table_counts  # noqa: F401 - fixtures

U = "val_user"
GOOD = {"event_id": "g1", "summary": "Sprint review", "start": "2026-03-02T10:00:00Z",
        "end": "2026-03-02T11:00:00Z", "calendar_id": "work"}


@dataclass
class Case:
    name: str
    method: str
    path: str  # URL-encoded, as sent on the wire
    json_body: Any = None
    raw: Optional[bytes] = None
    content_type: Optional[str] = None
    status: tuple[int, ...] = ()  # empty: any 4xx
    field: Optional[str] = None  # must appear in the answer's "field" (or its message)
    ok: bool = False  # a valid-but-unusual input: must be 200
    lenient: bool = False  # 200, or a 4xx that writes nothing

    @property
    def user(self) -> str:
        """The dev identity to send: the path's user (when it is header-safe), so auth passes and the
        validation is what answers."""
        parts = self.path.split("/")
        from urllib.parse import unquote

        u = unquote(parts[3]) if len(parts) > 3 else U
        return u if u.isascii() and u.isprintable() and u.strip() == u and u else U


def ev(**kw) -> dict:
    return {**GOOD, **kw}


def events_path(user: str = U) -> str:
    return f"/v1/users/{user}/events"


def deep(n: int) -> str:
    return "[" * n + "]" * n


BAD_PATH_IDS = {
    "slash": "al%2Fice", "dotdot": "..", "inner-dotdot": "a..b", "nul": "a%00b", "bell": "a%07b",
    "newline-suffix": "alice%0A", "cyrillic-a": "%D0%B0lice", "fullwidth": "%EF%BD%95ser", "space": "alice%20",
    "leading-dash": "-alice", "1000-chars": "x" * 1000, "rtl-override": "al%E2%80%AEice", "emoji": "%F0%9F%98%80",
}
BAD_BODY_IDS = {
    "slash": "a/b", "dotdot": "..", "inner-dotdot": "a..b", "nul": "a\x00b", "newline-suffix": "e1\n",
    "cyrillic": "\u0430lice", "fullwidth": "\uff55ser", "empty": "", "1000-chars": "x" * 1000,
    "rtl": "a\u202eb", "emoji": "\U0001F600", "int": 12, "list": ["a"],
}


def cases() -> list[Case]:
    out: list[Case] = []
    # --- ids in paths (every HTTP route family)
    for name, bad in BAD_PATH_IDS.items():
        out.append(Case(f"path-user-{name}", "POST", events_path(bad), {"events": [GOOD]}, field="userId"))
        out.append(Case(f"path-user-classify-{name}", "POST", f"/v1/users/{bad}/classify",
                        {"event": {"summary": "x", "start": "2026-03-02T10:00:00Z"}}, field="userId"))
        out.append(Case(f"path-user-model-{name}", "GET", f"/v1/users/{bad}/model", field="userId"))
        out.append(Case(f"path-event-{name}", "POST", f"/v1/users/{U}/events/{bad}/correction",
                        {"calendar_id": "work"}, field="eventId"))
        out.append(Case(f"path-calendar-{name}", "PUT", f"/v1/users/{U}/calendars/{bad}", {"name": "x"},
                        field="calendarId"))
        out.append(Case(f"path-calendar-import-{name}", "POST", f"/v1/users/{U}/calendars/{bad}/import",
                        raw=b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", content_type="text/calendar",
                        field="calendarId"))
    out.append(Case("path-user-empty", "POST", "/v1/users//events", {"events": [GOOD]}, status=(404,)))
    # --- ids in bodies
    for name, bad in BAD_BODY_IDS.items():
        out.append(Case(f"body-event-id-{name}", "POST", events_path(), {"events": [GOOD, ev(event_id=bad)]},
                        field="event_id"))
        out.append(Case(f"body-calendar-id-{name}", "POST", events_path(), {"events": [GOOD, ev(calendar_id=bad)]},
                        field="calendar_id"))
        out.append(Case(f"correction-calendar-id-{name}", "POST", f"/v1/users/{U}/events/g1/correction",
                        {"calendar_id": bad}, field="calendar_id"))
    # --- sizes
    out.append(Case("body-over-max-body-bytes", "POST", events_path(),
                    {"events": [ev(description="d" * 1_100_000)]}, status=(413,), field="body"))
    out.append(Case("batch-over-ingest-max", "POST", events_path(),
                    {"events": [ev(event_id=f"b{i}") for i in range(501)]}, status=(413,), field="events"))
    out.append(Case("batch-empty", "POST", events_path(), {"events": []}, field="events"))
    out.append(Case("classify-batch-over-max", "POST", f"/v1/users/{U}/classify/batch",
                    {"events": [{"summary": "x", "start": "2026-03-02T10:00:00Z"}] * 101}, status=(413, 422),
                    field="events"))
    out.append(Case("classify-batch-empty", "POST", f"/v1/users/{U}/classify/batch", {"events": []}, field="events"))
    # --- dates
    for name, kw, fld in [
        ("invalid-date", {"start": "2025-13-45T10:00:00Z"}, "start"),
        ("not-a-date", {"start": "next tuesday"}, "start"),
        ("end-before-start", {"end": "2026-03-02T09:00:00Z"}, "end"),
        ("year-1", {"start": "0001-01-01T00:00:00Z", "end": None}, "start"),
        ("year-9999", {"start": "9999-12-31T23:59:59Z", "end": None}, "start"),
        ("start-int", {"start": 1740000000}, "start"),
        ("start-empty", {"start": ""}, "start"),
        ("start-missing", {"start": None}, "start"),
        ("start-41-chars", {"start": "2026-03-02T10:00:00.000000000000000000000Z"}, "start"),
        ("bad-tz", {"time_zone": "Mars/Olympus"}, "start"),
        ("google-no-datetime", {"start": {"timeZone": "UTC"}}, "start"),
    ]:
        body = ev(**kw)
        if kw.get("start") is None and "start" in kw:
            body.pop("start")
        out.append(Case(f"date-{name}", "POST", events_path(), {"events": [GOOD, body]}, field=fld))
        out.append(Case(f"classify-date-{name}", "POST", f"/v1/users/{U}/classify", {"event": body}, field=fld))
    for name, kw in [("naive", {"start": "2026-03-02T10:00:00", "end": "2026-03-02T11:00:00"}),
                     ("all-day", {"start": "2026-03-02", "end": "2026-03-03"}),
                     ("mixed-naive-aware", {"start": "2026-03-02T10:00:00", "end": "2026-03-02T11:00:00+01:00"}),
                     ("offset", {"start": "2026-03-02T10:00:00-08:00", "end": "2026-03-02T11:00:00-08:00"}),
                     ("year-1900", {"start": "1900-01-01T00:00:00Z", "end": None}),
                     ("year-2200", {"start": "2200-12-31T00:00:00Z", "end": None})]:
        out.append(Case(f"ok-date-{name}", "POST", events_path(), {"events": [ev(event_id=f"ok-{name}", **kw)]},
                        ok=True))
    # --- strings
    out.append(Case("summary-huge", "POST", events_path(), {"events": [ev(summary="s" * 100_000)]}, field="summary"))
    out.append(Case("description-huge", "POST", events_path(), {"events": [ev(description="d" * 40_000)]},
                    field="description"))
    out.append(Case("attendees-too-many", "POST", events_path(),
                    {"events": [ev(attendees=[f"a{i}@x.test" for i in range(201)])]}, field="attendees"))
    out.append(Case("calendar-name-huge", "PUT", f"/v1/users/{U}/calendars/work", {"name": "n" * 5000}, field="name"))
    for name, text in [("control-chars", "Sprint\x00\x1b[31m review\x07"), ("rtl-override", "\u202eweiver tnirpS"),
                       ("emoji", "Sprint \U0001F680 review \U0001F468\u200d\U0001F469\u200d\U0001F467"),
                       ("combining", "Cafe\u0301 meeting"), ("lone-surrogate-escape", "x\\ud800y")]:
        out.append(Case(f"ok-string-{name}", "POST", events_path(), {"events": [ev(event_id=f"s-{name}", summary=text)]},
                        ok=True))
    out.append(Case("lone-surrogate", "POST", events_path(),
                    raw=b'{"events": [{"event_id": "s1", "summary": "\\ud800", "start": "2026-03-02T10:00:00Z", '
                        b'"calendar_id": "work"}]}', content_type="application/json", field="summary"))
    out.append(Case("invalid-utf8", "POST", events_path(),
                    raw=b'{"events": [{"event_id": "u1", "summary": "\xff\xfe\xc3(", "start": "2026-03-02T10:00:00Z", '
                        b'"calendar_id": "work"}]}', content_type="application/json", status=(400,), field="body"))
    out.append(Case("classify-invalid-utf8", "POST", f"/v1/users/{U}/classify", raw=b'{"event": {"summary": "\xc0\xaf"}}',
                    content_type="application/json", status=(400,), field="body"))
    # --- JSON shapes and types
    for name, raw in [("not-json", b"{"), ("empty", b""), ("array", b"[]"), ("string", b'"events"'),
                      ("number", b"1"), ("null", b"null"), ("nan", b'{"events": NaN}'),
                      ("deep-nesting", ('{"events": [{"attendees": ' + deep(100_000) + "}]}").encode()),
                      ("deep-object", ('{"events": ' + '{"a":' * 50_000 + "1" + "}" * 50_000 + "}").encode()),
                      ("trailing-garbage", b'{"events": []} xyz'), ("bom", b'\xef\xbb\xbf{"events": []}'),
                      ("duplicate-key-last-bad", b'{"events": [], "events": "x"}')]:
        out.append(Case(f"json-{name}", "POST", events_path(), raw=raw, content_type="application/json"))
        out.append(Case(f"classify-json-{name}", "POST", f"/v1/users/{U}/classify", raw=raw,
                        content_type="application/json"))
    for name, body, fld in [("events-string", {"events": "x"}, "events"), ("events-object", {"events": {}}, "events"),
                            ("events-null", {"events": None}, "events"), ("event-int", {"events": [1]}, "events"),
                            ("event-list", {"events": [[GOOD]]}, "events"), ("missing-events", {}, "events"),
                            ("unknown-event-field", {"events": [ev(colour="red")]}, "colour"),
                            ("unknown-google-field", {"events": [{"id": "g9", "start": {"dateTime": "2026-03-02T10:00:00Z"},
                                                                  "calendar_id": "work", "hack": 1}]}, "hack"),
                            ("summary-object", {"events": [ev(summary={"$ne": 1})]}, "summary"),
                            ("attendees-string", {"events": [ev(attendees="a@x.test")]}, "attendees"),
                            ("all-day-string", {"events": [ev(all_day="maybe")]}, "all_day"),
                            ("missing-calendar", {"events": [{k: v for k, v in GOOD.items() if k != "calendar_id"}]},
                             "calendar_id")]:
        out.append(Case(f"type-{name}", "POST", events_path(), body, field=fld))
    for name, body, fld in [("event-string", {"event": "x"}, "event"), ("event-list", {"event": []}, "event"),
                            ("event-empty", {"event": {}}, "start"), ("event-null", {"event": None}, "event"),
                            ("missing", {}, "event"), ("batch-string", {"events": "x"}, "events")]:
        path = f"/v1/users/{U}/classify" + ("/batch" if "batch" in name else "")
        out.append(Case(f"classify-{name}", "POST", path, body, field=fld))
    out.append(Case("correction-missing-body", "POST", f"/v1/users/{U}/events/g1/correction", raw=b"",
                    content_type="application/json"))
    out.append(Case("correction-int", "POST", f"/v1/users/{U}/events/g1/correction", {"calendar_id": 5},
                    field="calendar_id"))
    out.append(Case("promote-bad-version", "POST", f"/v1/users/{U}/models/..%2F..%2Fx/promote", {}, field="version"))
    out.append(Case("unknown-route", "DELETE", events_path(), status=(404, 405)))
    return out


def ics_cases() -> list[Case]:
    path = f"/v1/users/{U}/calendars/imported/import"
    head = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n"
    tail = b"END:VCALENDAR\r\n"

    def vevent(i: int, extra: bytes = b"") -> bytes:
        return (b"BEGIN:VEVENT\r\nUID:u%d@t\r\nDTSTART:20260302T100000Z\r\nDTEND:20260302T110000Z\r\n"
                b"SUMMARY:e%d\r\n" % (i, i) + extra + b"END:VEVENT\r\n")

    secondly = head + vevent(0, b"RRULE:FREQ=SECONDLY\r\n") + tail
    minutely = head + vevent(0, b"RRULE:FREQ=MINUTELY;INTERVAL=1\r\n") + tail
    never = head + vevent(0, b"RRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30\r\n") + tail
    many = head + b"".join(vevent(i) for i in range(6000)) + tail
    nested = head + b"BEGIN:VEVENT\r\n" * 2000 + b"END:VEVENT\r\n" * 2000 + tail
    ten_mb = head + vevent(0, b"DESCRIPTION:" + b"x" * (10 * 1024 * 1024) + b"\r\n") + tail
    return [
        Case("ics-secondly-no-until", "POST", path, raw=secondly, content_type="text/calendar", field="body"),
        Case("ics-minutely", "POST", path, raw=minutely, content_type="text/calendar", field="body"),
        # rejected by the CPU deadline (SIGVTALRM) where the handler runs in the main thread (Lambda);
        # in the local stack's gateway threads only the step budget applies and it imports (~5 s)
        Case("ics-rule-never-matches", "POST", path, raw=never, content_type="text/calendar", field="body",
             lenient=True),
        Case("ics-6000-vevents", "POST", path, raw=many, content_type="text/calendar", field="body"),
        Case("ics-deep-nesting", "POST", path, raw=nested, content_type="text/calendar", field="body"),
        Case("ics-10mb", "POST", path, raw=ten_mb, content_type="text/calendar", status=(413,)),
        Case("ics-not-calendar", "POST", path, raw=b"hello", content_type="text/calendar", field="body"),
        Case("ics-binary", "POST", path, raw=os.urandom(4096), content_type="application/octet-stream", field="body"),
        Case("ics-json-content-type", "POST", path, json_body={"a": 1}, status=(415,), field="content-type"),
        Case("ics-empty", "POST", path, raw=b"", content_type="text/calendar", field="body"),
    ]


def cascade_cases() -> list[Case]:
    """Issue 12: classify with remember, the review queue, confirm."""
    review, classify = f"/v1/users/{U}/review", f"/v1/users/{U}/classify"
    return [
        Case("review-limit-0", "GET", review + "?limit=0", field="limit"),
        Case("review-limit-101", "GET", review + "?limit=101", field="limit"),
        Case("review-limit-text", "GET", review + "?limit=ten", field="limit"),
        Case("confirm-unknown-event", "POST", f"/v1/users/{U}/events/nope/confirm", {}, status=(404,), field="eventId"),
        Case("confirm-bad-event-id", "POST", f"/v1/users/{U}/events/a%00b/confirm", {}, field="eventId"),
        Case("remember-not-a-bool", "POST", classify, {"event": GOOD, "remember": [1]}, field="remember"),
        Case("remember-without-event-id", "POST", classify,
             {"event": {k: v for k, v in GOOD.items() if k != "event_id"}, "remember": True}, status=(400,),
             field="event.event_id"),
    ]


ALL = cases() + ics_cases() + cascade_cases()


def check_answer(case: Case, status: int, body: Any) -> None:
    assert status < 500, f"{case.name}: {status} {body}"
    if case.ok or (case.lenient and status == 200):
        assert status == 200, f"{case.name}: {status} {body}"
        return
    assert 400 <= status < 500, f"{case.name}: {status} {body}"
    if case.status:
        assert status in case.status, f"{case.name}: {status} {body}"
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and isinstance(body.get("message"), str), \
        f"{case.name}: {body!r}"
    if case.field and status != 404:
        named = f"{body.get('field', '')} {body['message']}"
        assert case.field in named, f"{case.name}: field {case.field!r} not named in {body}"


# ----------------------------------------------------------------------------- (a) the real handlers


def handler_for(path: str) -> str:
    if "/classify" in path:
        return "predict"
    if path.endswith(("/model", "/models", "/train", "/promote", "/rollback")):
        return "models"
    return "ingest"


@pytest.fixture
def handlers(aws, monkeypatch):
    mods = {n: load_handler(n) for n in ("ingest", "predict", "models")}
    fresh_services(monkeypatch, *mods.values())
    return mods


def all_items() -> dict:
    import boto3

    from calroute.config import settings

    cfg = settings()
    ddb = boto3.resource("dynamodb")
    out = {}
    for t in (cfg.events_table, cfg.users_table, cfg.registry_table, cfg.predictions_table, cfg.usage_table):
        out[t] = sorted(json.dumps(i, sort_keys=True, default=str) for i in ddb.Table(t).scan()["Items"])
    s3 = boto3.client("s3")
    out["s3"] = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=cfg.model_bucket).get("Contents", []))
    return out


def invoke(mods: dict, case: Case) -> tuple[int, Any]:
    kw: dict = {"headers": {}}
    if case.raw is not None:
        kw["raw_body"] = case.raw
    elif case.json_body is not None:
        kw["body"] = case.json_body
    if case.content_type:
        kw["headers"]["content-type"] = case.content_type
    event = http_event(case.method, case.path, **kw)
    if case.raw is not None and case.content_type == "application/json":
        # API Gateway passes a UTF-8 text body as text, anything else base64-encoded
        try:
            event["body"], event["isBase64Encoded"] = case.raw.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    resp = mods[handler_for(case.path)].lambda_handler(event, LambdaContext())
    raw = resp.get("body") or ""
    if resp.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    return resp["statusCode"], (json.loads(raw) if raw else None)


def test_bad_inputs_through_the_handlers_are_4xx_and_write_nothing(handlers):
    status, body = invoke(handlers, Case("seed", "POST", events_path(), {"events": [GOOD]}))
    assert status == 200, body
    failures = []
    for case in ALL:
        before = None if case.ok or case.lenient else all_items()
        try:
            status, body = invoke(handlers, case)
            check_answer(case, status, body)
            if before is not None:
                assert all_items() == before, f"{case.name}: stored data changed"
        except AssertionError as exc:
            failures.append(str(exc)[:400])
        except Exception as exc:  # the handler raised: Lambda would answer 500
            failures.append(f"{case.name}: handler raised {type(exc).__name__}: {str(exc)[:200]}")
    assert not failures, f"{len(failures)} of {len(ALL)} cases failed:\n" + "\n".join(failures)
    figures.record("validation", {"cases": len(ALL), "lenient_or_ok": sum(1 for c in ALL if c.ok or c.lenient)})


def test_control_characters_are_stripped_and_unicode_kept(handlers):
    from calroute.adapters.dynamo.events import DynamoEventStore
    from calroute.config import settings

    events = [ev(event_id="c1", summary="Sprint\x00\x1b[31m review\x07"),
              ev(event_id="c2", summary="Sprint \U0001F680 review"), ev(event_id="c3", summary="Cafe\u0301")]
    status, body = invoke(handlers, Case("strings", "POST", events_path(), {"events": events}))
    assert status == 200, body
    repo = DynamoEventStore(settings().events_table)
    assert repo.get_event(U, "c1").summary == "Sprint[31m review"
    assert repo.get_event(U, "c2").summary == "Sprint \U0001F680 review"
    assert repo.get_event(U, "c3").summary == "Caf\u00e9"  # NFC


# ----------------------------------------------------------------------------- (b) the local HTTP API


def test_bad_inputs_over_http_are_4xx_and_write_nothing(stack, http):
    """The same cases over real HTTP (local API Gateway → the handlers → moto server). Ids in the
    path arrive percent-encoded, bodies as bytes; dev auth with the path's user so that validation,
    not the tenant check, answers. Stored data of the users involved must not change."""
    r = http.request("POST", events_path(), json_body={"events": [GOOD]}, user=U)
    assert r.status == 200, r.raw
    counts_before = table_counts()
    failures = []
    for case in ALL:
        users = {U, case.user}
        before = None if case.ok or case.lenient else {u: snapshot_user(u) for u in users}
        try:
            r = http.request(case.method, case.path, json_body=case.json_body, body=case.raw, user=case.user,
                             content_type=case.content_type)
            try:
                body = r.json() if r.raw else None
            except ValueError:
                body = r.raw[:200]
            check_answer(case, r.status, body)
            if before is not None:
                assert {u: snapshot_user(u) for u in users} == before, f"{case.name}: stored data changed"
        except AssertionError as exc:
            failures.append(str(exc)[:400])
    n_ok = sum(1 for c in ALL if c.ok or c.lenient)
    counts_after = table_counts()
    assert not failures, f"{len(failures)} of {len(ALL)} cases failed:\n" + "\n".join(failures)
    # only the ok cases wrote (events + the calendar the ICS import registered)
    from calroute.config import settings

    assert counts_after[settings().events_table] - counts_before[settings().events_table] <= n_ok + 1


def test_gateway_refuses_bodies_over_10_mb_without_reading_them(stack, http):
    """Only the headers are sent: the 413 must come from the declared length, before any body."""
    r = http.headers_only("POST", events_path(), {"content-type": "application/json", "x-calroute-user": U},
                          10 * 1024 * 1024 + 1)
    assert r.status == 413 and r.json()["error"] == "payload_too_large"
