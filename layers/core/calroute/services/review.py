"""The review queue (active learning, docs/learning.md "Review queue"): which remembered answers
would teach the model most if the user confirmed (or corrected) them, and the confirmation itself.

* :func:`review_queue` — the user's events labelled by the LLM and not yet confirmed, most useful
  first: lowest *priority* ``margin × (1 − 0.5 × novelty)`` (the model's top-two margin when it
  answered, 0 without a model; the share of the title unseen in its training events), ties by
  newest. The same shape as the routing score: an event the model was unsure of *and* whose words it
  had not seen teaches it the most.
* :func:`confirm_event` — the user accepts the stored label: its provenance becomes ``confirmed``
  (trusted: it counts for the gates and may certify the model, unlike ``llm``), and the prediction
  log, when it has the event, is marked correct. A correction (another calendar) goes through
  ``POST .../correction`` instead.
"""

from __future__ import annotations

from typing import Optional

from .. import ids
from ..errors import InvalidInput, NotFound
from ..ports import Stores, StoredEvent
from ..schema import LABEL_CONFIRMED, LABEL_LLM, TRUSTED_LABELS

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
NOVELTY_WEIGHT = 0.5


def priority(row: StoredEvent) -> float:
    """``margin × (1 − 0.5 × novelty)``: lower is more worth reviewing (no model: margin 0)."""
    meta = row.meta or {}
    margin = float(meta.get("margin") or 0.0)
    novelty = meta.get("novelty")
    novelty = 1.0 if novelty is None else float(novelty)
    return margin * (1.0 - NOVELTY_WEIGHT * novelty)


def rank(rows: list[StoredEvent]) -> list[StoredEvent]:
    """The LLM-labelled rows, most worth reviewing first (lowest priority, then newest start)."""
    pending = [r for r in rows if r.provenance == LABEL_LLM]
    pending.sort(key=lambda r: -r.event.start_utc.timestamp())
    pending.sort(key=priority)  # stable: ties stay newest first
    return pending


def review_queue(user_id: str, stores: Stores, *, limit: Optional[int] = None) -> dict:
    """``{"user_id", "pending", "events": [{event_id, calendar_id, summary, start, margin, novelty,
    confidence, method, model_version, priority, answered_at}]}`` (at most ``limit``, default 10)."""
    ids.user_id(user_id)
    n = DEFAULT_LIMIT if limit is None else limit
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}", field="limit")
    ranked = rank(stores.events.list_stored(user_id))
    out = []
    for r in ranked[:n]:
        flat = r.event.to_flat()
        meta = r.meta or {}
        out.append({
            "event_id": r.event.event_id, "calendar_id": r.event.calendar_id, "summary": flat["summary"],
            "start": flat["start"], "margin": meta.get("margin"), "novelty": meta.get("novelty"),
            "confidence": meta.get("confidence"), "method": meta.get("method"),
            "model_version": meta.get("model_version"), "priority": round(priority(r), 4),
            "answered_at": r.updated_at,
        })
    return {"user_id": user_id, "pending": len(ranked), "events": out}


def confirm_event(user_id: str, event_id: str, stores: Stores) -> dict:
    """Confirm a stored event's label. Returns ``{event_id, calendar_id, provenance, changed}``;
    a user's own label stays ``user`` (``changed`` false). 404 if the event is unknown."""
    ids.user_id(user_id)
    ids.event_id(event_id, field="eventId")
    row = stores.events.get_stored(user_id, event_id)
    if row is None or not row.event.calendar_id:
        raise NotFound(f"event {event_id!r} not found", field="eventId")
    cal = row.event.calendar_id
    if row.provenance in TRUSTED_LABELS:
        return {"event_id": event_id, "calendar_id": cal, "provenance": row.provenance, "changed": False}
    stores.events.set_calendar(user_id, event_id, cal, provenance=LABEL_CONFIRMED)
    if stores.predictions.get(user_id, event_id) is not None:
        stores.predictions.mark(user_id, event_id, cal)
    return {"event_id": event_id, "calendar_id": cal, "provenance": LABEL_CONFIRMED, "changed": True}
