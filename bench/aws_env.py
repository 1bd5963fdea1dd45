"""The AWS emulation the serving, LLM and state-machine benchmarks run against: calroute's moto
server (:func:`calroute_dev.local.moto_server.start_emulator`, 127.0.0.1, resources from
template.yaml), plus helpers to install a model for a user the way Promote does (S3 object + registry
version + ACTIVE pointer) and to call the real HTTP handlers with API Gateway HTTP API v2 events.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from contextlib import contextmanager
from typing import Any, Iterator, Optional

from .harness import ROOT

STACK = "calroute-bench"


def http_event(method: str, path: str, body: Any) -> dict:
    """An API Gateway HTTP API (payload format 2.0) proxy event with a JSON body."""
    payload = json.dumps(body)
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json", "content-length": str(len(payload)),
                    "host": "api.example.test", "user-agent": "calroute-bench"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "bench", "domainName": "api.example.test",
            "domainPrefix": "api", "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                            "sourceIp": "127.0.0.1", "userAgent": "calroute-bench"},
            "requestId": uuid.uuid4().hex[:16], "routeKey": "$default", "stage": "$default",
            "time": "01/Jan/2026:00:00:00 +0000", "timeEpoch": 1767225600000,
        },
        "body": payload, "isBase64Encoded": False,
    }


def load_function(name: str):
    """Import ``functions/<name>/app.py`` under the module name the tests and the emulator use."""
    mod_name = f"calroute_fn_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, ROOT / "functions" / name / "app.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    return mod


def set_env(**values: Optional[str]) -> None:
    """Set (or with None, unset) environment variables and forget the cached settings."""
    from calroute.config import settings

    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = str(v)
    settings.cache_clear()


@contextmanager
def emulator(max_concurrency: int = 4) -> Iterator[Any]:
    """A running emulator on a free port; the serving env (auth off, no SSM flag) is set."""
    from calroute_dev.local.moto_server import start_emulator

    os.environ.pop("AWS_ENDPOINT_URL", None)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    em = start_emulator(0, stack_name=STACK, max_concurrency=max_concurrency)
    try:
        set_env(AUTH_MODE="none", ML_ENABLED_PARAM="", ML_ENABLED="true", EXPERIMENT_CONTROL_PERCENT="0",
                LLM_API_KEY_PARAM="")
        yield em
    finally:
        em.stop()


def install_model(user: str, onnx_bytes: bytes, *, version: str, threshold: float, labels: list[str],
                  extra: Optional[dict] = None) -> dict:
    """Store ``onnx_bytes`` and make it the user's ACTIVE model (as Promote does)."""
    from calroute.adapters.dynamo.registry import DynamoRegistry
    from calroute.adapters.s3_models import S3ModelBlobs
    from calroute.config import settings
    from calroute.features import FEATURE_SPEC_VERSION

    cfg = settings()
    store, reg = S3ModelBlobs(cfg.model_bucket), DynamoRegistry(cfg.registry_table)
    key, sha = store.put(user, version, onnx_bytes)
    record = {"version": version, "s3_key": key, "sha256": sha, "threshold": threshold,
              "feature_spec": FEATURE_SPEC_VERSION, "labels": sorted(labels), **(extra or {})}
    reg.put_version(user, version, record)
    cur = reg.active(user, consistent=True)
    reg.activate(user, record, expected_version=cur["version"] if cur else None, actor="bench", reason="bench")
    return record
