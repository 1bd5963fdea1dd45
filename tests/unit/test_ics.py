"""calroute.ics: the 11 real calendars, recurrence, time zones, ids, windows and bombs."""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from calroute import ids
from calroute.errors import InvalidInput, PayloadTooLarge
from calroute.ics.expand import MAX_SERIES_YEARS
from calroute.ics.parse import MAX_COMPONENTS, MAX_DEPTH
from calroute.ics.reader import import_window, parse_ics, read_ics

ICS_DIR = Path(__file__).resolve().parents[2] / "data" / "ics"


def _sources_table() -> dict[str, tuple[int, int]]:
    """short_name -> (VEVENTs, expanded) from data/ics/SOURCES.md."""
    out = {}
    for line in (ICS_DIR / "SOURCES.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\| `([a-z0-9_]+)` \|", line)
        if m:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            out[m.group(1)] = (int(cells[5].replace(",", "")), int(cells[6].replace(",", "")))
    return out


SOURCES = _sources_table()


def cal(*vevents: str, extra: str = "", head: str = "") -> str:
    body = "".join(f"BEGIN:VEVENT\n{v.strip()}\nEND:VEVENT\n" for v in vevents)
    text = f"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//calroute//test//EN\n{head}{extra}{body}END:VCALENDAR\n"
    return text.replace("\n", "\r\n")


BERLIN = """BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:STANDARD
DTSTART:19701025T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:19700329T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
END:VTIMEZONE
"""


# ----------------------------------------------------------------------------- real calendars


def test_sources_table_lists_eleven_calendars():
    assert len(SOURCES) == 11
    assert SOURCES["nust_bcs_s3_timetable"] == (38, 1900)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_real_calendar_imports_with_the_documented_counts(name):
    vevents, expanded = SOURCES[name]
    data = (ICS_DIR / f"{name}.ics").read_bytes()
    res = read_ics(data, "cal-1")
    assert res.vevents == vevents
    assert len(res.events) == expanded
    assert res.skipped == 0, res.skipped_reasons
    assert len({e.event_id for e in res.events}) == expanded  # ids unique
    assert all(e.calendar_id == "cal-1" for e in res.events)
    assert all(ids.is_valid_event_id(e.event_id) for e in res.events)
    # deterministic: a re-import yields the same ids (idempotent upserts)
    assert [e.event_id for e in parse_ics(data, "cal-1")] == [e.event_id for e in res.events]


def test_real_calendar_date_ranges_match_sources():
    nust = parse_ics((ICS_DIR / "nust_bcs_s3_timetable.ics").read_bytes(), "uni")
    assert nust[0].start.date() == date(2025, 1, 20) and nust[-1].start.date() == date(2025, 12, 30)
    assert nust[0].start.tzinfo is None  # floating time kept as wall clock
    assert all(e.recurring for e in nust)
    prot = parse_ics((ICS_DIR / "protestant_holidays.ics").read_bytes(), "church")
    assert prot[0].start.date() == date(2026, 2, 18) and prot[-1].start.date() == date(2037, 11, 28)
    assert all(e.all_day for e in prot)


def test_real_calendar_quirks():
    # pyvo: no DTEND -> zero-length timed event
    pyvo = parse_ics((ICS_DIR / "pyvo_cz_meetups.ics").read_bytes(), "meetups")
    assert all(e.end == e.start for e in pyvo)
    # GAEL: DURATION instead of DTEND
    gael = parse_ics((ICS_DIR / "gael_seminars_2026_27.ics").read_bytes(), "seminars")
    assert gael[0].duration_minutes == 75
    # Morley: TAB-folded lines are unfolded
    morley = parse_ics((ICS_DIR / "morley_rfc_fixtures_2023_24.ics").read_bytes(), "rugby")
    assert all("\t" not in e.summary for e in morley)
    assert all(e.duration_minutes == 330 for e in morley)
    # Bristol: HTML entities decoded
    bristol = parse_ics((ICS_DIR / "bristol_data_week_2025.ics").read_bytes(), "dataweek")
    text = " ".join(e.summary + e.description + e.location for e in bristol)
    assert "&amp;" not in text and "&#x3D;" not in text
    # Swiss hockey: UTC times shown in the calendar's X-WR-TIMEZONE; UIDs with spaces get derived ids
    hockey = read_ics((ICS_DIR / "swiss_hockey_men_2025_26.ics").read_bytes(), "hockey")
    assert hockey.calendar_name == "Swiss Hockey Men"
    assert all(e.start.utcoffset() in (timedelta(hours=1), timedelta(hours=2)) for e in hockey.events)
    # PyCon UK: empty SUMMARY accepted
    pycon = parse_ics((ICS_DIR / "pyconuk_2015_schedule.ics").read_bytes(), "pycon")
    assert sum(1 for e in pycon if e.summary == "") >= 4
    # WHO: TZID with a STANDARD-only VTIMEZONE (Africa/Lagos, +01:00)
    who = parse_ics((ICS_DIR / "who_revue_annuelle_2025.ics").read_bytes(), "who")
    assert all(e.start.utcoffset() == timedelta(hours=1) for e in who)


def test_lf_and_crlf_give_the_same_events():
    data = (ICS_DIR / "pyvo_cz_meetups.ics").read_bytes()
    assert b"\r\n" in data
    lf = data.replace(b"\r\n", b"\n")
    assert [e.to_flat() for e in parse_ics(lf, "c")] == [e.to_flat() for e in parse_ics(data, "c")]


# ----------------------------------------------------------------------------- recurrence


def test_rrule_exdate_and_recurrence_id_override():
    text = cal(
        """UID:standup@example.com
SUMMARY:Standup
DTSTART;TZID=Europe/Berlin:20250303T090000
DTEND;TZID=Europe/Berlin:20250303T091500
RRULE:FREQ=WEEKLY;COUNT=6
EXDATE;TZID=Europe/Berlin:20250310T090000""",
        """UID:standup@example.com
SUMMARY:Standup (moved)
RECURRENCE-ID;TZID=Europe/Berlin:20250317T090000
DTSTART;TZID=Europe/Berlin:20250318T100000
DTEND;TZID=Europe/Berlin:20250318T101500""",
        extra=BERLIN,
    )
    res = read_ics(text, "work")
    evs = res.events
    assert [e.start.date() for e in evs] == [date(2025, 3, d) for d in (3, 18, 24, 31)] + [date(2025, 4, 7)]
    assert evs[1].summary == "Standup (moved)" and evs[1].start.hour == 10
    # wall clock stays 09:00 across the DST change on 30 March
    assert evs[3].start.hour == 9 and evs[3].start.utcoffset() == timedelta(hours=2)
    assert evs[0].start.utcoffset() == timedelta(hours=1)
    assert all(e.recurring for e in evs)
    # ids: UID + recurrence id (UTC); the override keeps its original slot's id
    assert evs[0].event_id == "standup@example.com:20250303T080000Z"
    assert evs[1].event_id == "standup@example.com:20250317T080000Z"
    assert res.recurring_series == 1 and res.expanded == 5


def test_rdate_and_all_day_yearly_series():
    text = cal(
        """UID:bday
SUMMARY:Birthday
DTSTART;VALUE=DATE:20200214
RRULE:FREQ=YEARLY;COUNT=3""",
        """UID:extra
SUMMARY:Extra dates
DTSTART:20250101T120000Z
DURATION:PT30M
RDATE:20250105T120000Z,20250109T120000Z""",
    )
    evs = parse_ics(text, "home")
    bdays = [e for e in evs if e.summary == "Birthday"]
    assert [e.start.year for e in bdays] == [2020, 2021, 2022]
    assert all(e.all_day and e.duration_minutes == 24 * 60 for e in bdays)
    assert bdays[0].event_id == "bday:20200214"
    extra = [e for e in evs if e.summary == "Extra dates"]
    assert [e.start.day for e in extra] == [1, 5, 9]
    assert all(e.duration_minutes == 30 for e in extra)


def test_cancelled_and_unusable_vevents_are_skipped_and_counted():
    text = cal(
        "UID:ok\nSUMMARY:ok\nDTSTART:20250101T100000Z",
        "UID:gone\nSUMMARY:cancelled\nSTATUS:CANCELLED\nDTSTART:20250102T100000Z",
        "UID:nostart\nSUMMARY:no start",
        "UID:broken\nSUMMARY:broken\nDTSTART:2025XX01",
        "UID:old\nSUMMARY:too old\nDTSTART:18000101T000000Z",
        "UID:badrule\nSUMMARY:bad rule\nDTSTART:20250101T100000Z\nRRULE:FREQ=NEVER",
    )
    res = read_ics(text, "c")
    assert [e.event_id for e in res.events] == ["ok"]
    assert res.vevents == 6
    assert res.skipped == 5, res.skipped_reasons


def test_cancelled_override_removes_one_occurrence():
    text = cal(
        "UID:s\nSUMMARY:Series\nDTSTART:20250106T100000Z\nRRULE:FREQ=DAILY;COUNT=3",
        "UID:s\nSUMMARY:Series\nRECURRENCE-ID:20250107T100000Z\nDTSTART:20250107T100000Z\nSTATUS:CANCELLED",
    )
    res = read_ics(text, "c")
    assert [e.start.day for e in res.events] == [6, 8]
    assert res.skipped_reasons == {"cancelled": 1}


# ----------------------------------------------------------------------------- time zones


def test_time_zone_styles():
    text = cal(
        "UID:utc\nSUMMARY:utc\nDTSTART:20250601T100000Z\nDTEND:20250601T110000Z",
        "UID:tzid\nSUMMARY:tzid\nDTSTART;TZID=Europe/Berlin:20250601T100000\nDURATION:PT2H",
        "UID:floating\nSUMMARY:floating\nDTSTART:20250601T100000",
        "UID:allday\nSUMMARY:allday\nDTSTART;VALUE=DATE:20250601\nDTEND;VALUE=DATE:20250603",
        "UID:noend\nSUMMARY:date without end\nDTSTART;VALUE=DATE:20250605",
        extra=BERLIN,
    )
    by = {e.event_id: e for e in parse_ics(text, "c")}
    assert by["utc"].start == datetime(2025, 6, 1, 10, tzinfo=timezone.utc)
    assert by["tzid"].start.hour == 10 and by["tzid"].start_utc.hour == 8
    assert by["tzid"].duration_minutes == 120
    assert by["floating"].start.tzinfo is None and by["floating"].duration_minutes == 0
    assert by["allday"].all_day and by["allday"].duration_minutes == 2 * 24 * 60
    assert by["noend"].all_day and by["noend"].duration_minutes == 24 * 60


def test_x_wr_timezone_applies_to_utc_times():
    text = cal("UID:a\nSUMMARY:a\nDTSTART:20250601T100000Z", head="X-WR-TIMEZONE:Asia/Tokyo\n")
    ev = parse_ics(text, "c")[0]
    assert ev.start.hour == 19 and ev.start.tzinfo == ZoneInfo("Asia/Tokyo")


# ----------------------------------------------------------------------------- ids and text


def test_ids_for_bad_and_missing_uids_are_derived_and_stable():
    text = cal(
        "UID:has space@x\nSUMMARY:spaced\nDTSTART:20250101T100000Z",
        "SUMMARY:no uid\nDTSTART:20250102T100000Z",
        "SUMMARY:no uid series\nDTSTART:20250103T100000\nRRULE:FREQ=DAILY;COUNT=2",
    )
    evs = {e.summary: e for e in parse_ics(text, "c")}
    assert evs["spaced"].event_id == ids.derived_event_id("has space@x")
    no_uid = evs["no uid"].event_id
    assert no_uid == ids.derived_event_id("c", "20250102T100000Z", "no uid")
    other = {e.summary: e for e in parse_ics(text, "other")}
    assert other["no uid"].event_id != no_uid
    series = [e for e in parse_ics(text, "c") if e.summary == "no uid series"]
    assert len({e.event_id for e in series}) == 2
    assert series[0].event_id == ids.derived_event_id("c", "20250103T100000", "no uid series", "20250103T100000")


def test_over_long_text_is_truncated_not_rejected():
    long = "x" * 50_000
    ev = parse_ics(cal(f"UID:l\nSUMMARY:{long}\nDESCRIPTION:{long}\nDTSTART:20250101T100000Z"), "c")[0]
    assert len(ev.summary) == 1024 and len(ev.description) == 8192


def test_attendees_and_organizer():
    text = cal("UID:m\nSUMMARY:m\nDTSTART:20250101T100000Z\nORGANIZER:mailto:Boss@Corp.example\n"
               "ATTENDEE;CN=A:mailto:a@corp.example\nATTENDEE:mailto:b@corp.example")
    ev = parse_ics(text, "c")[0]
    assert ev.organizer == "boss@corp.example"
    assert ev.attendees == ("a@corp.example", "b@corp.example")


# ----------------------------------------------------------------------------- bounds


def test_window_limits_only_recurring_series():
    text = cal(
        "UID:daily\nSUMMARY:daily\nDTSTART:20000101T090000Z\nRRULE:FREQ=DAILY",
        "UID:ancient\nSUMMARY:single far in the past\nDTSTART:19950101T090000Z",
        "UID:future\nSUMMARY:single far ahead\nDTSTART:20900101T090000Z",
    )
    now = datetime(2025, 6, 1, tzinfo=timezone.utc)
    window = import_window(730, 365, now=now)
    assert window == (now - timedelta(days=730), now + timedelta(days=365))
    evs = parse_ics(text, "c", window=window)
    daily = [e for e in evs if e.summary == "daily"]
    assert len(daily) == 730 + 365
    assert all(window[0] <= e.start_utc <= window[1] for e in daily)
    assert {"single far in the past", "single far ahead"} <= {e.summary for e in evs}


def test_no_window_caps_open_series_at_max_series_years():
    text = cal("UID:weekly\nSUMMARY:w\nDTSTART:20200106T090000Z\nRRULE:FREQ=WEEKLY")
    evs = parse_ics(text, "c")
    assert evs[0].start.year == 2020
    assert evs[-1].start < datetime(2020 + MAX_SERIES_YEARS, 1, 7, tzinfo=timezone.utc)
    assert len(evs) == 522  # 10 years of Mondays


def test_expansion_beyond_max_occurrences_names_the_limit():
    text = cal("UID:d\nSUMMARY:d\nDTSTART:20250101T090000Z\nRRULE:FREQ=DAILY;COUNT=400")
    assert len(parse_ics(text, "c", max_occurrences=400)) == 400
    with pytest.raises(InvalidInput) as ei:
        parse_ics(text, "c", max_occurrences=399)
    assert ei.value.field == "body" and "max_occurrences=399" in ei.value.message


@pytest.mark.parametrize("rule", ["FREQ=SECONDLY", "FREQ=MINUTELY",
                                  "FREQ=DAILY;BYHOUR=1,2,3,4,5,6,7,8;BYMINUTE=0,10,20,30,40,50"])
def test_dense_rules_are_rejected_fast(rule):
    text = cal(f"UID:b\nSUMMARY:b\nDTSTART:20000101T000000Z\nRRULE:{rule}")
    with pytest.raises(InvalidInput) as ei:
        parse_ics(text, "c")
    assert ei.value.field == "body"
    now = datetime(2025, 6, 1, tzinfo=timezone.utc)
    with pytest.raises(InvalidInput) as ei:  # before the window: the step budget stops it
        parse_ics(text, "c", window=import_window(730, 365, now=now))
    assert "MAX_RULE_STEPS" in ei.value.message or "max_occurrences" in ei.value.message


def test_nesting_bomb_rejected():
    depth = MAX_DEPTH + 5
    text = "BEGIN:VCALENDAR\n" + "BEGIN:X-NEST\n" * depth + "END:X-NEST\n" * depth + "END:VCALENDAR\n"
    with pytest.raises(InvalidInput) as ei:
        parse_ics(text, "c")
    assert "MAX_DEPTH" in ei.value.message and ei.value.field == "body"


def test_component_count_bomb_rejected():
    text = "BEGIN:VCALENDAR\n" + "BEGIN:VALARM\nEND:VALARM\n" * (MAX_COMPONENTS + 1) + "END:VCALENDAR\n"
    with pytest.raises(InvalidInput) as ei:
        parse_ics(text, "c")
    assert "MAX_COMPONENTS" in ei.value.message


def test_max_bytes():
    data = (ICS_DIR / "pyvo_cz_meetups.ics").read_bytes()
    assert len(parse_ics(data, "c", max_bytes=len(data))) == 21
    with pytest.raises(PayloadTooLarge) as ei:
        parse_ics(data, "c", max_bytes=len(data) - 1)
    assert ei.value.status == 413 and ei.value.field == "body"


@pytest.mark.parametrize("body", ["", "hello world", '{"events": []}', b"\x00\xff\xfe garbage",
                                  "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:unterminated\n",
                                  "BEGIN:VEVENT\nDTSTART:20250101\nEND:VEVENT\n"])
def test_non_icalendar_input_is_invalid_input(body):
    with pytest.raises(InvalidInput) as ei:
        parse_ics(body, "c")
    assert ei.value.field == "body" and ei.value.status == 400


def test_empty_calendar_is_fine_and_latin1_is_tolerated():
    assert parse_ics("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n", "c") == []
    data = cal("UID:l\nSUMMARY:Caf\u00e9\nDTSTART:20250101T100000Z").encode("latin-1")
    assert parse_ics(data, "c")[0].summary == "Caf\u00e9"


def test_bad_calendar_id_and_window_rejected():
    text = cal("UID:a\nSUMMARY:a\nDTSTART:20250101T100000Z")
    with pytest.raises(InvalidInput):
        parse_ics(text, "../etc")
    with pytest.raises(InvalidInput):
        parse_ics(text, "c", window=(datetime(2026, 1, 1), datetime(2025, 1, 1)))


# ----------------------------------------------------------------------------- fuzz: never a 5xx

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st  # noqa: E402

from calroute.errors import CalrouteError  # noqa: E402

_LINES = [
    "BEGIN:VCALENDAR", "END:VCALENDAR", "BEGIN:VEVENT", "END:VEVENT", "BEGIN:VALARM", "END:VALARM",
    "VERSION:2.0", "UID:u1", "UID:u 2", "SUMMARY:x", "DTSTART:20250101T100000Z", "DTSTART:20250101",
    "DTSTART;TZID=Nowhere/Land:20250101T100000", "DTSTART;TZID=Europe/Berlin:20250101T100000",
    "DTEND:20241231T100000Z", "DTEND;VALUE=DATE:20250102", "DURATION:PT1H", "DURATION:-P1D", "DURATION:bogus",
    "RRULE:FREQ=DAILY;COUNT=3", "RRULE:FREQ=WEEKLY;UNTIL=20250201", "RRULE:FREQ=YEARLY;BYMONTH=13",
    "RRULE:FREQ=HOURLY;INTERVAL=0", "RDATE:20250105T100000Z", "RDATE;VALUE=PERIOD:20250105T100000Z/PT1H",
    "EXDATE:20250102T100000Z", "RECURRENCE-ID:20250102T100000Z", "RECURRENCE-ID;VALUE=DATE:20250103",
    "STATUS:CANCELLED", "SEQUENCE:2", "SEQUENCE:x", "X-WR-TIMEZONE:Mars/Olympus", "X-WR-CALNAME:n",
    "ATTENDEE:mailto:a@b.c", "ORGANIZER:nope", "DTSTART:99991231T235959Z", "DTSTART:00010101T000000Z",
    " folded continuation", "\tTAB continuation", ":", ";;;", "",
]


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(_LINES), st.text(max_size=30)), max_size=40))
def test_arbitrary_input_is_events_or_a_calroute_error(lines):
    text = "\r\n".join(["BEGIN:VCALENDAR", *lines, "END:VCALENDAR"])
    try:
        evs = parse_ics(text, "c", max_occurrences=200)
    except CalrouteError as exc:
        assert exc.field == "body" and 400 <= exc.status < 500
        return
    assert len(evs) <= 200
    assert all(e.calendar_id == "c" and ids.is_valid_event_id(e.event_id) for e in evs)


def test_rule_that_never_matches_hits_the_cpu_deadline(monkeypatch):
    """dateutil would walk day by day to the year 9999 (~20 s): the CPU deadline stops it."""
    import calroute.ics.expand as ics_mod

    monkeypatch.setattr(ics_mod, "MAX_EXPANSION_CPU_SECONDS", 0.3)
    text = cal("UID:n\nSUMMARY:n\nDTSTART:20250101T100000Z\nRRULE:FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30")
    t = time.process_time()
    with pytest.raises(InvalidInput) as ei:
        parse_ics(text, "c")
    assert "MAX_EXPANSION_CPU_SECONDS" in ei.value.message and ei.value.field == "body"
    assert time.process_time() - t < 3
    # the handler and timer are given back: a later import works
    assert len(parse_ics(cal("UID:d\nSUMMARY:d\nDTSTART:20250101T100000Z\nRRULE:FREQ=DAILY;COUNT=3"), "c")) == 3
    import signal

    assert signal.getsignal(signal.SIGVTALRM) in (signal.SIG_DFL, signal.SIG_IGN, None) or \
        signal.getsignal(signal.SIGVTALRM).__name__ != "_on_deadline"
