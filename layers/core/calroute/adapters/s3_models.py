"""The model bucket behind :class:`calroute.ports.ModelBlobs`: ONNX bytes at
``models/{userId}/{version}.onnx`` (sha256 in the object metadata and checked on every read), parity
fixtures at ``models/{userId}/{version}.parity.npz``, run files at ``runs/{runId}/users.json`` and the
training Map's ResultWriter files under ``runs/{runId}/results/``."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Optional

from botocore.exceptions import ClientError

from ..errors import ModelIntegrityError, NotFound, ServiceUnavailable
from .dynamo.base import Tables, error_code, shared_tables

_MISSING = ("NoSuchKey", "404", "NotFound")
#: a ResultWriter result file of a training run (its manifest names no user)
_RESULT_FILE = re.compile(r"^runs/[^/]+/results/.+/(SUCCEEDED|FAILED|PENDING)_\d+\.json$")


def _names(doc: Any, user_id: str) -> bool:
    """``doc`` (a parsed JSON value) holds an object whose ``user_id`` is ``user_id``, at any depth."""
    if isinstance(doc, dict):
        return doc.get("user_id") == user_id or any(_names(v, user_id) for v in doc.values())
    if isinstance(doc, list):
        return any(_names(v, user_id) for v in doc)
    return False


def run_object_names_user(key: str, body: bytes, user_id: str) -> bool:
    """Whether the run object ``key`` names the user: a ``runs/*/users.json`` row, or, in a
    ResultWriter result file (``runs/*/results/**/SUCCEEDED_n.json``, ``FAILED_n``, ``PENDING_n``), a
    child's ``Input`` (its batch) or ``Output`` (its users' results), both JSON strings. Other keys
    (the manifest, anything unknown) name nobody; an unreadable body names nobody."""
    is_manifest, is_result = key.endswith("/users.json"), bool(_RESULT_FILE.match(key))
    if not (is_manifest or is_result):
        return False
    try:
        doc = json.loads(body)
    except ValueError:
        return False
    if is_manifest:
        return any(isinstance(r, dict) and r.get("user_id") == user_id for r in doc or [])
    for entry in doc if isinstance(doc, list) else []:
        for field in ("Input", "Output"):
            value = entry.get(field) if isinstance(entry, dict) else None
            try:
                if isinstance(value, str) and _names(json.loads(value), user_id):
                    return True
            except ValueError:
                continue
    return False


class S3ModelBlobs:
    """ONNX bytes in S3 at ``models/{userId}/{version}.onnx``; sha256 checked on every read."""

    def __init__(self, bucket: str, tables: Tables | None = None):
        self.bucket = bucket
        self.t = tables or shared_tables()

    @staticmethod
    def key(user_id: str, version: str, suffix: str = ".onnx") -> str:
        return f"models/{user_id}/{version}{suffix}"

    def put(self, user_id: str, version: str, data: bytes, suffix: str = ".onnx") -> tuple[str, str]:
        sha = hashlib.sha256(data).hexdigest()
        key = self.key(user_id, version, suffix)
        self.t.s3.put_object(Bucket=self.bucket, Key=key, Body=data, Metadata={"sha256": sha},
                             ContentType="application/octet-stream")
        return key, sha

    def get(self, key: str, sha256: Optional[str] = None) -> bytes:
        try:
            data = self.t.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if error_code(exc) in _MISSING:
                raise ModelIntegrityError(f"model object {key} is missing") from exc
            raise
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise ModelIntegrityError(f"model object {key} failed its sha256 check")
        return data

    def put_json(self, key: str, obj: Any) -> None:
        self.t.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(obj).encode(),
                             ContentType="application/json")

    def get_json(self, key: str) -> Any:
        try:
            body = self.t.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if error_code(exc) in _MISSING:
                raise NotFound(f"no object {key}", field="key") from None
            raise
        return json.loads(body)

    def delete(self, key: str) -> None:
        self.t.s3.delete_object(Bucket=self.bucket, Key=key)

    # ------------------------------------------------------------------ the user's data lifecycle

    def _versions(self, prefix: str) -> list[dict]:
        """Every object version and delete marker under ``prefix`` (``Key``, ``VersionId``)."""
        out: list[dict] = []
        for page in self.t.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            for v in (page.get("Versions") or []) + (page.get("DeleteMarkers") or []):
                out.append({"Key": v["Key"], "VersionId": v.get("VersionId") or "null"})
        return out

    def _delete_versions(self, versions: list[dict]) -> int:
        for i in range(0, len(versions), 1000):
            resp = self.t.s3.delete_objects(Bucket=self.bucket,
                                            Delete={"Objects": versions[i:i + 1000], "Quiet": True})
            errors = [e for e in resp.get("Errors") or [] if e.get("Code") not in _MISSING]
            if errors:
                raise ServiceUnavailable(f"{len(errors)} model objects could not be deleted "
                                         f"({errors[0].get('Code')}); retry the erasure", retry_after=2)
        return len(versions)

    def delete_user(self, user_id: str) -> int:
        return self._delete_versions(self._versions(f"models/{user_id}/"))

    def scrub_manifests(self, user_id: str) -> int:
        doomed = []
        for v in self._versions("runs/"):
            if not (v["Key"].endswith("/users.json") or _RESULT_FILE.match(v["Key"])):
                continue
            try:
                body = self.t.s3.get_object(Bucket=self.bucket, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
            except ClientError as exc:  # a delete marker (405), or gone meanwhile
                if error_code(exc) in _MISSING or error_code(exc) in ("MethodNotAllowed", "405", "InvalidArgument"):
                    continue
                raise
            if run_object_names_user(v["Key"], body, user_id):
                doomed.append(v)
        return self._delete_versions(doomed)
