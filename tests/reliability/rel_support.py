"""Fixtures and helpers of the reliability suite: the local stack (moto server with the resources of
template.yaml + the local API Gateway on 127.0.0.1 in front of the real handlers) with dev auth
(``x-calroute-user``), a small keep-alive HTTP client, and a per-user snapshot of every table.

Not a ``conftest.py`` on purpose: a second non-package conftest would replace the ``conftest`` module
that other test files import ``load_handler`` from. Test modules import the fixtures they use
(``from rel_support import stack, http``); each module gets its own stack (~10 s to start), started
the same way as tests/e2e/test_local_stack.py, and the environment is restored afterwards.
"""

from __future__ import annotations

import http.client as httplib
import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Optional

import pytest


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw.decode("utf-8"))


GATEWAY_MAX_BODY = 10 * 1024 * 1024  # calroute_dev.local.gateway.MAX_BODY_BYTES (API Gateway's limit)


class Http:
    """A keep-alive HTTP/1.1 client for 127.0.0.1 (one connection per thread)."""

    def __init__(self, port: int, timeout: float = 60.0):
        self.port, self.timeout = port, timeout
        self._local = threading.local()

    def _conn(self) -> httplib.HTTPConnection:
        c = getattr(self._local, "conn", None)
        if c is None:
            c = self._local.conn = httplib.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        return c

    def request(self, method: str, path: str, *, json_body: Any = None, body: Optional[bytes] = None,
                user: Optional[str] = None, headers: Optional[dict[str, str]] = None,
                content_type: Optional[str] = None) -> Reply:
        hdrs = {"accept": "application/json", **(headers or {})}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("content-type", "application/json")
        if content_type:
            hdrs["content-type"] = content_type
        if user is not None:
            hdrs["x-calroute-user"] = user
        if body is not None and len(body) > GATEWAY_MAX_BODY:
            return self.headers_only(method, path, hdrs, len(body))
        for attempt in (0, 1):  # a keep-alive connection the server closed: reconnect once
            conn = self._conn()
            try:
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                raw = resp.read()
                out = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw)
                if resp.getheader("connection", "").lower() == "close":
                    self.close()
                return out
            except (httplib.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    httplib.CannotSendRequest, httplib.ResponseNotReady):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def headers_only(self, method: str, path: str, headers: dict[str, str], length: int) -> Reply:
        """Declare ``length`` bytes but send only the headers: the gateway answers 413 from the
        declared length and closes, without reading (sending the body would hit a broken pipe)."""
        import socket

        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"content-length: {length}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        with socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            resp = httplib.HTTPResponse(sock)
            resp.begin()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The local stack on free ports (dev auth, no LLM, no periodic snapshots)."""
    from support.local_stack import running_stack

    with running_stack(tmp_path_factory.mktemp("calroute-reliability")) as st:
        yield st


@pytest.fixture(scope="module")
def http(stack) -> Http:
    return Http(stack.gateway.port)


@pytest.fixture(scope="module")
def tables(stack):
    """The stack's repositories (boto3 against the moto server), for before/after comparisons."""
    from calroute import wiring
    from calroute.config import settings

    return wiring.stores(settings())


def snapshot_user(user: str) -> dict:
    """Everything stored for ``user`` in every table (items sorted), to assert 'nothing changed'."""
    import boto3

    from calroute.config import settings

    cfg = settings()
    ddb = boto3.resource("dynamodb", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    out = {}
    for name in (cfg.events_table, cfg.users_table, cfg.registry_table, cfg.predictions_table, cfg.usage_table):
        t = ddb.Table(name)
        items, kw = [], {"KeyConditionExpression": "user_id = :u", "ExpressionAttributeValues": {":u": user}}
        while True:
            page = t.query(**kw)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        out[name] = sorted((json.dumps(i, sort_keys=True, default=str) for i in items))
    return out


def table_counts() -> dict:
    """Item count of every table (a full COUNT scan: use on small tables)."""
    import boto3

    from calroute.config import settings

    cfg = settings()
    ddb = boto3.client("dynamodb", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
    out = {}
    for name in (cfg.events_table, cfg.users_table, cfg.registry_table, cfg.predictions_table, cfg.usage_table):
        n, kw = 0, {"TableName": name, "Select": "COUNT"}
        while True:
            page = ddb.scan(**kw)
            n += page["Count"]
            if "LastEvaluatedKey" not in page:
                break
            kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        out[name] = n
    return out
