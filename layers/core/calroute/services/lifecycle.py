"""The user's data lifecycle: list, delete, export and erase (issue 17).

* :meth:`LifecycleService.list_calendars` — ids, names, descriptions, event counts;
* :meth:`LifecycleService.list_events` — the user's events newest first (by start), paged with an
  opaque cursor, optionally of one calendar;
* :meth:`LifecycleService.delete_event` — the event, its corrections and its prediction-log entry;
  counts as a correction toward retraining (``RETRAIN_CORRECTIONS``). A second delete is
  ``404 event_not_found``;
* :meth:`LifecycleService.delete_calendar` — tombstone first (from then on no model trained before
  it answers with the calendar: :mod:`calroute.removed`), then its events (deleted, or relabelled
  with ``move_to``), the calendar item and its counter; a retrain is requested on the profile (the
  next training run picks the user, :mod:`calroute.retrain` rule 7). It answers no sooner than
  :data:`~calroute.forget.REMOVED_CHECK_SECONDS` after the tombstone was written (the predict
  containers' tombstone views are at most that old, so none answers with the calendar after the
  DELETE answered). A second delete is ``404 calendar_not_found``;
* :meth:`LifecycleService.export` — every record of the user as JSON Lines objects
  (``{"type": ..., ...}``); :func:`replay` turns an export back into calendars + events to ingest;
* :meth:`LifecycleService.erase` — everything of the user in every store (the model bucket's
  object versions and delete markers included), idempotent and safe to re-run after a partial
  failure; answers (and audits) the count removed per store. The audit record carries an HMAC of
  the user id under a configured key, never the id, and no content.

Order matters for retries: every step is an idempotent delete, the serving-relevant ones first
(the ACTIVE pointer, the tombstone), the PROFILE last, so a run killed half-way leaves a state that
the next run completes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Optional

from .. import forget
from ..forget import REMOVED_CHECK_SECONDS
from ..errors import InvalidInput, NotFound, ServiceUnavailable
from ..ports import MetricsSink, NullSink, Stores
from ..schema import CalendarInfo

DEFAULT_PAGE = 50
MAX_PAGE = 200
#: the key of the erasure-audit HMAC when none is configured and auth is dev/none (local stack, tests)
DEV_HMAC_KEY = "calroute-local-development-erasure-key"
#: the stores an erasure reports on, in the order it deletes them
ERASE_STEPS = ("registry", "model_objects", "run_manifests", "run_records", "predictions", "usage",
               "events", "users")
EXPORT_VERSION = 1


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def user_digest(user_id: str, key: str) -> str:
    """HMAC-SHA256 of the user id under ``key`` (hex): links audit records of one user without
    naming them; without the key it cannot be recomputed from a guessed id."""
    return hmac.new(key.encode("utf-8"), user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def resolve_hmac_key(cfg) -> str:
    """The erasure-audit key: the SSM parameter / secret, else the plain setting, else (dev/none
    auth only) :data:`DEV_HMAC_KEY`. ServiceUnavailable when none can be had: nothing is erased
    without an audit record."""
    name = getattr(cfg, "erasure_hmac_key_param", "")
    if name:
        try:
            if name.startswith("secretsmanager:"):
                from aws_lambda_powertools.utilities.parameters import get_secret

                value = get_secret(name[len("secretsmanager:"):], max_age=300)
            else:
                from aws_lambda_powertools.utilities.parameters import get_parameter

                value = get_parameter(name, decrypt=True, max_age=300)
        except Exception as exc:  # noqa: BLE001 - missing parameter, no permission, SSM down
            raise ServiceUnavailable(f"the erasure audit key could not be read ({type(exc).__name__})",
                                     code="erasure_not_configured", retry_after=30) from exc
        value = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        if value.strip():
            return value.strip()
    if getattr(cfg, "erasure_hmac_key", ""):
        return cfg.erasure_hmac_key
    if cfg.auth_mode in ("dev", "none"):
        return DEV_HMAC_KEY
    raise ServiceUnavailable("no erasure audit key is configured (ERASURE_HMAC_KEY_PARAM)",
                             code="erasure_not_configured", retry_after=30)


# ----------------------------------------------------------------------------- cursors


def _encode_cursor(start: str, event_id: str) -> str:
    raw = json.dumps([start, event_id], separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        start, event_id = json.loads(raw)
        if not isinstance(start, str) or not isinstance(event_id, str):
            raise ValueError
        return start, event_id
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidInput("cursor is not a cursor this API returned", field="cursor") from None


# ----------------------------------------------------------------------------- export helpers


def replay(lines: Iterable[dict]) -> tuple[list[CalendarInfo], list[dict]]:
    """An export (its decoded lines) → ``(calendars, flat labelled events)`` to ingest for a user
    (any user: nothing in them names the exporting user)."""
    cals, events = [], []
    for line in lines:
        if line.get("type") == "calendar":
            cals.append(CalendarInfo(calendar_id=line["calendar_id"], name=line.get("name", ""),
                                     description=line.get("description", "")))
        elif line.get("type") == "event":
            events.append(line["event"])
    return cals, events


class LifecycleService:
    def __init__(self, stores: Stores, cfg, *, sink: Optional[MetricsSink] = None,
                 key: Optional[Callable[[], str]] = None, clock: Callable[[], str] = now_iso,
                 monotonic: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.stores = stores
        self.cfg = cfg
        self.sink = sink or NullSink()
        self._key = key or (lambda: resolve_hmac_key(cfg))
        self.clock = clock
        self.monotonic, self.sleep = monotonic, sleep

    # ------------------------------------------------------------------ list

    def list_calendars(self, user_id: str) -> dict:
        counts: dict[str, int] = {}
        for _, _, cal in self.stores.events.event_index(user_id):
            counts[cal] = counts.get(cal, 0) + 1
        cals = {c.calendar_id: c for c in self.stores.users.calendars(user_id)}
        for cal in counts:  # events of a calendar that was never registered (written before registration)
            cals.setdefault(cal, CalendarInfo(calendar_id=cal, name=cal))
        return {"calendars": [{"calendar_id": c.calendar_id, "name": c.name, "description": c.description,
                               "events": counts.get(c.calendar_id, 0)} for _, c in sorted(cals.items())]}

    def list_events(self, user_id: str, *, calendar_id: Optional[str] = None, cursor: Optional[str] = None,
                    limit: int = DEFAULT_PAGE) -> dict:
        """Newest first: by start descending, then event id descending (a stable total order, so
        a cursor — the position of the last event returned — resumes exactly after it)."""
        limit = max(1, min(int(limit), MAX_PAGE))
        rows = [(start, eid) for eid, start, cal in self.stores.events.event_index(user_id)
                if calendar_id is None or cal == calendar_id]
        rows.sort(reverse=True)
        if cursor:
            after = _decode_cursor(cursor)
            rows = [r for r in rows if r < after]
        page = rows[:limit]
        found = {ev.event_id: ev for ev in self.stores.events.get_events(user_id, [eid for _, eid in page])}
        events = [found[eid].to_flat() for _, eid in page if eid in found]
        more = len(rows) > limit
        return {"events": events, "count": len(events),
                "next_cursor": _encode_cursor(*page[-1]) if more and page else None}

    # ------------------------------------------------------------------ delete

    def delete_event(self, user_id: str, event_id: str) -> dict:
        s = self.stores
        if s.events.get_event(user_id, event_id) is None:
            raise NotFound(f"event {event_id!r} not found (already deleted?)", field="eventId",
                           code="event_not_found")
        corrections = s.users.delete_corrections(user_id, [event_id])
        predictions = s.predictions.delete(user_id, [event_id])
        s.users.bump(user_id, corrections=1, labels=1)  # the training set changed: counts toward retraining
        s.events.delete_events(user_id, [event_id])  # last: a retry after a failure finds the event again
        self.sink.add_metric("EventsDeleted", "Count", 1)
        return {"event_id": event_id, "deleted": True, "corrections_deleted": corrections,
                "predictions_deleted": predictions}

    def delete_calendar(self, user_id: str, calendar_id: str, *, move_to: Optional[str] = None) -> dict:
        s = self.stores
        if move_to == calendar_id:
            raise InvalidInput("move_to must name another calendar", field="move_to")
        registered = {c.calendar_id: c for c in s.users.calendars(user_id)}
        index = s.events.event_index(user_id)
        mine = [eid for eid, _, cal in index if cal == calendar_id]
        if calendar_id not in registered and not mine:
            raise NotFound(f"calendar {calendar_id!r} not found (already deleted?)", field="calendarId",
                           code="calendar_not_found")
        at = self.clock()
        # 1. serving: from now on no model trained before this answers with the calendar
        s.users.mark_calendar_removed(user_id, calendar_id, at=at)
        written = self.monotonic()
        forget.forget_user(user_id)
        # 2. its events: relabelled (each a correction) or deleted with their corrections and log entries
        moved = deleted = 0
        if move_to is not None:
            if move_to not in registered:
                s.users.put_calendar(user_id, CalendarInfo(calendar_id=move_to, name=move_to))
            for eid in mine:
                try:
                    s.events.set_calendar(user_id, eid, move_to)
                    moved += 1
                except NotFound:
                    pass  # deleted meanwhile
            if moved:
                s.users.bump(user_id, corrections=moved, calendars={move_to: moved}, labels=moved)
        else:
            s.users.delete_corrections(user_id, mine)
            s.predictions.delete(user_id, mine)
            deleted = s.events.delete_events(user_id, mine)
            if deleted:
                s.users.bump(user_id, corrections=deleted, labels=deleted)
        # 3. retrain (the planner's next run), then the calendar itself (last: a retry finds it)
        s.users.request_retrain(user_id, at=at, reason=f"calendar {calendar_id} deleted")
        s.users.delete_calendar(user_id, calendar_id)
        forget.forget_user(user_id)
        # 4. answer only once every predict container's tombstone view (re-read every
        # REMOVED_CHECK_SECONDS) is younger than the tombstone: from this answer on, none names it
        left = REMOVED_CHECK_SECONDS - (self.monotonic() - written)
        if left > 0:
            self.sleep(left)
        self.sink.add_metric("CalendarsDeleted", "Count", 1)
        return {"calendar_id": calendar_id, "deleted": True, "events_deleted": deleted, "events_moved": moved,
                "moved_to": move_to, "retrain_requested": True, "removed_at": at}

    # ------------------------------------------------------------------ export

    def export(self, user_id: str) -> Iterator[dict]:
        """Every record of the user, one JSON object per line: ``export`` (header), ``profile``, ``settings``,
        ``calendar``, ``removed_calendar``, ``event``, ``correction``, ``model`` (registry version
        records), ``active_model``, ``model_audit``, ``training_gates`` (the last training run the
        data gates stopped), ``prediction``, ``usage``. Model bytes are not
        exported (they are derived from the events; ``model`` lines name their sha256)."""
        s = self.stores
        yield {"type": "export", "version": EXPORT_VERSION, "exported_at": self.clock()}
        profile = s.users.profile(user_id)
        if profile:
            yield {"type": "profile", **{k: v for k, v in profile.items() if k not in ("user_id", "sk")}}
        prefs = s.users.settings(user_id)
        if prefs:
            yield {"type": "settings", **prefs}
        for c in s.users.calendars(user_id):
            yield {"type": "calendar", "calendar_id": c.calendar_id, "name": c.name, "description": c.description}
        for cal, at in sorted(s.users.removed_calendars(user_id).items()):
            yield {"type": "removed_calendar", "calendar_id": cal, "removed_at": at}
        for ev, updated in s.events.list_events_updated(user_id):
            yield {"type": "event", "updated_at": updated, "event": ev.to_flat()}
        for c in s.users.corrections(user_id):
            yield {"type": "correction", **_strip(c)}
        for v in s.registry.versions(user_id):
            yield {"type": "model", **_strip(v)}
        active = s.registry.active(user_id)
        if active:
            yield {"type": "active_model", **_strip(active)}
        for a in s.registry.audit_trail(user_id):
            yield {"type": "model_audit", **_strip(a)}
        skip = s.registry.gate_skip(user_id)
        if skip:
            yield {"type": "training_gates", **_strip(skip)}
        for p in s.predictions.since(user_id, "0000"):
            yield {"type": "prediction", **_strip(p)}
        for u in s.usage.days(user_id, "0000-00-00"):  # DynamoDB refuses an empty key value
            yield {"type": "usage", **_strip(u)}

    # ------------------------------------------------------------------ erase

    def erase(self, user_id: str, *, actor: str) -> dict:
        """Delete everything of ``user_id``; returns ``{"erased", "user_hash", "removed": {store: n},
        "at"}`` and writes the same as an audit record. Re-running it is safe (it removes what is
        left, 0 when nothing is)."""
        key = self._key()  # before anything is deleted: no erasure without its audit record
        s = self.stores
        plan = {
            "registry": s.registry.delete_user,       # ACTIVE first: no container loads the model again
            "model_objects": s.models.delete_user,    # every version and delete marker
            "run_manifests": s.models.scrub_manifests,
            "run_records": s.registry.scrub_runs,
            "predictions": s.predictions.delete_user,
            "usage": s.usage.delete_user,
            "events": s.events.delete_user,
            "users": s.users.delete_user,             # PROFILE last
        }
        removed: dict[str, int] = {}
        for name in ERASE_STEPS:
            removed[name] = int(plan[name](user_id))
            if name == "registry":
                forget.forget_user(user_id)
        # a training run in flight may have registered a model between the first steps and now
        removed["registry"] += int(s.registry.delete_user(user_id))
        removed["model_objects"] += int(s.models.delete_user(user_id))
        forget.forget_user(user_id)
        at = self.clock()
        record = {"action": "erase", "at": at, "actor": actor, "user_hash": user_digest(user_id, key),
                  "removed": removed, "total": sum(removed.values())}
        s.registry.put_erasure(record)
        self.sink.add_metric("UserErasures", "Count", 1)
        return {"erased": True, **{k: record[k] for k in ("user_hash", "removed", "total", "at")}}


def _strip(item: dict) -> dict:
    """A stored item without its partition key (the exporting user's id) and TTL."""
    return {k: v for k, v in item.items() if k not in ("user_id", "expires_at")}


__all__ = ["LifecycleService", "replay", "user_digest", "resolve_hmac_key", "ERASE_STEPS", "DEV_HMAC_KEY",
           "DEFAULT_PAGE", "MAX_PAGE"]
