"""The registry table behind :class:`calroute.ports.ModelRegistry`: model versions per user (sk
``MODEL#<version>``), the ACTIVE pointer (changed only by conditional writes), the audit trail
(``AUDIT#<ts>#<rand>``), the last run the data gates stopped (``GATES``) and the training-run
records (pk ``_run``)."""

from __future__ import annotations

import random
from typing import Any, Optional

from botocore.exceptions import ClientError

from ...errors import Conflict, NotFound, ServiceUnavailable
from ...ports import ERASURE_PK, RUN_PK
from .base import (TableAdapter, delete_keys, from_ddb, is_condition_failed, now_iso, query_all, query_keys, to_ddb,
                   translated_methods)



def active_pointer(user_id: str, record: dict, *, expected_version: Optional[str], ts: str) -> dict:
    """The ACTIVE item a promotion or rollback writes: what serving needs of ``record`` (key, sha256,
    threshold, spec, labels) and the version it replaces. The in-memory registry writes the same item."""
    return {
        "user_id": user_id, "sk": "ACTIVE", "version": record["version"],
        "s3_key": record["s3_key"], "sha256": record["sha256"],
        "threshold": record["threshold"], "feature_spec": record["feature_spec"],
        "labels": record.get("labels", []), "promoted_at": ts,
        "previous_version": expected_version or "",
    }

@translated_methods
class DynamoRegistry(TableAdapter):
    """Model versions per user and the ACTIVE pointer, changed only by conditional writes. Every
    public method translates throttling into :class:`~calroute.errors.ServiceUnavailable`
    (:func:`~.base.translated_methods`)."""

    def put_version(self, user_id: str, version: str, record: dict) -> None:
        item = {"user_id": user_id, "sk": f"MODEL#{version}", "version": version,
                "created_at": now_iso(), **record}
        item.setdefault("status", "candidate")
        try:
            self.table.put_item(Item=to_ddb(item), ConditionExpression="attribute_not_exists(sk)")
        except ClientError as exc:
            if is_condition_failed(exc):
                raise Conflict(f"model version {version} is already registered", field="version",
                               code="version_exists") from None
            raise

    def get_version(self, user_id: str, version: str) -> Optional[dict]:
        item = self.table.get_item(Key={"user_id": user_id, "sk": f"MODEL#{version}"}).get("Item")
        return from_ddb(item) if item else None

    def set_status(self, user_id: str, version: str, status: str, reason: str = "", **extra: Any) -> None:
        names = {"#s": "status"}
        values = {":s": status, ":r": reason, ":u": now_iso()}
        sets = ["#s = :s", "status_reason = :r", "status_at = :u"]
        for i, (k, v) in enumerate(extra.items()):
            names[f"#x{i}"] = k
            values[f":x{i}"] = to_ddb(v)
            sets.append(f"#x{i} = :x{i}")
        try:
            self.table.update_item(
                Key={"user_id": user_id, "sk": f"MODEL#{version}"},
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_exists(sk)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                raise NotFound(f"model version {version} not found", field="version") from None
            raise

    def versions(self, user_id: str) -> list[dict]:
        items = query_all(
            self.table,
            KeyConditionExpression="user_id = :u AND begins_with(sk, :p)",
            ExpressionAttributeValues={":u": user_id, ":p": "MODEL#"},
        )
        return sorted((from_ddb(i) for i in items), key=lambda r: r["version"])

    def active(self, user_id: str, consistent: bool = False) -> Optional[dict]:
        item = self.table.get_item(Key={"user_id": user_id, "sk": "ACTIVE"},
                                   ConsistentRead=consistent).get("Item")
        return from_ddb(item) if item else None

    def activate(self, user_id: str, record: dict, *, expected_version: Optional[str], actor: str,
                 reason: str, action: str = "promote") -> dict:
        """Point ACTIVE at ``record`` iff it still points at ``expected_version`` (None: no pointer).

        Two racing promotions: exactly one wins, the other gets :class:`Conflict`. The old version is
        archived, the new one marked active, and an audit item records who, when and why.
        """
        ts = now_iso()
        pointer = active_pointer(user_id, record, expected_version=expected_version, ts=ts)
        if expected_version is None:
            cond = {"ConditionExpression": "attribute_not_exists(sk)"}
        else:
            cond = {"ConditionExpression": "version = :ev", "ExpressionAttributeValues": {":ev": expected_version}}
        try:
            self.table.put_item(Item=to_ddb(pointer), **cond)
        except ClientError as exc:
            if is_condition_failed(exc):
                raise Conflict(
                    f"the active model changed concurrently (expected {expected_version or 'none'})",
                    code="active_changed",
                ) from None
            raise
        self.set_status(user_id, record["version"], "active", reason, promoted_at=ts)
        if expected_version and expected_version != record["version"]:
            try:
                self.set_status(user_id, expected_version, "archived", f"replaced by {record['version']}")
            except (NotFound, ServiceUnavailable, ClientError):
                pass  # the old version record may have been removed; the pointer is what matters
        self.audit(user_id, action=action, actor=actor, reason=reason,
                   from_version=expected_version or "", to_version=record["version"])
        return from_ddb(pointer)

    def audit(self, user_id: str, **fields: Any) -> None:
        ts = now_iso()
        self.table.put_item(Item=to_ddb({"user_id": user_id, "sk": f"AUDIT#{ts}#{random.randrange(16**4):04x}",
                                         "at": ts, **fields}))

    def put_gate_skip(self, user_id: str, record: dict) -> None:
        self.table.put_item(Item=to_ddb({**record, "user_id": user_id, "sk": "GATES"}))

    def gate_skip(self, user_id: str) -> Optional[dict]:
        return from_ddb(self.table.get_item(Key={"user_id": user_id, "sk": "GATES"}).get("Item"))  # None: none

    #: the only attributes the training planner writes (its IAM grant is limited to them)
    DRIFT_ATTRIBUTES = ("drift", "drifted", "drift_at")

    def mark_drift(self, user_id: str, version: str, report: dict, *, at: str) -> bool:
        """Store a drift report on ACTIVE (iff it still points at ``version``) and on the version
        record. Returns False when ACTIVE changed meanwhile (a newer model: the report is stale)."""
        values = {":d": to_ddb(report), ":f": bool(report.get("drifted")), ":t": at, ":v": version}
        names = {"#d": "drift", "#f": "drifted", "#t": "drift_at", "#v": "version"}
        try:
            self.table.update_item(
                Key={"user_id": user_id, "sk": "ACTIVE"},
                UpdateExpression="SET #d = :d, #f = :f, #t = :t",
                ConditionExpression="#v = :v",
                ExpressionAttributeNames=names, ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if is_condition_failed(exc):
                return False
            raise
        try:
            self.table.update_item(
                Key={"user_id": user_id, "sk": f"MODEL#{version}"},
                UpdateExpression="SET #d = :d, #f = :f, #t = :t",
                ConditionExpression="attribute_exists(#v)",
                ExpressionAttributeNames=names, ExpressionAttributeValues={k: v for k, v in values.items() if k != ":v"},
            )
        except ClientError as exc:
            if not is_condition_failed(exc):
                raise
        return True

    def audit_trail(self, user_id: str) -> list[dict]:
        items = query_all(
            self.table,
            KeyConditionExpression="user_id = :u AND begins_with(sk, :p)",
            ExpressionAttributeValues={":u": user_id, ":p": "AUDIT#"},
        )
        return [from_ddb(i) for i in items]

    # --- training-run records ---
    def put_run(self, run_id: str, record: dict) -> None:
        self.table.put_item(Item=to_ddb({"user_id": RUN_PK, "sk": run_id, "run_id": run_id, **record}))

    def get_run(self, run_id: str) -> Optional[dict]:
        item = self.table.get_item(Key={"user_id": RUN_PK, "sk": run_id}).get("Item")
        return from_ddb(item) if item else None

    def runs(self, limit: int = 20) -> list[dict]:
        page = self.table.query(KeyConditionExpression="user_id = :u", ExpressionAttributeValues={":u": RUN_PK},
                                ScanIndexForward=False, Limit=limit)
        return [from_ddb(i) for i in page.get("Items", [])]

    # ------------------------------------------------------------------ the user's data lifecycle

    def delete_user(self, user_id: str) -> int:
        n = 0
        # the pointer first: from here on no container loads the user's model (revalidation says none)
        if self.table.delete_item(Key={"user_id": user_id, "sk": "ACTIVE"}, ReturnValues="ALL_OLD").get("Attributes"):
            n += 1
        keys = [k for k in query_keys(self.table, "user_id", user_id, "sk") if k["sk"] != "ACTIVE"]
        return n + delete_keys(self.t.ddb.meta.client, self.name, keys)

    def scrub_runs(self, user_id: str) -> int:
        n = 0
        for item in query_all(self.table, KeyConditionExpression="user_id = :u",
                              ExpressionAttributeValues={":u": RUN_PK}):
            changed = False
            for field in ("failures", "rejections"):
                entries = item.get(field)
                if isinstance(entries, list):
                    kept = [e for e in entries if not (isinstance(e, dict) and e.get("user_id") == user_id)]
                    if len(kept) != len(entries):
                        item[field] = kept
                        changed = True
            if changed:
                self.table.put_item(Item=item)
                n += 1
        return n

    def put_erasure(self, record: dict) -> None:
        ts = record.get("at") or now_iso()
        self.table.put_item(Item=to_ddb({"user_id": ERASURE_PK, "sk": f"ERASE#{ts}#{random.randrange(16**4):04x}",
                                         **record, "at": ts}))

    def erasures(self, limit: int = 50) -> list[dict]:
        page = self.table.query(KeyConditionExpression="user_id = :u", ExpressionAttributeValues={":u": ERASURE_PK},
                                ScanIndexForward=False, Limit=limit)
        return [from_ddb(i) for i in page.get("Items", [])]
