"""The predictions table behind :class:`calroute.ports.PredictionLog`: one item per classified event
(pk ``user_id``, sk ``event_id``; latest wins), TTL ``expires_at``."""

from __future__ import annotations

import time
from typing import Iterable, Optional

from .base import (TableAdapter, Tables, batch_write, delete_keys, from_ddb, now_iso, query_all, query_keys,
                   storage_errors, to_ddb, translated)


class DynamoPredictionLog(TableAdapter):
    """One item per classified event (latest wins), 90-day TTL; corrections mark ``was_correct``."""

    def __init__(self, table_name: str, ttl_days: int = 90, tables: Tables | None = None):
        super().__init__(table_name, tables)
        self.ttl_days = ttl_days

    @translated
    def put_many(self, user_id: str, records: list[dict]) -> None:
        expires = int(time.time() + self.ttl_days * 86400)
        reqs = []
        for r in records:
            item = {"user_id": user_id, "expires_at": expires, "created_at": now_iso(), **r}
            reqs.append({"PutRequest": {"Item": to_ddb({k: v for k, v in item.items() if v is not None})}})
        if reqs:
            batch_write(self.t.ddb.meta.client, self.name, reqs)

    @translated
    def get(self, user_id: str, event_id: str) -> Optional[dict]:
        item = self.table.get_item(Key={"user_id": user_id, "event_id": event_id}).get("Item")
        return from_ddb(item) if item else None

    @translated
    def mark(self, user_id: str, event_id: str, correct_calendar: str) -> Optional[dict]:
        """Set ``was_correct`` on the logged prediction of ``event_id`` (if it was logged)."""
        item = self.get(user_id, event_id)
        if item is None:
            return None
        was_correct = item.get("calendar_id") == correct_calendar
        self.table.update_item(
            Key={"user_id": user_id, "event_id": event_id},
            UpdateExpression="SET was_correct = :w, corrected_to = :c, corrected_at = :t",
            ExpressionAttributeValues={":w": was_correct, ":c": correct_calendar, ":t": now_iso()},
        )
        item.update(was_correct=was_correct, corrected_to=correct_calendar)
        return item

    @translated
    def since(self, user_id: str, since_iso: str, limit: Optional[int] = None) -> list[dict]:
        """The user's logged predictions created at/after ``since_iso`` (at most ``limit``)."""
        out = []
        for i in query_all(
            self.table,
            KeyConditionExpression="user_id = :u",
            FilterExpression="created_at >= :s",
            ExpressionAttributeValues={":u": user_id, ":s": since_iso},
        ):
            out.append(from_ddb(i))
            if limit is not None and len(out) >= limit:
                break
        return out

    #: what the operator scans read: aggregates only — never the user id, event id or reason text
    SCAN_FIELDS = ("method", "cohort", "latency_ms", "llm_usd", "was_correct", "confidence", "created_at",
                   "model_version", "sample_rate")

    def scan_since(self, since_iso: str, *, max_items: int, page_size: int = 1000,
                   max_pages: Optional[int] = None) -> tuple[list[dict], dict]:
        """A bounded, paged Scan of the whole log for operator aggregates (stats, experiments).

        Returns ``(items, info)``: at most ``max_items`` items created at/after ``since_iso``,
        projected to :attr:`SCAN_FIELDS` (no user id: aggregates never carry a per-user
        dimension), and ``info = {"scanned", "pages", "truncated"}`` (``truncated``: the bound was
        hit before the end of the table, the figures cover a sample).
        """
        names = {f"#f{i}": f for i, f in enumerate(self.SCAN_FIELDS)}
        kwargs: dict = {
            "FilterExpression": "#c >= :s",
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": {**names, "#c": "created_at"},
            "ExpressionAttributeValues": {":s": since_iso},
            "Limit": page_size,
        }
        items: list[dict] = []
        scanned = pages = 0
        truncated = False
        while True:
            with storage_errors():
                page = self.table.scan(**kwargs)
            pages += 1
            scanned += int(page.get("ScannedCount", 0))
            for it in page.get("Items", []):
                if len(items) >= max_items:
                    truncated = True
                    break
                items.append(from_ddb(it))
            more = "LastEvaluatedKey" in page
            if truncated or not more:
                truncated = truncated or (more and len(items) >= max_items)
                break
            if max_pages is not None and pages >= max_pages:
                truncated = True
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items, {"scanned": scanned, "pages": pages, "truncated": truncated}

    # ------------------------------------------------------------------ the user's data lifecycle

    @translated
    def delete(self, user_id: str, event_ids: Iterable[str]) -> int:
        n = 0
        for e in dict.fromkeys(event_ids):
            old = self.table.delete_item(Key={"user_id": user_id, "event_id": e}, ReturnValues="ALL_OLD")
            n += bool(old.get("Attributes"))
        return n

    @translated
    def delete_user(self, user_id: str) -> int:
        keys = query_keys(self.table, "user_id", user_id, "event_id")
        return delete_keys(self.t.ddb.meta.client, self.name, keys)
