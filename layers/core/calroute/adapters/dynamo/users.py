"""The users table behind :class:`calroute.ports.UserStore`: per-user profile counters (sk
``PROFILE``), the user's settings (``SETTINGS``), calendars (``CAL#<calendarId>``), removed-calendar
tombstones (``CALDEL#<calendarId>``) and corrections (``CORR#<ts>#<eventId>``)."""

from __future__ import annotations

from typing import Iterable, Iterator, Optional

from botocore.exceptions import ClientError

from ...retrain import CALENDAR_COUNT_PREFIX
from ...schema import CalendarInfo
from .base import (TableAdapter, delete_keys, is_condition_failed, from_ddb, now_iso, query_all, query_keys, storage_errors, to_ddb,
                   translated)

#: sort-key prefix of the removed-calendar tombstones
REMOVED_PREFIX = "CALDEL#"



def correction_item(user_id: str, event_id: str, *, old: Optional[str], new: str, prediction: Optional[dict],
                    ts: str) -> dict:
    """The stored record of one correction (``CORR#<ts>#<event id>``), with what had been predicted when
    the prediction log or the client's echo had it. The in-memory store writes the same record."""
    item = {"user_id": user_id, "sk": f"CORR#{ts}#{event_id}", "event_id": event_id,
            "from_calendar": old or "", "to_calendar": new, "created_at": ts}
    if prediction:
        item.update({
            "predicted_calendar": prediction.get("calendar_id") or "",
            "predicted_method": prediction.get("method", ""),
            "predicted_model_version": prediction.get("model_version") or "",
            "predicted_source": prediction.get("source") or "log",
        })
    return item

class DynamoUserStore(TableAdapter):
    """Per-user profile counters, calendars and corrections."""

    @translated
    def bump(self, user_id: str, *, events: int = 0, corrections: int = 0,
             calendars: Optional[dict[str, int]] = None, misses: int = 0, labels: int = 0) -> None:
        """Atomically add to the user's counters (creating the profile on first use); ``calendars``
        adds new events per calendar (profile attributes ``calev#<calendarId>``), ``labels`` to
        ``labels_total``."""
        adds = ["events_total :e", "corrections_total :c"]
        values: dict = {":e": events, ":c": corrections, ":u": now_iso()}
        if misses:
            adds.append("confident_misses_total :m")
            values[":m"] = misses
        if labels:
            adds.append("labels_total :l")
            values[":l"] = labels
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
    def settings(self, user_id: str) -> dict:
        items = list(query_all(self.table, KeyConditionExpression="user_id = :u AND sk = :s",
                               ExpressionAttributeValues={":u": user_id, ":s": "SETTINGS"}))
        return {k: v for k, v in from_ddb(items[0]).items() if k not in ("user_id", "sk")} if items else {}

    @translated
    def put_settings(self, user_id: str, values: dict) -> dict:
        item = {**values, "updated_at": now_iso()}
        self.table.put_item(Item=to_ddb({**item, "user_id": user_id, "sk": "SETTINGS"}))
        return item

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
        item = correction_item(user_id, event_id, old=old, new=new, prediction=prediction, ts=now_iso())
        self.table.put_item(Item=to_ddb(item))
        return item

    # ------------------------------------------------------------------ the user's data lifecycle

    @translated
    def corrections(self, user_id: str) -> list[dict]:
        items = query_all(
            self.table,
            KeyConditionExpression="user_id = :u AND begins_with(sk, :p)",
            ExpressionAttributeValues={":u": user_id, ":p": "CORR#"},
        )
        return [from_ddb(i) for i in items]

    @translated
    def delete_corrections(self, user_id: str, event_ids: Iterable[str]) -> int:
        wanted = set(event_ids)
        keys = [{"user_id": user_id, "sk": i["sk"]}
                for i in query_keys(self.table, "user_id", user_id, "sk", prefix="CORR#", extra=("event_id",))
                if i.get("event_id") in wanted]
        return delete_keys(self.t.ddb.meta.client, self.name, keys)

    @translated
    def delete_calendar(self, user_id: str, calendar_id: str) -> bool:
        old = self.table.delete_item(Key={"user_id": user_id, "sk": f"CAL#{calendar_id}"},
                                     ReturnValues="ALL_OLD").get("Attributes")
        try:  # the per-calendar counter, else the retraining policy would count it as a new calendar
            self.table.update_item(
                Key={"user_id": user_id, "sk": "PROFILE"}, UpdateExpression="REMOVE #c",
                ConditionExpression="attribute_exists(sk)",
                ExpressionAttributeNames={"#c": f"{CALENDAR_COUNT_PREFIX}{calendar_id}"})
        except ClientError as exc:
            if not is_condition_failed(exc):
                raise
        return old is not None

    @translated
    def mark_calendar_removed(self, user_id: str, calendar_id: str, *, at: str) -> None:
        self.table.put_item(Item={"user_id": user_id, "sk": f"{REMOVED_PREFIX}{calendar_id}",
                                  "calendar_id": calendar_id, "removed_at": at})

    @translated
    def removed_calendars(self, user_id: str) -> dict[str, str]:
        # strongly consistent: a predict container re-reading it after a calendar DELETE answered
        # must see the tombstone (calroute.removed)
        items = query_keys(self.table, "user_id", user_id, "sk", prefix=REMOVED_PREFIX,
                           extra=("calendar_id", "removed_at"), consistent=True)
        return {i["calendar_id"]: str(i.get("removed_at") or "") for i in items}

    @translated
    def request_retrain(self, user_id: str, *, at: str, reason: str) -> None:
        self.table.update_item(
            Key={"user_id": user_id, "sk": "PROFILE"},
            UpdateExpression="SET retrain_requested_at = :t, retrain_reason = :r, updated_at = :t, "
            "created_at = if_not_exists(created_at, :t)",
            ExpressionAttributeValues={":t": at, ":r": reason[:200]},
        )

    @translated
    def delete_user(self, user_id: str) -> int:
        keys = query_keys(self.table, "user_id", user_id, "sk")
        # PROFILE last: a run killed half-way leaves the user visible to the planner, not half-listed
        keys.sort(key=lambda k: k["sk"] == "PROFILE")
        return delete_keys(self.t.ddb.meta.client, self.name, keys)
