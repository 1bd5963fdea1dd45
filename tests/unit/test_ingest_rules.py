"""Ingest, rule by rule (calroute.services.ingest; the mutation target ``services.ingest``): every
bad input's message and field, what the profile counts (new events, per calendar, the user's labels),
a partly failed write, the client's echo, corrections, calendars, settings and the .ics import —
against the in-memory stores."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from calroute.config import Settings
from calroute.errors import InvalidInput, NotFound, PayloadTooLarge
from calroute.schema import METHODS, CalendarInfo, parse_event
from calroute.services import ingest
from calroute.services.ingest import (IngestService, correct_event, echoed_prediction, import_ics, ingest_events,
                                      put_calendar, put_settings, validate_batch)
from support.fakes import fake_stores

CFG = Settings(prediction_log_sample_rate=0, prediction_log_lines=False)
NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


def raw(eid, cal="work", summary="Standup", day=2):
    out = {"event_id": eid, "summary": summary, "start": f"2026-03-{day:02d}T09:00:00Z"}
    if cal is not None:
        out["calendar_id"] = cal
    return out


def refused(exc_type, fn, *a, **kw):
    with pytest.raises(exc_type) as err:
        fn(*a, **kw)
    return err.value.message, err.value.field


# ----------------------------------------------------------------------------- the batch

def test_every_bad_batch_names_its_field():
    assert refused(InvalidInput, validate_batch, {"a": 1}, CFG) == ("events must be a list of events", "events")
    assert refused(InvalidInput, validate_batch, [], CFG) == ("events must contain at least one event", "events")
    small = Settings(ingest_max_events=2)
    assert refused(PayloadTooLarge, validate_batch, [raw("a"), raw("b"), raw("c")], small) == (
        "3 events in one request; at most 2 (INGEST_MAX_EVENTS) are allowed", "events")
    no_id = {k: v for k, v in raw("b").items() if k != "event_id"}
    assert refused(InvalidInput, validate_batch, [raw("a"), no_id], CFG) == (
        "events[1]: an event_id (or Google 'id') is required to ingest", "events[1].event_id")
    assert refused(InvalidInput, validate_batch, [raw("a", cal=None)], CFG) == (
        "events[0]: a calendar_id (its label) is required to ingest", "events[0].calendar_id")
    assert [e.event_id for e in validate_batch([raw("a"), raw("b")], small)] == ["a", "b"]


def test_ingest_counts_new_events_per_calendar_and_every_label_written():
    stores = fake_stores()
    stores.users.put_calendar("alice", CalendarInfo(calendar_id="work", name="Work", description="the job"))
    out = ingest_events("alice", [raw("a"), raw("b"), raw("c", cal="home"), raw("a")], stores, CFG)
    assert out == {"upserted": 3, "new": 3, "calendars_added": ["home"]}
    p = stores.users.profile("alice")
    assert (p["events_total"], p["calev#work"], p["calev#home"], p["labels_total"]) == (3, 2, 1, 3)
    assert stores.events.items["alice"]["a"][2] == "api"  # the source written with the event
    # the user's calendars keep their names; a new one is registered under its id
    cals = {c.calendar_id: c for c in stores.users.calendars("alice")}
    assert (cals["work"].name, cals["work"].description) == ("Work", "the job")
    assert (cals["home"].name, cals["home"].description) == ("home", "")
    # the same ids again: nothing new, but the labels were written again (they may replace remembered ones)
    assert ingest_events("alice", [raw("a"), raw("c", cal="home")], stores, CFG) == {
        "upserted": 2, "new": 0, "calendars_added": []}
    p = stores.users.profile("alice")
    assert (p["events_total"], p["calev#work"], p["calev#home"], p["labels_total"]) == (3, 2, 1, 5)


def test_a_partly_failed_write_counts_what_landed_then_fails():
    stores = fake_stores()
    real = stores.events.put_events

    def half(user_id, events, *, source="api", provenance="user"):
        real(user_id, events[:1], source=source)
        raise RuntimeError("storage gave up")

    stores.events.put_events = half
    with pytest.raises(RuntimeError, match="storage gave up"):
        ingest_events("alice", [raw("a"), raw("b"), raw("c", cal="home")], stores, CFG)
    p = stores.users.profile("alice")
    assert (p["events_total"], p["calev#work"], p.get("calev#home"), p["labels_total"]) == (1, 1, None, 3)

    # when counting fails too, the write's own error is the one raised
    stores = fake_stores()
    real = stores.events.put_events
    stores.events.put_events = half

    calls = []

    def existing_then_broken(user_id, ids_):
        calls.append(list(ids_))
        if len(calls) > 1:
            raise ValueError("counting failed")
        return set()

    stores.events.existing_ids = existing_then_broken
    with pytest.raises(RuntimeError, match="storage gave up"):
        ingest_events("alice", [raw("a")], stores, CFG)
    assert calls == [["a"], ["a"]] and stores.users.profile("alice") == {}


# ----------------------------------------------------------------------------- the client's echo

def test_the_echo_of_an_answer_is_validated_field_by_field():
    assert echoed_prediction(None) is None
    assert echoed_prediction({"calendar_id": "work", "method": "ml", "model_version": "v20260301000000-abc123"}) == {
        "calendar_id": "work", "method": "ml", "model_version": "v20260301000000-abc123", "source": "client"}
    assert echoed_prediction({"method": "none"}) == {"calendar_id": None, "method": "none", "model_version": None,
                                                     "source": "client"}
    assert refused(InvalidInput, echoed_prediction, ["ml"]) == (
        "predicted must be an object {calendar_id, method, model_version}", "predicted")
    assert refused(InvalidInput, echoed_prediction, {"method": "ml", "calendar_id": "w", "zz": 1, "aa": 2}) == (
        "predicted: unknown field(s) aa, zz", "predicted")
    assert refused(InvalidInput, echoed_prediction, {"method": "guess", "calendar_id": "w"}) == (
        f"predicted.method must be one of {', '.join(METHODS)}", "predicted.method")
    assert refused(InvalidInput, echoed_prediction, {"method": "ml"}) == (
        "predicted.calendar_id is required unless method is none", "predicted.calendar_id")
    assert refused(InvalidInput, echoed_prediction, {"method": "ml", "calendar_id": "../x"})[1] == "predicted.calendar_id"
    assert refused(InvalidInput, echoed_prediction,
                   {"method": "ml", "calendar_id": "w", "model_version": "../v"})[1] == "predicted.model_version"


# ----------------------------------------------------------------------------- corrections

class Log:
    """A prediction log that records what it was asked (a mark without an item must never happen)."""

    def __init__(self, items=None):
        self.items, self.marks = dict(items or {}), []

    def get(self, user_id, event_id):
        return self.items.get((user_id, event_id))

    def mark(self, user_id, event_id, cal):
        self.marks.append((user_id, event_id, cal))
        item = self.items[(user_id, event_id)]
        return {**item, "was_correct": item["calendar_id"] == cal}


def corrected(provenance="llm", log=None, **kw):
    stores = fake_stores(predictions=log or Log())
    ev = parse_event(raw("e1"))
    if provenance == "user":
        stores.events.put_events("alice", [ev])
    else:
        stores.events.remember("alice", [(ev, provenance, {})])
    return stores, correct_event("alice", "e1", kw.pop("to", "home"), stores, **kw)


def test_a_correction_answers_with_its_record_and_how_the_answer_fared():
    log = Log({("alice", "e1"): {"calendar_id": "work", "method": "llm", "model_version": "v1"}})
    stores, out = corrected(log=log)
    created = out.pop("created_at")
    assert out == {"event_id": "e1", "from_calendar": "work", "to_calendar": "home", "predicted_calendar": "work",
                   "predicted_method": "llm", "predicted_model_version": "v1", "predicted_source": "log",
                   "changed": True, "was_correct": False}
    assert created and log.marks == [("alice", "e1", "home")]
    p = stores.users.profile("alice")
    assert (p["corrections_total"], p.get("confident_misses_total"), p["labels_total"]) == (1, None, 1)
    assert stores.events.get_stored("alice", "e1").provenance == "user"
    # the client's echo, when the log has nothing: recorded, the log neither created nor marked
    log = Log()
    _, out = corrected(log=log, predicted={"calendar_id": "home", "method": "ml"})
    assert (out["predicted_source"], out["was_correct"]) == ("client", True) and log.marks == []


def test_a_changed_remembered_model_answer_is_a_confident_miss():
    stores, out = corrected("ml")  # no log, no echo: the stored row says the model answered
    p = stores.users.profile("alice")
    assert out["changed"] is True and "was_correct" not in out
    assert (p["corrections_total"], p["confident_misses_total"], p["labels_total"]) == (1, 1, 1)
    stores, _ = corrected("llm")
    assert "confident_misses_total" not in stores.users.profile("alice")


def test_the_same_calendar_makes_a_remembered_label_the_users_and_changes_nothing_else():
    stores, out = corrected("llm", to="work")
    p = stores.users.profile("alice")
    assert out["changed"] is False and (p["corrections_total"], p["labels_total"]) == (0, 1)
    stores, out = corrected("user", to="work")
    assert out["changed"] is False and stores.users.profile("alice") == {}


def test_a_correction_refuses_unknown_events_and_bad_ids():
    stores = fake_stores()
    assert refused(NotFound, correct_event, "alice", "nope", "home", stores) == ("event 'nope' not found", "eventId")
    assert refused(InvalidInput, correct_event, "alice", "e1", "../x", stores)[1] == "calendar_id"
    assert refused(InvalidInput, correct_event, "alice", "bad id!", "home", stores)[1] == "eventId"


# ----------------------------------------------------------------------------- calendars, settings

def test_a_calendar_is_named_and_described_within_limits():
    stores = fake_stores()
    assert put_calendar("alice", "work", None, None, stores) == {"calendar_id": "work", "name": "work", "description": ""}
    assert put_calendar("alice", "work", " Work ", "the job", stores) == {
        "calendar_id": "work", "name": "Work", "description": "the job"}
    assert refused(InvalidInput, put_calendar, "alice", "work", "x" * 201, None, stores) == (
        "name is 201 characters long; at most 200 are allowed", "name")
    assert refused(InvalidInput, put_calendar, "alice", "work", "ok", 5, stores) == (
        "description must be a string", "description")
    assert refused(InvalidInput, put_calendar, "alice", "../w", "ok", None, stores)[1] == "calendarId"


def test_settings_refusals_name_the_setting(monkeypatch):
    stores = fake_stores()
    monkeypatch.setitem(ingest.SETTINGS_DEFAULTS, "zeta", False)
    assert refused(InvalidInput, put_settings, "alice", {"colour": "blue"}, stores)[0] == (
        "unknown setting 'colour' (known: remember, zeta)")
    monkeypatch.delitem(ingest.SETTINGS_DEFAULTS, "zeta")
    assert refused(InvalidInput, put_settings, "alice", {"colour": "blue", "alpha": 1}, stores) == (
        "unknown setting 'alpha' (known: remember)", "alpha")
    assert refused(InvalidInput, put_settings, "alice", {"remember": 1}, stores) == (
        "remember must be true or false", "remember")
    out = put_settings("alice", {"remember": True}, stores)
    assert out["remember"] is True and set(out) == {"remember", "updated_at"}


# ----------------------------------------------------------------------------- .ics

def ics(name="Team", desc=None, rrule=None, events=1):
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"X-WR-CALNAME:{name}"] + ([f"X-WR-CALDESC:{desc}"] if desc else [])
    for i in range(events):
        lines += ["BEGIN:VEVENT", f"UID:u{i}", f"DTSTART:202603{i + 2:02d}T090000Z", f"DTEND:202603{i + 2:02d}T100000Z",
                  "SUMMARY:Standup"] + ([f"RRULE:{rrule}"] if rrule else []) + ["END:VEVENT"]
    return "\r\n".join(lines + ["END:VCALENDAR", ""])


def test_an_import_registers_the_calendar_stores_its_events_and_says_what_it_read():
    stores = fake_stores()
    out = import_ics("alice", "team", ics(events=2), CFG, stores, now=NOW)
    assert out == {"calendar_id": "team", "calendar_registered": True, "events": 2, "new": 2, "vevents": 2,
                   "recurring_series": 0, "recurring_expanded": 0, "skipped": 0, "skipped_reasons": {},
                   "window": {"start": (NOW - timedelta(days=730)).isoformat(),
                              "end": (NOW + timedelta(days=365)).isoformat()}}
    assert stores.events.items["alice"]["u0"][2] == "ics"
    assert import_ics("alice", "team", ics(events=2), CFG, stores, now=NOW)["calendar_registered"] is False
    # without a clock: now, in UTC
    window = import_ics("bob", "team", ics(), CFG, stores)["window"]
    assert window["start"].endswith("+00:00") and window["end"].endswith("+00:00")


def test_an_import_truncates_long_names_and_enforces_the_limits():
    stores = fake_stores()
    import_ics("alice", "team", ics(name="N" * 300, desc="D" * 1500), CFG, stores, now=NOW)
    cal = stores.users.calendars("alice")[0]
    assert (len(cal.name), len(cal.description)) == (ingest.MAX_CALENDAR_NAME, ingest.MAX_CALENDAR_DESCRIPTION)
    empty = import_ics("alice", "team", ics(events=0), CFG, stores, now=NOW)
    assert (empty["events"], empty["new"]) == (0, 0)
    with pytest.raises(InvalidInput, match="max_occurrences=3"):
        import_ics("alice", "team", ics(rrule="FREQ=DAILY;COUNT=10"), Settings(ics_max_occurrences=3), stores, now=NOW)
    with pytest.raises(PayloadTooLarge, match="max_bytes=1024"):
        import_ics("alice", "team", ics(desc="D" * 2000), Settings(ics_max_bytes=1024), stores, now=NOW)
    assert refused(InvalidInput, import_ics, "alice", "../t", ics(), CFG, stores)[1] == "calendarId"


def test_the_service_passes_everything_through():
    stores = fake_stores()
    svc = IngestService(stores, CFG)
    assert svc.import_ics("alice", "team", ics(), now=NOW)["window"]["start"] == (NOW - timedelta(days=730)).isoformat()
    stores.events.remember("alice", [(parse_event(raw(e)), "llm", {"margin": 0.2}) for e in ("m1", "m2")])
    assert len(svc.review_queue("alice", limit=1)["events"]) == 1
    assert len(svc.review_queue("alice")["events"]) == 2
    assert svc.confirm_event("alice", "m1")["provenance"] == "confirmed"
    assert svc.review_queue("alice")["pending"] == 1
