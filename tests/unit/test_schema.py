from datetime import timedelta

import pytest

from calroute.errors import InvalidInput
from calroute.schema import parse_event, parse_events, sort_by_start


def test_flat_event_with_offset_keeps_local_wall_clock():
    ev = parse_event({"event_id": "e1", "summary": "Standup", "start": "2026-03-02T09:00:00+08:00",
                      "end": "2026-03-02T09:15:00+08:00", "calendar_id": "work"})
    assert ev.start.hour == 9
    assert ev.start_utc.hour == 1
    assert ev.duration_minutes == 15
    assert ev.calendar_id == "work"


def test_google_resource_time_zone_and_attendees():
    ev = parse_event({
        "id": "abc123", "summary": "Sync", "kind": "calendar#event", "status": "confirmed",
        "start": {"dateTime": "2026-03-02T01:00:00Z", "timeZone": "Asia/Seoul"},
        "end": {"dateTime": "2026-03-02T02:00:00Z", "timeZone": "Asia/Seoul"},
        "attendees": [{"email": "A@Corp.example", "responseStatus": "accepted"}],
        "organizer": {"email": "boss@corp.example"}, "recurringEventId": "abc",
    })
    assert ev.event_id == "abc123"
    assert ev.start.hour == 10  # 01:00Z is 10:00 in Seoul
    assert ev.attendees == ("a@corp.example",)
    assert ev.organizer == "boss@corp.example"
    assert ev.recurring


def test_all_day_and_missing_end():
    ev = parse_event({"summary": "Holiday", "start": "2026-12-25"})
    assert ev.all_day and ev.duration_minutes == 24 * 60
    timed = parse_event({"summary": "Ping", "start": "2026-12-25T10:00:00"})
    assert not timed.all_day and timed.duration_minutes == 0
    g = parse_event({"id": "x1", "start": {"date": "2026-12-24"}, "end": {"date": "2026-12-26"}})
    assert g.all_day and g.end - g.start == timedelta(days=2)


def test_non_ascii_titles_survive():
    ev = parse_event({"summary": "주간 회의 🎉 Café", "start": "2026-01-01T10:00:00Z"})
    assert ev.summary == "주간 회의 🎉 Café"


@pytest.mark.parametrize(
    "raw, field",
    [
        ({"start": "2026-01-01T10:00:00Z", "end": "2026-01-01T09:00:00Z"}, "event"),
        ({"start": "0001-01-01T00:00:00Z"}, "event.start"),
        ({"start": "9999-12-31"}, "event.start"),
        ({"start": "not a date"}, "event.start"),
        ({"start": "2026-01-01", "summary": "x" * 5000}, "event"),
        ({"start": "2026-01-01", "surprise": 1}, "event.surprise"),
        ({"start": "2026-01-01", "event_id": "../../etc"}, "event.event_id"),
        ({"summary": "no start"}, "event.start"),
        ({"start": 12}, "event.start"),
    ],
)
def test_bad_events_name_the_field(raw, field):
    with pytest.raises(InvalidInput) as exc:
        parse_event(raw)
    assert exc.value.field.startswith(field), exc.value.message


def test_control_characters_removed_and_batch_index_named():
    ev = parse_event({"summary": "a\x00b\x07c", "start": "2026-01-01"})
    assert ev.summary == "abc"
    with pytest.raises(InvalidInput) as exc:
        parse_events([{"start": "2026-01-01"}, {"start": "bad"}])
    assert exc.value.field.startswith("events[1]")


def test_sort_by_start_mixes_floating_and_aware():
    a = parse_event({"event_id": "a", "start": "2026-01-02T00:00:00"})
    b = parse_event({"event_id": "b", "start": "2026-01-01T00:00:00+00:00"})
    assert [e.event_id for e in sort_by_start([a, b])] == ["b", "a"]


@pytest.mark.parametrize("raw, clean", [
    ("Sprint review", "Sprint review"),                      # printable: the fast path
    ("  padded\u00a0title  ", "padded\u00a0title"),          # NBSP is kept, outer spaces stripped
    ("a\x00b\x1fc\x7fd\u0085e", "abcde"),                    # C0/C1 controls dropped
    ("line1\nline2\tcol", "line1\nline2\tcol"),              # newline and tab kept
    ("family \U0001F468\u200d\U0001F469 dinner", "family \U0001F468\u200d\U0001F469 dinner"),  # ZWJ (Cf) kept
    ("private\ue000use\U0010fffd", "privateuse"),            # private use (Co) dropped
    ("unassigned\u0378", "unassigned"),                      # unassigned (Cn) dropped
    ("e\u0301", "\u00e9"),                                   # NFC
])
def test_clean_text_keeps_printable_text_and_drops_controls(raw, clean):
    from calroute.schema import clean_text

    assert clean_text(raw, 100) == clean
