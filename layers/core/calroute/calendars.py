"""Calendars the model has not met: the serving side of "a calendar added after training".

A model can only answer with the calendars it was trained on. When the user has calendars the model
has not met (created, described or given their first events after the model was trained), the
predict service sends the events that *could* belong to one of them to the LLM fallback, which sees
every calendar, until the next training (the retraining policy counts a new calendar with enough
events as a reason to retrain, :mod:`calroute.retrain`).

"Could belong": the event shares a word with the calendar's id, name or description (words of 3+
letters that are not stop words), or the event is novel to the model (most of its title unseen in
training, :mod:`calroute.novelty`).

:class:`CalendarDirectory` keeps each user's calendar list per container for ``ttl`` seconds (one
DynamoDB Query per user and interval, the same interval as the model cache's revalidation), so a
calendar created now is seen by every container within a minute.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterable, Optional

from .features import words

#: An event this novel (share of its title unseen by the model) may belong to a calendar it has not met.
UNMET_NOVELTY = 0.5
_STOP = frozenset("""the and for with from this that you your our are was were has have had not but all any
can will into over under about after before then than them they their there here what when where which who
why how its his her him she one two new old calendar calendars event events other misc general stuff""".split())
_SPLIT = re.compile(r"[_\-.]+")


def calendar_words(calendar_id: str, name: str = "", description: str = "") -> frozenset[str]:
    """The words that name a calendar: its id (split on ``_-.``), name and description."""
    toks = words(" ".join((_SPLIT.sub(" ", calendar_id), name or "", description or "")))
    return frozenset(t for t in toks if len(t) >= 3 and t not in _STOP and not t.isdigit())


def event_words(ev: Any) -> frozenset[str]:
    toks = words(" ".join((ev.summary or "", ev.location or "", (ev.description or "")[:500])))
    return frozenset(t for t in toks if len(t) >= 3 and t not in _STOP)


def unmet_calendars(calendars: Iterable[Any], labels: Iterable[str]) -> dict[str, frozenset[str]]:
    """``{calendar_id: its words}`` for the user's calendars that are not among the model's labels."""
    known = set(labels)
    return {c.calendar_id: calendar_words(c.calendar_id, c.name, c.description)
            for c in calendars if c.calendar_id not in known}


def may_belong_to_unmet(ev: Any, unmet: dict[str, frozenset[str]], novelty: Optional[float]) -> Optional[str]:
    """The first unmet calendar ``ev`` may belong to (a shared word), ``"*"`` when the event is novel
    enough to belong to any of them, else None."""
    if not unmet:
        return None
    ew = event_words(ev)
    for cal, cw in unmet.items():
        if ew & cw:
            return cal
    if novelty is not None and novelty >= UNMET_NOVELTY:
        return "*"
    return None


class CalendarDirectory:
    """Per-container TTL cache of each user's calendars (``fetch(user_id) -> [CalendarInfo]``).

    A failed read keeps the last known list (or an empty one): the directory only ever sends more
    events to the LLM, so an outage must not fail a classification; ``on_error`` (e.g. a metric) is
    told of each failed read. Bounded to ``max_users`` users (least recently used dropped first)."""

    def __init__(self, fetch: Callable[[str], list], *, ttl: float = 60.0, max_users: int = 10_000,
                 clock: Callable[[], float] = time.monotonic,
                 on_error: Optional[Callable[[BaseException], None]] = None):
        self.fetch = fetch
        self.on_error = on_error
        self.ttl = float(ttl)
        self.max_users = int(max_users)
        self.clock = clock
        self._entries: "OrderedDict[str, tuple[float, list]]" = OrderedDict()
        self._lock = threading.Lock()
        self.reads = 0

    def get(self, user_id: str) -> list:
        now = self.clock()
        with self._lock:
            hit = self._entries.get(user_id)
            if hit is not None and now - hit[0] < self.ttl:
                self._entries.move_to_end(user_id)
                return hit[1]
        try:
            self.reads += 1
            cals = list(self.fetch(user_id))
        except Exception as exc:  # noqa: BLE001 - keep serving with what we knew
            cals = hit[1] if hit is not None else []
            if self.on_error is not None:
                self.on_error(exc)
        with self._lock:
            self._entries[user_id] = (now, cals)
            self._entries.move_to_end(user_id)
            while len(self._entries) > self.max_users:
                self._entries.popitem(last=False)
        return cals

    def forget(self, user_id: str) -> None:
        with self._lock:
            self._entries.pop(user_id, None)
