"""AWS adapters: DynamoDB and S3 behind small, domain-shaped classes.

Every method takes the (already validated) user id and only ever touches keys under it: a user can
never read or write another user's items. boto3 honours ``AWS_ENDPOINT_URL``, which the local stack
and the integration tests point at the moto server.

Tables (see template.yaml):

* events       pk ``user_id``, sk ``event_id`` — labelled events (flat JSON in ``data``)
* users        pk ``user_id``, sk ``PROFILE`` | ``CAL#<calendarId>`` | ``CORR#<ts>#<eventId>``
* registry     pk ``user_id``, sk ``MODEL#<version>`` | ``ACTIVE`` | ``AUDIT#<ts>``;
               training-run records under pk ``_run`` (user ids never start with ``_``)
* predictions  pk ``user_id``, sk ``event_id`` — prediction log, TTL ``expires_at``
* usage        pk ``user_id`` | ``_global``, sk ``<yyyy-mm-dd>`` — LLM tokens and USD, TTL
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Iterable, Iterator, Optional

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ..errors import Conflict, ModelIntegrityError, NotFound, ServiceUnavailable
from ..schema import CalendarInfo, Event, parse_event

# "standard" retries (bounded exponential backoff). Not "adaptive": its client-side rate limiter is
# per client and, after a burst of throttles, makes every later call of the process sleep.
_BOTO_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=10)
_THROTTLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}
RUN_PK = "_run"
GLOBAL_PK = "_global"
from ..retrain import CALENDAR_COUNT_PREFIX  # noqa: E402  (profile counters per calendar)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def to_ddb(value: Any) -> Any:
    """Python → DynamoDB-safe (floats become Decimal)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: to_ddb(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_ddb(v) for v in value]
    return value


def from_ddb(value: Any) -> Any:
    """DynamoDB → plain Python (Decimal becomes int or float)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_ddb(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_ddb(v) for v in value]
    return value


def is_throttle(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _THROTTLE_CODES


class _Tables:
    """Lazily created boto3 resources shared by the adapters of one process."""

    def __init__(self, session: Optional[boto3.session.Session] = None):
        self._session = session or boto3.session.Session()
        self._ddb = None
        self._s3 = None

    @property
    def ddb(self):
        if self._ddb is None:
            self._ddb = self._session.resource("dynamodb", config=_BOTO_CONFIG)
        return self._ddb

    @property
    def s3(self):
        if self._s3 is None:
            self._s3 = self._session.client("s3", config=_BOTO_CONFIG)
        return self._s3

    def table(self, name: str):
        return self.ddb.Table(name)


_shared = _Tables()


def shared_tables() -> _Tables:
    return _shared


def _query_all(table, **kwargs) -> Iterator[dict]:
    while True:
        page = table.query(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def batch_write(client, table_name: str, requests: list[dict], *, max_attempts: int = 8,
                sleep=time.sleep) -> None:
    """``client`` is a DynamoDB *resource's* client (``resource.meta.client``: plain Python values).

    BatchWriteItem in chunks of 25, retrying UnprocessedItems with jittered exponential backoff.

    Raises :class:`ServiceUnavailable` if items remain unprocessed after ``max_attempts``; the
    writes are idempotent upserts, so the client may safely resend the whole batch.
    """
    for i in range(0, len(requests), 25):
        pending = {table_name: requests[i : i + 25]}
        for attempt in range(max_attempts):
            try:
                resp = client.batch_write_item(RequestItems=pending)
            except ClientError as exc:
                if not is_throttle(exc):
                    raise
                resp = {"UnprocessedItems": pending}
            pending = resp.get("UnprocessedItems") or {}
            if not pending:
                break
            sleep(min(2.0, 0.02 * (2**attempt)) * (0.5 + random.random() / 2))
        else:
            raise ServiceUnavailable("storage is throttling writes; retry the request", retry_after=2)


# ----------------------------------------------------------------------------- events


class _TableAdapter:
    """One DynamoDB table, through the process's shared boto3 resource (or ``tables``)."""

    def __init__(self, table_name: str, tables: _Tables | None = None):
        self.name = table_name
        self.t = tables or _shared

    @property
    def table(self):
        return self.t.table(self.name)


class EventRepo(_TableAdapter):
    """Labelled events of one user, keyed by event id (upserts are idempotent)."""

    def put_events(self, user_id: str, events: list[Event], *, source: str = "api") -> int:
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
                "data": json.dumps(ev.to_flat(), ensure_ascii=False, separators=(",", ":")),
                "source": source,
                "updated_at": ts,
            }
            reqs.append({"PutRequest": {"Item": item}})
        batch_write(self.t.ddb.meta.client, self.name, reqs)
        return len(reqs)

    @staticmethod
    def _event(item: dict) -> Event:
        return parse_event(json.loads(item["data"]))

    def get_event(self, user_id: str, event_id: str) -> Optional[Event]:
        item = self.table.get_item(Key={"user_id": user_id, "event_id": event_id}).get("Item")
        return self._event(item) if item else None

    def existing_ids(self, user_id: str, event_ids: Iterable[str], *, max_attempts: int = 8,
                     sleep=time.sleep) -> set[str]:
        """Which of ``event_ids`` are already stored (BatchGetItem of keys only, 100 per call,
        UnprocessedKeys retried); lets ingest count new events without double-counting re-posts."""
        client = self.t.ddb.meta.client
        wanted = list(dict.fromkeys(event_ids))
        found: set[str] = set()
        for chunk in iter_chunks(wanted, 100):
            pending = {self.name: {"Keys": [{"user_id": user_id, "event_id": e} for e in chunk],
                                   "ProjectionExpression": "event_id"}}
            for attempt in range(max_attempts):
                try:
                    resp = client.batch_get_item(RequestItems=pending)
                except ClientError as exc:
                    if not is_throttle(exc):
                        raise
                    resp = {"UnprocessedKeys": pending}
                found.update(i["event_id"] for i in resp.get("Responses", {}).get(self.name, []))
                pending = resp.get("UnprocessedKeys") or {}
                if not pending:
                    break
                sleep(min(2.0, 0.02 * (2**attempt)) * (0.5 + random.random() / 2))
            else:
                raise ServiceUnavailable("storage is throttling reads; retry the request", retry_after=2)
        return found

    def set_calendar(self, user_id: str, event_id: str, calendar_id: str) -> Event:
        """Relabel an existing event (conditional: it must exist)."""
        ev = self.get_event(user_id, event_id)
        if ev is None:
            raise NotFound(f"event {event_id!r} not found", field="eventId")
        ev = ev.model_copy(update={"calendar_id": calendar_id})
        self.table.update_item(
            Key={"user_id": user_id, "event_id": event_id},
            UpdateExpression="SET calendar_id = :c, #d = :d, updated_at = :u",
            ConditionExpression="attribute_exists(event_id)",
            ExpressionAttributeNames={"#d": "data"},
            ExpressionAttributeValues={
                ":c": calendar_id,
                ":d": json.dumps(ev.to_flat(), ensure_ascii=False, separators=(",", ":")),
                ":u": now_iso(),
            },
        )
        return ev

    def list_events(self, user_id: str, limit: Optional[int] = None) -> list[Event]:
        return [ev for ev, _ in self.list_events_updated(user_id, limit)]

    def list_events_updated(self, user_id: str, limit: Optional[int] = None) -> list[tuple[Event, str]]:
        """The user's events with the time each was last written (``updated_at``: ingest, import or
        correction), for "which events has a model trained on" questions."""
        out = []
        for item in _query_all(
            self.table,
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": user_id},
        ):
            out.append((self._event(item), str(item.get("updated_at") or "")))
            if limit and len(out) >= limit:
                break
        return out

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


# ----------------------------------------------------------------------------- users


class UserRepo(_TableAdapter):
    """Per-user profile counters, calendars and corrections."""

    def bump(self, user_id: str, *, events: int = 0, corrections: int = 0,
             calendars: Optional[dict[str, int]] = None) -> None:
        """Atomically add to the user's counters (creating the profile on first use); ``calendars``
        adds new events per calendar (profile attributes ``calev#<calendarId>``)."""
        adds = ["events_total :e", "corrections_total :c"]
        values: dict[str, Any] = {":e": events, ":c": corrections, ":u": now_iso()}
        names: dict[str, str] = {}
        for i, (cal, n) in enumerate(sorted((calendars or {}).items())):
            adds.append(f"#c{i} :c{i}")
            names[f"#c{i}"] = f"{CALENDAR_COUNT_PREFIX}{cal}"
            values[f":c{i}"] = int(n)
        kwargs: dict[str, Any] = {"ExpressionAttributeNames": names} if names else {}
        self.table.update_item(
            Key={"user_id": user_id, "sk": "PROFILE"},
            UpdateExpression="ADD " + ", ".join(adds) + " SET updated_at = :u, "
            "created_at = if_not_exists(created_at, :u)",
            ExpressionAttributeValues=values, **kwargs,
        )

    def profile(self, user_id: str) -> dict:
        item = self.table.get_item(Key={"user_id": user_id, "sk": "PROFILE"}).get("Item")
        return from_ddb(item) if item else {}

    def iter_profiles(self, page_size: int = 500) -> Iterator[dict]:
        """Every user's profile (a paged scan), for the training planner."""
        kwargs: dict = {
            "FilterExpression": "sk = :p",
            "ExpressionAttributeValues": {":p": "PROFILE"},
            "Limit": page_size,
        }
        while True:
            page = self.table.scan(**kwargs)
            for item in page.get("Items", []):
                yield from_ddb(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def put_calendar(self, user_id: str, cal: CalendarInfo) -> None:
        self.table.put_item(
            Item={"user_id": user_id, "sk": f"CAL#{cal.calendar_id}", "calendar_id": cal.calendar_id,
                  "name": cal.name, "description": cal.description, "updated_at": now_iso()}
        )

    def calendars(self, user_id: str) -> list[CalendarInfo]:
        items = _query_all(
            self.table,
            KeyConditionExpression="user_id = :u AND begins_with(sk, :p)",
            ExpressionAttributeValues={":u": user_id, ":p": "CAL#"},
        )
        return [CalendarInfo(calendar_id=i["calendar_id"], name=i.get("name", ""),
                             description=i.get("description", "")) for i in items]

    def record_correction(self, user_id: str, event_id: str, *, old: Optional[str], new: str,
                          prediction: Optional[dict]) -> dict:
        ts = now_iso()
        item = {"user_id": user_id, "sk": f"CORR#{ts}#{event_id}", "event_id": event_id,
                "from_calendar": old or "", "to_calendar": new, "created_at": ts}
        if prediction:
            item.update({
                "predicted_calendar": prediction.get("calendar_id") or "",
                "predicted_method": prediction.get("method", ""),
                "predicted_model_version": prediction.get("model_version") or "",
            })
        self.table.put_item(Item=to_ddb(item))
        return item


# ----------------------------------------------------------------------------- model store


class ModelStore:
    """ONNX bytes in S3 at ``models/{userId}/{version}.onnx``; sha256 checked on every read."""

    def __init__(self, bucket: str, tables: _Tables | None = None):
        self.bucket = bucket
        self.t = tables or _shared

    @staticmethod
    def key(user_id: str, version: str, suffix: str = ".onnx") -> str:
        return f"models/{user_id}/{version}{suffix}"

    def put(self, user_id: str, version: str, data: bytes, suffix: str = ".onnx") -> tuple[str, str]:
        sha = hashlib.sha256(data).hexdigest()
        key = self.key(user_id, version, suffix)
        self.t.s3.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata={"sha256": sha},
                             ContentType="application/octet-stream")
        return key, sha

    def get(self, key: str, sha256: Optional[str] = None) -> bytes:
        try:
            data = self.t.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ModelIntegrityError(f"model object {key} is missing") from exc
            raise
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise ModelIntegrityError(f"model object {key} failed its sha256 check")
        return data

    def put_json(self, key: str, obj: Any) -> None:
        self.t.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(obj).encode(),
                             ContentType="application/json")

    def get_json(self, key: str) -> Any:
        return json.loads(self.t.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def delete(self, key: str) -> None:
        self.t.s3.delete_object(Bucket=self.bucket, Key=key)


# ----------------------------------------------------------------------------- registry


class Registry(_TableAdapter):
    """Model versions per user and the ACTIVE pointer, changed only by conditional writes."""

    def put_version(self, user_id: str, version: str, record: dict) -> None:
        item = {"user_id": user_id, "sk": f"MODEL#{version}", "version": version,
                "created_at": now_iso(), **record}
        item.setdefault("status", "candidate")
        self.table.put_item(Item=to_ddb(item), ConditionExpression="attribute_not_exists(sk)")

    def get_version(self, user_id: str, version: str) -> Optional[dict]:
        item = self.table.get_item(Key={"user_id": user_id, "sk": f"MODEL#{version}"}).get("Item")
        return from_ddb(item) if item else None

    def set_status(self, user_id: str, version: str, status: str, reason: str = "", **extra: Any) -> None:
        names = {"#s": "status"}
        values = {":s": status, ":r": reason, ":u": now_iso()}
        sets = ["#s = :s", "status_reason = :r", "status_at = :u"]
        for i, (k, v) in enumerate(extra.items()):
            names[f"#x{i}"] = k
            values[f":x{i}"] = to_ddb(v)
            sets.append(f"#x{i} = :x{i}")
        self.table.update_item(
            Key={"user_id": user_id, "sk": f"MODEL#{version}"},
            UpdateExpression="SET " + ", ".join(sets),
            ConditionExpression="attribute_exists(sk)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def versions(self, user_id: str) -> list[dict]:
        items = _query_all(
            self.table,
            KeyConditionExpression="user_id = :u AND begins_with(sk, :p)",
            ExpressionAttributeValues={":u": user_id, ":p": "MODEL#"},
        )
        return sorted((from_ddb(i) for i in items), key=lambda r: r["version"])

    def active(self, user_id: str, consistent: bool = False) -> Optional[dict]:
        item = self.table.get_item(Key={"user_id": user_id, "sk": "ACTIVE"},
                                   ConsistentRead=consistent).get("Item")
        return from_ddb(item) if item else None

    def activate(self, user_id: str, record: dict, *, expected_version: Optional[str], actor: str,
                 reason: str, action: str = "promote") -> dict:
        """Point ACTIVE at ``record`` iff it still points at ``expected_version`` (None: no pointer).

        Two racing promotions: exactly one wins, the other gets :class:`Conflict`. The old version is
        archived, the new one marked active, and an audit item records who, when and why.
        """
        ts = now_iso()
        pointer = {
            "user_id": user_id, "sk": "ACTIVE", "version": record["version"],
            "s3_key": record["s3_key"], "sha256": record["sha256"],
            "threshold": record["threshold"], "feature_spec": record["feature_spec"],
            "labels": record.get("labels", []), "promoted_at": ts,
            "previous_version": expected_version or "",
        }
        if expected_version is None:
            cond = {"ConditionExpression": "attribute_not_exists(sk)"}
        else:
            cond = {"ConditionExpression": "version = :ev", "ExpressionAttributeValues": {":ev": expected_version}}
        try:
            self.table.put_item(Item=to_ddb(pointer), **cond)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise Conflict(
                    f"the active model changed concurrently (expected {expected_version or 'none'})",
                    code="active_changed",
                ) from None
            raise
        self.set_status(user_id, record["version"], "active", reason, promoted_at=ts)
        if expected_version and expected_version != record["version"]:
            try:
                self.set_status(user_id, expected_version, "archived", f"replaced by {record['version']}")
            except ClientError:
                pass  # the old version record may have been removed; the pointer is what matters
        self.audit(user_id, action=action, actor=actor, reason=reason,
                   from_version=expected_version or "", to_version=record["version"])
        return from_ddb(pointer)

    def audit(self, user_id: str, **fields: Any) -> None:
        ts = now_iso()
        self.table.put_item(Item=to_ddb({"user_id": user_id, "sk": f"AUDIT#{ts}#{random.randrange(16**4):04x}",
                                         "at": ts, **fields}))

    #: the only attributes the training planner writes (its IAM grant is limited to them)
    DRIFT_ATTRIBUTES = ("drift", "drifted", "drift_at")

    def mark_drift(self, user_id: str, version: str, report: dict, *, at: str) -> bool:
        """Store a drift report on ACTIVE (iff it still points at ``version``) and on the version
        record. Returns False when ACTIVE changed meanwhile (a newer model: the report is stale)."""
        values = {":d": to_ddb(report), ":f": bool(report.get("drifted")), ":t": at, ":v": version}
        names = {"#d": "drift", "#f": "drifted", "#t": "drift_at", "#v": "version"}
        try:
            self.table.update_item(
                Key={"user_id": user_id, "sk": "ACTIVE"},
                UpdateExpression="SET #d = :d, #f = :f, #t = :t",
                ConditionExpression="#v = :v",
                ExpressionAttributeNames=names, ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        try:
            self.table.update_item(
                Key={"user_id": user_id, "sk": f"MODEL#{version}"},
                UpdateExpression="SET #d = :d, #f = :f, #t = :t",
                ConditionExpression="attribute_exists(#v)",
                ExpressionAttributeNames=names, ExpressionAttributeValues={k: v for k, v in values.items() if k != ":v"},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        return True

    def audit_trail(self, user_id: str) -> list[dict]:
        items = _query_all(
            self.table,
            KeyConditionExpression="user_id = :u AND begins_with(sk, :p)",
            ExpressionAttributeValues={":u": user_id, ":p": "AUDIT#"},
        )
        return [from_ddb(i) for i in items]

    # --- training-run records ---
    def put_run(self, run_id: str, record: dict) -> None:
        self.table.put_item(Item=to_ddb({"user_id": RUN_PK, "sk": run_id, "run_id": run_id, **record}))

    def get_run(self, run_id: str) -> Optional[dict]:
        item = self.table.get_item(Key={"user_id": RUN_PK, "sk": run_id}).get("Item")
        return from_ddb(item) if item else None

    def runs(self, limit: int = 20) -> list[dict]:
        page = self.table.query(KeyConditionExpression="user_id = :u", ExpressionAttributeValues={":u": RUN_PK},
                                ScanIndexForward=False, Limit=limit)
        return [from_ddb(i) for i in page.get("Items", [])]


# ----------------------------------------------------------------------------- predictions & usage


class PredictionLog(_TableAdapter):
    """One item per classified event (latest wins), 90-day TTL; corrections mark ``was_correct``."""

    def __init__(self, table_name: str, ttl_days: int = 90, tables: _Tables | None = None):
        super().__init__(table_name, tables)
        self.ttl_days = ttl_days

    def put_many(self, user_id: str, records: list[dict]) -> None:
        expires = int(time.time() + self.ttl_days * 86400)
        reqs = []
        for r in records:
            item = {"user_id": user_id, "expires_at": expires, "created_at": now_iso(), **r}
            reqs.append({"PutRequest": {"Item": to_ddb({k: v for k, v in item.items() if v is not None})}})
        if reqs:
            batch_write(self.t.ddb.meta.client, self.name, reqs)

    def get(self, user_id: str, event_id: str) -> Optional[dict]:
        item = self.table.get_item(Key={"user_id": user_id, "event_id": event_id}).get("Item")
        return from_ddb(item) if item else None

    def mark(self, user_id: str, event_id: str, correct_calendar: str) -> Optional[dict]:
        """Set ``was_correct`` on the logged prediction of ``event_id`` (if it was logged)."""
        item = self.get(user_id, event_id)
        if item is None:
            return None
        was_correct = item.get("calendar_id") == correct_calendar
        self.table.update_item(
            Key={"user_id": user_id, "event_id": event_id},
            UpdateExpression="SET was_correct = :w, corrected_to = :c, corrected_at = :t",
            ExpressionAttributeValues={":w": was_correct, ":c": correct_calendar, ":t": now_iso()},
        )
        item.update(was_correct=was_correct, corrected_to=correct_calendar)
        return item

    def since(self, user_id: str, since_iso: str, limit: Optional[int] = None) -> list[dict]:
        """The user's logged predictions created at/after ``since_iso`` (at most ``limit``)."""
        out = []
        for i in _query_all(
            self.table,
            KeyConditionExpression="user_id = :u",
            FilterExpression="created_at >= :s",
            ExpressionAttributeValues={":u": user_id, ":s": since_iso},
        ):
            out.append(from_ddb(i))
            if limit is not None and len(out) >= limit:
                break
        return out

    #: what the operator scans read: aggregates only — never the user id, event id or reason text
    SCAN_FIELDS = ("method", "cohort", "latency_ms", "llm_usd", "was_correct", "confidence", "created_at",
                   "model_version")

    def scan_since(self, since_iso: str, *, max_items: int, page_size: int = 1000,
                   max_pages: Optional[int] = None) -> tuple[list[dict], dict]:
        """A bounded, paged Scan of the whole log for operator aggregates (stats, experiments).

        Returns ``(items, info)``: at most ``max_items`` items created at/after ``since_iso``,
        projected to :attr:`SCAN_FIELDS` (no user id: aggregates never carry a per-user
        dimension), and ``info = {"scanned", "pages", "truncated"}`` (``truncated``: the bound was
        hit before the end of the table, the figures cover a sample).
        """
        names = {f"#f{i}": f for i, f in enumerate(self.SCAN_FIELDS)}
        kwargs: dict = {
            "FilterExpression": "#c >= :s",
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": {**names, "#c": "created_at"},
            "ExpressionAttributeValues": {":s": since_iso},
            "Limit": page_size,
        }
        items: list[dict] = []
        scanned = pages = 0
        truncated = False
        while True:
            page = self.table.scan(**kwargs)
            pages += 1
            scanned += int(page.get("ScannedCount", 0))
            for it in page.get("Items", []):
                if len(items) >= max_items:
                    truncated = True
                    break
                items.append(from_ddb(it))
            more = "LastEvaluatedKey" in page
            if truncated or not more:
                truncated = truncated or (more and len(items) >= max_items)
                break
            if max_pages is not None and pages >= max_pages:
                truncated = True
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items, {"scanned": scanned, "pages": pages, "truncated": truncated}


class UsageLedger(_TableAdapter):
    """LLM tokens and USD summed per user and UTC day (and globally), with a TTL."""

    @staticmethod
    def today() -> str:
        return datetime.now(timezone.utc).strftime("%Y-%m-%d")

    def add(self, user_id: str, *, usd: float, input_tokens: int, output_tokens: int, calls: int = 1) -> None:
        day = self.today()
        expires = int(time.time() + 400 * 86400)
        for pk in (user_id, GLOBAL_PK):
            self.table.update_item(
                Key={"user_id": pk, "day": day},
                UpdateExpression="ADD usd :d, input_tokens :i, output_tokens :o, calls :n SET expires_at = :x",
                ExpressionAttributeValues={":d": Decimal(repr(round(usd, 8))), ":i": input_tokens,
                                           ":o": output_tokens, ":n": calls, ":x": expires},
            )

    def spent(self, user_id: str, day: Optional[str] = None) -> float:
        item = self.table.get_item(Key={"user_id": user_id, "day": day or self.today()}).get("Item")
        return float(item.get("usd", 0)) if item else 0.0

    def days(self, user_id: str, since_day: str) -> list[dict]:
        items = _query_all(
            self.table,
            KeyConditionExpression="user_id = :u AND #d >= :s",
            ExpressionAttributeNames={"#d": "day"},
            ExpressionAttributeValues={":u": user_id, ":s": since_day},
        )
        return [from_ddb(i) for i in items]


def iso_days_ago(days: int) -> str:
    return (datetime.now(timezone.utc) - timedelta(days=days)).isoformat(timespec="milliseconds")


def resources_from(cfg) -> dict:
    """All adapters for a :class:`~calroute.config.Settings`."""
    return {
        "events": EventRepo(cfg.events_table),
        "users": UserRepo(cfg.users_table),
        "registry": Registry(cfg.registry_table),
        "models": ModelStore(cfg.model_bucket),
        "predictions": PredictionLog(cfg.predictions_table, cfg.prediction_ttl_days),
        "usage": UsageLedger(cfg.usage_table),
    }


def iter_chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
