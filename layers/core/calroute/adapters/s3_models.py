"""The model bucket behind :class:`calroute.ports.ModelBlobs`: ONNX bytes at
``models/{userId}/{version}.onnx`` (sha256 in the object metadata and checked on every read), parity
fixtures at ``models/{userId}/{version}.parity.npz``, run files at ``runs/{runId}/users.json``."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Optional

from botocore.exceptions import ClientError

from ..errors import ModelIntegrityError, NotFound
from .dynamo.base import Tables, error_code, shared_tables

_MISSING = ("NoSuchKey", "404", "NotFound")


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
