"""A local OpenAI-compatible server for tests: ``POST /v1/chat/completions`` on 127.0.0.1 (port 0),
stdlib ``http.server`` in a thread. The REAL ``openai`` client talks to it.

Behaviours (``fake.behave(...)`` sets the default; ``fake.queue(...)`` scripts the next requests):

* ``answer(calendar_id=None, reason=...)`` — a valid structured answer (default: the first id of the
  request's ``enum``)
* ``unknown()`` — a calendar id that is not in the enum
* ``garbage()`` — content that is not JSON
* ``status(500)`` / ``status(429)`` — an HTTP error (``retry-after-ms: 1`` so SDK retries are instant)
* ``slow(seconds)`` — answers only after ``seconds`` (use with a short client timeout); released
  immediately at shutdown
* any callable ``fn(request_json) -> behaviour``

Every request is recorded (``fake.requests``: the parsed JSON bodies) with helpers to read the
calendar ids offered (``enum``) and the prompt text.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Callable, Optional

import pytest

from calroute_dev.local.gateway import LoopbackHTTPServer


@dataclass
class Behaviour:
    kind: str
    calendar_id: Optional[str] = None
    reason: str = "matches the calendar"
    status: int = 200
    delay: float = 0.0
    content: Optional[str] = None
    usage: tuple[int, int] = (120, 12)


def answer(calendar_id: Optional[str] = None, reason: str = "matches the calendar", usage=(120, 12)) -> Behaviour:
    return Behaviour("answer", calendar_id=calendar_id, reason=reason, usage=usage)


def unknown(calendar_id: str = "not-a-calendar-of-yours") -> Behaviour:
    return Behaviour("answer", calendar_id=calendar_id, reason="made up")


def garbage(content: str = "<xml>definitely not json</xml>") -> Behaviour:
    return Behaviour("raw", content=content)


def status(code: int) -> Behaviour:
    return Behaviour("status", status=code)


def slow(seconds: float, then: Optional[Behaviour] = None) -> Behaviour:
    b = then or answer()
    return Behaviour(b.kind, calendar_id=b.calendar_id, reason=b.reason, delay=seconds, content=b.content,
                     status=b.status)


def enum_of(request: dict) -> list[str]:
    """The calendar ids a request allowed (its json_schema enum)."""
    schema = request["response_format"]["json_schema"]["schema"]
    return list(schema["properties"]["calendar_id"]["enum"])


def prompt_of(request: dict) -> str:
    return "\n".join(str(m.get("content", "")) for m in request.get("messages", []))


class FakeLLM:
    def __init__(self):
        self.requests: list[dict] = []
        self.default: Any = answer()
        self._queue: deque = deque()
        self._lock = threading.Lock()
        self._release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": "not found"}})
                try:
                    req = json.loads(raw)
                except ValueError:
                    return self._send(400, {"error": {"message": "bad json"}})
                with fake._lock:
                    fake.requests.append(req)
                    b = fake._queue.popleft() if fake._queue else fake.default
                if callable(b) and not isinstance(b, Behaviour):
                    b = b(req)
                if b.delay:
                    fake._release.wait(b.delay)
                if b.kind == "status":
                    return self._send(b.status, {"error": {"message": f"fake {b.status}", "type": "fake"}},
                                      {"retry-after-ms": "1"})
                if b.kind == "raw":
                    content = b.content
                else:
                    cal = b.calendar_id if b.calendar_id is not None else enum_of(req)[0]
                    content = json.dumps({"calendar_id": cal, "reason": b.reason})
                body = {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000,
                    "model": req.get("model", "fake"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": b.usage[0], "completion_tokens": b.usage[1],
                              "total_tokens": b.usage[0] + b.usage[1]},
                }
                return self._send(200, body)

            def _send(self, code: int, body: dict, headers: dict | None = None):
                data = json.dumps(body).encode()
                try:
                    self.send_response(code)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def behave(self, behaviour: Any) -> "FakeLLM":
        self.default = behaviour
        return self

    def queue(self, *behaviours: Any) -> "FakeLLM":
        self._queue.extend(behaviours)
        return self

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._queue.clear()
            self.default = answer()

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_llm(monkeypatch):
    """A running FakeLLM; OPENAI_BASE_URL/OPENAI_API_KEY point at it, a short timeout is set."""
    from calroute.config import settings

    fake = FakeLLM()
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "2")
    settings.cache_clear()
    try:
        yield fake
    finally:
        fake.close()
        settings.cache_clear()
