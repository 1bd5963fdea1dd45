"""A local API Gateway (HTTP API, payload format 2.0) in front of the real handlers.

Routes are discovered from template.yaml — every ``AWS::Serverless::Function`` event of
``Type: HttpApi`` — so the template stays the one source of truth. Each HTTP request becomes an API
Gateway v2 event (``version 2.0``, ``routeKey``, ``rawPath``, lower-cased ``headers``,
``queryStringParameters``, ``pathParameters`` matched from the route template, ``requestContext``,
``body``/``isBase64Encoded``, ``cookies``) and is passed to the function's real
``functions/<dir>/app.py`` handler, imported in-process by path under a unique module name.

One HTTP handler runs at a time, across ALL functions: Powertools keeps the current event on the
``BaseRouter`` *class* (process-global), which is safe in AWS — a container serves one event at a
time — but in one process two functions' requests would read each other's event (headers, body,
identity). Non-HTTP handlers (state-machine tasks, the LLM fallback invoked by predict) do not
take this lock.

Nothing here is shipped in a layer; it is the local stack (``calroute local``) and the e2e tests.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl, unquote, urlsplit

from .template import ACCOUNT, Resolver, function_environment

log = logging.getLogger("calroute_dev.local.gateway")

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
_TEXT_TYPES = ("application/json", "text/plain", "application/x-www-form-urlencoded")
API_ID = "calroute-local"

# An admin route handler gets the parsed JSON body (or None) and returns (status, json-able body).
AdminHandler = Callable[[Any], "tuple[int, Any]"]


class LoopbackHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` for the local servers (gateway, stand-in LLMs) with a real listen backlog.

    socketserver's default ``request_queue_size`` is 5: when dozens of clients connect at once (the
    load test opens 54 connections together) and the accept thread is starved of the GIL, the kernel's
    accept queue overflows, handshakes are dropped, SYNs retried after 1 s and, once the SYN-ACK retries
    run out, the client's next packet is answered with a reset (``ConnectionResetError`` seen in CI).
    The kernel caps the value at ``net.core.somaxconn``.
    """

    request_queue_size = 1024
    daemon_threads = True
    block_on_close = False


# ----------------------------------------------------------------------------- routes


@dataclass
class Route:
    method: str  # upper-case, or "ANY"
    path: str  # the template's route path, e.g. /v1/users/{userId}/classify
    function: str  # logical id of the function
    regex: re.Pattern

    params: tuple[str, ...] = ()

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> Optional[dict[str, str]]:
        if self.method not in ("ANY", method):
            return None
        m = self.regex.fullmatch(path)
        if m is None:
            return None
        return {name: unquote(value) for name, value in zip(self.params, m.groups())}


def compile_route(method: str, path: str, function: str) -> Route:
    """``/v1/users/{userId}/x`` → a regex with one group per parameter (``{p+}`` is greedy)."""
    params: list[str] = []
    parts = []
    for seg in re.split(r"(\{[^}]+\})", path):
        if seg.startswith("{") and seg.endswith("}"):
            name = seg[1:-1]
            if name.endswith("+"):
                params.append(name[:-1])
                parts.append("(.+)")
            else:
                params.append(name)
                parts.append("([^/]+)")
        else:
            parts.append(re.escape(seg))
    return Route(method.upper(), path, function, re.compile("".join(parts)), tuple(params))


def discover_routes(resolver: Resolver) -> list[Route]:
    """Every HttpApi event of every function in the template, most specific first."""
    routes = []
    for logical, res in resolver.of_type("AWS::Serverless::Function").items():
        events = (res.get("Properties") or {}).get("Events") or {}
        for ev in events.values():
            if (ev or {}).get("Type") != "HttpApi":
                continue
            props = ev.get("Properties") or {}
            path, method = props.get("Path"), props.get("Method", "ANY")
            if not path:
                continue
            routes.append(compile_route("ANY" if method in ("*", "any", "ANY") else method, path, logical))
    # literal routes before parameterised ones, longer before shorter, ANY last
    routes.sort(key=lambda r: (len(r.params), -len(r.path.split("/")), r.method == "ANY", r.path))
    return routes


# ----------------------------------------------------------------------------- functions


class FunctionHost:
    """Runs the HTTP functions' real handlers through :class:`calroute_dev.local.lambdas.InProcessLambdas`
    (the same loader, module names and per-function environment the moto Lambda dispatch uses),
    one HTTP invocation at a time in the whole process (see the module docstring)."""

    def __init__(self, resolver: Resolver, dispatcher: Any = None):
        from .lambdas import InProcessLambdas

        self.resolver = resolver
        self.dispatcher = dispatcher if dispatcher is not None else InProcessLambdas(resolver)
        self._http_lock = threading.Lock()

    def invoke(self, logical: str, event: dict) -> Any:
        spec = self.dispatcher.specs.get(logical)
        if spec is None:
            raise KeyError(f"{logical} is not a function of the template")
        with self._http_lock:
            payload, err = self.dispatcher.call(spec, event)
        body = json.loads(payload) if payload else None
        if err:
            raise HandlerError(logical, body or {})
        return body


class HandlerError(Exception):
    """The handler raised: ``payload`` is Lambda's ``{"errorType","errorMessage","stackTrace"}``."""

    def __init__(self, function: str, payload: dict):
        self.function, self.payload = function, payload
        super().__init__(f"{function}: {payload.get('errorType')}: {payload.get('errorMessage')}")


def merged_environment(resolver: Resolver, logicals: list[str], overrides: dict[str, str]) -> dict[str, str]:
    """The union of the functions' template environments, then ``overrides``.

    All handlers share one process (and ``calroute.config.settings()``), so the local stack runs
    them with one environment: template variables that differ between functions are reported.
    """
    env: dict[str, str] = {}
    for logical in logicals:
        for k, v in function_environment(resolver, logical).items():
            if k in env and env[k] != v and k not in overrides:
                log.warning("env %s differs between functions (%r vs %r); using the first", k, env[k], v)
                continue
            env.setdefault(k, v)
    env.update(overrides)
    return env


# ----------------------------------------------------------------------------- events


def _is_text(content_type: str) -> bool:
    ct = content_type.split(";", 1)[0].strip().lower()
    return ct in _TEXT_TYPES or ct.endswith("+json")


def build_event(method: str, target: str, headers: list[tuple[str, str]], body: bytes, *,
                route: Optional[Route], path_params: Optional[dict], source_ip: str = "127.0.0.1",
                host: str = "127.0.0.1", now: Optional[datetime] = None) -> dict:
    """An API Gateway HTTP API payload-format-2.0 event."""
    now = now or datetime.now(timezone.utc)
    parts = urlsplit(target)
    raw_path = parts.path or "/"
    hdrs: dict[str, str] = {}
    for k, v in headers:
        k = k.lower()
        hdrs[k] = f"{hdrs[k]},{v}" if k in hdrs else v
    cookies = [c.strip() for c in hdrs.pop("cookie", "").split(";") if c.strip()]
    query: dict[str, str] = {}
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        query[k] = f"{query[k]},{v}" if k in query else v
    request_id = str(uuid.uuid4())
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key if route else "$default",
        "rawPath": raw_path,
        "rawQueryString": parts.query,
        "headers": hdrs,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "domainName": hdrs.get("host", host),
            "domainPrefix": hdrs.get("host", host).split(".")[0],
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": hdrs.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route.route_key if route else "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        event["queryStringParameters"] = query
    if path_params:
        event["pathParameters"] = dict(path_params)
    if body:
        if _is_text(hdrs.get("content-type", "application/json")):
            try:
                event["body"] = body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(body).decode("ascii")
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    return event


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": code, "message": message}).encode()


# ----------------------------------------------------------------------------- server


class Gateway:
    """``ThreadingHTTPServer`` on 127.0.0.1 that dispatches to the template's HTTP functions."""

    def __init__(self, resolver: Resolver, *, port: int = 3000, host: str = "127.0.0.1",
                 functions: Optional[FunctionHost] = None, dispatcher: Any = None, admin: Optional[dict[tuple[str, str], AdminHandler]] = None,
                 access_log: Optional[Callable[[str], None]] = None):
        self.resolver = resolver
        self.routes = discover_routes(resolver)
        self.functions = functions or FunctionHost(resolver, dispatcher)
        self.admin = dict(admin or {})
        self.access_log = access_log if access_log is not None else (lambda line: log.info("%s", line))
        self._server = LoopbackHTTPServer((host, port), self._make_handler())
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def function_ids(self) -> list[str]:
        return sorted({r.function for r in self.routes})

    def find(self, method: str, path: str) -> tuple[Optional[Route], Optional[dict]]:
        for r in self.routes:
            params = r.match(method, path)
            if params is not None:
                return r, params
        return None, None

    def start(self) -> "Gateway":
        self._thread = threading.Thread(target=self._server.serve_forever, name="calroute-gateway",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> "Gateway":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- request handling
    def handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes,
               source_ip: str) -> tuple[int, list[tuple[str, str]], bytes]:
        path = urlsplit(target).path or "/"
        admin = self.admin.get((method, path))
        if admin is not None:
            try:
                payload = json.loads(body) if body else None
            except ValueError:
                return 400, [("content-type", "application/json")], _error_body("invalid_json", "not JSON")
            try:
                status, out = admin(payload)
            except Exception as exc:  # noqa: BLE001 - a local admin route failed: say so, keep serving
                log.error("admin route %s %s failed:\n%s", method, path, traceback.format_exc())
                return 500, [("content-type", "application/json")], _error_body(
                    "internal_error", f"{type(exc).__name__}: {str(exc)[:300]}")
            return status, [("content-type", "application/json")], json.dumps(out, default=str).encode()
        route, params = self.find(method, path)
        if route is None:
            return 404, [("content-type", "application/json")], _error_body(
                "not_found", f"no route for {method} {path}")
        event = build_event(method, target, headers, body, route=route, path_params=params,
                            source_ip=source_ip, host=f"127.0.0.1:{self.port}")
        try:
            result = self.functions.invoke(route.function, event)
        except HandlerError as exc:  # a handler crash is a 500, like API Gateway's "Internal Server Error"
            log.error("%s crashed on %s %s: %s\n%s", route.function, method, path, exc,
                      "".join(exc.payload.get("stackTrace") or []))
            return 500, [("content-type", "application/json")], _error_body(
                "internal_error", f"{route.function} raised {exc.payload.get('errorType', 'an exception')}")
        except Exception as exc:  # noqa: BLE001 - e.g. the handler module failed to import
            log.error("%s failed on %s %s:\n%s", route.function, method, path, traceback.format_exc())
            return 500, [("content-type", "application/json")], _error_body(
                "internal_error", f"{route.function} failed: {type(exc).__name__}")
        return self._response(result)

    @staticmethod
    def _response(result: Any) -> tuple[int, list[tuple[str, str]], bytes]:
        if not isinstance(result, dict) or "statusCode" not in result:
            # payload 2.0: anything else is a 200 with the value as JSON
            body = result if isinstance(result, str) else json.dumps(result)
            return 200, [("content-type", "application/json")], body.encode()
        headers = [(k.lower(), str(v)) for k, v in (result.get("headers") or {}).items()]
        for k, values in (result.get("multiValueHeaders") or {}).items():
            headers.extend((k.lower(), str(v)) for v in values)
        headers.extend(("set-cookie", c) for c in result.get("cookies") or [])
        body = result.get("body") or ""
        raw = base64.b64decode(body) if result.get("isBase64Encoded") else (
            body.encode("utf-8") if isinstance(body, str) else json.dumps(body).encode())
        if not any(k == "content-type" for k, _ in headers):
            headers.append(("content-type", "application/json"))
        return int(result["statusCode"]), headers, raw

    def _make_handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "calroute-local"
            # headers and body go out in two writes: without TCP_NODELAY, Nagle + the client's delayed
            # ACK add ~40 ms to every keep-alive response
            disable_nagle_algorithm = True

            def log_message(self, fmt: str, *args: Any) -> None:  # silence the default stderr log
                pass

            def _serve(self) -> None:
                try:
                    self._serve_one()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True
                except Exception as exc:  # never leave a client waiting on a half-answered request
                    self.close_connection = True
                    body = _error_body("internal_error", f"local gateway error: {type(exc).__name__}")
                    try:
                        self.send_response(500)
                        self.send_header("content-type", "application/json")
                        self.send_header("content-length", str(len(body)))
                        self.send_header("connection", "close")
                        self.end_headers()
                        self.wfile.write(body)
                    except OSError:
                        pass

            def _serve_one(self) -> None:
                t0 = time.perf_counter()
                raw_length = (self.headers.get("content-length") or "0").strip()
                length = int(raw_length) if raw_length.isdigit() else -1
                if length < 0:
                    status, headers, body = 400, [("content-type", "application/json")], _error_body(
                        "invalid_request", "content-length must be a non-negative integer")
                    self.close_connection = True
                elif length > MAX_BODY_BYTES:
                    status, headers, body = 413, [("content-type", "application/json")], _error_body(
                        "payload_too_large", f"the body is {length} bytes; the API accepts at most {MAX_BODY_BYTES}")
                    self.close_connection = True
                else:
                    data = self.rfile.read(length) if length else b""
                    status, headers, body = gateway.handle(self.command, self.path, list(self.headers.items()),
                                                           data, self.client_address[0])
                self.send_response(status)
                for k, v in headers:
                    if k not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)
                ms = (time.perf_counter() - t0) * 1000
                gateway.access_log(f"{self.command} {urlsplit(self.path).path} {status} {ms:.1f}ms")

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

        return Handler
