"""The review queue (active learning, docs/learning.md "Review queue"): which remembered answers
to ask the user about, and the confirmation itself.

* :func:`review_queue` — the user's events labelled by the LLM and not yet confirmed, in the order
  of :func:`rank`: **a representative sample first**. The pending answers are laid out by calendar
  and, within a calendar, with similar events side by side (:func:`stratified_order`: a
  nearest-neighbour chain over the events' title words, title 3-grams and time tokens, the
  featurizer's groups ``t``, ``c``, ``k`` weighted and normalised as it does); the queue is a
  systematic sample of that order at the van der Corput positions, so calendars, groups of similar
  events and one-offs get picks in proportion to their numbers and a series' picks spread over its
  weeks. Uncertainty is a secondary tilt: each position takes the least sure answer (lowest
  top-two margin; no model: 0) within a quarter of the sampling interval, same calendar. The
  ranking never looks at whether an answer was right and does not prefer confident answers:
  confirmed rows become trusted out-of-fold rows that certify the next model's threshold, so they
  must stand for the events it will see (docs/learning.md says why).
* :func:`confirm_event` — the user accepts the stored label: its provenance becomes ``confirmed``
  (trusted: it counts for the gates and may certify the model, unlike ``llm``), and the prediction
  log, when it has the event, is marked correct. A correction (another calendar) goes through
  ``POST .../correction`` instead.

Cost: pure Python (the ingest function ships no numpy). Similarities are sparse dot products
through an inverted index, within one calendar, between distinct events (a series' repeats within a
month are one), over at most ``POOL_MAX`` pending events (spread evenly over their start times when
more are pending).
"""

from __future__ import annotations

import math
from typing import Optional

from .. import ids
from ..errors import InvalidInput, NotFound
from ..features import GROUP_WEIGHTS, spec_tokens
from ..ports import Stores, StoredEvent
from ..schema import LABEL_CONFIRMED, LABEL_LLM, USER_LABELS, resolve_sole_labels

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
NOVELTY_WEIGHT = 0.5
#: The token groups events are compared by: title words, title 3-grams, time tokens (what an
#: event is and when). Location, description and attendee domains are left out: they are mostly a
#: calendar's constants (a feed's boilerplate), which make every event of a calendar look alike.
GROUPS = ("t", "c", "k")
#: Each sampled position of :func:`rank` takes the least sure answer (lowest margin) of the events
#: within this share of the sampling interval on either side of it: uncertainty as a secondary tilt
#: that cannot move a pick out of its stratum.
UNCERTAINTY_WINDOW = 0.25
#: The share of the pending answers, the newest, a queue of ``limit`` events is drawn from (at least
#: ``limit`` of them; 1.0: all of them).
RECENT_SHARE = 1.0
#: The most pending events the selection compares (evenly spread over start time beyond it).
POOL_MAX = 300


def priority(row: StoredEvent) -> float:
    """``margin × (1 − 0.5 × novelty)``: how sure the answer was (lower: less sure; no model: 0).
    Reported with each queued event; the queue's order is :func:`rank`'s."""
    meta = row.meta or {}
    margin = float(meta.get("margin") or 0.0)
    novelty = meta.get("novelty")
    novelty = 1.0 if novelty is None else float(novelty)
    return margin * (1.0 - NOVELTY_WEIGHT * novelty)


def vector(row: StoredEvent) -> dict[str, float]:
    """The event's sparse, unit-length vector over :data:`GROUPS` (each group's token counts
    L2-normalised and weighted as the featurizer weighs them; tokens unhashed)."""
    toks = spec_tokens(row.event)
    out: dict[str, float] = {}
    for g in GROUPS:
        acc: dict[str, float] = {}
        for t in toks.get(g) or ():
            acc[t] = acc.get(t, 0.0) + 1.0
        norm = math.sqrt(sum(v * v for v in acc.values()))
        for t, v in acc.items():
            out[f"{g}\x1f{t}"] = GROUP_WEIGHTS[g] * v / norm
    norm = math.sqrt(sum(v * v for v in out.values()))
    return {k: v / norm for k, v in out.items()}  # no token at all: {} (nothing is divided)


def similarities(vectors: list[dict[str, float]], groups: list[str]) -> list[dict[int, float]]:
    """``sims[i][j]``: cosine of events ``i`` and ``j`` of the same ``groups`` value (calendar),
    only the positive ones, ``sims[i][i] = 1``; through an inverted index (cost: the pairs that
    share a token, not all pairs)."""
    n = len(vectors)
    sims: list[dict[int, float]] = [{i: 1.0} for i in range(n)]
    postings: dict[tuple[str, str], list[tuple[int, float]]] = {}
    for i, v in enumerate(vectors):
        for k, x in v.items():
            postings.setdefault((groups[i], k), []).append((i, x))
    acc: list[dict[int, float]] = [{} for _ in range(n)]
    for plist in postings.values():
        for a in range(len(plist)):
            i, xi = plist[a]
            row = acc[i]
            for b in range(a + 1, len(plist)):
                j, xj = plist[b]
                row[j] = row.get(j, 0.0) + xi * xj
    for i, row in enumerate(acc):
        for j, s in row.items():
            if s > 0.0:
                sims[i][j] = sims[j][i] = min(1.0, s)
    return sims


def _pool(pending: list[StoredEvent]) -> list[StoredEvent]:
    """At most :data:`POOL_MAX` of ``pending`` (sorted by start), evenly spread over it."""
    n = len(pending)
    if n <= POOL_MAX:
        return pending
    return [pending[(i * n) // POOL_MAX] for i in range(POOL_MAX)]


def _newest(row: StoredEvent) -> tuple[float, str]:
    """Sort key: the newer event first, then the smaller id."""
    return (-row.event.start_utc.timestamp(), row.event.event_id)


def _margin(row: StoredEvent) -> float:
    """The model's top-two margin when it answered, within 0..1 (no model: 0, the least sure)."""
    return min(1.0, max(0.0, float((row.meta or {}).get("margin") or 0.0)))


def van_der_corput(j: int) -> float:
    """The ``j``-th point of the base-2 van der Corput sequence (0, ½, ¼, ¾, ⅛, ⅝, ...): every
    prefix of length 2^m is an evenly spaced grid, and every prefix is spread over [0, 1)."""
    x, f = 0.0, 0.5
    while j:
        if j & 1:
            x += f
        j >>= 1
        f /= 2
    return x


def stratified_order(pending: list[StoredEvent]) -> list[StoredEvent]:
    """``pending`` in the order the sample is drawn along (implicit stratification): calendars
    (most pending first), within a calendar similar events next to each other (a nearest-neighbour
    chain over :func:`vector`, from the densest event), the repeats of an event (same vector) by
    start. Events of one calendar that look alike are neighbours, so an evenly spread sample of
    this list takes every calendar, every group of similar events and the rest in proportion to
    their numbers, and a group's events spread over its weeks."""
    groups: dict[tuple, list[StoredEvent]] = {}
    vecs: dict[tuple, dict[str, float]] = {}
    for r in sorted(pending, key=lambda r: (r.event.start_utc, r.event.event_id)):
        v = vector(r)
        key = (r.event.calendar_id, tuple(sorted(v.items())))
        groups.setdefault(key, []).append(r)
        vecs.setdefault(key, v)
    keys = list(groups)
    weight = [len(groups[key]) for key in keys]
    sims = similarities([vecs[key] for key in keys], [key[0] for key in keys])
    density = [sum(weight[j] * s for j, s in sims[i].items()) for i in range(len(keys))]
    newest = [_newest(groups[key][-1]) for key in keys]
    by_cal: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        by_cal.setdefault(key[0], []).append(i)
    order: list[StoredEvent] = []
    for cal in sorted(by_cal, key=lambda c: (-sum(weight[i] for i in by_cal[c]), c)):
        left = set(by_cal[cal])
        cur = min(left, key=lambda i: (-density[i], newest[i]))
        while True:
            left.discard(cur)
            order += groups[keys[cur]]
            if not left:
                break
            cur = min(left, key=lambda i: (-sims[cur].get(i, 0.0), -density[i], newest[i]))
    return order


def _pending(rows: list[StoredEvent]) -> list[StoredEvent]:
    """The rows whose label is the LLM's word: ``llm``, and a ``sole`` label the user's other labels
    contradict (:func:`calroute.schema.resolve_sole_labels`: training reads it as ``llm`` too)."""
    labelled = [r for r in rows if r.event.calendar_id]
    read_as = resolve_sole_labels([r.event for r in labelled], [r.provenance for r in labelled])
    return [r for r, p in zip(labelled, read_as) if p == LABEL_LLM]


def rank(rows: list[StoredEvent], limit: Optional[int] = None) -> list[tuple[StoredEvent, int]]:
    """The LLM-labelled rows of ``rows`` most worth reviewing first, at most ``limit`` (default: the
    whole pool), each with how many pool events it stands for (its share of the sample: the pool
    events between it and the neighbouring picks along :func:`stratified_order`).

    A systematic sample of :func:`stratified_order` at the van der Corput positions (a shorter
    queue's positions are the first of a longer one's), each position nudged to the least sure
    answer within ``UNCERTAINTY_WINDOW`` of the sampling interval ``len(pool) / limit`` on either
    side, same calendar (so with equal margins a shorter queue is a longer one's prefix; otherwise
    its wider window may take a less sure neighbour). Deterministic: equal margins go to the event
    nearest the position, then the newer, then the smaller id."""
    pending = sorted(_pending(rows), key=lambda r: (r.event.start_utc, r.event.event_id))
    if limit is not None:  # the newest RECENT_SHARE of them, at least ``limit`` (1.0: all)
        pending = pending[-max(limit, math.ceil(RECENT_SHARE * len(pending))):]
    order = stratified_order(_pool(pending))
    n = len(order)
    k = n if limit is None else min(limit, n)
    if k <= 0:
        return []
    half = int(n * UNCERTAINTY_WINDOW / k)
    used = [False] * n
    picks: list[int] = []
    j = 0
    while len(picks) < k:
        p = int(van_der_corput(j) * n)
        j += 1
        cal = order[p].event.calendar_id
        window = [i for i in range(max(0, p - half), min(n, p + half + 1))
                  if not used[i] and order[i].event.calendar_id == cal]
        if not window:  # the position's neighbourhood is taken: the nearest free event
            window = [min((i for i in range(n) if not used[i]), key=lambda i: (abs(i - p), i))]
        c = min(window, key=lambda i: (_margin(order[i]), abs(i - p), _newest(order[i])))
        used[c] = True
        picks.append(c)
    # each pool event is stood for by the pick nearest to it along the order
    ranked = sorted(range(k), key=lambda q: picks[q])
    represents = [0] * k
    pos = 0
    for i in range(n):
        while pos + 1 < k and abs(picks[ranked[pos + 1]] - i) < abs(picks[ranked[pos]] - i):
            pos += 1
        represents[ranked[pos]] += 1
    return [(order[c], represents[q]) for q, c in enumerate(picks)]


def review_queue(user_id: str, stores: Stores, *, limit: Optional[int] = None) -> dict:
    """``{"user_id", "pending", "events": [{event_id, calendar_id, summary, start, margin, novelty,
    confidence, method, model_version, priority, represents, answered_at}]}`` (at most ``limit``,
    default 10), in :func:`rank`'s order."""
    ids.user_id(user_id)
    n = DEFAULT_LIMIT if limit is None else limit
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_LIMIT:
        raise InvalidInput(f"limit must be an integer from 1 to {MAX_LIMIT}", field="limit")
    rows = stores.events.list_stored(user_id)
    pending = len(_pending(rows))
    out = []
    for r, represents in rank(rows, n):
        flat = r.event.to_flat()
        meta = r.meta or {}
        out.append({
            "event_id": r.event.event_id, "calendar_id": r.event.calendar_id, "summary": flat["summary"],
            "start": flat["start"], "margin": meta.get("margin"), "novelty": meta.get("novelty"),
            "confidence": meta.get("confidence"), "method": meta.get("method"),
            "model_version": meta.get("model_version"), "priority": round(priority(r), 4),
            "represents": represents, "answered_at": r.updated_at,
        })
    return {"user_id": user_id, "pending": pending, "events": out}


def confirm_event(user_id: str, event_id: str, stores: Stores) -> dict:
    """Confirm a stored event's label. Returns ``{event_id, calendar_id, provenance, changed}``;
    a user's own label stays ``user`` (``changed`` false); a remembered one (``llm``, ``ml``,
    ``sole``) becomes ``confirmed``. 404 if the event is unknown."""
    ids.user_id(user_id)
    ids.event_id(event_id)  # reported as field "eventId"
    row = stores.events.get_stored(user_id, event_id)
    if row is None or not row.event.calendar_id:
        raise NotFound(f"event {event_id!r} not found", field="eventId")
    cal = row.event.calendar_id
    if row.provenance in USER_LABELS:
        return {"event_id": event_id, "calendar_id": cal, "provenance": row.provenance, "changed": False}
    stores.events.set_calendar(user_id, event_id, cal, provenance=LABEL_CONFIRMED)
    stores.users.bump(user_id, labels=1)  # a trusted label now: the gates may pass
    if stores.predictions.get(user_id, event_id) is not None:
        stores.predictions.mark(user_id, event_id, cal)
    return {"event_id": event_id, "calendar_id": cal, "provenance": LABEL_CONFIRMED, "changed": True}
