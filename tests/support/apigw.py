"""Realistic API Gateway HTTP API (payload format 2.0) events for handler tests.

``http_event("POST", "/v1/users/u1/events", body={...})`` gives what API Gateway sends a Lambda proxy
integration with a ``$default`` route: ``routeKey``/``pathParameters`` are left to the resolver (it
matches ``rawPath`` itself), headers are lower-cased, a dict/list body is JSON-encoded, ``raw_body``
(bytes or str) is sent as-is — bytes base64-encoded with ``isBase64Encoded`` as API Gateway does for
binary media.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any, Optional
from urllib.parse import urlencode

from calroute_dev.local.lambdas import LambdaContext  # noqa: F401 - the one stand-in, re-exported for tests


def http_event(method: str, path: str, body: Any = None, headers: Optional[dict] = None,
               query: Optional[dict] = None, raw_body: bytes | str | None = None, *,
               jwt_sub: Optional[str] = None, iam_user_arn: Optional[str] = None) -> dict:
    hdrs = {"accept": "application/json", "user-agent": "pytest", "host": "api.example.test",
            "x-forwarded-proto": "https"}
    is_b64 = False
    payload: Optional[str] = None
    if raw_body is not None:
        if isinstance(raw_body, bytes):
            payload, is_b64 = base64.b64encode(raw_body).decode("ascii"), True
        else:
            payload = raw_body
    elif body is not None:
        payload = body if isinstance(body, str) else json.dumps(body)
        hdrs["content-type"] = "application/json"
    if payload is not None:
        hdrs["content-length"] = str(len(payload))
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    now = time.time()
    authorizer: dict = {}
    if jwt_sub:
        authorizer["jwt"] = {"claims": {"sub": jwt_sub}, "scopes": None}
    if iam_user_arn:
        authorizer["iam"] = {"userArn": iam_user_arn, "accessKey": "AKIAEXAMPLE", "accountId": "123456789012"}
    event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": hdrs,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api1234567",
            "domainName": "api.example.test",
            "domainPrefix": "api",
            "http": {"method": method.upper(), "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "127.0.0.1", "userAgent": "pytest"},
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": is_b64,
    }
    if query:
        event["queryStringParameters"] = {k: str(v) for k, v in query.items()}
    if authorizer:
        event["requestContext"]["authorizer"] = authorizer
    if payload is not None:
        event["body"] = payload
    return event


def call(handler, method: str, path: str, **kw) -> tuple[int, dict, Any]:
    """Invoke ``handler`` with an :func:`http_event`; returns (status, headers, parsed JSON body)."""
    resp = handler(http_event(method, path, **kw), LambdaContext())
    raw = resp.get("body") or ""
    if resp.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode()
    try:
        parsed = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        parsed = raw
    return resp["statusCode"], {k.lower(): v for k, v in (resp.get("headers") or {}).items()}, parsed
