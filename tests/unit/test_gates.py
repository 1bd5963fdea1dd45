"""calroute.gates.check_gates at its boundaries: exactly ``min_events`` labelled events and exactly
``min_per_calendar`` events in a calendar are enough; the refusal lists calendars by count, then by
name. Events are stand-ins with a ``calendar_id`` (the only field the gates read)."""

from __future__ import annotations

from types import SimpleNamespace

from calroute.gates import check_gates

CFG = SimpleNamespace(min_events=10, min_calendars=2, min_per_calendar=4)


def evs(**per_calendar: int) -> list:
    return [SimpleNamespace(calendar_id=c) for c, k in per_calendar.items() for _ in range(k)]


def test_exactly_min_events_and_min_per_calendar_are_enough():
    ok, why = check_gates(evs(work=6, home=4), CFG)
    assert ok and why == "ok: 10 events in 2 calendars"


def test_one_event_short_of_min_events_is_refused():
    ok, why = check_gates(evs(work=5, home=4), CFG)
    assert not ok and why == "needs at least 10 labelled events (has 9)"


def test_a_calendar_one_short_of_min_per_calendar_does_not_count():
    ok, why = check_gates(evs(work=8, home=3), CFG)
    assert not ok and why == "needs at least 2 calendars with 4+ events each (work: 8, home: 3)"


def test_the_refusal_lists_calendars_by_count_then_by_name():
    ok, why = check_gates(evs(zeta=3, alpha=3, mid=5), CFG)
    assert not ok and why.endswith("(mid: 5, alpha: 3, zeta: 3)")


def test_unlabelled_events_are_ignored():
    ok, why = check_gates(evs(work=6, home=4) + [SimpleNamespace(calendar_id=None)] * 5, CFG)
    assert ok and why == "ok: 10 events in 2 calendars"
