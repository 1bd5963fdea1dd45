"""Realistic synthetic users for the benchmarks, built from the bundled real calendars.

The bundled public calendars (``data/ics/*.ics``, parsed with :func:`calroute.ics.reader.parse_ics`, the
file stem is the calendar id) form a pool. A synthetic user owns ``n_calendars`` of them (drawn with
a seeded RNG) and ``n_events`` events sampled from those calendars with replacement, each copy
shifted by a whole number of weeks (so hour and weekday — the time features — are preserved) and
given a fresh id. ``real_users()`` are the three bundled users of ``data/users`` (evaluation split).
"""

from __future__ import annotations

import random
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Optional

from calroute.schema import Event

from .harness import ROOT

ICS_DIR = ROOT / "data" / "ics"
USERS_DIR = ROOT / "data" / "users"


@lru_cache(maxsize=1)
def calendar_pool(ics_dir: Path = ICS_DIR) -> dict[str, tuple[Event, ...]]:
    """``{calendar_id: events}`` of every bundled ``.ics`` file (parsed once per process)."""
    from calroute.ics.reader import parse_ics

    pool = {}
    for f in sorted(Path(ics_dir).glob("*.ics")):
        evs = parse_ics(f.read_bytes(), f.stem)
        if evs:
            pool[f.stem] = tuple(evs)
    if len(pool) < 2:
        raise RuntimeError(f"{ics_dir} needs at least two non-empty .ics files")
    return pool


def synthetic_user(n_events: int, *, n_calendars: int = 4, seed: int = 0, user: str = "bench",
                   pool: Optional[dict[str, tuple[Event, ...]]] = None) -> list[Event]:
    """``n_events`` labelled events of ``n_calendars`` real calendars (see the module docstring).
    Every calendar gets at least ``n_events // (2 * n_calendars)`` events; the rest are spread
    uniformly, so calendars are uneven like real users'."""
    pool = pool or calendar_pool()
    rng = random.Random(seed)
    cals = rng.sample(sorted(pool), min(n_calendars, len(pool)))
    floor = max(1, n_events // (2 * len(cals)))
    counts = {c: floor for c in cals}
    for _ in range(n_events - floor * len(cals)):
        counts[rng.choice(cals)] += 1
    out: list[Event] = []
    for cal in cals:
        src = pool[cal]
        for i in range(counts[cal]):
            ev = src[i] if i < len(src) else rng.choice(src)
            shift = timedelta(weeks=0 if i < len(src) else rng.randrange(-26, 27))
            out.append(ev.model_copy(update={
                "event_id": f"{user}-{cal[:12]}-{i}",
                "start": ev.start + shift,
                "end": ev.end + shift,
            }))
    rng.shuffle(out)
    return out


def real_users(users_dir: Path = USERS_DIR) -> dict[str, list[Event]]:
    """The bundled users (``data/users/<user>/<calendar>.ics``) via :func:`calroute_dev.evaluation.load_users`."""
    from calroute_dev.evaluation import load_users

    return load_users(users_dir)
