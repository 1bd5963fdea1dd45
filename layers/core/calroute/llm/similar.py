"""Similar past events for the prompt: token overlap (Jaccard) with the user's labelled events, and a
per-container cache of those events, tokenised."""

from __future__ import annotations

import threading
import time
from typing import Callable, Iterable, Optional

from ..features import event_tokens
from ..schema import Event


def _token_set(ev: Event) -> set[str]:
    toks = event_tokens(ev)
    return {f"t:{t}" for t in toks["t"]} | {f"l:{t}" for t in toks["l"]} | \
        {f"d:{t}" for t in toks["d"][:50]} | {f"a:{t}" for t in toks["a"]} | {f"o:{t}" for t in toks["o"]}


def similar_events(event: Event, labelled: Iterable[Event | tuple[frozenset, Event]], k: int,
                   allowed: Optional[set[str]] = None) -> list[Event]:
    """The ``k`` labelled events sharing most tokens with ``event`` (Jaccard over title, location,
    description, attendee/organizer domains); events with no overlap are never returned.

    ``labelled`` holds events, or ``(token set, event)`` pairs already tokenised (:class:`ExampleCache`)."""
    if k <= 0:
        return []
    target = _token_set(event)
    if not target:
        return []
    scored = []
    for i, item in enumerate(labelled):
        other, ev = item if isinstance(item, tuple) else (None, item)
        if not ev.calendar_id or (allowed is not None and ev.calendar_id not in allowed):
            continue
        if event.event_id and ev.event_id == event.event_id:
            continue
        if other is None:
            other = _token_set(ev)
        inter = len(target & other)
        if inter:
            scored.append((inter / len(target | other), i, ev))
    scored.sort(key=lambda s: (-s[0], s[1]))
    return [ev for _, _, ev in scored[:k]]


class ExampleCache:
    """Per-container cache of each user's labelled events, tokenised, for :func:`similar_events`.

    Without it every fallback call reads up to ``SIMILAR_SCAN_LIMIT`` events from DynamoDB and
    tokenises them again (~0.45 s per call against moto for 1,400 events). Entries live ``ttl``
    seconds (new labels and corrections show up after at most that long); the cache holds at most
    ``max_events`` events over all users, evicting the least recently used users first; a user with
    more than that is read each time, not cached. Keyed by the validated user id: a user's entry
    only ever holds what ``load(user)`` returned for that user.
    """

    def __init__(self, load: Callable[[str], list[Event]], *, ttl: float, max_events: int,
                 clock: Callable[[], float] = time.monotonic):
        from collections import OrderedDict

        self._load, self.ttl, self.max_events, self.clock = load, ttl, max_events, clock
        self._entries: "OrderedDict[str, tuple[float, list[tuple[frozenset, Event]]]]" = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, user: str) -> list[tuple[frozenset, Event]]:
        now = self.clock()
        with self._lock:
            entry = self._entries.get(user)
            if entry is not None and now - entry[0] < self.ttl:
                self._entries.move_to_end(user)
                self.hits += 1
                return entry[1]
        self.misses += 1
        examples = [(frozenset(_token_set(ev)), ev) for ev in self._load(user) if ev.calendar_id]
        if self.ttl > 0 and len(examples) <= self.max_events:
            with self._lock:
                old = self._entries.pop(user, None)
                if old is not None:
                    self._size -= len(old[1])
                self._entries[user] = (now, examples)
                self._size += len(examples)
                while self._size > self.max_events:
                    _, (_, dropped) = self._entries.popitem(last=False)
                    self._size -= len(dropped)
        return examples

    @property
    def size(self) -> int:
        return self._size

