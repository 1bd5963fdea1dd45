"""The training data gates, numpy-free so every function (the models API runs on the core layer
only) answers "can this user train?" with the trainer's exact rule and reason."""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

from .schema import Event


def check_gates(events: Sequence[Event], cfg: Any) -> tuple[bool, str]:
    """Is there enough labelled data to train? ``cfg`` has ``min_events``, ``min_calendars`` and
    ``min_per_calendar`` (a ``TrainConfig`` or the ``Settings``). Returns ``(ok, reason)``;
    unlabelled events are ignored. Reasons read like "needs at least 50 labelled events (has 12)"."""
    counts = Counter(e.calendar_id for e in events if e.calendar_id is not None)
    n = sum(counts.values())
    if n < cfg.min_events:
        return False, f"needs at least {cfg.min_events} labelled events (has {n})"
    big = [c for c, k in counts.items() if k >= cfg.min_per_calendar]
    if len(big) < cfg.min_calendars:
        shown = ", ".join(f"{c}: {k}" for c, k in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        return False, (f"needs at least {cfg.min_calendars} calendars with {cfg.min_per_calendar}+ events "
                       f"each ({shown})")
    return True, f"ok: {n} events in {len(counts)} calendars"
