"""Invoking the LLM fallback function: a JSON payload in, a JSON answer out, never an exception.

* :class:`LambdaInvoker` — ``lambda.invoke`` (RequestResponse) with boto3, which honours
  ``AWS_ENDPOINT_URL`` (the local stack points it at moto, which dispatches to the real handler).
* :class:`CallableInvoker` — calls a Python function in-process (tests, ``LAMBDA_INVOKE_MODE=inprocess``);
  the payload goes through a JSON round trip so both behave alike, and one call runs at a time:
  a Lambda handler serves one request per sandbox, so the fallback service is not built to be
  entered by the predict function's LLM threads at once (its boto3 resources, an in-process moto).

Predict invokes from a thread pool (a batch's unsure events): the Lambda client is created once,
under a lock (a boto3 session is not safe to create clients from concurrently).

Every fault (function error, throttling, timeout, bad JSON) becomes ``{"error": "invoke_failed", ...}``.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Protocol


class Invoker(Protocol):
    def invoke(self, payload: dict) -> dict: ...


def _failure(message: str) -> dict:
    return {"error": "invoke_failed", "message": message}


def _as_answer(obj: Any) -> dict:
    return obj if isinstance(obj, dict) else _failure("the function returned a non-object")


class LambdaInvoker:
    """Synchronous ``lambda.invoke`` of ``function_name``."""

    def __init__(self, function_name: str, *, read_timeout: float = 12.0, client=None, session=None):
        """``session``: the boto3 session to create the client from on first use (the wiring passes
        the stores' one, whose loaded endpoint and service data the client then shares)."""
        self.function_name = function_name
        self.read_timeout = read_timeout
        self._client = client
        self._session = session
        self._lock = threading.Lock()

    @property
    def client(self):
        if self._client is not None:
            return self._client
        with self._lock:
            if self._client is not None:  # another thread created it meanwhile
                return self._client
            import boto3
            from botocore.config import Config

            # one attempt: the fallback function retries the LLM itself; a retried invoke doubles cost
            self._client = (self._session or boto3).client("lambda", config=Config(
                connect_timeout=2, read_timeout=self.read_timeout, retries={"max_attempts": 1, "mode": "standard"}))
        return self._client

    def invoke(self, payload: dict) -> dict:
        try:
            resp = self.client.invoke(FunctionName=self.function_name, InvocationType="RequestResponse",
                                      Payload=json.dumps(payload, ensure_ascii=False).encode("utf-8"))
            body = resp["Payload"].read()
        except Exception as exc:  # noqa: BLE001 - botocore/network errors: the caller falls back
            return _failure(type(exc).__name__)
        if resp.get("FunctionError"):
            return _failure(f"the function failed ({resp['FunctionError']})")
        try:
            return _as_answer(json.loads(body or b"null"))
        except ValueError:
            return _failure("the function returned invalid JSON")


class CallableInvoker:
    """In-process: ``fn(payload) -> dict``, one call at a time (like one Lambda sandbox)."""

    def __init__(self, fn: Callable[[dict], Any]):
        self.fn = fn
        self.lock = threading.Lock()

    def invoke(self, payload: dict) -> dict:
        try:
            with self.lock:
                answer = self.fn(json.loads(json.dumps(payload, ensure_ascii=False)))
            return _as_answer(json.loads(json.dumps(answer)))
        except Exception as exc:  # noqa: BLE001 - in-process faults behave like a failed invoke
            return _failure(f"{type(exc).__name__}: {exc}"[:300])
