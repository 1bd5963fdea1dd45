"""The one event schema.

Two input forms are accepted and normalised into :class:`Event`:

* the flat form ``{event_id, summary, description, location, start, end, all_day, attendees[],
  calendar_id?}`` (``start``/``end`` ISO 8601 date-times or dates);
* the Google Calendar event resource (``id, summary, description, location, start: {dateTime|date,
  timeZone}, end: {...}, attendees: [{email, ...}], organizer, recurringEventId, ...``).

Normalisation: time zones resolved (``timeZone`` applied, wall-clock kept in the event's own zone,
naive "floating" times kept as wall-clock), all-day events start at local midnight, a missing end
follows RFC 5545 (timed: zero length; all-day: one day), strings NFC-normalised with control
characters removed, lengths bounded, years limited to 1900-2200.
"""

from __future__ import annotations

import unicodedata
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Literal, Optional, Sequence, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from . import ids
from .errors import InvalidInput

MAX_SUMMARY = 1024
MAX_DESCRIPTION = 8192
MAX_LOCATION = 1024
MAX_ATTENDEES = 200
MAX_EMAIL = 320
MIN_YEAR = 1900
MAX_YEAR = 2200

_CONTROL_OK = {"\n", "\t"}


def clean_text(value: Optional[str], limit: int, *, truncate: bool = False, field: str = "text") -> str:
    """NFC-normalise, drop control characters (keeping newline and tab) and enforce ``limit``.

    With ``truncate`` an over-long value is cut (used by the ICS importer); otherwise it is an error.
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string")
    value = unicodedata.normalize("NFC", value.replace("\r\n", "\n"))
    # str.isprintable() is False for every character of Cc/Cs/Co/Cn (and a few more categories), so
    # a printable value has nothing to drop: the per-character filter only runs on the rest.
    if not value.isprintable():
        value = "".join(
            ch for ch in value
            if ch in _CONTROL_OK or unicodedata.category(ch) not in ("Cc", "Cs", "Co", "Cn")
        )
    value = value.strip()
    if len(value) > limit:
        if not truncate:
            raise ValueError(f"{field} is {len(value)} characters long; at most {limit} are allowed")
        value = value[:limit]
    return value


def _check_year(d: date | datetime, field: str) -> None:
    if not (MIN_YEAR <= d.year <= MAX_YEAR):
        raise ValueError(f"{field}: year {d.year} is outside {MIN_YEAR}-{MAX_YEAR}")


def parse_when(value: Any, field: str, tz: Optional[str] = None) -> tuple[datetime, bool]:
    """Parse an ISO date or date-time (or a ``date``/``datetime``) into ``(datetime, is_date)``.

    Aware date-times are converted to ``tz`` when given (Google's ``timeZone``), else kept in their
    own offset; naive ones are floating wall-clock times (localised to ``tz`` when given). A date
    becomes local midnight (naive, or in ``tz``).
    """
    zone = None
    if tz:
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{field}: unknown time zone {tz!r}") from exc
    is_date = False
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt, is_date = datetime.combine(value, time()), True
    elif isinstance(value, str):
        s = value.strip()
        if len(s) > 40:
            raise ValueError(f"{field}: not an ISO 8601 date or date-time")
        try:
            if len(s) == 10:
                dt, is_date = datetime.combine(date.fromisoformat(s), time()), True
            else:
                dt = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"{field}: {s[:40]!r} is not an ISO 8601 date or date-time") from exc
    else:
        raise ValueError(f"{field} must be an ISO 8601 string")
    _check_year(dt, field)
    if zone is not None:
        dt = dt.astimezone(zone) if dt.tzinfo else dt.replace(tzinfo=zone)
    return dt, is_date


def _sort_key(dt: datetime) -> datetime:
    """Comparable instant: floating times are taken as UTC."""
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class Event(BaseModel):
    """A normalised calendar event (optionally labelled with ``calendar_id``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Optional[str] = None
    summary: str = ""
    description: str = ""
    location: str = ""
    start: datetime
    end: datetime
    all_day: bool = False
    attendees: tuple[str, ...] = ()
    organizer: str = ""
    recurring: bool = False
    calendar_id: Optional[str] = None

    @property
    def duration_minutes(self) -> float:
        return max(0.0, (_sort_key(self.end) - _sort_key(self.start)).total_seconds() / 60.0)

    @property
    def start_utc(self) -> datetime:
        return _sort_key(self.start).astimezone(timezone.utc)

    def to_flat(self) -> dict:
        """The flat JSON form (what is stored and what the API returns)."""
        out = {
            "event_id": self.event_id,
            "summary": self.summary,
            "description": self.description,
            "location": self.location,
            "start": self.start.date().isoformat() if self.all_day else self.start.isoformat(),
            "end": self.end.date().isoformat() if self.all_day else self.end.isoformat(),
            "all_day": self.all_day,
            "attendees": list(self.attendees),
        }
        if self.organizer:
            out["organizer"] = self.organizer
        if self.recurring:
            out["recurring"] = True
        if self.calendar_id is not None:
            out["calendar_id"] = self.calendar_id
        return out


# ----------------------------------------------------------------------------- input forms


class FlatEventIn(BaseModel):
    """The flat labelled-event form (also the JSONL line format of ``calroute evaluate``)."""

    model_config = ConfigDict(extra="forbid")

    event_id: Optional[str] = Field(None, max_length=256)
    summary: Optional[str] = Field("", max_length=MAX_SUMMARY * 4)
    description: Optional[str] = Field("", max_length=MAX_DESCRIPTION * 4)
    location: Optional[str] = Field("", max_length=MAX_LOCATION * 4)
    start: str | datetime | date
    end: Optional[str | datetime | date] = None
    all_day: Optional[bool] = None
    attendees: list[str] = Field(default_factory=list, max_length=MAX_ATTENDEES)
    organizer: Optional[str] = Field(None, max_length=MAX_EMAIL)
    recurring: bool = False
    time_zone: Optional[str] = Field(None, max_length=64)
    calendar_id: Optional[str] = Field(None, max_length=128)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso_only(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, (str, datetime, date)):
            raise ValueError("must be an ISO 8601 date or date-time string")
        return v


class GoogleWhen(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    dateTime: Optional[str] = Field(None, max_length=40)
    date: Optional[str] = Field(None, max_length=10)
    timeZone: Optional[str] = Field(None, max_length=64)

    @model_validator(mode="after")
    def _one(self) -> "GoogleWhen":
        if not self.dateTime and not self.date:
            raise ValueError("needs dateTime or date")
        return self


class GooglePerson(BaseModel):
    model_config = ConfigDict(extra="ignore", defer_build=True)

    email: Optional[str] = Field(None, max_length=MAX_EMAIL)
    displayName: Optional[str] = Field(None, max_length=512)


class GoogleEventIn(BaseModel):
    """The Google Calendar API event resource. Documented fields that do not matter for routing are
    accepted and ignored; undocumented ones are rejected."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    id: Optional[str] = Field(None, max_length=1024)
    summary: Optional[str] = Field("", max_length=MAX_SUMMARY * 4)
    description: Optional[str] = Field("", max_length=MAX_DESCRIPTION * 4)
    location: Optional[str] = Field("", max_length=MAX_LOCATION * 4)
    start: GoogleWhen
    end: Optional[GoogleWhen] = None
    attendees: list[GooglePerson] = Field(default_factory=list, max_length=MAX_ATTENDEES)
    organizer: Optional[GooglePerson] = None
    creator: Optional[GooglePerson] = None
    recurringEventId: Optional[str] = Field(None, max_length=1024)
    recurrence: Optional[list[str]] = None
    calendar_id: Optional[str] = Field(None, max_length=128)
    # accepted, not used
    kind: Optional[str] = None
    etag: Optional[str] = None
    status: Optional[str] = None
    htmlLink: Optional[str] = None
    created: Optional[str] = None
    updated: Optional[str] = None
    colorId: Optional[str] = None
    endTimeUnspecified: Optional[bool] = None
    originalStartTime: Optional[dict] = None
    transparency: Optional[str] = None
    visibility: Optional[str] = None
    iCalUID: Optional[str] = None
    sequence: Optional[int] = None
    attendeesOmitted: Optional[bool] = None
    extendedProperties: Optional[dict] = None
    hangoutLink: Optional[str] = None
    conferenceData: Optional[dict] = None
    gadget: Optional[dict] = None
    anyoneCanAddSelf: Optional[bool] = None
    guestsCanInviteOthers: Optional[bool] = None
    guestsCanModify: Optional[bool] = None
    guestsCanSeeOtherGuests: Optional[bool] = None
    privateCopy: Optional[bool] = None
    locked: Optional[bool] = None
    reminders: Optional[dict] = None
    source: Optional[dict] = None
    attachments: Optional[list] = None
    eventType: Optional[str] = None
    workingLocationProperties: Optional[dict] = None
    outOfOfficeProperties: Optional[dict] = None
    focusTimeProperties: Optional[dict] = None
    birthdayProperties: Optional[dict] = None


def _email(value: Optional[str]) -> str:
    return clean_text(value, MAX_EMAIL, field="email").lower() if value else ""


def _build(
    *,
    event_id: Optional[str],
    summary: Optional[str],
    description: Optional[str],
    location: Optional[str],
    start: tuple[datetime, bool],
    end: Optional[tuple[datetime, bool]],
    all_day: Optional[bool],
    attendees: list[str],
    organizer: str,
    recurring: bool,
    calendar_id: Optional[str],
    truncate: bool,
) -> Event:
    start_dt, start_is_date = start
    is_all_day = start_is_date if all_day is None else bool(all_day)
    if end is None:
        end_dt = start_dt + (timedelta(days=1) if is_all_day else timedelta(0))
    else:
        end_dt, _ = end
        if (end_dt.tzinfo is None) != (start_dt.tzinfo is None):
            # mixed floating / aware: interpret the floating one in the other's zone
            if end_dt.tzinfo is None:
                end_dt = end_dt.replace(tzinfo=start_dt.tzinfo)
            else:
                start_dt = start_dt.replace(tzinfo=end_dt.tzinfo)
        if _sort_key(end_dt) < _sort_key(start_dt):
            raise ValueError("end: the event ends before it starts")
    if is_all_day:
        start_dt = start_dt.replace(hour=0, minute=0, second=0, microsecond=0)
    if event_id is not None:
        if ids.is_valid_event_id(event_id):
            pass
        elif truncate:
            event_id = ids.derived_event_id(event_id)
        else:
            ids.event_id(event_id, field="event_id")
    if calendar_id is not None:
        ids.calendar_id(calendar_id, field="calendar_id")
    return Event(
        event_id=event_id,
        summary=clean_text(summary, MAX_SUMMARY, truncate=truncate, field="summary"),
        description=clean_text(description, MAX_DESCRIPTION, truncate=truncate, field="description"),
        location=clean_text(location, MAX_LOCATION, truncate=truncate, field="location"),
        start=start_dt,
        end=end_dt,
        all_day=is_all_day,
        attendees=tuple(a for a in (_email(x) for x in attendees) if a),
        organizer=_email(organizer),
        recurring=recurring,
        calendar_id=calendar_id,
    )


def _from_flat(data: FlatEventIn, truncate: bool) -> Event:
    return _build(
        event_id=data.event_id,
        summary=data.summary,
        description=data.description,
        location=data.location,
        start=parse_when(data.start, "start", data.time_zone),
        end=parse_when(data.end, "end", data.time_zone) if data.end not in (None, "") else None,
        all_day=data.all_day,
        attendees=data.attendees,
        organizer=data.organizer or "",
        recurring=data.recurring,
        calendar_id=data.calendar_id,
        truncate=truncate,
    )


def _google_when(w: GoogleWhen, field: str) -> tuple[datetime, bool]:
    if w.dateTime:
        return parse_when(w.dateTime, field, w.timeZone)
    return parse_when(w.date, field)


def _from_google(data: GoogleEventIn, truncate: bool) -> Event:
    return _build(
        event_id=data.id,
        summary=data.summary,
        description=data.description,
        location=data.location,
        start=_google_when(data.start, "start"),
        end=_google_when(data.end, "end") if data.end else None,
        all_day=None,
        attendees=[a.email for a in data.attendees if a.email],
        organizer=(data.organizer.email if data.organizer and data.organizer.email else ""),
        recurring=bool(data.recurringEventId or data.recurrence),
        calendar_id=data.calendar_id,
        truncate=truncate,
    )


def _field_of(err: dict) -> str:
    loc = [str(p) for p in err.get("loc", ()) if not str(p).startswith("function-")]
    return ".".join(loc) or "event"


def is_google_form(raw: dict) -> bool:
    return isinstance(raw.get("start"), dict) or ("id" in raw and "event_id" not in raw)


def parse_event(raw: Any, *, field: str = "event", truncate: bool = False) -> Event:
    """Parse one event in either accepted form into an :class:`Event`.

    Raises :class:`InvalidInput` naming the offending field (prefixed with ``field``).
    """
    if isinstance(raw, Event):
        return raw
    if not isinstance(raw, dict):
        raise InvalidInput(f"{field} must be a JSON object", field=field)
    model = GoogleEventIn if is_google_form(raw) else FlatEventIn
    try:
        data = model.model_validate(raw)
        return (_from_google if model is GoogleEventIn else _from_flat)(data, truncate)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = f"{field}.{_field_of(err)}"
        msg = err.get("msg", "invalid")
        raise InvalidInput(f"{where}: {msg}", field=where) from None
    except InvalidInput as exc:
        where = f"{field}.{exc.field}" if exc.field else field
        raise InvalidInput(f"{field}: {exc.message}", field=where) from None
    except ValueError as exc:
        text = str(exc)
        sub = text.split(":", 1)[0] if ":" in text else ""
        where = f"{field}.{sub}" if sub and " " not in sub else field
        raise InvalidInput(f"{field}: {text}", field=where) from None


def parse_events(raws: list, *, field: str = "events", truncate: bool = False) -> list[Event]:
    """Parse a list of events; the first bad one raises, naming its index."""
    return [parse_event(r, field=f"{field}[{i}]", truncate=truncate) for i, r in enumerate(raws)]


def sort_by_start(events: list[Event]) -> list[Event]:
    """Events in time order (floating times taken as UTC), ties by id: a stable, total order."""
    return sorted(events, key=lambda e: (_sort_key(e.start), e.event_id or ""))


# ----------------------------------------------------------------------------- label provenance

#: Where a stored event's label came from (docs/learning.md "Labels with provenance"): ``user``
#: (ingested with a calendar id, imported, corrected), ``confirmed`` (the user accepted an answer),
#: ``sole`` (remembered while the user had one registered calendar: ``only_calendar``, the one answer
#: there was), ``llm`` (the fallback's answer, remembered), ``ml`` (the model's own answer, remembered).
LABEL_USER, LABEL_CONFIRMED, LABEL_SOLE, LABEL_LLM, LABEL_ML = "user", "confirmed", "sole", "llm", "ml"
LABEL_SOURCES = (LABEL_USER, LABEL_CONFIRMED, LABEL_SOLE, LABEL_LLM, LABEL_ML)
#: The labels a model may be certified on (threshold, calibration, champion/challenger holdout):
#: never the LLM's nor the model's own word. ``sole`` only as :func:`resolve_sole_labels` leaves it.
TRUSTED_LABELS = frozenset({LABEL_USER, LABEL_CONFIRMED, LABEL_SOLE})
#: The labels only the user gives (a confirmation cannot make them any more the user's).
USER_LABELS = frozenset({LABEL_USER, LABEL_CONFIRMED})
#: Remembered answers (``POST .../classify`` with ``remember``): a later answer may replace them, a
#: user's label never is (both event stores' ``remember``).
REMEMBERED_LABELS = (LABEL_SOLE, LABEL_LLM, LABEL_ML)


def resolve_sole_labels(events: Sequence[Event], provenance: Sequence[str]) -> list[str]:
    """``provenance`` with each ``sole`` label the user's other labels contradict read as ``llm``.

    A ``sole`` label was calroute's answer while the user had a single registered calendar: with one
    calendar there was no other answer (the LLM's structured output could only name it), so it is
    what the user's calendars said at the time and may certify a model like an import. That holds
    only if the calendar list was complete: when any labelled event of *another* calendar starts at
    or before the sole-labelled event (the user had, or imported, that calendar's events from the
    same period), the sole label is no evidence and counts as an LLM answer (weight
    ``LABEL_WEIGHT_LLM``, never certifying, reviewable). One pass over the rows: each calendar's
    earliest start, then the two earliest of those."""
    if LABEL_SOLE not in provenance:
        return list(provenance)
    earliest: dict[str, datetime] = {}
    for ev in events:
        if ev.calendar_id:
            t = ev.start_utc
            if ev.calendar_id not in earliest or t < earliest[ev.calendar_id]:
                earliest[ev.calendar_id] = t
    firsts = sorted(earliest.items(), key=lambda kv: kv[1])[:2]
    out = []
    for ev, p in zip(events, provenance):
        if p == LABEL_SOLE:
            other = next((t for cal, t in firsts if cal != ev.calendar_id), None)
            if other is not None and other <= ev.start_utc:
                p = LABEL_LLM
        out.append(p)
    return out


class CalendarInfo(BaseModel):
    """A user's calendar as shown to the LLM fallback and the API."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    calendar_id: str
    name: str = ""
    description: str = ""


#: how classify answered (docs/serving.md "Methods"; calroute.policy): the one list the API models,
#: the stats, the correction's echo check and the log's sampling read
Method = Literal["ml", "llm", "ml_low_confidence", "llm_only", "only_calendar", "none"]
METHODS: tuple[str, ...] = get_args(Method)
