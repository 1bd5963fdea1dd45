"""Ingest use cases: labelled events in, corrections, calendars, ICS import.

The stores are passed in (a :class:`~calroute.ports.Stores`; :class:`IngestService` binds them and
the settings for the handler), so tests can swap them.

* :func:`ingest_events` validates the WHOLE batch before the first write: one bad event and nothing
  is written. Writes are idempotent upserts keyed by ``(user_id, event_id)``, so posting the same
  batch twice stores it once; ``events_total`` only counts ids that were not stored before.
* If storage throttling survives the adapter's retries, the adapter raises
  :class:`~calroute.errors.ServiceUnavailable` (503 + Retry-After). Part of the batch may then be
  stored; because every write is an upsert the client simply resends the whole batch.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from .. import ids
from ..config import Settings
from ..errors import InvalidInput, NotFound, PayloadTooLarge
from ..ics.reader import import_window, read_ics
from ..ports import Stores, UserStore
from ..schema import LABEL_ML, METHODS, USER_LABELS, CalendarInfo, Event, clean_text, parse_event

MAX_CALENDAR_NAME = 200
MAX_CALENDAR_DESCRIPTION = 1000


def _register_missing_calendars(user_id: str, calendar_ids: set[str], users: UserStore,
                                names: Optional[dict[str, tuple[str, str]]] = None) -> list[str]:
    """Register calendars the user has not described yet (name = id unless ``names`` says better).
    Existing calendars are never overwritten: their name/description belong to the user."""
    known = {c.calendar_id for c in users.calendars(user_id)}
    added = []
    for cal in sorted(calendar_ids - known):
        name, description = (names or {}).get(cal, (cal, ""))
        users.put_calendar(user_id, CalendarInfo(calendar_id=cal, name=name or cal, description=description))
        added.append(cal)
    return added


def _upsert(user_id: str, events: list[Event], stores: Stores, *, source: str) -> tuple[int, int]:
    """Store events; bump ``events_total`` by the ids not stored before and ``labels_total`` by the
    labelled events written (new or not: a user's label may replace a remembered one). Returns
    (upserted, new)."""
    store, users = stores.events, stores.users
    unique = list({e.event_id: e for e in events}.values())
    if not unique:
        return 0, 0
    existing = store.existing_ids(user_id, [e.event_id for e in unique])
    labelled = sum(1 for e in unique if e.calendar_id)
    new_ids = [e.event_id for e in unique if e.event_id not in existing]
    try:
        upserted = store.put_events(user_id, unique, source=source)
    except Exception:  # noqa: BLE001 - re-raised below
        # Part of the batch may have landed before storage gave up. The client's resend will see
        # those ids as existing, so count the new ones that did land now, or events_total would
        # lose them for good (best effort: if this fails too, the original error is what matters).
        try:
            landed = store.existing_ids(user_id, new_ids)  # no ids: no call, nothing landed
            if landed:
                users.bump(user_id, events=len(landed),
                           calendars=_per_calendar([e for e in unique if e.event_id in landed]),
                           labels=labelled)
        except Exception:  # noqa: BLE001
            pass
        raise
    new = len(new_ids)
    if new or labelled:
        fresh = set(new_ids)
        users.bump(user_id, events=new, calendars=_per_calendar([e for e in unique if e.event_id in fresh]),
                   labels=labelled)
    return upserted, new


def _per_calendar(events: list[Event]) -> dict[str, int]:
    """New events per calendar (the retraining policy's "a new calendar has enough events")."""
    out: dict[str, int] = {}
    for e in events:
        if e.calendar_id:
            out[e.calendar_id] = out.get(e.calendar_id, 0) + 1
    return out


def validate_batch(raw_events: Any, cfg: Settings) -> list[Event]:
    """Parse and check a whole batch (nothing is written here): list, size limit, every event with an
    ``event_id`` and a ``calendar_id``. The first bad event raises, naming ``events[i].<field>``."""
    if not isinstance(raw_events, list):
        raise InvalidInput("events must be a list of events", field="events")
    if not raw_events:
        raise InvalidInput("events must contain at least one event", field="events")
    if len(raw_events) > cfg.ingest_max_events:
        raise PayloadTooLarge(
            f"{len(raw_events)} events in one request; at most {cfg.ingest_max_events} (INGEST_MAX_EVENTS) "
            "are allowed", field="events")
    events = []
    for i, raw in enumerate(raw_events):
        where = f"events[{i}]"
        ev = parse_event(raw, field=where)
        if not ev.event_id:
            raise InvalidInput(f"{where}: an event_id (or Google 'id') is required to ingest",
                               field=f"{where}.event_id")
        if not ev.calendar_id:
            raise InvalidInput(f"{where}: a calendar_id (its label) is required to ingest",
                               field=f"{where}.calendar_id")
        events.append(ev)
    return events


def ingest_events(user_id: str, raw_events: Any, stores: Stores, cfg: Settings) -> dict:
    """Batch upsert of labelled events, all-or-nothing validation, idempotent by event id.

    Returns ``{"upserted": n, "new": k, "calendars_added": [...]}`` (``n`` distinct event ids).
    """
    ids.user_id(user_id)
    events = validate_batch(raw_events, cfg)
    added = _register_missing_calendars(user_id, {e.calendar_id for e in events}, stores.users)
    upserted, new = _upsert(user_id, events, stores, source="api")
    return {"upserted": upserted, "new": new, "calendars_added": added}


def echoed_prediction(raw: Any) -> Optional[dict]:
    """The client's echo of the answer it got (``{calendar_id, method, model_version}``), validated;
    None when absent. The prediction log is sampled (docs/serving.md), so the server may not have
    it: the echo is what lets the correction still record what had been predicted."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidInput("predicted must be an object {calendar_id, method, model_version}", field="predicted")
    unknown = set(raw) - {"calendar_id", "method", "model_version"}
    if unknown:
        raise InvalidInput(f"predicted: unknown field(s) {', '.join(sorted(unknown))}", field="predicted")
    method = raw.get("method")
    if method not in METHODS:
        raise InvalidInput(f"predicted.method must be one of {', '.join(METHODS)}", field="predicted.method")
    cal = raw.get("calendar_id")
    if cal is not None:
        ids.calendar_id(cal, field="predicted.calendar_id")
    elif method != "none":
        raise InvalidInput("predicted.calendar_id is required unless method is none", field="predicted.calendar_id")
    ver = raw.get("model_version")
    if ver is not None:
        ids.model_version(ver, field="predicted.model_version")
    return {"calendar_id": cal, "method": method, "model_version": ver, "source": "client"}


def correct_event(user_id: str, event_id: str, calendar_id: str, stores: Stores,
                  predicted: Optional[dict] = None) -> dict:
    """Relabel a stored event and record the correction.

    The record carries what had been predicted (calendar, method, model version): from the
    prediction log when it has the event (``predicted_source: log``; that item is then marked
    ``was_correct``), else from the client's echo ``predicted`` (:func:`echoed_prediction`,
    ``predicted_source: client``; the log is sampled, and an echo never creates or marks a log item,
    so the log's accuracy stays a fair sample). ``corrections_total`` (which drives retraining) is
    bumped only when the label actually changes, and ``confident_misses_total`` too when the
    changed label was the model's own answer (method ``ml`` in the log, the echo or the remembered
    row): the next training run retrains that user (``RETRAIN_CONFIDENT_MISSES``). 404 if the event
    is unknown.
    """
    ids.user_id(user_id)
    ids.event_id(event_id)  # reported as field "eventId"
    ids.calendar_id(calendar_id, field="calendar_id")
    echo = echoed_prediction(predicted)
    store, users, log = stores.events, stores.users, stores.predictions
    stored = store.get_stored(user_id, event_id)
    if stored is None:
        raise NotFound(f"event {event_id!r} not found", field="eventId")
    current = stored.event
    prediction = log.get(user_id, event_id)
    store.set_calendar(user_id, event_id, calendar_id)
    _register_missing_calendars(user_id, {calendar_id}, users)
    record = users.record_correction(user_id, event_id, old=current.calendar_id, new=calendar_id,
                                     prediction=prediction or echo)
    marked = log.mark(user_id, event_id, calendar_id) if prediction else None
    changed = current.calendar_id != calendar_id
    if changed:
        method = (prediction or echo or {}).get("method")
        if method is None and stored.provenance == LABEL_ML:
            method = "ml"
        users.bump(user_id, corrections=1, misses=int(method == "ml"), labels=1)
    elif stored.provenance not in USER_LABELS:
        users.bump(user_id, labels=1)  # the same calendar, now the user's label: it may certify
    out = {k: v for k, v in record.items() if k not in ("user_id", "sk")}
    out["changed"] = changed
    if marked is not None:
        out["was_correct"] = bool(marked.get("was_correct"))
    elif echo is not None:
        out["was_correct"] = echo["calendar_id"] == calendar_id
    return out


def put_calendar(user_id: str, calendar_id: str, name: Optional[str], description: Optional[str],
                 stores: Stores) -> dict:
    """Create or replace a calendar's name and description (what the LLM fallback is shown)."""
    ids.user_id(user_id)
    ids.calendar_id(calendar_id)  # reported as field "calendarId"

    def text(value: Optional[str], limit: int, field: str) -> str:
        try:
            return clean_text(value, limit, field=field)
        except ValueError as exc:
            raise InvalidInput(str(exc), field=field) from None

    info = CalendarInfo(calendar_id=calendar_id, name=text(name, MAX_CALENDAR_NAME, "name") or calendar_id,
                        description=text(description, MAX_CALENDAR_DESCRIPTION, "description"))
    stores.users.put_calendar(user_id, info)
    return info.model_dump()


#: the user's settings and their defaults (``GET``/``PUT /v1/users/{userId}/settings``)
SETTINGS_DEFAULTS = {"remember": False}


def get_settings(user_id: str, stores: Stores) -> dict:
    """The user's settings, every one present (its default when never set), and ``updated_at``."""
    ids.user_id(user_id)
    stored = stores.users.settings(user_id)
    out = {k: stored.get(k, v) for k, v in SETTINGS_DEFAULTS.items()}
    out["updated_at"] = stored.get("updated_at")
    return out


def put_settings(user_id: str, values: dict, stores: Stores) -> dict:
    """Set some of the user's settings (the others keep their value). ``remember``: classify keeps
    the answered events of requests that do not say ``remember`` (docs/learning.md)."""
    ids.user_id(user_id)
    unknown = sorted(set(values) - set(SETTINGS_DEFAULTS))
    if unknown:
        raise InvalidInput(f"unknown setting {unknown[0]!r} (known: {', '.join(SETTINGS_DEFAULTS)})", field=unknown[0])
    for k, v in values.items():
        if not isinstance(v, type(SETTINGS_DEFAULTS[k])):
            raise InvalidInput(f"{k} must be true or false", field=k)
    current = {k: v for k, v in get_settings(user_id, stores).items() if k in SETTINGS_DEFAULTS}
    stored = stores.users.put_settings(user_id, {**current, **values})
    return {**{k: stored[k] for k in SETTINGS_DEFAULTS}, "updated_at": stored.get("updated_at")}


def import_ics(user_id: str, calendar_id: str, body: bytes | str, cfg: Settings, stores: Stores, *,
               now: Optional[datetime] = None) -> dict:
    """Parse an iCalendar file (recurring series expanded within
    ``now - ICS_WINDOW_DAYS_BACK .. now + ICS_WINDOW_DAYS_FORWARD``), label every event with
    ``calendar_id`` and upsert them. The calendar is registered if unknown (name = X-WR-CALNAME or the
    id, description = X-WR-CALDESC). Re-importing the same file is idempotent."""
    ids.user_id(user_id)
    ids.calendar_id(calendar_id)  # reported as field "calendarId"
    window = import_window(cfg.ics_window_days_back, cfg.ics_window_days_forward,
                           now=now or datetime.now(timezone.utc))
    res = read_ics(body, calendar_id, window=window, max_occurrences=cfg.ics_max_occurrences,
                   max_bytes=cfg.ics_max_bytes)
    added = _register_missing_calendars(
        user_id, {calendar_id}, stores.users,
        names={calendar_id: (clean_text(res.calendar_name, MAX_CALENDAR_NAME, truncate=True) or calendar_id,
                             clean_text(res.calendar_description, MAX_CALENDAR_DESCRIPTION, truncate=True))})
    upserted, new = _upsert(user_id, res.events, stores, source="ics")
    return {
        "calendar_id": calendar_id,
        "calendar_registered": bool(added),
        "events": upserted,
        "new": new,
        "vevents": res.vevents,
        "recurring_series": res.recurring_series,
        "recurring_expanded": res.expanded,
        "skipped": res.skipped,
        "skipped_reasons": dict(res.skipped_reasons),
        "window": {"start": window[0].isoformat(), "end": window[1].isoformat()},
    }


class IngestService:
    """The ingest use cases bound to their stores and settings (what the ingest handler receives)."""

    def __init__(self, stores: Stores, cfg: Settings):
        self.stores, self.cfg = stores, cfg

    def ingest_events(self, user_id: str, raw_events: Any) -> dict:
        return ingest_events(user_id, raw_events, self.stores, self.cfg)

    def correct_event(self, user_id: str, event_id: str, calendar_id: str,
                      predicted: Optional[dict] = None) -> dict:
        return correct_event(user_id, event_id, calendar_id, self.stores, predicted=predicted)

    def put_calendar(self, user_id: str, calendar_id: str, name: Optional[str], description: Optional[str]) -> dict:
        return put_calendar(user_id, calendar_id, name, description, self.stores)

    def settings(self, user_id: str) -> dict:
        return get_settings(user_id, self.stores)

    def put_settings(self, user_id: str, values: dict) -> dict:
        return put_settings(user_id, values, self.stores)

    def import_ics(self, user_id: str, calendar_id: str, body: bytes | str, *,
                   now: Optional[datetime] = None) -> dict:
        return import_ics(user_id, calendar_id, body, self.cfg, self.stores, now=now)

    # the review queue (calroute.services.review): what to ask the user about, and their "yes"
    def review_queue(self, user_id: str, limit: Optional[int] = None) -> dict:
        from .review import review_queue

        return review_queue(user_id, self.stores, limit=limit)

    def confirm_event(self, user_id: str, event_id: str) -> dict:
        from .review import confirm_event

        return confirm_event(user_id, event_id, self.stores)
