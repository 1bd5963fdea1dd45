"""Persistence for the local stack: moto keeps everything in memory, so this module snapshots the
DynamoDB tables and S3 objects of the template to a folder and restores them on the next start.

Layout of ``<data_dir>/snapshot/``::

    manifest.json                   {"format": 1, "saved_at", "tables": {name: items}, "buckets": {...}}
    dynamodb/<table>.jsonl          one item per line, in DynamoDB's typed JSON ({"S": ...}, {"N": ...})
    s3/<bucket>/index.json          [{"key", "file", "content_type", "metadata"}]
    s3/<bucket>/objects/<n>         the object bytes

A snapshot is written to a temporary folder and swapped in with renames, so a crash mid-write keeps
the previous snapshot. It is not a point-in-time copy of concurrent writes (a developer tool).
Only the current version of each S3 object is kept.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

FORMAT = 1
SNAPSHOT = "snapshot"


def _client(service: str, endpoint_url: Optional[str]):
    import boto3

    return boto3.session.Session().client(service, endpoint_url=endpoint_url)


def _encode(value: Any) -> Any:
    """DynamoDB typed values → JSON (binary as {"__b64": ...})."""
    if isinstance(value, (bytes, bytearray)):
        return {"__b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__b64"}:
            return base64.b64decode(value["__b64"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def dump(data_dir: str | Path, tables: list[str], buckets: list[str], *, endpoint_url: Optional[str] = None) -> dict:
    """Snapshot ``tables`` and ``buckets`` into ``data_dir/snapshot``; returns the manifest."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f".{SNAPSHOT}.tmp-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "dynamodb").mkdir(parents=True)
    ddb, s3 = _client("dynamodb", endpoint_url), _client("s3", endpoint_url)
    manifest: dict[str, Any] = {"format": FORMAT, "saved_at": datetime.now(timezone.utc).isoformat(),
                                "tables": {}, "buckets": {}}
    for table in tables:
        n = 0
        with open(tmp / "dynamodb" / f"{table}.jsonl", "w", encoding="utf-8") as fh:
            for page in ddb.get_paginator("scan").paginate(TableName=table):
                for item in page.get("Items", []):
                    fh.write(json.dumps(_encode(item), ensure_ascii=False, separators=(",", ":")) + "\n")
                    n += 1
        manifest["tables"][table] = n
    for bucket in buckets:
        bdir = tmp / "s3" / bucket / "objects"
        bdir.mkdir(parents=True)
        index = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                got = s3.get_object(Bucket=bucket, Key=obj["Key"])
                name = f"{len(index):06d}"
                (bdir / name).write_bytes(got["Body"].read())
                index.append({"key": obj["Key"], "file": name, "content_type": got.get("ContentType", ""),
                              "metadata": got.get("Metadata") or {}})
        (tmp / "s3" / bucket / "index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
        manifest["buckets"][bucket] = len(index)
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    final, old = data_dir / SNAPSHOT, data_dir / f".{SNAPSHOT}.old-{os.getpid()}-{threading.get_ident()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return manifest


def has_snapshot(data_dir: str | Path) -> bool:
    return (Path(data_dir) / SNAPSHOT / "manifest.json").is_file()


def restore(data_dir: str | Path, *, endpoint_url: Optional[str] = None,
            tables: Optional[list[str]] = None, buckets: Optional[list[str]] = None) -> dict:
    """Load a snapshot into the (already created) tables and buckets. Returns the counts restored.

    Tables/buckets in the snapshot that are not in ``tables``/``buckets`` (when given) are skipped:
    a renamed resource in template.yaml does not resurrect old data.
    """
    snap = Path(data_dir) / SNAPSHOT
    if not (snap / "manifest.json").is_file():
        return {"tables": {}, "buckets": {}}
    manifest = json.loads((snap / "manifest.json").read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise RuntimeError(f"{snap} has snapshot format {manifest.get('format')}; expected {FORMAT} "
                           "(start with --fresh)")
    ddb, s3 = _client("dynamodb", endpoint_url), _client("s3", endpoint_url)
    out: dict[str, dict] = {"tables": {}, "buckets": {}}
    for table in manifest.get("tables", {}):
        if tables is not None and table not in tables:
            continue
        path = snap / "dynamodb" / f"{table}.jsonl"
        if not path.is_file():
            continue
        items = [_decode(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
        for i in range(0, len(items), 25):
            pending: dict = {table: [{"PutRequest": {"Item": it}} for it in items[i:i + 25]]}
            for _ in range(10):
                resp = ddb.batch_write_item(RequestItems=pending)
                pending = resp.get("UnprocessedItems") or {}
                if not pending:
                    break
        out["tables"][table] = len(items)
    for bucket in manifest.get("buckets", {}):
        if buckets is not None and bucket not in buckets:
            continue
        bdir = snap / "s3" / bucket
        index = json.loads((bdir / "index.json").read_text(encoding="utf-8"))
        for obj in index:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Key": obj["key"],
                                      "Body": (bdir / "objects" / obj["file"]).read_bytes(),
                                      "Metadata": obj.get("metadata") or {}}
            if obj.get("content_type"):
                kwargs["ContentType"] = obj["content_type"]
            s3.put_object(**kwargs)
        out["buckets"][bucket] = len(index)
    return out


class Persister:
    """Dumps a fixed set of tables/buckets now, periodically (a daemon thread) and on :meth:`stop`."""

    def __init__(self, data_dir: str | Path, tables: list[str], buckets: list[str], *,
                 endpoint_url: Optional[str] = None, interval_s: float = 60.0,
                 on_error: Optional[Callable[[Exception], None]] = None):
        self.data_dir, self.tables, self.buckets = Path(data_dir), tables, buckets
        self.endpoint_url, self.interval_s = endpoint_url, interval_s
        self.on_error = on_error
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.last: Optional[dict] = None
        self.last_seconds = 0.0

    def save(self) -> Optional[dict]:
        with self._lock:
            t0 = time.perf_counter()
            try:
                self.last = dump(self.data_dir, self.tables, self.buckets, endpoint_url=self.endpoint_url)
            except Exception as exc:  # never take the stack down because a snapshot failed
                if self.on_error:
                    self.on_error(exc)
                return None
            self.last_seconds = time.perf_counter() - t0
            return self.last

    def start(self) -> "Persister":
        if self.interval_s > 0:
            self._thread = threading.Thread(target=self._loop, name="calroute-persist", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.save()

    def stop(self, *, final_save: bool = True) -> Optional[dict]:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        return self.save() if final_save else self.last
