"""Dates and times in what the user says: patterns find the phrase, ``dateparser`` resolves it.

The patterns (built from the phrasings of the nl_events train split, docs/slots.md) find a date or
a time phrase and rewrite it into a form ``dateparser`` resolves reliably ("half past 1 in the
afternoon" → ``1:30 pm``, "evening 7:30" → ``7:30 pm``, "day after tomorrow" → ``in 2 days``,
"the 1st" → ``1st of this month``); ``dateparser.parse`` then does the calendar work against the
user's ``now`` in the user's zone (``RELATIVE_BASE``, ``PREFER_DATES_FROM: future``). Searching the
raw text with ``dateparser.search.search_dates`` was measured and rejected: it reads house numbers
as years and misses "half past"/"quarter to" (bench/slot_parsers.py, docs/slots.md).

Each :class:`~calroute.slots.types.Found` names its rule; the rule's confidence is fitted on the
benchmark (:mod:`calroute.slots.confidence`).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Optional

import dateparser

from ..schema import MAX_YEAR, MIN_YEAR  # the event schema's years: a date outside them is no event date
from .types import Found

_LANGS = ["en"]

NUM_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
             "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
_NUM = r"(?:\d{1,2}|" + "|".join(NUM_WORDS) + r")"
_AMPM = r"(?:a\.\s?m\.?|p\.\s?m\.?|am|pm)(?![a-z])"
_PART = r"(?:in\s+the\s+|at\s+|this\s+)?(?:morning|afternoon|evening|night|noon)"
_REL = r"(?:half|quarter|\d{1,2}\s+minutes?)\s+(?:past|after|to|before)\s+"
_OCLOCK = r"o'?\s?clock"

# h[:mm] [o'clock] [am/pm | part of day], optionally "half past"/"quarter to" first
_TIME = re.compile(
    r"(?<![\w:#$.])(?P<rel>" + _REL + r")?(?P<h>" + _NUM + r")(?:[:.](?P<m>[0-5]\d))?(?![\d:])(?![b-oq-z_])"
    r"(?:\s*(?P<oc>" + _OCLOCK + r"))?"
    r"(?:\s*(?P<ampm>" + _AMPM + r")|,?\s+(?P<part>" + _PART + r")(?![a-z]))?",
    re.IGNORECASE)
# part of day first: "evening 7:30", "afternoon 3:30"
_TIME_PART_FIRST = re.compile(
    r"(?<![\w])(?P<part>morning|afternoon|evening|night)\s+(?P<h>\d{1,2})(?:[:.](?P<m>[0-5]\d))?(?![\w:])",
    re.IGNORECASE)
_TIME_WORD = re.compile(r"(?<![\w])(?P<w>noon|midday|midnight)(?![\w])", re.IGNORECASE)
_BARE_MARKER = re.compile(r"(?:\bat|\baround|@)\s*$", re.IGNORECASE)

_WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
_WD = r"(?:mon|tues?|wed(?:nes)?|thu(?:rs?)?|fri|sat(?:ur)?|sun)(?:day)?"
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december"]
_MON = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
        r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_ORD = r"(?P<d>[0-3]?\d)(?P<suf>st|nd|rd|th)?"

_DATE_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("date:iso", re.compile(r"(?<![\w-])(?P<iso>\d{4}-[01]\d-[0-3]\d)(?![\w-])")),
    ("date:month_day", re.compile(
        r"(?<![\w])(?P<mon>" + _MON + r")\.?\s+(?:the\s+)?" + _ORD + r"(?![\w:])", re.IGNORECASE)),
    ("date:day_of_month", re.compile(
        r"(?<![\w])(?:the\s+)?" + _ORD + r"\s+of\s+(?:(?P<mon>" + _MON + r")|(?P<which>this|next|the)\s+month)(?![\w])",
        re.IGNORECASE)),
    ("date:weekday", re.compile(
        r"(?<![\w])(?:(?P<mod>this|next|coming|upcoming)\s+)?(?P<wd>" + _WD + r")"
        r"(?:,?\s+(?:of\s+)?(?P<week>this|next)\s+week)?(?![\w])", re.IGNORECASE)),
    ("date:the_nth", re.compile(r"(?<![\w])(?:on\s+)?the\s+" + r"(?P<d>[0-3]?\d)(?P<suf>st|nd|rd|th)(?![\w])",
                                re.IGNORECASE)),
    ("date:relative", re.compile(
        r"(?<![\w])(?P<rel>(?:the\s+)?day\s+after\s+tomorrow|(?:later\s+)?today|tonight|tomorrow|"
        r"this\s+(?:morning|afternoon|evening))(?![\w])", re.IGNORECASE)),
]

#: Rules in the order they are preferred when several match one text (most specific first).
TIME_RULES = ("time:ampm", "time:part_of_day", "time:relative", "time:oclock", "time:word",
              "time:24h", "time:hhmm", "time:bare")
DATE_RULES = tuple(r for r, _ in _DATE_PATTERNS)


def _hour(token: str) -> int:
    t = token.lower()
    return NUM_WORDS[t] if t in NUM_WORDS else int(t)


def _settings(base: dt.datetime, prefer: str = "future") -> dict:
    return {"RELATIVE_BASE": base, "PREFER_DATES_FROM": prefer, "RETURN_AS_TIMEZONE_AWARE": False,
            "STRICT_PARSING": False}


@functools.lru_cache(maxsize=4096)
def _dp(phrase: str, base: dt.datetime, prefer: str = "future") -> Optional[dt.datetime]:
    """``dateparser.parse`` of a normalised phrase, memoised: the phrases are the patterns'
    canonical forms ("4:30 pm", "next monday", "13 march") and every base is a day boundary (or a
    fixed day for times), so a warm container resolves a phrase once a day (~1-3 ms each)."""
    try:
        return dateparser.parse(phrase, languages=_LANGS, settings=_settings(base, prefer))
    except Exception:  # noqa: BLE001 - dateparser's own faults on odd input: no value
        return None


#: The day time phrases are resolved on (only the clock time is kept).
_TIME_BASE = dt.datetime(2000, 1, 3)


def _canon_text(text: str) -> str:
    """Same length as ``text`` (spans stay valid): typographic and doubled quotes as ``'``."""
    return text.replace('"', "'").replace("\u2019", "'").replace("\u2018", "'")


# ----------------------------------------------------------------------------- times


def _time_phrase(m: re.Match) -> Optional[tuple[str, str]]:
    """(rule, phrase for dateparser) for a :data:`_TIME` match, or None when it is not a time."""
    g = m.groupdict()
    h = _hour(g["h"])
    mins = int(g["m"]) if g.get("m") else None
    rel, ampm, part, oc = g.get("rel"), g.get("ampm"), g.get("part"), g.get("oc")
    if g["h"].isalpha() and not (ampm or part or oc or rel):
        return None  # "one of", "five people": number words only with a time marker
    if rel:
        r = rel.lower().split()
        if r[0] == "half":
            delta = 30
        elif r[0] == "quarter":
            delta = 15
        else:
            delta = int(r[0])
        if r[-1] in ("to", "before"):
            h, mins = (h - 1) % 12 or 12, 60 - delta
        else:
            mins = delta
        if not 1 <= h <= 12:
            return None
    if mins is None:
        mins = 0
    if h > 23 or mins > 59:
        return None
    if ampm:
        if not 1 <= h <= 12:
            return None
        mer = "am" if ampm.lower().startswith("a") else "pm"
        return ("time:ampm", f"{h}:{mins:02d} {mer}")
    if part:
        p = part.lower().split()[-1]
        if h > 12:
            return ("time:part_of_day", f"{h:02d}:{mins:02d}")
        if p == "morning":
            mer = "am"
        elif p == "night" and h == 12:
            mer = "am"
        elif p == "noon":
            mer = "pm"
        else:
            mer = "pm"
        return ("time:part_of_day", f"{h}:{mins:02d} {mer}")
    if rel:
        return ("time:relative", f"{h}:{mins:02d}")
    if oc:
        return ("time:oclock", f"{h}:{mins:02d}")
    if g.get("m"):
        rule = "time:24h" if (h == 0 or h >= 13 or g["h"].startswith("0")) else "time:hhmm"
        return (rule, f"{h:02d}:{mins:02d}")
    # a bare number: a time only right after "at"/"for"/"around" ...
    before = m.string[max(0, m.start() - 12):m.start()]  # the marker is right before: no O(n²) scan
    if _BARE_MARKER.search(before) and 1 <= h <= 12:
        return ("time:bare", f"{h}:00")
    return None


def find_times(text: str, base: dt.datetime, turn: int = 0) -> list[Found]:
    """Every time phrase in ``text``, resolved by dateparser (value ``HH:MM``), best rule first.
    Overlapping candidates go to the more specific rule ("evening 5:15" over "5:15")."""
    src = _canon_text(text)
    cands: list[tuple[str, str, int, int]] = []
    for m in _TIME.finditer(src):
        got = _time_phrase(m)
        if got:
            cands.append((got[0], got[1], m.start(), m.end()))
    for m in _TIME_PART_FIRST.finditer(src):
        h = int(m["h"])
        mins = int(m["m"]) if m["m"] else 0
        if 1 <= h <= 12 and mins <= 59:
            mer = "am" if m["part"].lower() == "morning" else "pm"
            cands.append(("time:part_of_day", f"{h}:{mins:02d} {mer}", m.start(), m.end()))
    for m in _TIME_WORD.finditer(src):
        w = m["w"].lower()
        cands.append(("time:word", "12:00 am" if w == "midnight" else "12:00 pm", m.start(), m.end()))
    order = {r: i for i, r in enumerate(TIME_RULES)}
    cands.sort(key=lambda c: (order[c[0]], c[2]))
    found: list[Found] = []
    taken: list[tuple[int, int]] = []
    for rule, phrase, start, end in cands:
        if any(s < end and start < e for s, e in taken):
            continue
        d = _dp(phrase, _TIME_BASE, "current_period")
        if d is None:
            continue
        taken.append((start, end))
        found.append(Found(f"{d.hour:02d}:{d.minute:02d}", rule, turn, start, end, text[start:end]))
    return found


# ----------------------------------------------------------------------------- dates


def _wd_index(token: str) -> int:
    t = token.lower()[:3]
    return [w[:3] for w in _WEEKDAYS].index(t)


def _mon_name(token: str) -> str:
    t = token.lower()[:3]
    return next(m for m in _MONTHS if m.startswith(t))


def _explicit(phrase: str, today: dt.datetime) -> Optional[dt.datetime]:
    """A month-day date: this year's if it is today or later, else the next one (dateparser's
    ``future`` against the day before, so today itself counts as the future)."""
    return _dp(phrase, today - dt.timedelta(seconds=1), "future")


def _date_value(rule: str, m: re.Match, base: dt.datetime) -> Optional[dt.date]:
    today = base.replace(hour=0, minute=0, second=0, microsecond=0)
    g = m.groupdict()
    if rule == "date:iso":
        try:
            d = dt.date.fromisoformat(g["iso"])
        except ValueError:
            return None
        return d if MIN_YEAR <= d.year <= MAX_YEAR else None
    if rule == "date:relative":
        r = " ".join(g["rel"].lower().split())
        if "after" in r:
            phrase = "in 2 days"
        elif r == "tomorrow":
            phrase = "tomorrow"
        else:
            phrase = "today"
        d = _dp(phrase, today)
    elif rule == "date:month_day":
        d = _explicit(f"{int(g['d'])} {_mon_name(g['mon'])}", today)
    elif rule == "date:day_of_month":
        day = int(g["d"])
        if g.get("mon"):
            d = _explicit(f"{day} {_mon_name(g['mon'])}", today)
        elif (g.get("which") or "").lower() == "next":
            d = _dp(f"{day} {_next_month_name(today)}", today, "future")
        else:
            d = _dp(f"{day} {_MONTHS[today.month - 1]}", today, "current_period")
    elif rule == "date:the_nth":
        day = int(g["d"])
        # "the 13th": this month's if still ahead, else next month's
        month = _MONTHS[today.month - 1] if day >= today.day else _next_month_name(today)
        d = _explicit(f"{day} {month}", today)
    elif rule == "date:weekday":
        idx = _wd_index(g["wd"])
        week, mod = (g.get("week") or "").lower(), (g.get("mod") or "").lower()
        if week:
            # "Monday next week": that weekday in the (ISO) week of "next week" / of this week
            ref = _dp("in 1 week", today) if week == "next" else today
            if ref is None:
                return None
            d = ref - dt.timedelta(days=ref.weekday()) + dt.timedelta(days=idx)
        elif mod == "next":
            d = _dp(f"next {_WEEKDAYS[idx]}", today)
        else:
            d = _dp(f"this {_WEEKDAYS[idx]}", today)
            if d is not None and d.date() < today.date():
                d = _dp(f"next {_WEEKDAYS[idx]}", today)
    else:  # pragma: no cover - every rule is handled above
        return None
    return d.date() if d is not None else None


def _next_month_name(today: dt.datetime) -> str:
    return _MONTHS[today.month % 12]


def find_dates(text: str, base: dt.datetime, turn: int = 0) -> list[Found]:
    """Every date phrase in ``text`` (value ``YYYY-MM-DD``), resolved against ``base`` (the user's
    local now, naive), best rule first."""
    src = _canon_text(text)
    found: list[Found] = []
    taken: list[tuple[int, int]] = []
    for rule, pat in _DATE_PATTERNS:
        for m in pat.finditer(src):
            s, e = m.start(), m.end()
            if any(a < e and s < b for a, b in taken):
                continue
            if rule == "date:weekday" and m["wd"].lower() in ("sat", "sun", "wed", "mon", "fri", "thu", "tue") \
                    and not m["wd"][0].isupper():
                continue  # lower-case abbreviations are words ("sun", "wed" ...), not days
            try:
                d = _date_value(rule, m, base)
            except (ValueError, OverflowError):
                d = None
            if d is None:
                continue
            taken.append((s, e))
            found.append(Found(d.isoformat(), rule, turn, s, e, text[s:e]))
    order = {r: i for i, r in enumerate(DATE_RULES)}
    return sorted(found, key=lambda f: (order[f.rule], f.start))


def warm() -> None:
    """Load dateparser's English data and compile its patterns (a cold first parse costs ~0.3-0.6 s):
    called when a container builds the parse service, so the first request does not pay it."""
    base = dt.datetime(2019, 3, 1)
    for phrase in ("1:30 pm", "13:30", "tomorrow", "in 2 days", "next monday", "this saturday",
                   "13 march", "in 1 week", "today"):
        _dp.__wrapped__(phrase, base)
        _dp.__wrapped__(phrase, base, "current_period")
