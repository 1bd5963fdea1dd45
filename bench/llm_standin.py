"""A stand-in OpenAI-compatible server (``POST /v1/chat/completions`` on 127.0.0.1) for the LLM
economics: the REAL ``openai`` client in the REAL fallback service talks to it.

* latency: uniform in ``[latency_min, latency_max]`` seconds per call (seeded), the assumed range of a
  short structured-output call to gpt-4o-mini; 0 for token counting;
* answer: ``answer_fn(event_title, event_start, allowed_ids) -> calendar_id`` (default: the first id);
* usage: estimated tokens of the request actually built by ``calroute.llm.prompt.build_messages`` — about 4
  characters per token (OpenAI's rule of thumb) plus 4 tokens per message and 3 for the reply
  priming; the answer's own characters / 4 for the output. No tokenizer is available offline.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Callable, Optional

from calroute_dev.local.gateway import LoopbackHTTPServer

_DATA_RE = re.compile(r"<(data-[0-9a-f]+)>\n(.*)\n</\1>", re.S)


def estimate_tokens(text: str) -> int:
    return max(1, round(len(text) / 4))


def request_tokens(messages: list[dict]) -> int:
    return sum(estimate_tokens(str(m.get("content", ""))) + 4 for m in messages) + 3


def event_of(messages: list[dict]) -> dict:
    """The ``event`` object of the data block (title, start, ...), or {}."""
    for m in messages:
        match = _DATA_RE.search(str(m.get("content", "")))
        if match:
            try:
                return json.loads(match.group(2)).get("event", {})
            except ValueError:
                return {}
    return {}


class StandInLLM:
    def __init__(self, *, latency: tuple[float, float] = (0.4, 0.8), seed: int = 0,
                 answer_fn: Optional[Callable[[str, str, list[str]], str]] = None):
        self.latency = latency
        self.answer_fn = answer_fn
        self.calls: list[dict] = []  # {"input_tokens", "output_tokens", "delay", "received_at" (epoch s)}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        me = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):  # noqa: N802
                received_at = time.time()  # when the LLM was asked (epoch: comparable across processes)
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                req = json.loads(raw)
                messages = req.get("messages", [])
                allowed = req["response_format"]["json_schema"]["schema"]["properties"]["calendar_id"]["enum"]
                ev = event_of(messages)
                cal = allowed[0]
                if me.answer_fn is not None:
                    cal = me.answer_fn(str(ev.get("title", "")), str(ev.get("start", "")), list(allowed))
                content = json.dumps({"calendar_id": cal, "reason": "the event matches this calendar's usual events"})
                with me._lock:
                    lo, hi = me.latency
                    delay = me._rng.uniform(lo, hi) if hi > 0 else 0.0
                    usage = (request_tokens(messages), estimate_tokens(content))
                    me.calls.append({"input_tokens": usage[0], "output_tokens": usage[1], "delay": delay,
                                     "received_at": received_at})
                if delay:
                    me._stop.wait(delay)
                body = json.dumps({
                    "id": "chatcmpl-standin", "object": "chat.completion", "created": int(time.time()),
                    "model": req.get("model", "standin"),
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                              "total_tokens": usage[0] + usage[1]},
                }).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "StandInLLM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
