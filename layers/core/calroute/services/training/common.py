"""What the training-run steps share: run ids and versions, the run's S3 key, the per-item handler
wrapper, the training-event query and small payload helpers."""

from __future__ import annotations

import math
import re
import secrets
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Optional

from ... import ids
from ...config import Settings
from ...errors import InvalidInput
from ...ports import Stores
from ...schema import resolve_sole_labels

RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
#: per-run lists kept in the plan output / run record (Step Functions payloads are ≤ 256 KB)
MAX_LISTED = 100
#: result statuses of one user's child workflow
STATUSES = ("promoted", "skipped", "rejected", "failed", "conflict")


def _now(now: Optional[datetime]) -> datetime:
    return now or datetime.now(timezone.utc)


def new_version(now: Optional[datetime] = None) -> str:
    """``v<YYYYmmddHHMMSS>-<6 hex>`` (ids.VERSION_RE); sorts by time."""
    return f"v{_now(now):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"


def new_run_id(now: Optional[datetime] = None) -> str:
    return f"r{_now(now):%Y%m%d%H%M%S}-{secrets.token_hex(3)}"


def run_id_of(value: object, field: str = "run_id") -> str:
    if not isinstance(value, str) or not RUN_ID_RE.fullmatch(value) or ".." in value:
        raise InvalidInput(f"{field} must match {RUN_ID_RE.pattern}", field=field)
    return value


def run_key(run_id: str) -> str:
    return f"runs/{run_id}/users.json"


def results_prefix(run_id: str) -> str:
    """Where the Map's ``ResultWriter`` writes the run's child results (``<prefix>/<map run id>/
    manifest.json`` and ``SUCCEEDED_n.json`` / ``FAILED_n.json`` / ``PENDING_n.json``)."""
    return f"runs/{run_id}/results"


def _ms(t0: float, clock: Callable[[], float]) -> int:
    return int(round((clock() - t0) * 1000))


def _base(item: Mapping) -> dict:
    """What every state passes on (the Catch handlers read ``user_id``/``run_id``)."""
    out = {"user_id": item.get("user_id"), "run_id": item.get("run_id")}
    if item.get("version"):
        out["version"] = item["version"]
    return out


def load_training_events(user_id: str, stores: Stores, cfg: Settings) -> list:
    """The user's labelled events, the ``max_train_events`` most recent, in time order."""
    return load_training_labels(user_id, stores, cfg)[0]


def load_training_labels(user_id: str, stores: Stores, cfg: Settings) -> tuple[list, list[str]]:
    """As :func:`load_training_events`, with each event's label provenance (``user``, ``confirmed``,
    ``sole``, ``llm``, ``ml``) in a parallel list; a ``sole`` label the user's other labels
    contradict reads as ``llm`` (:func:`calroute.schema.resolve_sole_labels`, on all the user's rows
    before the most recent ``max_train_events`` are kept)."""
    rows = [s for s in stores.events.list_stored(user_id) if s.event.calendar_id]
    rows.sort(key=lambda s: (s.event.start_utc, s.event.event_id or ""))  # sort_by_start's order
    events = [s.event for s in rows]
    provenance = resolve_sole_labels(events, [s.provenance for s in rows])
    keep = max(0, len(rows) - cfg.max_train_events)
    return events[keep:], provenance[keep:]


def run_item(step: Callable[..., dict], event: Mapping, stores: Stores, cfg: Settings, logger: Any) -> dict:
    """What each per-user state's handler (TrainUser, Validate, Promote) does: validate the item's
    user id, tag the logs with the hashed user and the run id, run ``step`` on ``stores`` and log its
    outcome (never event text)."""
    user = ids.user_id(event.get("user_id"), field="user_id")
    logger.append_keys(user=ids.hashed_user(user), run_id=event.get("run_id"))
    out = step(event, stores, cfg)
    logger.info(f"{step.__name__} done",
                extra={k: out.get(k) for k in ("status", "version", "reason", "duration_ms") if k in out})
    return out


def _finite(d: Mapping) -> dict:
    """DynamoDB has no NaN/Infinity: non-finite floats become strings."""
    return {k: (repr(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}



__all__ = ["RUN_ID_RE", "MAX_LISTED", "STATUSES", "new_version", "new_run_id", "run_id_of", "run_key",
           "load_training_events", "load_training_labels", "run_item"]
