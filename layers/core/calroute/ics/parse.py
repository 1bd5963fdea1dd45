"""Reading the bytes: decoding, the line-level pre-scan that rejects ICS bombs before the parser builds
a tree, and the parse into VCALENDAR components (``icalendar``)."""

from __future__ import annotations

import re
from typing import Optional

import icalendar

from ..errors import InvalidInput, PayloadTooLarge

MAX_DEPTH = 6
"""Deepest component nesting accepted (VCALENDAR > VEVENT > VALARM is 3)."""
MAX_COMPONENTS = 50_000
"""Most ``BEGIN:`` lines accepted in one file."""
_BEGIN_RE = re.compile(rb"^[ \t]*BEGIN[ \t]*:", re.IGNORECASE)
_END_RE = re.compile(rb"^[ \t]*END[ \t]*:", re.IGNORECASE)


def _decode(data: bytes | str, max_bytes: Optional[int]) -> str:
    if isinstance(data, str):
        raw = data.encode("utf-8", errors="surrogatepass")
    elif isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    else:
        raise InvalidInput("the body must be iCalendar text", field="body")
    if max_bytes is not None and len(raw) > max_bytes:
        raise PayloadTooLarge(
            f"the calendar is {len(raw)} bytes; at most max_bytes={max_bytes} are allowed", field="body"
        )
    _prescan(raw)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # iCalendar is UTF-8 by RFC 5545, but old exporters write Windows-1252/Latin-1.
        return raw.decode("cp1252", errors="replace")


def _prescan(raw: bytes) -> None:
    """Reject component bombs before the parser builds a tree (counts lines, reads no values)."""
    depth = max_depth = count = 0
    for line in raw.splitlines():
        if _BEGIN_RE.match(line):
            count += 1
            depth += 1
            max_depth = max(max_depth, depth)
            if depth > MAX_DEPTH:
                raise InvalidInput(
                    f"components are nested more than MAX_DEPTH={MAX_DEPTH} levels deep (ICS bomb)",
                    field="body", code="ics_too_complex",
                )
            if count > MAX_COMPONENTS:
                raise InvalidInput(
                    f"the calendar has more than MAX_COMPONENTS={MAX_COMPONENTS} components (ICS bomb)",
                    field="body", code="ics_too_complex",
                )
        elif _END_RE.match(line):
            depth = max(0, depth - 1)
    if count == 0:
        raise InvalidInput("the body is not an iCalendar file (no BEGIN:VCALENDAR)", field="body",
                           code="not_icalendar")


def _calendars(text: str) -> list[icalendar.Calendar]:
    try:
        comps = icalendar.Calendar.from_ical(text, multiple=True)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, RecursionError) as exc:
        raise InvalidInput(f"the body is not valid iCalendar: {str(exc)[:200]}", field="body",
                           code="not_icalendar") from None
    cals = [c for c in comps if getattr(c, "name", None) == "VCALENDAR"]
    if not cals:
        raise InvalidInput("the body is not an iCalendar file (no complete VCALENDAR component)",
                           field="body", code="not_icalendar")
    return cals
