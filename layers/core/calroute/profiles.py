"""Calendar profiles ("pattern discovery"): what a user's calendars usually look like.

Per calendar: event count, top title terms (from :func:`calroute.features.event_tokens`), usual
weekdays and start hours, typical places, median duration and the share of all-day events. The
profile is small (every list is bounded) and JSON-serialisable, so it can be stored next to a model
version and put into an LLM prompt. Pure Python: no sklearn, no numpy (the LLM function uses it).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from .features import event_tokens
from .schema import Event

TOP_TERMS = 8
TOP_WEEKDAYS = 3
TOP_HOURS = 3
TOP_PLACES = 3
MAX_PLACE_CHARS = 60
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Title words that say nothing about a calendar.
STOPWORDS = frozenset(
    "a an and the of in on at to for with by from de la le et du des der die das und von zu im "
    "am is are be or vs x".split()
)


def _median(values: list[float]) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2.0


def _top(counter: Counter, k: int) -> list:
    # Ties broken by key so the profile is deterministic.
    return [key for key, _ in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))[:k]]


def build_profile(events: Iterable[Event]) -> dict:
    """The profile of one calendar's events (see the module docstring for the fields)."""
    evs = list(events)
    terms: Counter = Counter()
    weekdays: Counter = Counter()
    hours: Counter = Counter()
    places: Counter = Counter()
    durations: list[float] = []
    all_day = 0
    for ev in evs:
        # Count each term once per event: "document frequency" is what makes a term typical.
        terms.update({t for t in event_tokens(ev)["t"] if len(t) > 1 and t not in STOPWORDS and not t.isdigit()})
        weekdays[ev.start.weekday()] += 1
        if ev.all_day:
            all_day += 1
        else:
            hours[ev.start.hour] += 1
            durations.append(ev.duration_minutes)
        place = " ".join(ev.location.split())[:MAX_PLACE_CHARS]
        if place:
            places[place] += 1
    n = len(evs)
    return {
        "count": n,
        "top_terms": _top(terms, TOP_TERMS),
        "weekdays": [WEEKDAYS[d] for d in _top(weekdays, TOP_WEEKDAYS)],
        "hours": _top(hours, TOP_HOURS),
        "places": _top(places, TOP_PLACES),
        "median_duration_minutes": round(_median(durations), 1),
        "all_day_share": round(all_day / n, 3) if n else 0.0,
    }


def build_profiles(events: Iterable[Event]) -> dict[str, dict]:
    """Profiles of every calendar among labelled ``events`` (unlabelled ones are ignored), keyed by
    calendar id in sorted order."""
    by_cal: dict[str, list[Event]] = {}
    for ev in events:
        if ev.calendar_id is not None:
            by_cal.setdefault(ev.calendar_id, []).append(ev)
    return {cal: build_profile(by_cal[cal]) for cal in sorted(by_cal)}


def _duration_text(minutes: float) -> str:
    if minutes >= 120:
        return f"{minutes / 60:.1f} h".replace(".0 h", " h")
    return f"{minutes:.0f} min"


def describe_profile(profile: dict) -> str:
    """One line a human or an LLM can read, e.g. ``42 events; terms: rugby, morley, rfc; usually
    Sat; around 14:00/15:00; at Scatcherd Lane; typically 2 h``."""
    parts = [f"{profile.get('count', 0)} events"]
    if profile.get("top_terms"):
        parts.append("terms: " + ", ".join(profile["top_terms"]))
    if profile.get("weekdays"):
        parts.append("usually " + "/".join(profile["weekdays"]))
    share = float(profile.get("all_day_share", 0.0))
    if share >= 0.5:
        parts.append(f"mostly all-day ({share:.0%})")
    elif profile.get("hours"):
        parts.append("around " + "/".join(f"{h:02d}:00" for h in profile["hours"]))
    if profile.get("places"):
        parts.append("at " + "; ".join(profile["places"]))
    if share < 0.5 and profile.get("median_duration_minutes"):
        parts.append("typically " + _duration_text(float(profile["median_duration_minutes"])))
    return "; ".join(parts)
