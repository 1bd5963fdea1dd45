"""The events table behind :class:`calroute.ports.EventStore`: labelled events of one user, keyed by
event id (pk ``user_id``, sk ``event_id``; the flat event JSON in ``data``)."""

from __future__ import annotations

import json
import time
from typing import Iterable, Optional

from botocore.exceptions import ClientError

from ...errors import NotFound, ServiceUnavailable
from ...ports import StoredEvent
from ...schema import LABEL_USER, REMEMBERED_LABELS, Event, parse_event
from .base import (
    TableAdapter,
    backoff,
    batch_write,
    delete_keys,
    is_condition_failed,
    is_throttle,
    iter_chunks,
    now_iso,
    query_all,
    query_keys,
    translated,
)


def _data(ev: Event) -> str:
    return json.dumps(ev.to_flat(), ensure_ascii=False, separators=(",", ":"))


def _meta(item: dict) -> dict:
    raw = item.get("label_meta")
    try:
        out = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


#: remember's condition: a new event, or one whose stored label is a remembered answer
_REMEMBERED_VALUES = {f":r{i}": p for i, p in enumerate(REMEMBERED_LABELS)}
_OVERWRITABLE = f"attribute_not_exists(event_id) OR provenance IN ({', '.join(_REMEMBERED_VALUES)})"


class DynamoEventStore(TableAdapter):
    """Labelled events of one user, keyed by event id (upserts are idempotent)."""

    @translated
    def put_events(self, user_id: str, events: list[Event], *, source: str = "api",
                   provenance: str = LABEL_USER) -> int:
        """Upsert labelled events (each must have ``event_id`` and ``calendar_id``)."""
        ts = now_iso()
        reqs, seen = [], {}
        for ev in events:
            seen[ev.event_id] = ev  # last one wins within a batch (BatchWriteItem rejects duplicates)
        for ev in seen.values():
            item = {
                "user_id": user_id,
                "event_id": ev.event_id,
                "calendar_id": ev.calendar_id or "",
                "start": ev.start_utc.isoformat(),
                "data": _data(ev),
                "source": source,
                "provenance": provenance,
                "updated_at": ts,
            }
            reqs.append({"PutRequest": {"Item": item}})
        batch_write(self.t.ddb.meta.client, self.name, reqs)
        return len(reqs)

    @translated
    def remember(self, user_id: str, answers: list[tuple[Event, str, dict]]) -> list[str]:
        """One conditional PutItem per answered event: written when the event is not stored, or
        stored with a remembered label (``llm``/``ml``/``sole``: the latest answer wins); a user's label (``user``, ``confirmed``, or
        no provenance: items older than provenance) is never overwritten. ``ReturnValues=ALL_OLD``
        says which ids are new."""
        ts = now_iso()
        new: list[str] = []
        for ev, provenance, meta in {a[0].event_id: a for a in answers}.values():
            item = {
                "user_id": user_id, "event_id": ev.event_id, "calendar_id": ev.calendar_id or "",
                "start": ev.start_utc.isoformat(), "data": _data(ev), "source": "classify",
                "provenance": provenance, "updated_at": ts,
                "label_meta": json.dumps(meta, separators=(",", ":")),
            }
            try:
                resp = self.table.put_item(
                    Item=item, ReturnValues="ALL_OLD",
                    ConditionExpression=_OVERWRITABLE, ExpressionAttributeValues=_REMEMBERED_VALUES)
            except ClientError as exc:
                if is_condition_failed(exc):
                    continue  # the user's own label stands
                raise
            if not resp.get("Attributes"):
                new.append(ev.event_id)
        return new

    @staticmethod
    def _stored(item: dict) -> StoredEvent:
        return StoredEvent(DynamoEventStore._event(item), str(item.get("provenance") or LABEL_USER),
                           str(item.get("updated_at") or ""), _meta(item))

    @translated
    def list_stored(self, user_id: str) -> list[StoredEvent]:
        return [self._stored(item) for item in query_all(self.table, KeyConditionExpression="user_id = :u",
                                                         ExpressionAttributeValues={":u": user_id})]

    @translated
    def get_stored(self, user_id: str, event_id: str) -> Optional[StoredEvent]:
        item = self.table.get_item(Key={"user_id": user_id, "event_id": event_id}).get("Item")
        return self._stored(item) if item else None

    @staticmethod
    def _event(item: dict) -> Event:
        return parse_event(json.loads(item["data"]))

    @translated
    def get_event(self, user_id: str, event_id: str) -> Optional[Event]:
        item = self.table.get_item(Key={"user_id": user_id, "event_id": event_id}).get("Item")
        return self._event(item) if item else None

    def existing_ids(self, user_id: str, event_ids: Iterable[str], *, max_attempts: int = 8,
                     sleep=time.sleep) -> set[str]:
        """Which of ``event_ids`` are already stored (BatchGetItem of keys only, 100 per call,
        UnprocessedKeys retried); lets ingest count new events without double-counting re-posts."""
        items = self._batch_get(user_id, event_ids, projection="event_id", max_attempts=max_attempts, sleep=sleep)
        return {i["event_id"] for i in items}

    def _batch_get(self, user_id: str, event_ids: Iterable[str], *, projection: Optional[str],
                   max_attempts: int, sleep) -> list[dict]:
        """BatchGetItem of the user's ``event_ids`` (deduplicated, 100 keys per call); throttling and
        UnprocessedKeys are retried with backoff, then :class:`ServiceUnavailable`."""
        client = self.t.ddb.meta.client
        out: list[dict] = []
        for chunk in iter_chunks(list(dict.fromkeys(event_ids)), 100):
            request: dict = {"Keys": [{"user_id": user_id, "event_id": e} for e in chunk]}
            if projection:
                request["ProjectionExpression"] = projection
            pending = {self.name: request}
            for attempt in range(max_attempts):
                try:
                    resp = client.batch_get_item(RequestItems=pending)
                except ClientError as exc:
                    if not is_throttle(exc):
                        raise
                    resp = {"UnprocessedKeys": pending}
                out.extend(resp.get("Responses", {}).get(self.name, []))
                pending = resp.get("UnprocessedKeys") or {}
                if not pending:
                    break
                sleep(backoff(attempt))
            else:
                raise ServiceUnavailable("storage is throttling reads; retry the request", retry_after=2)
        return out

    @translated
    def set_calendar(self, user_id: str, event_id: str, calendar_id: str, *, provenance: str = LABEL_USER) -> Event:
        """Relabel an existing event (conditional: it must exist); its provenance becomes ``provenance``."""
        ev = self.get_event(user_id, event_id)
        if ev is None:
            raise NotFound(f"event {event_id!r} not found", field="eventId")
        ev = ev.model_copy(update={"calendar_id": calendar_id})
        try:
            self.table.update_item(
                Key={"user_id": user_id, "event_id": event_id},
                UpdateExpression="SET calendar_id = :c, #d = :d, updated_at = :u, provenance = :p",
                ConditionExpression="attribute_exists(event_id)",
                ExpressionAttributeNames={"#d": "data"},
                ExpressionAttributeValues={":c": calendar_id, ":d": _data(ev), ":u": now_iso(), ":p": provenance},
            )
        except ClientError as exc:
            if is_condition_failed(exc):  # deleted between the read and the write
                raise NotFound(f"event {event_id!r} not found", field="eventId") from None
            raise
        return ev

    def list_events(self, user_id: str, limit: Optional[int] = None) -> list[Event]:
        return [ev for ev, _ in self.list_events_updated(user_id, limit)]

    @translated
    def list_events_updated(self, user_id: str, limit: Optional[int] = None) -> list[tuple[Event, str]]:
        """The user's events with the time each was last written (``updated_at``: ingest, import or
        correction), for "which events has a model trained on" questions."""
        out = []
        for item in query_all(
            self.table,
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": user_id},
        ):
            out.append((self._event(item), str(item.get("updated_at") or "")))
            if limit and len(out) >= limit:
                break
        return out

    @translated
    def count_events(self, user_id: str) -> int:
        table = self.table
        kwargs = dict(KeyConditionExpression="user_id = :u", ExpressionAttributeValues={":u": user_id},
                      Select="COUNT")
        total = 0
        while True:
            page = table.query(**kwargs)
            total += page.get("Count", 0)
            if "LastEvaluatedKey" not in page:
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # ------------------------------------------------------------------ the user's data lifecycle

    @translated
    def event_index(self, user_id: str) -> list[tuple[str, str, str]]:
        items = query_keys(self.table, "user_id", user_id, "event_id", extra=("start", "calendar_id"))
        return [(i["event_id"], str(i.get("start") or ""), str(i.get("calendar_id") or "")) for i in items]

    def get_events(self, user_id: str, event_ids: Iterable[str], *, max_attempts: int = 8,
                   sleep=time.sleep) -> list[Event]:
        """BatchGetItem (100 keys per call, UnprocessedKeys retried)."""
        return [self._event(i) for i in self._batch_get(user_id, event_ids, projection=None,
                                                        max_attempts=max_attempts, sleep=sleep)]

    @translated
    def delete_events(self, user_id: str, event_ids: Iterable[str]) -> int:
        ids = list(dict.fromkeys(event_ids))
        present = self.existing_ids(user_id, ids)
        delete_keys(self.t.ddb.meta.client, self.name, [{"user_id": user_id, "event_id": e} for e in sorted(present)])
        return len(present)

    @translated
    def delete_user(self, user_id: str) -> int:
        keys = query_keys(self.table, "user_id", user_id, "event_id")
        return delete_keys(self.t.ddb.meta.client, self.name, keys)
