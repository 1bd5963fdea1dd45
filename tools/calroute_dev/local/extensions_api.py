"""A local stand-in for Lambda's Extensions API, enough to run internal extensions the way Lambda does.

Lambda's invoke phase (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html):
the INVOKE event goes to every registered extension as the function's handler runs, and the phase
ends — the environment may be frozen, the next invoke may start — only once every extension has
asked for its next event again. :class:`ExtensionsApi` serves ``POST /2020-01-01/extension/register``
and ``GET /2020-01-01/extension/event/next`` on 127.0.0.1 and drives that cycle:

* :meth:`begin_invoke` waits until every registered extension waits in ``event/next`` (the previous
  invoke phase is over), then hands each the ``INVOKE`` event;
* the caller runs the handler (that is the response's latency);
* :meth:`end_invoke` waits until every extension asks for its next event again (the invoke phase is
  over: that is the billed duration) — :meth:`invoke` does all three and times both.

Used by the after-response tests and by ``bench/serving.py`` (``serving.handler_warm_default``).
The waits have a generous bound (``wait_s``) only so a broken extension fails instead of hanging.
Not shipped in a layer.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from queue import SimpleQueue
from typing import Any, Callable, Optional

PREFIX = "/2020-01-01/extension"


@dataclass
class Registered:
    id: str
    name: str
    events: list
    inbox: SimpleQueue = field(default_factory=SimpleQueue)
    waiting: bool = False
    nexts: int = 0


@dataclass
class Invocation:
    result: Any
    response_ms: float
    done_ms: float


class ExtensionsApi:
    def __init__(self, *, wait_s: float = 30.0, function_name: str = "calroute-local") -> None:
        self.extensions: dict[str, Registered] = {}
        self.wait_s = wait_s
        self.function_name = function_name
        self._cond = threading.Condition()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, body: dict, headers: Optional[dict] = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                name = self.headers.get("Lambda-Extension-Name")
                if self.path != PREFIX + "/register" or not name:
                    self._send(400, {"errorType": "InvalidRequest"})
                    return
                try:
                    events = list(json.loads(raw or b"{}").get("events", []))
                except ValueError:
                    self._send(400, {"errorType": "InvalidRequest"})
                    return
                if "SHUTDOWN" in events:  # Lambda refuses SHUTDOWN for internal extensions
                    self._send(400, {"errorType": "ShutdownEventNotSupportedForInternalExtension"})
                    return
                ext = Registered(id=str(uuid.uuid4()), name=name, events=events)
                with api._cond:
                    api.extensions[ext.id] = ext
                self._send(200, {"functionName": api.function_name, "functionVersion": "$LATEST",
                                 "handler": "app.lambda_handler"}, {"Lambda-Extension-Identifier": ext.id})

            def do_PUT(self) -> None:  # noqa: N802 - the driver's side (RemoteExtensionsApi), not Lambda's API
                length = int(self.headers.get("Content-Length") or 0)
                args = json.loads(self.rfile.read(length) or b"{}") if length else {}
                try:
                    if self.path == "/_driver/begin":
                        self._send(200, {"requestId": api.begin_invoke(args.get("requestId"),
                                                                       timeout_ms=args.get("timeoutMs", 15000))})
                    elif self.path == "/_driver/end":
                        api.end_invoke()
                        self._send(200, {})
                    else:
                        self._send(404, {})
                except TimeoutError as exc:
                    self._send(504, {"error": str(exc)})

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/_driver/registered":
                    self._send(200, {"registered": len(api.extensions)})
                    return
                ext = api.extensions.get(self.headers.get("Lambda-Extension-Identifier") or "")
                if self.path != PREFIX + "/event/next" or ext is None:
                    self._send(403, {"errorType": "Extension.UnknownExtensionIdentifier"})
                    return
                with api._cond:
                    ext.waiting = True
                    ext.nexts += 1
                    api._cond.notify_all()
                event = ext.inbox.get()
                self._send(200, event)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="extensions-api", daemon=True)

    @property
    def address(self) -> str:
        """The ``host:port`` for ``AWS_LAMBDA_RUNTIME_API``."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "ExtensionsApi":
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            for ext in self.extensions.values():
                ext.inbox.put({"eventType": "SHUTDOWN", "shutdownReason": "spindown", "deadlineMs": 0})
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "ExtensionsApi":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ the invoke cycle

    def idle(self) -> bool:
        """Whether every registered extension waits for its next event (no invoke phase open)."""
        with self._cond:
            return all(e.waiting for e in self.extensions.values())

    def _wait_all_waiting(self) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: all(e.waiting for e in self.extensions.values()), timeout=self.wait_s)
        if not ok:
            raise TimeoutError("an extension did not ask for its next event")

    def begin_invoke(self, request_id: Optional[str] = None, *, timeout_ms: int = 15000) -> str:
        """Wait for the previous invoke phase to end, then send ``INVOKE`` to every extension."""
        self._wait_all_waiting()
        rid = request_id or str(uuid.uuid4())
        event = {"eventType": "INVOKE", "requestId": rid, "deadlineMs": int(time.time() * 1000) + timeout_ms,
                 "invokedFunctionArn": f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"}
        with self._cond:
            for ext in self.extensions.values():
                ext.waiting = False
                ext.inbox.put(dict(event))
        return rid

    def end_invoke(self) -> None:
        """Wait until every extension has asked for its next event (the invoke phase is over)."""
        self._wait_all_waiting()

    def invoke(self, call: Callable[[str], Any], *, request_id: Optional[str] = None,
               timeout_ms: int = 15000) -> Invocation:
        """``call(request_id)`` as one invoke: its result, its latency (the response) and the time
        until the invoke phase ended (what Lambda bills)."""
        rid = self.begin_invoke(request_id, timeout_ms=timeout_ms)
        t0 = time.perf_counter()
        result = call(rid)
        t1 = time.perf_counter()
        self.end_invoke()
        t2 = time.perf_counter()
        return Invocation(result, (t1 - t0) * 1000.0, (t2 - t0) * 1000.0)


class RemoteExtensionsApi:
    """The same driver (:meth:`begin_invoke`, :meth:`end_invoke`, :meth:`invoke`) for an
    :class:`ExtensionsApi` served by another process (``python -m calroute_dev.local.extensions_api``):
    in Lambda the API is not in the function's process, so a benchmark keeps the server's own work
    out of the process it measures. Context manager: starts and stops that process."""

    def __init__(self) -> None:
        import subprocess
        import sys

        self._proc = subprocess.Popen([sys.executable, "-m", "calroute_dev.local.extensions_api"],
                                      stdout=subprocess.PIPE, text=True)
        self.address = (self._proc.stdout.readline() if self._proc.stdout else "").strip()
        if ":" not in self.address:
            self._proc.kill()
            raise RuntimeError("the Extensions API stand-in did not start")
        import http.client

        host, _, port = self.address.rpartition(":")
        self._conn = http.client.HTTPConnection(host, int(port))

    def _put(self, path: str, body: dict) -> dict:
        self._conn.request("PUT", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = self._conn.getresponse()
        doc = json.loads(resp.read() or b"{}")
        if resp.status != 200:
            raise TimeoutError(doc.get("error", f"HTTP {resp.status}"))
        return doc

    def begin_invoke(self, request_id: Optional[str] = None, *, timeout_ms: int = 15000) -> str:
        return self._put("/_driver/begin", {"requestId": request_id, "timeoutMs": timeout_ms})["requestId"]

    def end_invoke(self) -> None:
        self._put("/_driver/end", {})

    def registered(self) -> int:
        """How many extensions registered so far."""
        self._conn.request("GET", "/_driver/registered")
        return int(json.loads(self._conn.getresponse().read())["registered"])

    invoke = ExtensionsApi.invoke

    def __enter__(self) -> "RemoteExtensionsApi":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._conn.close()
        self._proc.terminate()
        self._proc.wait()


def main() -> None:  # pragma: no cover - the server process of RemoteExtensionsApi
    api = ExtensionsApi().start()
    print(api.address, flush=True)
    api._thread.join()  # until the driver terminates this process


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = ["ExtensionsApi", "RemoteExtensionsApi", "Invocation", "Registered", "PREFIX"]
