"""A VEVENT's values → an :class:`~calroute.schema.Event`: text and addresses, date-time values, why a
VEVENT cannot be imported, and the deterministic event id."""

from __future__ import annotations

import html
from datetime import date, datetime, timedelta, timezone
from typing import Any, Optional

import icalendar

from .. import ids
from ..schema import MAX_ATTENDEES, MAX_DESCRIPTION, MAX_EMAIL, MAX_LOCATION, MAX_SUMMARY, Event, parse_event

_DATE_MIN = datetime(1900, 1, 1)
_DATE_MAX = datetime(2200, 12, 31)


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
