"""The users table behind :class:`calroute.ports.UserStore`: per-user profile counters (sk
``PROFILE``), calendars (``CAL#<calendarId>``) and corrections (``CORR#<ts>#<eventId>``)."""

from __future__ import annotations

from typing import Iterator, Optional

from ...retrain import CALENDAR_COUNT_PREFIX
from ...schema import CalendarInfo
from .base import TableAdapter, from_ddb, now_iso, query_all, storage_errors, to_ddb, translated


class DynamoUserStore(TableAdapter):
    """Per-user profile counters, calendars and corrections."""

    @translated
    def bump(self, user_id: str, *, events: int = 0, corrections: int = 0,
             calendars: Optional[dict[str, int]] = None) -> None:
        """Atomically add to the user's counters (creating the profile on first use); ``calendars``
        adds new events per calendar (profile attributes ``calev#<calendarId>``)."""
        adds = ["events_total :e", "corrections_total :c"]
        values: dict = {":e": events, ":c": corrections, ":u": now_iso()}
        names: dict[str, str] = {}
        for i, (cal, n) in enumerate(sorted((calendars or {}).items())):
            adds.append(f"#c{i} :c{i}")
            names[f"#c{i}"] = f"{CALENDAR_COUNT_PREFIX}{cal}"
            values[f":c{i}"] = int(n)
        kwargs: dict = {"ExpressionAttributeNames": names} if names else {}
        self.table.update_item(
            Key={"user_id": user_id, "sk": "PROFILE"},
            UpdateExpression="ADD " + ", ".join(adds) + " SET updated_at = :u, "
            "created_at = if_not_exists(created_at, :u)",
            ExpressionAttributeValues=values, **kwargs,
        )

    @translated
    def profile(self, user_id: str) -> dict:
        item = self.table.get_item(Key={"user_id": user_id, "sk": "PROFILE"}).get("Item")
        return from_ddb(item) if item else {}

    def iter_profiles(self, page_size: int = 500) -> Iterator[dict]:
        """Every user's profile (a paged scan), for the training planner."""
        kwargs: dict = {
            "FilterExpression": "sk = :p",
            "ExpressionAttributeValues": {":p": "PROFILE"},
            "Limit": page_size,
        }
        while True:
            with storage_errors():
                page = self.table.scan(**kwargs)
            for item in page.get("Items", []):
                yield from_ddb(item)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    @translated
    def put_calendar(self, user_id: str, cal: CalendarInfo) -> None:
        self.table.put_item(
            Item={"user_id": user_id, "sk": f"CAL#{cal.calendar_id}", "calendar_id": cal.calendar_id,
                  "name": cal.name, "description": cal.description, "updated_at": now_iso()}
        )

    @translated
    def calendars(self, user_id: str) -> list[CalendarInfo]:
        items = query_all(
            self.table,
            KeyConditionExpression="user_id = :u AND begins_with(sk, :p)",
            ExpressionAttributeValues={":u": user_id, ":p": "CAL#"},
        )
        return [CalendarInfo(calendar_id=i["calendar_id"], name=i.get("name", ""),
                             description=i.get("description", "")) for i in items]

    @translated
    def record_correction(self, user_id: str, event_id: str, *, old: Optional[str], new: str,
                          prediction: Optional[dict]) -> dict:
        ts = now_iso()
        item = {"user_id": user_id, "sk": f"CORR#{ts}#{event_id}", "event_id": event_id,
                "from_calendar": old or "", "to_calendar": new, "created_at": ts}
        if prediction:
            item.update({
                "predicted_calendar": prediction.get("calendar_id") or "",
                "predicted_method": prediction.get("method", ""),
                "predicted_model_version": prediction.get("model_version") or "",
                "predicted_source": prediction.get("source") or "log",
            })
        self.table.put_item(Item=to_ddb(item))
        return item
