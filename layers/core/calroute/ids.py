"""Identifier validation. User, calendar and event ids become S3 keys and DynamoDB keys, so they
are restricted to a safe charset: no ``/``, no ``..``, no whitespace or control characters."""

from __future__ import annotations

import hashlib
import re

from .errors import InvalidInput

USER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,63}$")
CALENDAR_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,127}$")
EVENT_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:@+=-]{0,255}$")
VERSION_RE = re.compile(r"^v[0-9]{14}-[0-9a-f]{6}$")

USER_ID_PATTERN = USER_ID_RE.pattern
CALENDAR_ID_PATTERN = CALENDAR_ID_RE.pattern
EVENT_ID_PATTERN = EVENT_ID_RE.pattern
VERSION_PATTERN = VERSION_RE.pattern


def _check(value: object, regex: re.Pattern, field: str, what: str) -> str:
    if not isinstance(value, str) or not regex.fullmatch(value) or ".." in value:
        shown = repr(value)[:80]
        raise InvalidInput(
            f"{field} {shown} is not a valid {what}: it must match {regex.pattern} and not contain '..'",
            field=field,
        )
    return value


def user_id(value: object, field: str = "userId") -> str:
    return _check(value, USER_ID_RE, field, "user id")


def calendar_id(value: object, field: str = "calendarId") -> str:
    return _check(value, CALENDAR_ID_RE, field, "calendar id")


def event_id(value: object, field: str = "eventId") -> str:
    return _check(value, EVENT_ID_RE, field, "event id")


def model_version(value: object, field: str = "version") -> str:
    return _check(value, VERSION_RE, field, "model version")


def is_valid_event_id(value: str) -> bool:
    return bool(EVENT_ID_RE.fullmatch(value)) and ".." not in value


def derived_event_id(*parts: str) -> str:
    """A safe, deterministic event id for sources whose own ids are unusable (ICS UIDs with spaces,
    missing UIDs): ``h-`` + 32 hex chars of blake2b over the parts."""
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=16).hexdigest()
    return f"h-{digest}"


def hashed_user(user: str) -> str:
    """User id as it appears in logs: a short, stable, non-reversible digest."""
    return hashlib.blake2b(user.encode("utf-8"), digest_size=6).hexdigest()
