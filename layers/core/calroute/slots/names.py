"""The title, the location and the attendees, by the phrasings the data shows.

* title: an introducer ("call it X", "name it X", "under the title X", "titled X", "Put X as the
  title", ...) and X up to the end of the clause (punctuation, " and ", a time or an address); a
  whole short answer to the assistant asking for a name; else what is left of a short sentence once
  the date, time, place and the request words are taken out ("Lunch with Sam tomorrow 1pm at Luna"
  → "Lunch with Sam"), a weaker rule.
* location: a street address ("2274 Shattuck Avenue", "5 Bon Air Rd # 114"), an introducer
  ("located at X", "the location is X"), or "at <Capitalised Name>" (weaker).
* attendees: e-mail addresses and "with <Name>( and <Name>)".

Each :class:`~calroute.slots.types.Found` names its rule; confidences are fitted per rule
(:mod:`calroute.slots.confidence`).
"""

from __future__ import annotations

import re
from typing import Iterator, Optional, Sequence

from .types import Found

_END = (r"(?=[.?!;,](?:\s|$)|[.?!;]$|\s+and\s+|\s*$|\s+(?:for|as)\s+(?:the|an|a|my)\s+(?:event|title|name|label|activity)\b"
        r"|\s+(?:which|that\s+will|that\s+is|on\s+my|in\s+my|to\s+my|into\s+my|to\s+to\s+my|please|along\s+with)\b"
        r"|\s+with\s+(?:a\s+|the\s+)?(?:start\s+)?(?:time|location|address)\b"
        r"|\s+in\s+the\s+(?:event|time|title|slot|morning|afternoon|evening|night)\b)")

_STRONG = (
    r"(?:please\s+)?(?:call|label|title|name)\s+"
    r"(?:(?:it|this|that)(?:\s+event)?|the\s+even(?:t)?)?\s*(?:as)?"
    r"|(?:make|set|put)\s+(?:the\s+)?(?:event\s+)?(?:title|name|label)(?:\s+(?:as|to))?"
    r"|(?:it\s+)?(?:should|would|will|can)\s+be\s+(?:called|named|titled|labell?ed)|to\s+be\s+(?:called|named|titled)"
    r"|be\s+named|be\s+called|(?:is\s+)?(?:called|named|titled|labell?ed)"
    r"|under\s+the\s+(?:name|title|label)(?:\s+of)?|by\s+the\s+name(?:\s+of)?|in\s+the\s+name(?:\s+of)?"
    r"|(?:the\s+)?(?:event\s+)?(?:name|title|label)(?:\s+(?:for|of)\s+(?:the|this)\s+event)?\s+(?:is|should\s+be|would\s+be|will\s+be|can\s+be|to\s+be|as|:)"
    r"|(?:to\s+)?my\s+calend[ae]r\s+(?:as|titled|called|named)|title|label"
)
_WEAK = (
    r"(?:please\s+)?(?:save|list|mark|note|schedule|add|put|enter|input|write|place|pencil\s+in)\s+"
    r"(?:(?:it|this|that)(?:\s+event)?|the\s+event)?\s*(?:down\s+)?(?:as|under|in)?"
)
_INTRO_STRONG = re.compile(r"(?<![\w])(?:" + _STRONG + r")\s+(?P<x>\S.*?)" + _END, re.IGNORECASE)
_INTRO_WEAK = re.compile(r"(?<![\w])(?:" + _WEAK + r")\s+(?P<x>\S.*?)" + _END, re.IGNORECASE)
_BAD_NAME_START = re.compile(r"(?:to|in|on|at|as|for|into|of|it|this|that|these|the\s+event|event|information|"
                             r"an?\s+event|is|are|be|my|your|the\s+calend[ae]r|calend[ae]r|day|time|and)\b", re.IGNORECASE)
# "Use X as the title", "Put X as the event title", "Put X for the event name"
_INTRO_AROUND = re.compile(
    r"(?<![\w])(?:use|put|add|enter|make|place|write|save)\s+(?:in\s+)?(?P<x>\S.*?)\s+(?:as|for)\s+(?:the|an|a|my)\s+"
    r"(?:event\s+|activity\s+)?(?:title|name|label)\b", re.IGNORECASE)
NAME_QUESTION = re.compile(r"\b(?:name|call|title|label)\b", re.IGNORECASE)

_STREET = (r"(?:street|st|avenue|ave|road|rd|drive|dr|lane|ln|boulevard|blvd|way|court|ct|place|pl|parkway|pkwy|"
           r"circle|cir|highway|hwy|plaza|square|sq|center|centre|terrace|ter|expressway|expy|real|row|alley|loop|"
           r"trail|path|walk|mall|broadway|embarcadero)")
_ADDRESS = re.compile(
    r"(?<![\w#:.])(?P<x>\d{1,6}[a-z]?\s+(?:(?!(?:at|in|on|and|for|am|pm|the\s+(?:morning|afternoon|evening|night))\b)[A-Za-z0-9'.-]+\s+){0,5}" + _STREET + r"\.?"
    r"(?:\s+(?:north|south|east|west|northeast|northwest|southeast|southwest))?"
    r"(?:,?\s*(?:#|suite|ste\.?|unit|apt\.?|apartment|building|bldg\.?|floor|fl\.?)\s*[\w-]+)?)(?![\w])",
    re.IGNORECASE)
_LOC_INTRO = re.compile(
    r"(?<![\w])(?:located\s+(?:at|in)|location\s+(?:of\s+(?:the|this)\s+event\s+)?(?:is|as|:)|address\s+(?:is|:)|"
    r"(?:the\s+)?(?:event|it|this)\s+(?:is|will\s+be)\s+(?:happening|held|taking\s+place)?\s*(?:at|in)|in\s+location|taking\s+place\s+at)"
    r"\s+(?P<x>(?:the\s+)?[\w#'][\w#' .-]*?)" + r"(?=[.?!;,](?:\s|$)|[.?!;]$|\s+and\s+|\s*$|\s+(?:at|for|on|from)\s+\d|\s+(?:at|on|in)\s+(?:the\s+)?(?:morning|afternoon|evening|night)\b)",
    re.IGNORECASE)
_AT_PROPER = re.compile(r"(?<![\w])(?:at|in)\s+(?P<x>(?:the\s+)?[A-Z][\w'&-]*(?:\s+(?:[A-Z][\w'&-]*|of|de|la))*)")
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63})+(?![\w-])")
_WITH = re.compile(r"(?<![\w])with\s+(?P<x>[A-Z][a-z'-]+(?:\s+[A-Z][a-z'-]+)?(?:(?:\s*,\s*|\s+and\s+)[A-Z][a-z'-]+(?:\s+[A-Z][a-z'-]+)?)*)")

_FILLER = re.compile(
    r"\b(?:please|can|could|would|will|you|i|i'd|we|like|want|wanna|to|add|put|schedule|set|book|create|make|"
    r"an|a|new|event|appointment\s+for|meeting\s+for|on|at|for|in|my|the|calend[ae]r|remind|me|about|of|it|this|"
    r"that|up|okay|ok|yes|yeah|sure|great|thanks|thank|and|is|be|from|by|around)\b",
    re.IGNORECASE)
_LEAD = re.compile(r"^(?:(?:please|can|could|would|will|you|i|we|'d|like|want|to|add|put|schedule|set\s+up|set|book|"
                   r"create|make|an?|new|event|me|remind|okay|ok|yes|yeah|sure|great|thanks|thank you|so)\b[\s,]*)+",
                   re.IGNORECASE)
_TRAIL = re.compile(r"(?:\s+(?:on|at|for|in|to|from|by|around|the|my|calend[ae]r|please|event|this|that|it|is))+\s*$",
                    re.IGNORECASE)
_NAMEISH = re.compile(r"[A-Za-z]")
_STOP_WORDS = {"it", "this", "that", "the", "event", "a", "an", "title", "name", "label", "something", "one", "yes",
               "no", "ok", "okay", "sure", "them", "me", "so", "appointment", "event information"}
_JUDGEMENT = re.compile(r"(?:correct|accurate|right|fine|good|ok|okay|perfect|wrong|great)\b", re.IGNORECASE)
_ANSWER_LEAD = re.compile(r"^(?:(?:yes|yeah|ok|okay|sure|please|just)[\s,!.]+)*(?:(?:it'?s|it\s+is|this\s+is|that'?s|that\s+is)\s+(?:a\s+|an\s+|the\s+)?|(?:please\s+)?(?:place|pencil\s+in|put|add|enter|input|write|make\s+it)\s+(?:in\s+)?(?:a\s+|an\s+|the\s+)?)",
                          re.IGNORECASE)
_LEFTOVER_BAD_START = re.compile(r"(?:it|it's|its|that|that's|this|the|yes|yeah|i|i'm|i'd|i'll|we|you|oh|so|do|does|"
                                 r"please|can|could|would|will|what|when|where|how|is|are|guess|think|in|on|at|for|by)\b",
                                 re.IGNORECASE)
_NAME_LEAD = re.compile(r"(?:(?:use|called|named|titled|as|a|an|if)\s+)+", re.IGNORECASE)
MAX_NAME_WORDS = 12
MAX_NAME_CHARS = 120


def _clean(text: str, start: int, end: int) -> Optional[tuple[int, int]]:
    """Trim spaces, quotes and trailing punctuation off ``text[start:end]``; None if nothing is left."""
    while start < end and text[start] in " \t\"'“”‘`[(":
        start += 1
    while end > start and text[end - 1] in " \t\"'“”’`.,;:!?)]":
        end -= 1
    return (start, end) if end > start else None


def _cut(start: int, end: int, blocks: Sequence[tuple[int, int]], text: str) -> int:
    """End the name before the first found time/date/address (and the connector before it)."""
    for s, e in sorted(blocks):
        if start < s < end:
            head = text[start:s]
            head = re.sub(r"(?:\s+(?:at|for|on|in|starting|starts|from|the|and|,|to|is|it|set|make|time))+\s*$", "",
                          head, flags=re.IGNORECASE)
            return start + len(head)
        if s <= start < e:
            return start
    return end


def _ok_name(value: str) -> bool:
    words = value.split()
    return bool(words) and len(words) <= MAX_NAME_WORDS and len(value) <= MAX_NAME_CHARS \
        and _NAMEISH.search(value) is not None and value.lower() not in _STOP_WORDS


def find_summary(text: str, turn: int = 0, *, blocks: Sequence[tuple[int, int]] = (),
                 asked_for_name: bool = False) -> list[Found]:
    """Title candidates in ``text``, best first. ``blocks``: spans already taken by a date, a time
    or an address (a name stops before them). ``asked_for_name``: the assistant's last turn asked
    for a name, so a short whole answer is one."""
    out: list[Found] = []
    for rule, pat in (("summary:around", _INTRO_AROUND), ("summary:intro", _INTRO_STRONG),
                      ("summary:verb", _INTRO_WEAK)):
        for m in pat.finditer(text):
            s, e = m.span("x")
            e = _cut(s, e, blocks, text)
            c = _clean(text, s, e)
            if not c:
                continue
            value = text[c[0]:c[1]]
            lead = _NAME_LEAD.match(value)
            if lead:  # "as a Stylist Visit", "use doctor appointment", "can be called Property"
                value = value[lead.end():]
                c = (c[1] - len(value), c[1])
            if _BAD_NAME_START.match(value) or not _ok_name(value):
                continue
            out.append(Found(value, rule, turn, c[0], c[1], value))
        if out:
            break
    if out:
        return out
    stripped = text.strip()
    if asked_for_name and stripped and len(stripped.split()) <= MAX_NAME_WORDS:
        s = text.index(stripped[0])
        lead = _ANSWER_LEAD.match(text, s)
        if lead and lead.end() > s:
            s = lead.end()
        c = _clean(text, s, s + len(text[s:].rstrip()))
        if c:
            e = _cut(c[0], c[1], blocks, text)
            c = _clean(text, c[0], e)
        if c:
            value = text[c[0]:c[1]]
            if _ok_name(value):
                out.append(Found(value, "summary:answer", turn, c[0], c[1], value))
                return out
    left = _leftover(text, blocks)
    if left:
        out.append(Found(text[left[0]:left[1]], "summary:leftover", turn, left[0], left[1], text[left[0]:left[1]]))
    return out


def _leftover(text: str, blocks: Sequence[tuple[int, int]]) -> Optional[tuple[int, int]]:
    """The longest stretch of ``text`` outside ``blocks`` that still holds a name once the request
    words around it are dropped ("Lunch with Sam" of "Lunch with Sam tomorrow 1pm at Luna")."""
    if len(text) > 300:
        return None
    cuts = sorted(blocks)
    pieces, pos = [], 0
    for s, e in cuts:
        if s > pos:
            pieces.append((pos, s))
        pos = max(pos, e)
    pieces.append((pos, len(text)))
    best = None
    for s, e in pieces:
        seg = text[s:e]
        # the first sentence or clause of the piece
        mm = re.match(r"[^.?!;]*", seg)
        seg_e = s + (mm.end() if mm else len(seg))
        lead = _LEAD.match(text[s:seg_e])
        s2 = s + (lead.end() if lead else 0)
        t = text[s2:seg_e]
        tr = _TRAIL.search(t)
        e2 = s2 + (tr.start() if tr else len(t))
        c = _clean(text, s2, e2)
        if not c:
            continue
        value = text[c[0]:c[1]]
        if not _ok_name(value) or not _FILLER.sub("", value).strip(" ,'") or _LEFTOVER_BAD_START.match(value):
            continue
        if best is None or (c[1] - c[0]) > (best[1] - best[0]):
            best = c
    return best


def find_addresses(text: str, turn: int = 0) -> list[Found]:
    out = []
    for m in _ADDRESS.finditer(text):
        c = _clean(text, *m.span("x"))
        if c:
            out.append(Found(text[c[0]:c[1]], "location:address", turn, c[0], c[1], text[c[0]:c[1]]))
    return out


def find_location(text: str, turn: int = 0, *, blocks: Sequence[tuple[int, int]] = (),
                  names: Sequence[tuple[int, int]] = ()) -> list[Found]:
    """Location candidates, best first: an address, a location introducer, "at <Proper Name>".
    ``names``: spans taken by the title ("Movie at Century 16" holds no location)."""
    def inside(s: int, e: int) -> bool:
        return any(a <= s and e <= b for a, b in names)

    def spans(pattern: re.Pattern, *, clear_of_blocks: bool) -> Iterator[tuple[int, int, str]]:
        """Each match's ``x`` group, cut at the next block and cleaned, outside the title's spans
        (and, with ``clear_of_blocks``, overlapping no block): ``(start, end, value)``."""
        for m in pattern.finditer(text):
            s, e = m.span("x")
            c = _clean(text, s, _cut(s, e, blocks, text))
            if not c or inside(*c) or (clear_of_blocks and any(a < c[1] and c[0] < b for a, b in blocks)):
                continue
            yield c[0], c[1], text[c[0]:c[1]]

    out = [f for f in find_addresses(text, turn) if not inside(f.start, f.end)]
    if out:
        return out
    out = [Found(v, "location:intro", turn, s, e, v) for s, e, v in spans(_LOC_INTRO, clear_of_blocks=False)
           if _ok_name(v) and len(v.split()) <= 8 and not _JUDGEMENT.match(v)]
    if out:
        return out
    return [Found(v, "location:at_proper", turn, s, e, v) for s, e, v in spans(_AT_PROPER, clear_of_blocks=True)
            if _ok_name(v) and len(v.split()) <= 6]


def find_attendees(text: str, turn: int = 0) -> list[Found]:
    """E-mail addresses, and the names after "with" (one :class:`Found` a person)."""
    out = [Found(m.group(0), "attendees:email", turn, m.start(), m.end(), m.group(0)) for m in _EMAIL.finditer(text)]
    for m in _WITH.finditer(text):
        base = m.start("x")
        for part in re.finditer(r"[A-Z][a-z'-]+(?:\s+[A-Z][a-z'-]+)?", m.group("x")):
            s, e = base + part.start(), base + part.end()
            out.append(Found(text[s:e], "attendees:with", turn, s, e, text[s:e]))
    return out
