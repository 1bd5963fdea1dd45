"""The import: :func:`read_ics` (events + counts), :func:`parse_ics` (events) and the API's
:func:`import_window`. See :mod:`calroute.ics` for the bounds and the id scheme."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Optional

import recurring_ical_events

from .. import ids
from ..errors import InvalidInput
from ..schema import Event, sort_by_start
from . import expand
from .expand import (
    _SERIES_ERRORS,
    _cpu_deadline,
    _ExpansionTimeout,
    _is_recurring,
    _Limits,
    _precheck,
    _Query,
    _series_components,
    _series_span,
)
from .mapping import _DATE_MAX, _DATE_MIN, _check_vevent, _event_id, _text, _to_event
from .parse import _calendars, _decode


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
                    f"{expand.MAX_EXPANSION_CPU_SECONDS:g} s of CPU (a rule that never matches?); it looks like an "
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
