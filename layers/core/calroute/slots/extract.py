"""Rules over a text or a short conversation → one :class:`~calroute.slots.types.Slot` per name,
and the event draft they make.

``extract(turns, now)`` reads every user turn (later turns win: "make it 5 pm instead"), each
assistant turn only as context (the user's next answer to "What should I call it?" is a name);
``draft(slots, now, tz)`` puts the values together (start/end in the user's zone, one hour by
default; no time → an all-day draft) and lists what is missing.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional, Sequence
from zoneinfo import ZoneInfo

from . import confidence as conf
from .names import NAME_QUESTION, find_addresses, find_attendees, find_location, find_summary
from .types import REQUIRED, SLOT_NAMES, Extraction, Found, Slot
from .when import find_dates, find_times

#: Default length of a timed draft (the ``end`` slot comes from it: source ``default``).
DEFAULT_DURATION = dt.timedelta(hours=1)


def _slot(name: str, found: Found, value=None) -> Slot:
    c = conf.rule_confidence(found.rule)
    return Slot(value=found.value if value is None else value, confidence=c, source="rules",
                span={"turn": found.turn, "start": found.start, "end": found.end, "text": found.text},
                needs_confirmation=conf.needs_confirmation(name, c), rule=found.rule)


def extract(turns: Sequence[dict], now: dt.datetime) -> Extraction:
    """``turns``: ``[{"role": "user"|"assistant", "text"}]`` (already validated); ``now``: aware,
    in the user's zone. Returns the rules' slots (empty ones are ``Slot()``: value None)."""
    base = now.replace(tzinfo=None)
    best: dict[str, Found] = {}
    attendees: list[Found] = []
    asked = False
    texts = [t["text"] for t in turns]
    for i, turn in enumerate(turns):
        text = turn["text"]
        if turn.get("role") == "assistant":
            asked = bool(NAME_QUESTION.search(text)) and "?" in text
            continue
        times = find_times(text, base, i)
        dates = find_dates(text, base, i)
        addresses = find_addresses(text, i)
        blocks = [(f.start, f.end) for f in times + dates + addresses]
        summary = find_summary(text, i, blocks=blocks, asked_for_name=asked)
        names = [(f.start, f.end) for f in summary if f.rule != "summary:leftover"]
        location = find_location(text, i, blocks=[(f.start, f.end) for f in times + dates], names=names)
        if location and summary and summary[0].rule == "summary:leftover":
            # the leftover title must not swallow a location found after all
            loc = location[0]
            s0 = summary[0]
            if s0.start < loc.start < s0.end:
                summary = find_summary(text, i, blocks=blocks + [(loc.start, loc.end)], asked_for_name=asked)
        for name, cands in (("time", times), ("date", dates), ("summary", summary), ("location", location)):
            if cands:
                best[name] = cands[0]
        people = find_attendees(text, i)
        if people:
            attendees = people
        asked = False
    slots = {name: Slot() for name in SLOT_NAMES}
    for name, found in best.items():
        slots[name] = _slot(name, found)
    if attendees:
        c = min(conf.rule_confidence(f.rule) for f in attendees)
        first, last = attendees[0], attendees[-1]
        text = texts[first.turn][first.start:last.end] if first.turn == last.turn else first.text
        slots["attendees"] = Slot(value=[f.value for f in attendees], confidence=c, source="rules",
                                  span={"turn": first.turn, "start": first.start, "end": last.end, "text": text},
                                  needs_confirmation=conf.needs_confirmation("attendees", c),
                                  rule=attendees[0].rule)
    return Extraction(slots=slots, turns=texts)


def draft(slots: dict[str, Slot], now: dt.datetime, tz: ZoneInfo) -> tuple[dict, list[str]]:
    """The event draft (``summary, start, end, all_day, location, attendees``) from the slots, and
    the required slots still missing. A missing date defaults to today (source ``default``)."""
    local_now = now.astimezone(tz)
    date_slot, time_slot = slots["date"], slots["time"]
    if date_slot.value is None:
        slots["date"] = date_slot = Slot(value=local_now.date().isoformat(), confidence=0.0, source="default",
                                         needs_confirmation=True, note=date_slot.note)
    day = dt.date.fromisoformat(date_slot.value)
    if time_slot.value is not None:
        hh, mm = (int(x) for x in str(time_slot.value).split(":"))
        start = dt.datetime(day.year, day.month, day.day, hh, mm, tzinfo=tz)
        end = start + DEFAULT_DURATION
        start_s, end_s, all_day = start.isoformat(), end.isoformat(), False
    else:
        start_s, end_s, all_day = day.isoformat(), (day + dt.timedelta(days=1)).isoformat(), True
    out = {
        "summary": slots["summary"].value or "",
        "start": start_s,
        "end": end_s,
        "all_day": all_day,
        "location": slots["location"].value or "",
        "attendees": [a for a in (slots["attendees"].value or []) if "@" in a],
        "attendee_names": list(slots["attendees"].value or []),
    }
    missing = [name for name in REQUIRED if slots[name].value is None or slots[name].source == "default"]
    return out, missing


def parse_zone(name: Optional[str]) -> Optional[ZoneInfo]:
    """The IANA zone, or None when it is not one."""
    if not name or not isinstance(name, str) or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):
        return None
