"""The usage table behind :class:`calroute.ports.UsageLedger`: LLM calls, tokens and USD summed
per user and UTC day (pk ``user_id`` | ``_global``, sk ``day`` = ``yyyy-mm-dd``), with a TTL."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal
from typing import Optional

from ...ports import GLOBAL_PK
from .base import TableAdapter, delete_keys, from_ddb, query_all, query_keys, translated_methods

#: ledger rows expire after this many days
TTL_DAYS = 400


@translated_methods
class DynamoUsageLedger(TableAdapter):
    """LLM tokens and USD summed per user and UTC day (and globally), with a TTL."""

    @staticmethod
    def today() -> str:
        return datetime.now(timezone.utc).strftime("%Y-%m-%d")

    def add(self, user_id: str, *, usd: float, input_tokens: int, output_tokens: int, calls: int = 1) -> None:
        day = self.today()
        expires = int(time.time() + TTL_DAYS * 86400)
        for pk in (user_id, GLOBAL_PK):
            self.table.update_item(
                Key={"user_id": pk, "day": day},
                UpdateExpression="ADD usd :d, input_tokens :i, output_tokens :o, calls :n SET expires_at = :x",
                ExpressionAttributeValues={":d": Decimal(repr(round(usd, 8))), ":i": input_tokens,
                                           ":o": output_tokens, ":n": calls, ":x": expires},
            )

    def spent(self, user_id: str, day: Optional[str] = None) -> float:
        item = self.table.get_item(Key={"user_id": user_id, "day": day or self.today()}).get("Item")
        return float(item.get("usd", 0)) if item else 0.0

    def days(self, user_id: str, since_day: str) -> list[dict]:
        items = query_all(
            self.table,
            KeyConditionExpression="user_id = :u AND #d >= :s",
            ExpressionAttributeNames={"#d": "day"},
            ExpressionAttributeValues={":u": user_id, ":s": since_day},
        )
        return [from_ddb(i) for i in items]

    # ------------------------------------------------------------------ the user's data lifecycle

    def delete_user(self, user_id: str) -> int:
        if user_id == GLOBAL_PK:  # the service-wide totals are not a user's
            return 0
        keys = query_keys(self.table, "user_id", user_id, "day")
        return delete_keys(self.t.ddb.meta.client, self.name, keys)
