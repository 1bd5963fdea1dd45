"""Work after the response: a Lambda *internal extension* runs what the handler deferred.

Once a handler returns, Lambda sends its response and freezes the execution environment as soon as
the runtime and every registered extension have asked for the next event: a plain background thread
is frozen mid-write and resumes (or is lost) whenever the environment is next used. An *internal
extension* — a thread of the function's own process registered with the Extensions API
(https://docs.aws.amazon.com/lambda/latest/dg/runtimes-extensions-api.html) — holds the invoke
phase open until it asks for the next event itself, while the response is already on its way:

1. :class:`AfterResponseExtension` registers during the init phase (``POST
   /2020-01-01/extension/register``, events ``INVOKE``: internal extensions cannot register for
   ``SHUTDOWN``), then its thread calls ``GET /2020-01-01/extension/event/next``, which completes
   its init and blocks until an invoke.
2. The handler :meth:`defer` s work (a queue) and, in a ``finally``, calls :meth:`invocation_done`.
   The runtime sends the response as the handler returns.
3. The thread, woken with the ``INVOKE`` event, runs the deferred work in order until that
   invocation's end mark, then asks for the next event: only then may Lambda freeze the environment.

So the deferred work finishes inside the same invoke, milliseconds after the response, exactly as a
synchronous write would have: nothing is held over to a later invoke (so no record written after an
erasure that ran in another environment in the meantime, beyond the same in-flight race a
synchronous write has). What it costs: the invoke's billed duration includes the deferred work, and
the environment takes its next request only after it.

Safety nets: the wait for a handler's end mark is bounded by the invoke's ``deadlineMs`` (a handler
that never reached its ``finally`` cannot hold the environment open); an end mark of another request
(late, after its deadline) is skipped; a deferred callable that raises is counted
(:attr:`failures`) and never stops the loop. Not used under SnapStart (a snapshot would hold the
thread inside an open HTTP request; :func:`calroute.wiring.after_response` runs deferred work at
once there) nor outside Lambda (no ``AWS_LAMBDA_RUNTIME_API``).

Standard library only (``http.client`` for the registration, a bare socket for the per-invoke
``event/next``; no SDK): it is created at import, during the init phase.
"""

from __future__ import annotations

import http.client
import json
import queue
import socket
import threading
import time
from typing import Any, Callable, Optional

#: the Extensions API's path prefix (the API version is part of the path)
API_PREFIX = "/2020-01-01/extension"
NAME = "calroute-after-response"
_END = "end"
_UNPARSED = object()
#: the longest wait for a handler's end mark: Lambda's maximum function timeout
MAX_WAIT_S = 900.0
_DEADLINE = b'"deadlineMs":'


def _deadline_ms(body: bytes) -> Optional[float]:
    """The invoke event's ``deadlineMs`` (epoch ms) without parsing the whole event."""
    at = body.find(_DEADLINE)
    if at < 0:
        return None
    digits = body[at + len(_DEADLINE):at + len(_DEADLINE) + 24].lstrip()
    end = 0
    while end < len(digits) and digits[end:end + 1].isdigit():
        end += 1
    return float(digits[:end]) if end else None


class ExtensionError(RuntimeError):
    """The Extensions API refused or failed the registration."""


class _Closed(ExtensionError):
    """The connection closed under a request (a stale kept-alive connection)."""


class AfterResponseExtension:
    """:class:`calroute.ports.AfterResponse` as a Lambda internal extension (see the module text).

    ``runtime_api``: the ``host:port`` of ``AWS_LAMBDA_RUNTIME_API``. Registration happens in the
    constructor (it must, during the init phase) and raises :class:`ExtensionError` or ``OSError``
    when it fails; the caller then runs deferred work at once. ``on_error(exc)`` is told of each
    deferred callable that raised (after :attr:`failures` is counted)."""

    def __init__(self, runtime_api: str, *, name: str = NAME, clock: Callable[[], float] = time.time,
                 on_error: Optional[Callable[[BaseException], Any]] = None, timeout_s: float = 5.0) -> None:
        host, _, port = runtime_api.rpartition(":")
        if not host or not port.isdigit():
            raise ExtensionError(f"AWS_LAMBDA_RUNTIME_API is not host:port: {runtime_api!r}")
        self._host, self._port = host, int(port)
        self._clock = clock
        self._on_error = on_error
        self._queue: "queue.SimpleQueue[tuple[str, Any]]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.failures = 0
        self.ran = 0
        self.name = name
        self.extension_id = self._register(name, timeout_s)
        self._request = (f"GET {API_PREFIX}/event/next HTTP/1.1\r\nHost: {host}\r\n"
                         f"Lambda-Extension-Identifier: {self.extension_id}\r\n\r\n").encode()
        self._sock: Optional[socket.socket] = None
        self._buf = b""
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ the handler's side

    def defer(self, fn: Callable[[], Any]) -> None:
        self._queue.put(("run", fn))

    def invocation_done(self, request_id: Optional[str] = None) -> None:
        self._queue.put((_END, request_id))

    def take_failures(self) -> int:
        """The deferred callables that raised since the last call (the service reports them as a
        metric of the next request: the metrics of this one are already flushed)."""
        with self._lock:
            n, self.failures = self.failures, 0
        return n

    # ------------------------------------------------------------------ the extension's thread

    def _register(self, name: str, timeout_s: float) -> str:
        conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)
        try:
            conn.request("POST", API_PREFIX + "/register", body=json.dumps({"events": ["INVOKE"]}),
                         headers={"Lambda-Extension-Name": name, "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            ext_id = resp.getheader("Lambda-Extension-Identifier")
            if resp.status != 200 or not ext_id:
                raise ExtensionError(f"extension registration failed: HTTP {resp.status}")
            return ext_id
        finally:
            conn.close()

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self._host, self._port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _next_event(self) -> bytes:
        """``GET event/next`` on a kept-alive connection; blocks (no timeout: the environment is
        frozen while it waits) until the next event, and returns its body unparsed.

        A bare HTTP/1.1 exchange instead of ``http.client``: the thread wakes at the start of every
        invoke, while the handler runs, and what it does before it waits again competes with the
        handler for the GIL — here a ``recv`` and a few byte searches (``http.client`` parses the
        headers with ``email``, ~10× the work). Content-Length and chunked bodies are read."""
        for attempt in (0, 1):
            if self._sock is None:
                self._sock = self._connect()
            try:
                self._sock.sendall(self._request)
                return self._read_response()
            except (OSError, _Closed):  # a kept-alive connection the API had closed: once more
                self._close()
                if attempt:
                    raise
            except ExtensionError:
                self._close()
                raise
        raise ExtensionError("unreachable")  # pragma: no cover

    def _close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock, self._buf = None, b""

    def _recv(self) -> None:
        chunk = self._sock.recv(65536)  # type: ignore[union-attr]
        if not chunk:
            raise _Closed("the Extensions API closed the connection")
        self._buf += chunk

    def _read_response(self) -> bytes:
        while b"\r\n\r\n" not in self._buf:
            self._recv()
        head, _, self._buf = self._buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ExtensionError("not an HTTP response")
        status = int(parts[1])
        length, chunked, close = None, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                close = value == b"close"
        if chunked:
            body = self._read_chunked()
        else:
            if length is None:
                raise ExtensionError("a response without Content-Length")
            while len(self._buf) < length:
                self._recv()
            body, self._buf = self._buf[:length], self._buf[length:]
        if close:
            self._close()
        if status != 200:
            raise ExtensionError(f"extension next event failed: HTTP {status}")
        return body

    def _read_chunked(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self._buf:
                self._recv()
            size_line, _, self._buf = self._buf.partition(b"\r\n")
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            while len(self._buf) < size + 2:
                self._recv()
            body, self._buf = body + self._buf[:size], self._buf[size + 2:]
            if size == 0:
                return body

    def _loop(self) -> None:
        while True:
            try:
                body = self._next_event()
            except (OSError, ExtensionError, ValueError):
                # the API is gone (the environment is shutting down, or a local harness stopped):
                # nothing more can be run after a response; the handler's side keeps queueing,
                # which only matters for an environment that is ending
                return
            if b'"INVOKE"' not in body:
                return
            # only the deadline now (the bound of the wait); the request id once the work is done.
            # Nothing may end this thread while Lambda still sends it invokes: it would wait for
            # this extension's next call until the function's timeout
            try:
                self.drain(body, _deadline_ms(body))
            except Exception:  # noqa: BLE001 - pragma: no cover - drain catches what its work raises
                pass

    def drain(self, event: bytes, deadline_ms: Optional[float]) -> None:
        """Run deferred work until the end mark of the invoke ``event`` (its ``requestId``; a mark
        without a request id ends any invoke), or until the invoke's deadline has passed."""
        request_id: Any = _UNPARSED
        while True:
            timeout = (None if deadline_ms is None
                       else min(MAX_WAIT_S, max(0.0, deadline_ms / 1000.0 - self._clock())))
            try:
                kind, item = self._queue.get(timeout=timeout)
            except queue.Empty:
                return
            if kind == _END:
                if request_id is _UNPARSED:
                    try:
                        request_id = json.loads(event).get("requestId")
                    except ValueError:
                        request_id = None
                if request_id is None or item is None or item == request_id:
                    return
                continue  # a late end mark of an earlier invoke
            try:
                item()
                self.ran += 1
            except Exception as exc:  # noqa: BLE001 - one failed write must not stop the loop
                with self._lock:
                    self.failures += 1
                if self._on_error is not None:
                    self._on_error(exc)


__all__ = ["AfterResponseExtension", "ExtensionError", "API_PREFIX", "NAME"]
