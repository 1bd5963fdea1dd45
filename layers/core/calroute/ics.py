"""iCalendar (RFC 5545) import: every VEVENT becomes a labelled :class:`~calroute.schema.Event`.

Parsing is done by ``icalendar``; recurrence (RRULE, RDATE, EXDATE, RECURRENCE-ID overrides,
``X-WR-TIMEZONE``) by ``recurring-ical-events``. Nothing here reads iCalendar syntax by hand except a
line-level pre-scan that counts ``BEGIN:`` lines so that an "ICS bomb" (absurd nesting or component
counts) is rejected before the parser builds a tree.

Bounds (every one raises :class:`~calroute.errors.InvalidInput` naming the limit, field ``body``):

* ``max_bytes``                     → :class:`~calroute.errors.PayloadTooLarge`;
* :data:`MAX_DEPTH` component nesting, :data:`MAX_COMPONENTS` components;
* ``max_occurrences`` events in total (single events + expanded occurrences);
* :data:`MAX_RULE_STEPS` RRULE work (FREQ periods walked from DTSTART, also before the window
  start, plus starts yielded), so that a ``FREQ=SECONDLY`` rule is rejected before it burns CPU;
* :data:`MAX_EXPANSION_CPU_SECONDS` of CPU for all recurring expansion (a rule that never matches
  makes dateutil walk to the year 9999);
* without a window, a series is expanded for at most :data:`MAX_SERIES_YEARS` years past its start
  (until UNTIL/COUNT if earlier); with a window, recurring expansions are limited to the window while
  single events are kept whatever their date.

Event ids are deterministic, so re-importing the same file upserts the same items:
the UID (+ ``:`` + recurrence id for occurrences of a recurring series) when that is a valid event
id, else ``ids.derived_event_id(uid, recurrence id)``; a VEVENT without UID gets
``ids.derived_event_id(calendar id, DTSTART, SUMMARY[, recurrence id])``.

VEVENTs that cannot become an event (no or broken DTSTART, broken DTEND/DURATION/RRULE, year outside
1900-2200, ``STATUS:CANCELLED``) are skipped and counted, never fatal.
"""

from __future__ import annotations

import html
import re
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator, Optional

import icalendar
import recurring_ical_events
from recurring_ical_events import CalendarQuery

from . import ids
from .errors import InvalidInput, PayloadTooLarge
from .schema import (
    MAX_ATTENDEES,
    MAX_DESCRIPTION,
    MAX_EMAIL,
    MAX_LOCATION,
    MAX_SUMMARY,
    Event,
    parse_event,
    sort_by_start,
)

MAX_DEPTH = 6
"""Deepest component nesting accepted (VCALENDAR > VEVENT > VALARM is 3)."""
MAX_COMPONENTS = 50_000
"""Most ``BEGIN:`` lines accepted in one file."""
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

_DATE_MIN = datetime(1900, 1, 1)
_DATE_MAX = datetime(2200, 12, 31)
_BEGIN_RE = re.compile(rb"^[ \t]*BEGIN[ \t]*:", re.IGNORECASE)
_END_RE = re.compile(rb"^[ \t]*END[ \t]*:", re.IGNORECASE)
# Errors from icalendar / recurring-ical-events / dateutil on one malformed series: skip the series.
_SERIES_ERRORS = (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError,
                  ArithmeticError, recurring_ical_events.InvalidCalendar, icalendar.InvalidCalendar)


@dataclass(frozen=True)
class IcsResult:
    """What :func:`read_ics` found: the events and the counts the import API reports."""

    events: list[Event]
    calendar_name: str = ""
    calendar_description: str = ""
    vevents: int = 0
    """VEVENT components in the file."""
    recurring_series: int = 0
    """Series with RRULE / RDATE / RECURRENCE-ID."""
    expanded: int = 0
    """Events produced by recurring series (occurrences, overrides included)."""
    skipped: int = 0
    """VEVENTs or occurrences left out: unusable, cancelled or duplicate ids."""
    skipped_reasons: dict[str, int] = field(default_factory=dict)


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


# ----------------------------------------------------------------------------- input checks


def _decode(data: bytes | str, max_bytes: Optional[int]) -> str:
    if isinstance(data, str):
        raw = data.encode("utf-8", errors="surrogatepass")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    else:
        raise InvalidInput("the body must be iCalendar text", field="body")
    if max_bytes is not None and len(raw) > max_bytes:
        raise PayloadTooLarge(
            f"the calendar is {len(raw)} bytes; at most max_bytes={max_bytes} are allowed", field="body"
        )
    _prescan(raw)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # iCalendar is UTF-8 by RFC 5545, but old exporters write Windows-1252/Latin-1.
        return raw.decode("cp1252", errors="replace")


def _prescan(raw: bytes) -> None:
    """Reject component bombs before the parser builds a tree (counts lines, reads no values)."""
    depth = max_depth = count = 0
    for line in raw.splitlines():
        if _BEGIN_RE.match(line):
            count += 1
            depth += 1
            max_depth = max(max_depth, depth)
            if depth > MAX_DEPTH:
                raise InvalidInput(
                    f"components are nested more than MAX_DEPTH={MAX_DEPTH} levels deep (ICS bomb)",
                    field="body", code="ics_too_complex",
                )
            if count > MAX_COMPONENTS:
                raise InvalidInput(
                    f"the calendar has more than MAX_COMPONENTS={MAX_COMPONENTS} components (ICS bomb)",
                    field="body", code="ics_too_complex",
                )
        elif _END_RE.match(line):
            depth = max(0, depth - 1)
    if count == 0:
        raise InvalidInput("the body is not an iCalendar file (no BEGIN:VCALENDAR)", field="body",
                           code="not_icalendar")


def _calendars(text: str) -> list[icalendar.Calendar]:
    try:
        comps = icalendar.Calendar.from_ical(text, multiple=True)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        raise InvalidInput(f"the body is not valid iCalendar: {str(exc)[:200]}", field="body",
                           code="not_icalendar") from None
    cals = [c for c in comps if getattr(c, "name", None) == "VCALENDAR"]
    if not cals:
        raise InvalidInput("the body is not an iCalendar file (no complete VCALENDAR component)",
                           field="body", code="not_icalendar")
    return cals


# ----------------------------------------------------------------------------- values


def _text(value: Any, limit: int) -> str:
    if value is None:
        return ""
    if isinstance(value, list):  # a property given twice
        value = value[0] if value else ""
    s = str(value)[: limit * 4]  # the schema's input bound; the schema truncates to ``limit``
    if "&" in s:
        s = html.unescape(s)  # HTML entities leaked into plain text (&amp; &#x3D;)
    return s


def _address(value: Any) -> str:
    s = str(value or "").strip()
    if s.lower().startswith("mailto:"):
        s = s[7:]
    s = s.strip()
    return s if 0 < len(s) <= MAX_EMAIL else ""


def _addresses(value: Any) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    out = [a for a in (_address(v) for v in values) if a]
    return out[:MAX_ATTENDEES]


def _dt_value(comp: icalendar.cal.Component, name: str) -> Any:
    prop = comp.get(name)
    if prop is None or isinstance(prop, list):
        return None
    try:
        return prop.dt
    except Exception:  # noqa: BLE001 - icalendar's BrokenCalendarProperty (a value it could not parse)
        return None


def _is_time(value: Any) -> bool:
    return isinstance(value, (date, datetime))


def _fmt_rid(value: Any) -> str:
    """A recurrence id as compact iCalendar text; aware times in UTC so it is stable."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            return value.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        return value.strftime("%Y%m%dT%H%M%S")
    if isinstance(value, date):
        return value.strftime("%Y%m%d")
    return str(value)


def _dtstart_key(comp: icalendar.cal.Component) -> str:
    prop = comp.get("DTSTART")
    try:
        text = prop.to_ical().decode("utf-8", "replace")
    except Exception:  # noqa: BLE001 - any odd value still yields a deterministic key
        text = str(getattr(prop, "dt", prop))
    tzid = prop.params.get("TZID", "") if hasattr(prop, "params") else ""
    return f"{tzid}:{text}" if tzid else text


def _to_naive_utc(dt: datetime) -> datetime:
    return dt.astimezone(timezone.utc).replace(tzinfo=None) if dt.tzinfo else dt


def _check_vevent(comp: icalendar.cal.Component) -> Optional[str]:
    """Why a VEVENT cannot be imported (None: it can)."""
    if not _is_time(_dt_value(comp, "DTSTART")):
        return "no_dtstart" if comp.get("DTSTART") is None else "bad_dtstart"
    if comp.get("DTEND") is not None and not _is_time(_dt_value(comp, "DTEND")):
        return "bad_dtend"
    if comp.get("DURATION") is not None and not isinstance(_dt_value(comp, "DURATION"), timedelta):
        return "bad_duration"
    if comp.get("RECURRENCE-ID") is not None and not _is_time(_dt_value(comp, "RECURRENCE-ID")):
        return "bad_recurrence_id"
    start = _dt_value(comp, "DTSTART")
    if not (_DATE_MIN.year <= start.year <= _DATE_MAX.year):
        return "year_out_of_range"
    return None


# ----------------------------------------------------------------------------- expansion


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


# ----------------------------------------------------------------------------- building events


def _event_id(calendar_id: str, source: icalendar.cal.Component, occ: icalendar.cal.Component,
              recurring: bool) -> str:
    rid = _fmt_rid(_dt_value(occ, "RECURRENCE-ID") or _dt_value(occ, "DTSTART")) if recurring else None
    uid = source.get("UID")
    if uid is not None and str(uid).strip():
        uid = str(uid).strip()
        candidate = f"{uid}:{rid}" if rid else uid
        if ids.is_valid_event_id(candidate):
            return candidate
        return ids.derived_event_id(uid, rid) if rid else ids.derived_event_id(uid)
    parts = [calendar_id, _dtstart_key(source), str(source.get("SUMMARY") or "")]
    if rid:
        parts.append(rid)
    return ids.derived_event_id(*parts)


def _to_event(occ: icalendar.cal.Component, event_id: str, calendar_id: str, recurring: bool) -> Event:
    start = _dt_value(occ, "DTSTART")
    end = _dt_value(occ, "DTEND")
    flat = {
        "event_id": event_id,
        "summary": _text(occ.get("SUMMARY"), MAX_SUMMARY),
        "description": _text(occ.get("DESCRIPTION"), MAX_DESCRIPTION),
        "location": _text(occ.get("LOCATION"), MAX_LOCATION),
        "start": start,
        "end": end if _is_time(end) else None,
        "attendees": _addresses(occ.get("ATTENDEE")),
        "organizer": _address(occ.get("ORGANIZER")) or None,
        "recurring": recurring,
        "calendar_id": calendar_id,
    }
    if isinstance(start, date) and not isinstance(start, datetime):
        flat["all_day"] = True
    return parse_event(flat, field="event", truncate=True)


def read_ics(
    data: bytes | str,
    calendar_id: str,
    *,
    window: tuple[datetime, datetime] | None = None,
    max_occurrences: int = 5000,
    max_bytes: int | None = None,
) -> IcsResult:
    """Parse and expand an iCalendar file; the events plus the counts of what was done.

    See the module docstring for the bounds and the id scheme; :func:`parse_ics` returns only the
    events.
    """
    ids.calendar_id(calendar_id, field="calendarId")
    if window is not None:
        if len(window) != 2 or not all(isinstance(w, datetime) for w in window) or window[0] > window[1]:
            raise InvalidInput("window must be (start, end) date-times with start <= end", field="window")
    text = _decode(data, max_bytes)
    cals = _calendars(text)
    limits = _Limits(max_occurrences)
    reasons: dict[str, int] = {}

    def skip(reason: str, n: int = 1) -> None:
        reasons[reason] = reasons.get(reason, 0) + n

    name = description = ""
    events: list[Event] = []
    seen: set[str] = set()
    vevents = recurring_series = expanded = 0
    for cal in cals:
        name = name or _text(cal.get("X-WR-CALNAME"), 256).strip()
        description = description or _text(cal.get("X-WR-CALDESC"), 1024).strip()
        # Keep only importable VEVENTs at the top level (nested VEVENTs are not RFC 5545).
        kept = []
        for comp in list(cal.subcomponents):
            if comp.name != "VEVENT":
                continue
            vevents += 1
            why = _check_vevent(comp)
            if why:
                skip(why)
                cal.subcomponents.remove(comp)
            else:
                kept.append(comp)
        if not kept:
            continue
        try:
            query = recurring_ical_events.of(cal, calendar_query=_Query, skip_bad_series=True)
        except _SERIES_ERRORS as exc:
            raise InvalidInput(f"the calendar cannot be read: {str(exc)[:200]}", field="body",
                               code="not_icalendar") from None
        # Map each series back to its source components to find what the library dropped.
        in_series = 0
        for series in query.series:
            sources = [a._component for a in _series_components(series)]  # noqa: SLF001
            in_series += len(sources)
            recurring = _is_recurring(sources)
            try:
                if recurring:
                    recurring_series += 1
                    lo, hi = _series_span(sources, window)
                    with _cpu_deadline(limits):
                        _precheck(series, lo, hi, limits)
                        occurrences = list(series.between(lo, hi))
                else:
                    occurrences = list(series.between(_DATE_MIN, _DATE_MAX))
            except _ExpansionTimeout:
                raise InvalidInput(
                    f"expanding the calendar's recurrence rules took more than MAX_EXPANSION_CPU_SECONDS="
                    f"{MAX_EXPANSION_CPU_SECONDS:g} s of CPU (a rule that never matches?); it looks like an "
                    "ICS bomb", field="body", code="ics_too_complex") from None
            except _SERIES_ERRORS:
                skip("bad_series", len(sources))
                continue
            source = sources[0]  # id-less events are a series of one; others share the UID
            for occ in occurrences:
                limits.produce()
                comp = occ.as_component(False)
                if str(comp.get("STATUS", "")).upper() == "CANCELLED":
                    skip("cancelled")
                    continue
                event_id = _event_id(calendar_id, source, comp, recurring)
                if event_id in seen:
                    skip("duplicate_id")
                    continue
                try:
                    ev = _to_event(comp, event_id, calendar_id, recurring)
                except InvalidInput:
                    skip("invalid_event")
                    continue
                seen.add(event_id)
                events.append(ev)
                if recurring:
                    expanded += 1
        dropped = len(kept) - in_series
        if dropped > 0:
            skip("dropped", dropped)  # malformed series, or superseded by a higher SEQUENCE
    return IcsResult(
        events=sort_by_start(events),
        calendar_name=name,
        calendar_description=description,
        vevents=vevents,
        recurring_series=recurring_series,
        expanded=expanded,
        skipped=sum(reasons.values()),
        skipped_reasons=reasons,
    )


def parse_ics(
    data: bytes | str,
    calendar_id: str,
    *,
    window: tuple[datetime, datetime] | None = None,
    max_occurrences: int = 5000,
    max_bytes: int | None = None,
) -> list[Event]:
    """Every VEVENT of an iCalendar file as labelled events (``calendar_id`` set), recurring series
    expanded; sorted by start. Raises :class:`InvalidInput` / :class:`PayloadTooLarge` (field
    ``body``) for non-iCalendar input, oversized files, expansions beyond the bounds and ICS bombs."""
    return read_ics(data, calendar_id, window=window, max_occurrences=max_occurrences,
                    max_bytes=max_bytes).events


def import_window(days_back: int, days_forward: int, now: Optional[datetime] = None) -> tuple[datetime, datetime]:
    """The expansion window the API uses: ``now - days_back .. now + days_forward`` (UTC)."""
    now = now or datetime.now(timezone.utc)
    return now - timedelta(days=days_back), now + timedelta(days=days_forward)

