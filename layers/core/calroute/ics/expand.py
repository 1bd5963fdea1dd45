"""Recurrence (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides; ``recurring-ical-events``) within the
bounds: the RRULE step budget, the occurrence count and the CPU deadline."""

from __future__ import annotations

import signal
import threading
import time
import warnings
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from typing import Iterator, Optional

import icalendar
import recurring_ical_events
from recurring_ical_events import CalendarQuery

from ..errors import InvalidInput
from .mapping import _DATE_MAX, _DATE_MIN, _dt_value, _to_naive_utc

MAX_SERIES_YEARS = 10
"""Without a window, a recurring series is expanded for at most this many years past its start."""
MAX_RULE_STEPS = 200_000
"""Budget of RRULE work per file: FREQ periods dateutil walks from DTSTART to the end of the span
(matching or not) plus the starts it yields; roughly a second of dateutil."""

MAX_EXPANSION_CPU_SECONDS = 2.0
"""CPU seconds all recurring series of one file may spend in expansion. dateutil walks every FREQ
period from DTSTART until a match, so a rule that can never match (``FREQ=DAILY;BYMONTH=2;
BYMONTHDAY=30``) walks to the year 9999 (~20 s) whatever the UNTIL; only a deadline stops that.
Enforced with ``SIGVTALRM`` (process CPU time) in the main thread (the Lambda handler's); elsewhere the
step budget alone applies."""

# Errors from icalendar / recurring-ical-events / dateutil on one malformed series: skip the series.
_SERIES_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError,
                  ArithmeticError, recurring_ical_events.InvalidCalendar, icalendar.InvalidCalendar)


class _Limits:
    def __init__(self, max_occurrences: int):
        self.max_occurrences = max_occurrences
        self.steps = 0
        self.produced = 0
        self.cpu_used = 0.0

    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > MAX_RULE_STEPS:
            raise InvalidInput(
                f"the calendar's recurrence rules need more than {MAX_RULE_STEPS} expansion steps "
                "(MAX_RULE_STEPS); it looks like an ICS bomb",
                field="body", code="ics_too_complex",
            )

    def produce(self, n: int = 1) -> None:
        self.produced += n
        if self.produced > self.max_occurrences:
            raise InvalidInput(
                f"the calendar expands to more than max_occurrences={self.max_occurrences} events",
                field="body", code="ics_too_many_occurrences",
            )


class _Query(CalendarQuery):
    """A query that drops (rather than fails on) a series with any malformed value."""

    suppressed_errors = list(_SERIES_ERRORS)


class _ExpansionTimeout(Exception):
    pass


def _on_deadline(signum, frame):  # noqa: ARG001 - signal handler signature
    raise _ExpansionTimeout()


@contextmanager
def _cpu_deadline(limits: "_Limits") -> Iterator[None]:
    """Run the block with what is left of :data:`MAX_EXPANSION_CPU_SECONDS` as a CPU-time deadline."""
    remaining = MAX_EXPANSION_CPU_SECONDS - limits.cpu_used
    if remaining <= 0:
        raise _ExpansionTimeout()
    armed = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    t0 = time.process_time()
    old_handler = None
    if armed:
        old_handler = signal.signal(signal.SIGVTALRM, _on_deadline)
        old_timer = signal.setitimer(signal.ITIMER_VIRTUAL, remaining)
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_VIRTUAL, 0)  # first: nothing may fire after this
        used = time.process_time() - t0
        limits.cpu_used += used
        if armed:
            signal.signal(signal.SIGVTALRM, old_handler)
            if old_timer[0] > 0:  # someone else's timer: give it back what is left
                signal.setitimer(signal.ITIMER_VIRTUAL, max(0.001, old_timer[0] - used), old_timer[1])


def _series_components(series) -> list:
    return list(series.components)


def _is_recurring(comps: list[icalendar.cal.Component]) -> bool:
    return any(c.get("RRULE") is not None or c.get("RDATE") is not None
               or c.get("RECURRENCE-ID") is not None for c in comps)


# dateutil's FREQ constants YEARLY=0 .. SECONDLY=6 -> seconds per period (months and years averaged)
_FREQ_SECONDS = (365.25 * 86400, 30.44 * 86400, 7 * 86400, 86400, 3600, 60, 1)


def _as_naive(dt: datetime | date) -> datetime:
    return _to_naive_utc(dt) if isinstance(dt, datetime) else datetime.combine(dt, datetime.min.time())


def _bound_rules(rec, hi: datetime, limits: _Limits) -> None:
    """Cap every RRULE of a series at ``hi`` (UNTIL = min(UNTIL, hi)) and charge the periods dateutil
    will walk from DTSTART to there against the step budget.

    dateutil walks every FREQ period from DTSTART even when none matches (``FREQ=DAILY;BYMONTH=2;
    BYMONTHDAY=30`` would walk to the year 9999, ~18 s): the cap bounds the walk, the charge rejects a
    ``FREQ=MINUTELY`` rule over ten years before a single step is taken."""
    rules = rec.rrules
    for i in range(1, len(rules)):  # [0] is the rruleset of RDATEs + DTSTART
        rule = rules[i]
        dtstart = rule._dtstart  # noqa: SLF001 - dateutil exposes no getters
        periods = max(0.0, (hi - _as_naive(dtstart)).total_seconds()) / (
            _FREQ_SECONDS[rule._freq] * max(1, rule._interval))  # noqa: SLF001
        limits.step(int(periods))
        until = rule._until  # noqa: SLF001
        if until is None or _as_naive(until) > hi:
            cap = hi.replace(tzinfo=timezone.utc) if dtstart.tzinfo is not None else hi
            with warnings.catch_warnings():  # COUNT together with UNTIL: dateutil warns, stops at either
                warnings.simplefilter("ignore")
                capped = rule.replace(until=cap)
            capped.until = getattr(rule, "until", None)  # recurring-ical-events' own attribute
            rules[i] = capped


def _precheck(series, lo: datetime, hi: datetime, limits: _Limits) -> None:
    """Bound a series' rules, then count their starts lazily before the library materialises them
    in lists (dateutil's ``between`` returns a list)."""
    rec = series.recurrence
    if not getattr(rec, "has_core", False):
        return
    rdates = getattr(rec, "rdates", ()) or ()
    if len(rdates) > limits.max_occurrences:
        limits.produce(len(rdates))  # raises, naming the limit
    _bound_rules(rec, hi, limits)
    exdates = len(getattr(rec, "exdates", ()) or ())
    in_span = 0
    for rule in list(rec.rrules)[1:]:
        for start in rule:  # dateutil iterates lazily
            limits.step()
            s = _as_naive(start)
            if s > hi:
                break
            if s >= lo:
                in_span += 1
                if in_span > limits.max_occurrences - limits.produced + exdates:
                    limits.produce(in_span - exdates)  # raises, naming the limit


def _series_span(comps: list[icalendar.cal.Component],
                 window: Optional[tuple[datetime, datetime]]) -> tuple[datetime, datetime]:
    if window is not None:
        lo, hi = (_to_naive_utc(w) for w in window)
        return lo, hi
    starts = []
    for c in comps:
        v = _dt_value(c, "DTSTART")
        starts.append(_to_naive_utc(v) if isinstance(v, datetime) else datetime.combine(v, datetime.min.time()))
    first = min(starts)
    lo = first - timedelta(days=2)  # time-zone slack: the span is compared in the events' zones
    try:
        hi = first.replace(year=first.year + MAX_SERIES_YEARS)
    except ValueError:  # 29 February
        hi = first.replace(year=first.year + MAX_SERIES_YEARS, day=28)
    return max(lo, _DATE_MIN), min(hi, _DATE_MAX)
