"""What every DynamoDB adapter shares: the process's boto3 resources, Python <-> DynamoDB values,
BatchWriteItem with retries, paged queries, and the translation of botocore errors into the
domain's.

boto3 honours ``AWS_ENDPOINT_URL``, which the local stack and the integration tests point at the
moto server. Clients use "standard" retries; throttling that survives them becomes
:class:`~calroute.errors.ServiceUnavailable` (503 + Retry-After) in :func:`storage_errors`.
"""

from __future__ import annotations

import functools
import inspect
import random
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Optional, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ...errors import ServiceUnavailable
from ..boto_session import new_session

# "standard" retries (bounded exponential backoff). Not "adaptive": its client-side rate limiter is
# per client and, after a burst of throttles, makes every later call of the process sleep.
BOTO_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=3, read_timeout=10)
THROTTLE_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
}
CONDITION_FAILED = "ConditionalCheckFailedException"


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


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def is_throttle(exc: ClientError) -> bool:
    return error_code(exc) in THROTTLE_CODES


def is_condition_failed(exc: ClientError) -> bool:
    return error_code(exc) == CONDITION_FAILED


@contextmanager
def storage_errors() -> Iterator[None]:
    """DynamoDB throttling that survived boto3's retries → :class:`ServiceUnavailable` (503)."""
    try:
        yield
    except ClientError as exc:
        if is_throttle(exc):
            raise ServiceUnavailable("storage is throttling; retry the request", retry_after=2) from exc
        raise


F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=type)


def translated(fn: F) -> F:
    """Method decorator: :func:`storage_errors` around the call."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with storage_errors():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def translated_methods(cls: C) -> C:
    """Class decorator: :func:`translated` around every public method defined in the class body
    (plain functions whose name does not start with ``_``; static and class methods, properties and
    inherited methods are left as they are).

    For adapters whose every method needs the translation. Unlike ``@translated`` on each method it
    leaves the methods undecorated in the source, which mutmut requires to mutate them (it skips
    decorated functions)."""
    for name, value in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(value):
            setattr(cls, name, translated(value))
    return cls


class Tables:
    """Lazily created boto3 resources shared by the adapters of one process (created under a lock:
    a boto3 session is not safe to create clients from in several threads at once, and predict's
    LLM threads and after-response writes may be the first to need one)."""

    def __init__(self, session: Optional[boto3.session.Session] = None):
        self._session = session or new_session()
        self._ddb = None
        self._s3 = None
        self._lock = threading.Lock()

    @property
    def session(self) -> boto3.session.Session:
        """The boto3 session every client of this process is created from (one botocore loader:
        endpoints, partitions and service models are read once)."""
        return self._session

    @property
    def ddb(self):
        if self._ddb is None:
            with self._lock:
                if self._ddb is None:
                    self._ddb = self._session.resource("dynamodb", config=BOTO_CONFIG)
        return self._ddb

    @property
    def s3(self):
        if self._s3 is None:
            with self._lock:
                if self._s3 is None:
                    self._s3 = self._session.client("s3", config=BOTO_CONFIG)
        return self._s3

    def table(self, name: str):
        return self.ddb.Table(name)

    def create_clients(self) -> None:
        """Create the DynamoDB resource and the S3 client now (service models loaded, endpoint
        rules and credentials provider resolved) without opening a connection: what a SnapStart
        snapshot keeps (:func:`calroute.wiring.snapstart_init`)."""
        self.ddb, self.s3  # noqa: B018 - the properties create them

    def close_connections(self) -> None:
        """Drop the pooled HTTP connections of the clients created so far (they reconnect on their
        next request). After a SnapStart restore a connection opened before the snapshot is dead."""
        for client in (self._ddb.meta.client if self._ddb is not None else None, self._s3):
            if client is not None:
                client.close()


_shared = Tables()


def shared_tables() -> Tables:
    """The process's :class:`Tables` (adapters built without ``tables`` use it)."""
    return _shared


def reset_shared_tables() -> Tables:
    """New boto3 resources for the adapters built from now on (a new endpoint: the local stack's
    emulator, a test's moto); returns them."""
    global _shared
    _shared = Tables()
    return _shared


class TableAdapter:
    """One DynamoDB table, through the process's shared boto3 resource (or ``tables``)."""

    def __init__(self, table_name: str, tables: Tables | None = None):
        self.name = table_name
        self.t = tables or shared_tables()

    @property
    def table(self):
        return self.t.table(self.name)


def query_all(table, **kwargs) -> Iterator[dict]:
    """Every item of a Query, page after page."""
    while True:
        page = table.query(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def backoff(attempt: int) -> float:
    """Jittered exponential backoff (seconds) before retry ``attempt`` of unprocessed items."""
    return min(2.0, 0.02 * (2**attempt)) * (0.5 + random.random() / 2)


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
            sleep(backoff(attempt))
        else:
            raise ServiceUnavailable("storage is throttling writes; retry the request", retry_after=2)


def iter_chunks(items: list, size: int) -> Iterable[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def query_keys(table, pk_name: str, pk: str, sk_name: str, *, prefix: str = "",
               extra: tuple[str, ...] = (), consistent: bool = False) -> list[dict]:
    """The keys (and the small ``extra`` attributes) of every item of partition ``pk`` (optionally
    only sort keys starting with ``prefix``): a projected, paged Query (deletions, listings);
    ``consistent``: a strongly consistent read (sees every write that completed before it)."""
    names = {"#p": pk_name, "#s": sk_name, **{f"#x{i}": a for i, a in enumerate(extra)}}
    cond = "#p = :p" + (" AND begins_with(#s, :pre)" if prefix else "")
    values = {":p": pk, **({":pre": prefix} if prefix else {})}
    return list(query_all(table, KeyConditionExpression=cond, ExpressionAttributeNames=names,
                          ExpressionAttributeValues=values, ProjectionExpression=", ".join(names),
                          **({"ConsistentRead": True} if consistent else {})))


def delete_keys(client, table_name: str, keys: list[dict], **kw) -> int:
    """BatchWriteItem DeleteRequests (25 per call, UnprocessedItems retried); idempotent (deleting
    an absent key is no error). Returns ``len(keys)``."""
    if keys:
        batch_write(client, table_name, [{"DeleteRequest": {"Key": k}} for k in keys], **kw)
    return len(keys)
