"""In-memory fakes of every port in :mod:`calroute.ports` (no boto3 calls, no network): the stores of
the service unit tests (``tests/support/fakes.py`` re-exports them) and of ``calroute replay``.

They keep what the DynamoDB/S3 adapters promise, not how: upserts keyed like the tables, items
ordered as the tables' sort keys order them, values stored as DynamoDB stores them (floats that are
whole come back as ints, tuples as lists), conditional writes that fail with the same domain errors.
``tests/integration/test_adapters.py`` runs the same contract cases against these and against the
adapters on moto, so a service test on the fakes tests what production would do.

``fake_stores()`` is a :class:`calroute.ports.Stores` of fresh fakes; ``Recorder`` a metrics sink
that keeps what it was sent.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Iterable, Iterator, Optional

from calroute.adapters.dynamo.base import from_ddb, to_ddb
from calroute.adapters.dynamo.registry import active_pointer
from calroute.adapters.dynamo.users import correction_item
from calroute.errors import Conflict, ModelIntegrityError, NotFound
from calroute.ports import ERASURE_PK, GLOBAL_PK, RUN_PK, Stores, StoredEvent
from calroute.schema import LABEL_USER, REMEMBERED_LABELS, CalendarInfo, Event, parse_event


#: the stores' clock (``calroute replay`` sets a simulated one with :func:`set_clock`; None: the wall clock)
_CLOCK: Optional[Any] = None


def set_clock(clock: Optional[Any]) -> None:
    """Make every store write ``clock()`` (an aware datetime) as its timestamps; None: the wall clock."""
    global _CLOCK
    _CLOCK = clock


def now_iso() -> str:
    now = _CLOCK() if _CLOCK is not None else datetime.now(timezone.utc)
    return now.isoformat(timespec="milliseconds")


def clone_stores(stores: Stores) -> Stores:
    """A deep copy of in-memory stores (locks are new): a replay branches into variants from it."""
    def one(store: Any) -> Any:
        new = object.__new__(type(store))
        for k, v in vars(store).items():
            if isinstance(v, type(threading.RLock())):
                new.__dict__[k] = threading.RLock()
            elif isinstance(v, type(threading.Lock())):
                new.__dict__[k] = threading.Lock()
            else:
                new.__dict__[k] = copy.deepcopy(v)
        return new

    return Stores(**{f: one(getattr(stores, f)) for f in ("events", "users", "registry", "models", "predictions",
                                                          "usage")})


def stored(value: Any) -> Any:
    """``value`` as it comes back from DynamoDB (a deep copy: callers never share state with it)."""
    return from_ddb(to_ddb(copy.deepcopy(value)))


class FakeEventStore:
    """:class:`calroute.ports.EventStore`: ``{user: {event_id: [flat event JSON, updated_at, source,
    provenance, meta]}}``."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, list]] = {}
        self._lock = threading.Lock()

    def put_events(self, user_id: str, events: list[Event], *, source: str = "api",
                   provenance: str = LABEL_USER) -> int:
        ts = now_iso()
        last = {ev.event_id: ev for ev in events}
        with self._lock:
            rows = self.items.setdefault(user_id, {})
            for ev in last.values():
                rows[ev.event_id] = [json.dumps(ev.to_flat(), ensure_ascii=False), ts, source, provenance, {}]
        return len(last)

    def remember(self, user_id: str, answers: list[tuple[Event, str, dict]]) -> list[str]:
        ts = now_iso()
        new = []
        with self._lock:
            rows = self.items.setdefault(user_id, {})
            for ev, provenance, meta in {a[0].event_id: a for a in answers}.values():
                old = rows.get(ev.event_id)
                if old is not None and old[3] not in REMEMBERED_LABELS:
                    continue  # the user's own label stands
                rows[ev.event_id] = [json.dumps(ev.to_flat(), ensure_ascii=False), ts, "classify", provenance,
                                     stored(dict(meta))]
                if old is None:
                    new.append(ev.event_id)
        return new

    def list_stored(self, user_id: str) -> list[StoredEvent]:
        return [StoredEvent(parse_event(json.loads(r[0])), r[3], r[1], stored(r[4]))
                for _, r in sorted(self.items.get(user_id, {}).items())]

    def get_stored(self, user_id: str, event_id: str) -> Optional[StoredEvent]:
        r = self.items.get(user_id, {}).get(event_id)
        return StoredEvent(parse_event(json.loads(r[0])), r[3], r[1], stored(r[4])) if r else None

    def get_event(self, user_id: str, event_id: str) -> Optional[Event]:
        row = self.items.get(user_id, {}).get(event_id)
        return parse_event(json.loads(row[0])) if row else None

    def existing_ids(self, user_id: str, event_ids: Iterable[str]) -> set[str]:
        rows = self.items.get(user_id, {})
        return {e for e in event_ids if e in rows}

    def set_calendar(self, user_id: str, event_id: str, calendar_id: str, *, provenance: str = LABEL_USER) -> Event:
        ev = self.get_event(user_id, event_id)
        if ev is None:
            raise NotFound(f"event {event_id!r} not found", field="eventId")
        ev = ev.model_copy(update={"calendar_id": calendar_id})
        with self._lock:
            row = self.items[user_id][event_id]
            row[0], row[1], row[3] = json.dumps(ev.to_flat(), ensure_ascii=False), now_iso(), provenance
        return ev

    def list_events(self, user_id: str, limit: Optional[int] = None) -> list[Event]:
        return [ev for ev, _ in self.list_events_updated(user_id, limit)]

    def list_events_updated(self, user_id: str, limit: Optional[int] = None) -> list[tuple[Event, str]]:
        rows = sorted(self.items.get(user_id, {}).items())  # the table's sort key: event_id
        if limit:
            rows = rows[:limit]
        return [(parse_event(json.loads(r[0])), r[1]) for _, r in rows]

    def count_events(self, user_id: str) -> int:
        return len(self.items.get(user_id, {}))

    # --- the user's data lifecycle
    def event_index(self, user_id: str) -> list[tuple[str, str, str]]:
        out = []
        for eid, r in sorted(self.items.get(user_id, {}).items()):
            ev = parse_event(json.loads(r[0]))
            out.append((eid, ev.start_utc.isoformat(), ev.calendar_id or ""))
        return out

    def get_events(self, user_id: str, event_ids: Iterable[str]) -> list[Event]:
        rows = self.items.get(user_id, {})
        return [parse_event(json.loads(rows[e][0])) for e in dict.fromkeys(event_ids) if e in rows]

    def delete_events(self, user_id: str, event_ids: Iterable[str]) -> int:
        with self._lock:
            rows = self.items.get(user_id, {})
            return sum(rows.pop(e, None) is not None for e in set(event_ids))

    def delete_user(self, user_id: str) -> int:
        with self._lock:
            return len(self.items.pop(user_id, {}))


class FakeUserStore:
    """:class:`calroute.ports.UserStore`: profile items, calendars and corrections per user."""

    def __init__(self) -> None:
        self.profiles: dict[str, dict] = {}
        self.cals: dict[str, dict[str, CalendarInfo]] = {}
        self.corr: dict[str, list[dict]] = {}
        self.removed: dict[str, dict[str, str]] = {}
        self.prefs: dict[str, dict] = {}
        self._lock = threading.Lock()

    def bump(self, user_id: str, *, events: int = 0, corrections: int = 0, calendars=None, misses: int = 0,
             labels: int = 0) -> None:
        ts = now_iso()
        with self._lock:
            p = self.profiles.setdefault(user_id, {"user_id": user_id, "sk": "PROFILE", "created_at": ts})
            p["events_total"] = p.get("events_total", 0) + events
            p["corrections_total"] = p.get("corrections_total", 0) + corrections
            if misses:
                p["confident_misses_total"] = p.get("confident_misses_total", 0) + misses
            if labels:
                p["labels_total"] = p.get("labels_total", 0) + labels
            for cal, n in (calendars or {}).items():
                p[f"calev#{cal}"] = p.get(f"calev#{cal}", 0) + int(n)
            p["updated_at"] = ts

    def profile(self, user_id: str) -> dict:
        return stored(self.profiles.get(user_id, {}))

    def iter_profiles(self, page_size: int = 500) -> Iterator[dict]:
        for user in sorted(self.profiles):
            yield stored(self.profiles[user])

    def put_calendar(self, user_id: str, cal: CalendarInfo) -> None:
        self.cals.setdefault(user_id, {})[cal.calendar_id] = cal.model_copy()

    def settings(self, user_id: str) -> dict:
        return stored(self.prefs.get(user_id, {}))

    def put_settings(self, user_id: str, values: dict) -> dict:
        item = {**values, "updated_at": now_iso()}
        self.prefs[user_id] = stored(item)
        return stored(item)

    def calendars(self, user_id: str) -> list[CalendarInfo]:
        return [c.model_copy() for _, c in sorted(self.cals.get(user_id, {}).items())]

    def record_correction(self, user_id: str, event_id: str, *, old: Optional[str], new: str,
                          prediction: Optional[dict]) -> dict:
        item = correction_item(user_id, event_id, old=old, new=new, prediction=prediction, ts=now_iso())
        self.corr.setdefault(user_id, []).append(stored(item))
        return item

    # --- the user's data lifecycle
    def corrections(self, user_id: str) -> list[dict]:
        return sorted((stored(c) for c in self.corr.get(user_id, [])), key=lambda c: c["sk"])

    def delete_corrections(self, user_id: str, event_ids: Iterable[str]) -> int:
        wanted = set(event_ids)
        with self._lock:
            rows = self.corr.get(user_id, [])
            kept = [c for c in rows if c.get("event_id") not in wanted]
            self.corr[user_id] = kept
            return len(rows) - len(kept)

    def delete_calendar(self, user_id: str, calendar_id: str) -> bool:
        with self._lock:
            existed = self.cals.get(user_id, {}).pop(calendar_id, None) is not None
            self.profiles.get(user_id, {}).pop(f"calev#{calendar_id}", None)
        return existed

    def mark_calendar_removed(self, user_id: str, calendar_id: str, *, at: str) -> None:
        self.removed.setdefault(user_id, {})[calendar_id] = at

    def removed_calendars(self, user_id: str) -> dict[str, str]:
        return dict(self.removed.get(user_id, {}))

    def request_retrain(self, user_id: str, *, at: str, reason: str) -> None:
        with self._lock:
            p = self.profiles.setdefault(user_id, {"user_id": user_id, "sk": "PROFILE", "created_at": at})
            p.update(retrain_requested_at=at, retrain_reason=reason[:200], updated_at=at)

    def delete_user(self, user_id: str) -> int:
        with self._lock:
            n = (len(self.cals.pop(user_id, {})) + len(self.removed.pop(user_id, {}))
                 + len(self.corr.pop(user_id, [])) + (self.profiles.pop(user_id, None) is not None)
                 + (self.prefs.pop(user_id, None) is not None))
        return n


class FakeRegistry:
    """:class:`calroute.ports.ModelRegistry`: items keyed ``(pk, sk)`` as in the registry table;
    conditional writes are atomic (one lock)."""

    DRIFT_ATTRIBUTES = ("drift", "drifted", "drift_at")

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict] = {}
        self._lock = threading.RLock()

    def _get(self, pk: str, sk: str) -> Optional[dict]:
        item = self.items.get((pk, sk))
        return stored(item) if item is not None else None

    def _query(self, pk: str, prefix: str = "") -> list[dict]:
        return [stored(v) for (p, sk), v in sorted(self.items.items()) if p == pk and sk.startswith(prefix)]

    def put_version(self, user_id: str, version: str, record: dict) -> None:
        item = {"user_id": user_id, "sk": f"MODEL#{version}", "version": version, "created_at": now_iso(),
                **record}
        item.setdefault("status", "candidate")
        with self._lock:
            if (user_id, item["sk"]) in self.items:
                raise Conflict(f"model version {version} is already registered", field="version",
                               code="version_exists")
            self.items[(user_id, item["sk"])] = stored(item)

    def get_version(self, user_id: str, version: str) -> Optional[dict]:
        return self._get(user_id, f"MODEL#{version}")

    def set_status(self, user_id: str, version: str, status: str, reason: str = "", **extra: Any) -> None:
        with self._lock:
            item = self.items.get((user_id, f"MODEL#{version}"))
            if item is None:
                raise NotFound(f"model version {version} not found", field="version")
            item.update(stored({"status": status, "status_reason": reason, "status_at": now_iso(), **extra}))

    def versions(self, user_id: str) -> list[dict]:
        return sorted(self._query(user_id, "MODEL#"), key=lambda r: r["version"])

    def active(self, user_id: str, consistent: bool = False) -> Optional[dict]:
        return self._get(user_id, "ACTIVE")

    def activate(self, user_id: str, record: dict, *, expected_version: Optional[str], actor: str,
                 reason: str, action: str = "promote") -> dict:
        ts = now_iso()
        pointer = active_pointer(user_id, record, expected_version=expected_version, ts=ts)
        with self._lock:
            current = self.items.get((user_id, "ACTIVE"))
            if (current is not None) if expected_version is None else (
                    current is None or current.get("version") != expected_version):
                raise Conflict(
                    f"the active model changed concurrently (expected {expected_version or 'none'})",
                    code="active_changed")
            self.items[(user_id, "ACTIVE")] = stored(pointer)
        self.set_status(user_id, record["version"], "active", reason, promoted_at=ts)
        if expected_version and expected_version != record["version"]:
            try:
                self.set_status(user_id, expected_version, "archived", f"replaced by {record['version']}")
            except NotFound:
                pass
        self.audit(user_id, action=action, actor=actor, reason=reason, from_version=expected_version or "",
                   to_version=record["version"])
        return stored(pointer)

    def audit(self, user_id: str, **fields: Any) -> None:
        ts = now_iso()
        sk = f"AUDIT#{ts}#{random.randrange(16**4):04x}"
        with self._lock:
            self.items[(user_id, sk)] = stored({"user_id": user_id, "sk": sk, "at": ts, **fields})

    def put_gate_skip(self, user_id: str, record: dict) -> None:
        with self._lock:
            self.items[(user_id, "GATES")] = stored({**record, "user_id": user_id, "sk": "GATES"})

    def gate_skip(self, user_id: str) -> Optional[dict]:
        return self._get(user_id, "GATES")

    def mark_drift(self, user_id: str, version: str, report: dict, *, at: str) -> bool:
        flags = stored({"drift": report, "drifted": bool(report.get("drifted")), "drift_at": at})
        with self._lock:
            active = self.items.get((user_id, "ACTIVE"))
            if active is None or active.get("version") != version:
                return False
            active.update(copy.deepcopy(flags))
            record = self.items.get((user_id, f"MODEL#{version}"))
            if record is not None:
                record.update(copy.deepcopy(flags))
        return True

    def audit_trail(self, user_id: str) -> list[dict]:
        return self._query(user_id, "AUDIT#")

    def put_run(self, run_id: str, record: dict) -> None:
        with self._lock:
            self.items[(RUN_PK, run_id)] = stored({"user_id": RUN_PK, "sk": run_id, "run_id": run_id, **record})

    def get_run(self, run_id: str) -> Optional[dict]:
        return self._get(RUN_PK, run_id)

    def runs(self, limit: int = 20) -> list[dict]:
        return list(reversed(self._query(RUN_PK)))[:limit]


    # --- the user's data lifecycle
    def delete_user(self, user_id: str) -> int:
        with self._lock:
            keys = sorted((k for k in self.items if k[0] == user_id), key=lambda k: k[1] != "ACTIVE")
            for k in keys:
                del self.items[k]
        return len(keys)

    def scrub_runs(self, user_id: str) -> int:
        n = 0
        with self._lock:
            for (pk, _), item in self.items.items():
                if pk != RUN_PK:
                    continue
                changed = False
                for field in ("failures", "rejections"):
                    entries = item.get(field)
                    if isinstance(entries, list):
                        kept = [e for e in entries if not (isinstance(e, dict) and e.get("user_id") == user_id)]
                        changed |= len(kept) != len(entries)
                        item[field] = kept
                n += changed
        return n

    def put_erasure(self, record: dict) -> None:
        ts = record.get("at") or now_iso()
        sk = f"ERASE#{ts}#{random.randrange(16**4):04x}"
        with self._lock:
            self.items[(ERASURE_PK, sk)] = stored({"user_id": ERASURE_PK, "sk": sk, **record, "at": ts})

    def erasures(self, limit: int = 50) -> list[dict]:
        return list(reversed(self._query(ERASURE_PK)))[:limit]


class FakeModelBlobs:
    """:class:`calroute.ports.ModelBlobs`: ``{key: bytes}`` (sha256 checked on read as in S3)."""

    def __init__(self, bucket: str = "fake-models") -> None:
        self.bucket = bucket
        self.objects: dict[str, bytes] = {}
        #: the versioned bucket: every version of every key, ``None`` = a delete marker
        self.history: dict[str, list[Optional[bytes]]] = {}

    def _write(self, key: str, data: Optional[bytes]) -> None:
        self.history.setdefault(key, []).append(data)
        if data is None:
            self.objects.pop(key, None)
        else:
            self.objects[key] = data

    def all_versions(self, prefix: str = "") -> list[tuple[str, int]]:
        """``(key, version index)`` of every version and delete marker under ``prefix``."""
        return [(k, i) for k, vs in sorted(self.history.items()) if k.startswith(prefix) for i in range(len(vs))]

    @staticmethod
    def key(user_id: str, version: str, suffix: str = ".onnx") -> str:
        return f"models/{user_id}/{version}{suffix}"

    def put(self, user_id: str, version: str, data: bytes, suffix: str = ".onnx") -> tuple[str, str]:
        key = self.key(user_id, version, suffix)
        self._write(key, bytes(data))
        return key, hashlib.sha256(data).hexdigest()

    def get(self, key: str, sha256: Optional[str] = None) -> bytes:
        data = self.objects.get(key)
        if data is None:
            raise ModelIntegrityError(f"model object {key} is missing")
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise ModelIntegrityError(f"model object {key} failed its sha256 check")
        return data

    def put_json(self, key: str, obj: Any) -> None:
        self._write(key, json.dumps(obj).encode())

    def get_json(self, key: str) -> Any:
        if key not in self.objects:
            raise NotFound(f"no object {key}", field="key")
        return json.loads(self.objects[key])

    def delete(self, key: str) -> None:
        if key in self.objects:
            self._write(key, None)

    # --- the user's data lifecycle
    def _purge(self, keys: list[str]) -> int:
        n = 0
        for k in keys:
            n += len(self.history.pop(k, []))
            self.objects.pop(k, None)
        return n

    def delete_user(self, user_id: str) -> int:
        return self._purge([k for k in self.history if k.startswith(f"models/{user_id}/")])

    def scrub_manifests(self, user_id: str) -> int:
        """As S3: only the versions of run files (users.json, ResultWriter result files) that name the
        user go (other versions of the key stay)."""
        from calroute.adapters.s3_models import run_object_names_user

        n = 0
        for k in [k for k in self.history if k.startswith("runs/")]:
            kept = [v for v in self.history[k] if v is None or not run_object_names_user(k, v, user_id)]
            n += len(self.history[k]) - len(kept)
            if kept:
                self.history[k] = kept
                if kept[-1] is None:
                    self.objects.pop(k, None)
                else:
                    self.objects[k] = kept[-1]
            else:
                self._purge([k])
        return n


class FakePredictionLog:
    """:class:`calroute.ports.PredictionLog`: ``{(user, event_id): item}`` (latest wins)."""

    SCAN_FIELDS = ("method", "cohort", "latency_ms", "llm_usd", "was_correct", "confidence", "created_at",
                   "model_version", "sample_rate")

    def __init__(self, ttl_days: int = 90) -> None:
        self.ttl_days = ttl_days
        self.items: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()

    def put_many(self, user_id: str, records: list[dict]) -> None:
        expires = int(time.time() + self.ttl_days * 86400)
        with self._lock:
            for r in records:
                item = {"user_id": user_id, "expires_at": expires, "created_at": now_iso(), **r}
                self.items[(user_id, r["event_id"])] = stored({k: v for k, v in item.items() if v is not None})

    def get(self, user_id: str, event_id: str) -> Optional[dict]:
        item = self.items.get((user_id, event_id))
        return stored(item) if item is not None else None

    def mark(self, user_id: str, event_id: str, correct_calendar: str) -> Optional[dict]:
        with self._lock:
            item = self.items.get((user_id, event_id))
            if item is None:
                return None
            was_correct = item.get("calendar_id") == correct_calendar
            item.update(was_correct=was_correct, corrected_to=correct_calendar, corrected_at=now_iso())
            out = stored(item)
        out.pop("corrected_at")  # the adapter answers with the item as it read it, plus the two fields
        return out

    def since(self, user_id: str, since_iso: str, limit: Optional[int] = None) -> list[dict]:
        out = [stored(v) for (u, _), v in sorted(self.items.items())
               if u == user_id and v.get("created_at", "") >= since_iso]
        return out[:limit] if limit is not None else out

    def scan_since(self, since_iso: str, *, max_items: int, page_size: int = 1000,
                   max_pages: Optional[int] = None) -> tuple[list[dict], dict]:
        matching = [{k: v[k] for k in self.SCAN_FIELDS if k in v} for _, v in sorted(self.items.items())
                    if v.get("created_at", "") >= since_iso]
        items = [stored(i) for i in matching[:max_items]]
        return items, {"scanned": len(self.items), "pages": 1, "truncated": len(matching) > max_items}

    # --- the user's data lifecycle
    def delete(self, user_id: str, event_ids: Iterable[str]) -> int:
        with self._lock:
            return sum(self.items.pop((user_id, e), None) is not None for e in set(event_ids))

    def delete_user(self, user_id: str) -> int:
        with self._lock:
            keys = [k for k in self.items if k[0] == user_id]
            for k in keys:
                del self.items[k]
        return len(keys)


class FakeUsageLedger:
    """:class:`calroute.ports.UsageLedger`: ``{(user or _global, day): row}``, sums in Decimal as
    DynamoDB's ADD does."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict] = {}
        self._lock = threading.Lock()

    @staticmethod
    def today() -> str:
        return datetime.now(timezone.utc).strftime("%Y-%m-%d")

    def add(self, user_id: str, *, usd: float, input_tokens: int, output_tokens: int, calls: int = 1) -> None:
        day = self.today()
        with self._lock:
            for pk in (user_id, GLOBAL_PK):
                row = self.rows.setdefault((pk, day), {"user_id": pk, "day": day, "usd": Decimal(0),
                                                       "input_tokens": 0, "output_tokens": 0, "calls": 0})
                row["usd"] += Decimal(repr(round(usd, 8)))
                row["input_tokens"] += input_tokens
                row["output_tokens"] += output_tokens
                row["calls"] += calls
                row["expires_at"] = int(time.time() + 400 * 86400)

    def spent(self, user_id: str, day: Optional[str] = None) -> float:
        row = self.rows.get((user_id, day or self.today()))
        return float(row.get("usd", 0)) if row else 0.0

    def days(self, user_id: str, since_day: str) -> list[dict]:
        return [from_ddb(copy.deepcopy(r)) for (u, d), r in sorted(self.rows.items()) if u == user_id and d >= since_day]

    # --- the user's data lifecycle
    def delete_user(self, user_id: str) -> int:
        if user_id == GLOBAL_PK:
            return 0
        with self._lock:
            keys = [k for k in self.rows if k[0] == user_id]
            for k in keys:
                del self.rows[k]
        return len(keys)


def fake_stores(**overrides: Any) -> Stores:
    """A :class:`Stores` of fresh fakes (``overrides`` replace some of them)."""
    base = Stores(events=FakeEventStore(), users=FakeUserStore(), registry=FakeRegistry(), models=FakeModelBlobs(),
                  predictions=FakePredictionLog(), usage=FakeUsageLedger())
    return replace(base, **overrides) if overrides else base


class Recorder:
    """A :class:`calroute.ports.MetricsSink` that keeps what it was sent."""

    def __init__(self) -> None:
        self.metrics: list[tuple[str, str, float]] = []
        self.dimensioned: list[tuple[str, str, float, dict]] = []

    def add_metric(self, name: str, unit: str, value: float) -> None:
        self.metrics.append((name, unit, value))

    def add_dimensioned(self, name: str, unit: str, value: float, dims: dict[str, str]) -> None:
        self.dimensioned.append((name, unit, value, dict(dims)))

    def total(self, name: str) -> float:
        return sum(v for n, _, v in self.metrics if n == name) + sum(v for n, _, v, _ in self.dimensioned if n == name)
