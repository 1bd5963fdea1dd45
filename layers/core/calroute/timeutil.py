"""The one lenient ISO 8601 timestamp parser for stored timestamps (registry records, run records,
``updated_at``): stdlib only, never raises.

Input validation of API payloads is :func:`calroute.schema.parse_when`'s job (it raises with the
field's name, knows date-only values and time zones); this is for values calroute wrote itself.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional


def parse_ts(value: object) -> Optional[datetime]:
    """``value`` as an aware datetime (a naive one is taken as UTC); None for None, ``""``, a
    non-string or text that is not ISO 8601. A ``datetime`` is passed through (naive → UTC)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


__all__ = ["parse_ts"]
