"""The storage ports: what the services need of each store, and nothing about how it is stored.

One :class:`typing.Protocol` per store, with exactly the methods the services call. Implementations:

* DynamoDB / S3 — :mod:`calroute.adapters.dynamo` and :mod:`calroute.adapters.s3_models` (Lambda,
  the local stack, the contract tests against moto);
* in memory — ``tests/support/fakes.py`` (service unit tests; the contract tests run the same cases
  against both, so the fakes are held to the adapters' behaviour).

Every method takes an already validated user id and only ever touches that user's data. Adapters
raise the domain's errors (:mod:`calroute.errors`), never their SDK's: storage throttling that
survived the SDK's retries is :class:`~calroute.errors.ServiceUnavailable`, a lost conditional write
:class:`~calroute.errors.Conflict`, a missing or corrupt model object
:class:`~calroute.errors.ModelIntegrityError`.

:class:`Stores` is the typed container the services receive; :class:`MetricsSink` and
:class:`NullSink` are the metrics port and its do-nothing implementation; :class:`AfterResponse`
and :class:`Immediately` the port for work done after the response and its in-request implementation.

This module imports nothing beyond the standard library and :mod:`calroute.schema` (types only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, NamedTuple, Optional, Protocol

if TYPE_CHECKING:  # pragma: no cover - annotations only
    from .schema import CalendarInfo, Event

#: registry partition of the training-run records (user ids never start with ``_``)
RUN_PK = "_run"
#: usage-ledger partition of the service-wide daily totals
GLOBAL_PK = "_global"
#: registry partition of the erasure audit records (a keyed hash of the user id, never the id)
ERASURE_PK = "_erasure"


class StoredEvent(NamedTuple):
    """A stored event with where its label came from (``provenance``: one of
    :data:`calroute.schema.LABEL_SOURCES`; items written before provenance existed read as ``user``),
    when it was last written, and what the answer that labelled it knew (``meta``: ``margin``,
    ``novelty``, ``confidence``, ``answered_at``, ``model_version``; empty for user labels)."""

    event: "Event"
    provenance: str
    updated_at: str
    meta: dict


class EventStore(Protocol):
    """Labelled events of one user, keyed by event id; upserts are idempotent."""

    def put_events(self, user_id: str, events: list[Event], *, source: str = "api",
                   provenance: str = "user") -> int:
        """Upsert events (last one wins within a batch), every one with the label provenance
        ``provenance``; returns how many distinct ids were written.
        Raises ServiceUnavailable when storage keeps throttling (part of the batch may be stored)."""
        ...

    def remember(self, user_id: str, answers: list[tuple[Event, str, dict]]) -> list[str]:
        """Store answered events ``(event with its answered calendar_id, provenance "llm"|"ml"|"sole", meta)``
        unless the stored event carries a user's label (``user``/``confirmed``: a conditional write,
        never overwritten). Returns the ids that were not stored before (idempotent by event id)."""
        ...

    def list_stored(self, user_id: str) -> list[StoredEvent]:
        """Every event of the user with its provenance, write time and answer meta."""
        ...

    def get_stored(self, user_id: str, event_id: str) -> Optional[StoredEvent]:
        """One event with its provenance (None when it is not stored)."""
        ...

    def get_event(self, user_id: str, event_id: str) -> Optional[Event]: ...

    def existing_ids(self, user_id: str, event_ids: Iterable[str]) -> set[str]:
        """Which of ``event_ids`` are stored already."""
        ...

    def set_calendar(self, user_id: str, event_id: str, calendar_id: str, *, provenance: str = "user") -> Event:
        """Relabel a stored event (its provenance becomes ``provenance``: a correction is ``user``,
        an accepted answer ``confirmed``); NotFound when it is not stored."""
        ...

    def list_events(self, user_id: str, limit: Optional[int] = None) -> list[Event]:
        """The user's events in event-id order (at most ``limit``)."""
        ...

    def list_events_updated(self, user_id: str, limit: Optional[int] = None) -> list[tuple[Event, str]]:
        """As :meth:`list_events`, each with the time it was last written (ISO 8601)."""
        ...

    def count_events(self, user_id: str) -> int: ...

    # --- the user's data lifecycle (calroute.services.lifecycle) ---
    def event_index(self, user_id: str) -> list[tuple[str, str, str]]:
        """``(event_id, start ISO UTC, calendar_id)`` of every event of the user (keys and the two
        small attributes only: listing, paging, per-calendar counts)."""
        ...

    def get_events(self, user_id: str, event_ids: Iterable[str]) -> list[Event]:
        """The stored events among ``event_ids`` (any order; missing ids are left out)."""
        ...

    def delete_events(self, user_id: str, event_ids: Iterable[str]) -> int:
        """Delete these events (idempotent: absent ids are no error); returns how many were stored."""
        ...

    def delete_user(self, user_id: str) -> int:
        """Delete every event of the user; returns how many items were removed (0 on a repeat)."""
        ...


class UserStore(Protocol):
    """Per-user profile counters, calendars and corrections."""

    def bump(self, user_id: str, *, events: int = 0, corrections: int = 0,
             calendars: Optional[dict[str, int]] = None, misses: int = 0, labels: int = 0) -> None:
        """Atomically add to ``events_total`` / ``corrections_total`` / ``confident_misses_total``
        (corrections of the model's own answers; creating the profile), new events per calendar
        to ``calev#<calendarId>`` (the retraining policy reads them) and ``labels`` to
        ``labels_total``: every write that may change which of the user's labels are trusted (an
        ingested or imported label, a correction, a confirmation, a ``sole`` answer, a moved or
        deleted event), so that a training run the data gates stopped is not repeated until one
        happened (:func:`calroute.retrain.gate_memo_holds`)."""
        ...

    def profile(self, user_id: str) -> dict:
        """The profile item (``events_total``, ``corrections_total``, ``created_at``, ...) or ``{}``."""
        ...

    def iter_profiles(self, page_size: int = 500) -> Iterator[dict]:
        """Every user's profile (each carries ``user_id``)."""
        ...

    def put_calendar(self, user_id: str, cal: CalendarInfo) -> None: ...

    def settings(self, user_id: str) -> dict:
        """The user's settings (item ``SETTINGS``: ``remember``, ``updated_at``), ``{}`` when none
        were set. A Query, so predict reads it with the grant it reads the calendars with."""
        ...

    def put_settings(self, user_id: str, values: dict) -> dict:
        """Replace the user's settings with ``values`` (validated by the caller); returns what is stored."""
        ...

    def calendars(self, user_id: str) -> list[CalendarInfo]:
        """The user's calendars in calendar-id order."""
        ...

    def record_correction(self, user_id: str, event_id: str, *, old: Optional[str], new: str,
                          prediction: Optional[dict]) -> dict:
        """Store a correction record (with what had been predicted) and return it."""
        ...

    # --- the user's data lifecycle (calroute.services.lifecycle) ---
    def corrections(self, user_id: str) -> list[dict]:
        """The user's correction records, oldest first."""
        ...

    def delete_corrections(self, user_id: str, event_ids: Iterable[str]) -> int:
        """Delete the correction records of these events; returns how many were removed."""
        ...

    def delete_calendar(self, user_id: str, calendar_id: str) -> bool:
        """Remove the calendar item and its ``calev#`` profile counter; False when there was no item."""
        ...

    def mark_calendar_removed(self, user_id: str, calendar_id: str, *, at: str) -> None:
        """Write the tombstone ``CALDEL#<calendarId>`` (``removed_at``): models trained before it
        never answer with the calendar (:mod:`calroute.removed`)."""
        ...

    def removed_calendars(self, user_id: str) -> dict[str, str]:
        """``{calendar_id: removed_at}`` of the user's tombstones."""
        ...

    def request_retrain(self, user_id: str, *, at: str, reason: str) -> None:
        """Set ``retrain_requested_at`` / ``retrain_reason`` on the profile (the planner retrains a
        user whose request is newer than the last training, :mod:`calroute.retrain`)."""
        ...

    def delete_user(self, user_id: str) -> int:
        """Delete every item of the user (profile, calendars, tombstones, corrections)."""
        ...


class ModelRegistry(Protocol):
    """Model versions per user, the ACTIVE pointer (changed only by conditional writes), the audit
    trail, and the training-run records (under :data:`RUN_PK`)."""

    def put_version(self, user_id: str, version: str, record: dict) -> None:
        """Register a new version (status ``candidate`` unless given); Conflict if it exists."""
        ...

    def get_version(self, user_id: str, version: str) -> Optional[dict]: ...

    def set_status(self, user_id: str, version: str, status: str, reason: str = "", **extra: Any) -> None:
        """Set a version's status (and ``extra`` attributes); NotFound if the version is unknown."""
        ...

    def versions(self, user_id: str) -> list[dict]:
        """Every version record, oldest first."""
        ...

    def active(self, user_id: str, consistent: bool = False) -> Optional[dict]:
        """The ACTIVE pointer (``version``, ``s3_key``, ``sha256``, ``threshold``, ...) or None."""
        ...

    def activate(self, user_id: str, record: dict, *, expected_version: Optional[str], actor: str,
                 reason: str, action: str = "promote") -> dict:
        """Point ACTIVE at ``record`` iff it still names ``expected_version`` (None: no pointer),
        else Conflict (``active_changed``). Marks the new version active, the old one archived,
        audits the change; returns the new pointer."""
        ...

    def audit(self, user_id: str, **fields: Any) -> None: ...

    def put_gate_skip(self, user_id: str, record: dict) -> None:
        """Record (replacing the last) that the data gates stopped a training run of the user
        (sk ``GATES``: ``reason``, ``at``, ``labels_total``, ``gates``); the planner reads it
        (:func:`calroute.retrain.gate_memo_holds`)."""
        ...

    def gate_skip(self, user_id: str) -> Optional[dict]:
        """The last :meth:`put_gate_skip` record, or None."""
        ...

    def mark_drift(self, user_id: str, version: str, report: dict, *, at: str) -> bool:
        """Store a drift report on ACTIVE (iff it still names ``version``) and on the version;
        False when ACTIVE changed meanwhile."""
        ...

    def audit_trail(self, user_id: str) -> list[dict]:
        """The audit items, oldest first (each has ``sk``, ``at``, ``action``, ...)."""
        ...

    def put_run(self, run_id: str, record: dict) -> None: ...

    def get_run(self, run_id: str) -> Optional[dict]: ...

    def runs(self, limit: int = 20) -> list[dict]:
        """The latest training-run records, newest first."""
        ...

    # --- the user's data lifecycle (calroute.services.lifecycle) ---
    def delete_user(self, user_id: str) -> int:
        """Delete the user's ACTIVE pointer first, then every version and audit item."""
        ...

    def scrub_runs(self, user_id: str) -> int:
        """Remove the user from the training-run records (``failures``/``rejections`` entries);
        returns how many records were rewritten."""
        ...

    def put_erasure(self, record: dict) -> None:
        """Store an erasure audit record (pk :data:`ERASURE_PK`; no user id, only its keyed hash)."""
        ...

    def erasures(self, limit: int = 50) -> list[dict]:
        """The latest erasure audit records, newest first."""
        ...


class ModelBlobs(Protocol):
    """Model bytes (ONNX, parity fixtures) and run files, addressed by key; sha256 checked on read."""

    bucket: str

    def key(self, user_id: str, version: str, suffix: str = ".onnx") -> str:
        """``models/{user_id}/{version}{suffix}``."""
        ...

    def put(self, user_id: str, version: str, data: bytes, suffix: str = ".onnx") -> tuple[str, str]:
        """Store ``data``; returns ``(key, sha256)``."""
        ...

    def get(self, key: str, sha256: Optional[str] = None) -> bytes:
        """The bytes at ``key``; ModelIntegrityError when missing or not matching ``sha256``."""
        ...

    def put_json(self, key: str, obj: Any) -> None: ...

    def get_json(self, key: str) -> Any:
        """NotFound when there is no object at ``key``."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object (no error when it is already gone)."""
        ...

    # --- the user's data lifecycle (calroute.services.lifecycle) ---
    def delete_user(self, user_id: str) -> int:
        """Permanently delete every version and delete marker under ``models/{user_id}/`` (the bucket
        is versioned: a plain delete would only hide them); returns how many were removed."""
        ...

    def scrub_manifests(self, user_id: str) -> int:
        """Permanently delete every version of the run files that name the user: the manifests
        (``runs/*/users.json``) and the training Map's ResultWriter result files
        (``runs/*/results/**/{SUCCEEDED,FAILED,PENDING}_n.json``, a child's Input/Output); returns how
        many object versions were removed."""
        ...


class PredictionLog(Protocol):
    """One item per classified event (latest wins) with a TTL; corrections mark ``was_correct``."""

    #: the only fields :meth:`scan_since` returns (aggregates: never the user, event or reason)
    SCAN_FIELDS: tuple[str, ...]

    def put_many(self, user_id: str, records: list[dict]) -> None:
        """Log records (each with ``event_id``); ``None`` values are left out."""
        ...

    def get(self, user_id: str, event_id: str) -> Optional[dict]: ...

    def mark(self, user_id: str, event_id: str, correct_calendar: str) -> Optional[dict]:
        """Set ``was_correct`` / ``corrected_to`` on a logged prediction; None if it was not logged."""
        ...

    def since(self, user_id: str, since_iso: str, limit: Optional[int] = None) -> list[dict]:
        """The user's records created at/after ``since_iso`` (at most ``limit``)."""
        ...

    def scan_since(self, since_iso: str, *, max_items: int, page_size: int = 1000,
                   max_pages: Optional[int] = None) -> tuple[list[dict], dict]:
        """Every user's records created at/after ``since_iso``, projected to :attr:`SCAN_FIELDS`,
        at most ``max_items``; ``info = {"scanned", "pages", "truncated"}``."""
        ...

    # --- the user's data lifecycle (calroute.services.lifecycle) ---
    def delete(self, user_id: str, event_ids: Iterable[str]) -> int:
        """Delete the logged predictions of these events; returns how many were stored."""
        ...

    def delete_user(self, user_id: str) -> int:
        """Delete every logged prediction of the user."""
        ...


class UsageLedger(Protocol):
    """LLM calls, tokens and USD per user and UTC day, and the same summed under :data:`GLOBAL_PK`."""

    def add(self, user_id: str, *, usd: float, input_tokens: int, output_tokens: int, calls: int = 1) -> None:
        """Add to today's row of ``user_id`` and of :data:`GLOBAL_PK`."""
        ...

    def spent(self, user_id: str, day: Optional[str] = None) -> float:
        """USD spent on ``day`` (``yyyy-mm-dd``, default today, UTC); ``user_id`` may be GLOBAL_PK."""
        ...

    def days(self, user_id: str, since_day: str) -> list[dict]:
        """The rows (``day``, ``calls``, ``usd``, ``input_tokens``, ``output_tokens``) from ``since_day``."""
        ...

    # --- the user's data lifecycle (calroute.services.lifecycle) ---
    def delete_user(self, user_id: str) -> int:
        """Delete the user's rows (the :data:`GLOBAL_PK` totals stay: they carry no user)."""
        ...


class MetricsSink(Protocol):
    """Where services send metrics. Dimensioned metrics carry low-cardinality labels only (method,
    cohort), never a user. :class:`calroute.adapters.emf.EmfSink` writes CloudWatch EMF."""

    def add_metric(self, name: str, unit: str, value: float) -> None: ...

    def add_dimensioned(self, name: str, unit: str, value: float, dims: dict[str, str]) -> None: ...


class NullSink:
    """The metrics sink that drops everything (the default of every service; tests, scripts)."""

    def add_metric(self, name: str, unit: str, value: float) -> None:
        pass

    def add_dimensioned(self, name: str, unit: str, value: float, dims: dict[str, str]) -> None:
        pass


class AfterResponse(Protocol):
    """Work a request does not need to wait for (the prediction log's write): ``defer(fn)`` runs
    ``fn`` once the handler has returned — in Lambda through an internal extension
    (:mod:`calroute.adapters.lambda_extension`), before the environment is frozen — or at once.
    ``invocation_done(request_id)`` marks the end of one invocation's deferred work (the handler
    wrapper calls it in a ``finally``)."""

    def defer(self, fn: "Callable[[], Any]") -> None: ...

    def invocation_done(self, request_id: Optional[str] = None) -> None: ...


class Immediately:
    """The :class:`AfterResponse` that runs deferred work at once, inside the request (tests,
    scripts, the local stack, SnapStart, and wherever the Lambda Extensions API is not there)."""

    def defer(self, fn: "Callable[[], Any]") -> None:
        fn()

    def invocation_done(self, request_id: Optional[str] = None) -> None:
        pass


@dataclass(frozen=True)
class Stores:
    """Every store a service may use; built in one place (:func:`calroute.wiring.stores`).

    ``dataclasses.replace(stores, registry=...)`` swaps one of them (tests)."""

    events: EventStore
    users: UserStore
    registry: ModelRegistry
    models: ModelBlobs
    predictions: PredictionLog
    usage: UsageLedger


__all__ = ["AfterResponse", "Immediately", "RUN_PK", "GLOBAL_PK", "ERASURE_PK", "StoredEvent", "EventStore", "UserStore", "ModelRegistry", "ModelBlobs", "PredictionLog",
           "UsageLedger", "MetricsSink", "NullSink", "Stores"]
