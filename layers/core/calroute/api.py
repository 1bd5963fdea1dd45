"""What every HTTP handler shares: the Powertools resolver with OpenAPI + validation, the error
mapping (``{"error": code, "message": ...}`` for every 4xx), authorisation of the path's user id,
and the Logger / Tracer / Metrics singletons.

A handler module is then only::

    app = make_resolver()
    @app.post("/v1/users/<userId>/events")
    def ingest(userId: UserIdPath, body: IngestBody) -> dict: ...
    lambda_handler = make_handler(app)
"""

from __future__ import annotations

import functools
import json
import os
from typing import Annotated, Any, Callable

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from . import ids
from .config import settings
from .errors import CalrouteError, Forbidden, InvalidInput, PayloadTooLarge, ServiceUnavailable

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "calroute")
logger = Logger(service=SERVICE)


def tracing_enabled() -> bool:
    """Powertools' own switch: POWERTOOLS_TRACE_DISABLED=true turns tracing off."""
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() not in ("1", "true", "yes")


class LazyTracer:
    """The Powertools Tracer, created on first use.

    Creating a Tracer imports ``aws_xray_sdk`` (+ botocore), ~0.4-0.9 s of cold start. A function
    deployed with tracing off (the predict function by default: see the ``PredictTracing``
    template parameter) never pays it, and its handler is not wrapped at all.
    """

    def __init__(self, service: str):
        self.service = service
        self._tracer = None

    def _get(self):
        if self._tracer is None:
            from aws_lambda_powertools import Tracer

            self._tracer = Tracer(service=self.service)
        return self._tracer

    def capture_lambda_handler(self, fn: Callable | None = None, **kwargs: Any):
        def deco(func: Callable) -> Callable:
            if not tracing_enabled():
                return func
            return self._get().capture_lambda_handler(func, **kwargs)

        return deco(fn) if fn is not None else deco

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


tracer = LazyTracer(SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "calroute"), service=SERVICE)

UserIdPath = Annotated[str, Path(pattern=ids.USER_ID_PATTERN, max_length=64, description="The user id")]
CalendarIdPath = Annotated[str, Path(pattern=ids.CALENDAR_ID_PATTERN, max_length=128,
                                     description="The calendar id")]
EventIdPath = Annotated[str, Path(pattern=ids.EVENT_ID_PATTERN, max_length=256, description="The event id")]
VersionPath = Annotated[str, Path(pattern=ids.VERSION_PATTERN, description="A model version")]


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict | None = None) -> Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if field:
        body["field"] = field
    return Response(status_code=status, content_type="application/json",
                    body=json.dumps(body, ensure_ascii=False), headers=headers or {})


def json_response(body: Any, status: int = 200) -> Response:
    """A JSON answer sent as it is (no response-model validation: for hot paths whose answers are
    built by calroute's own code and checked against their documented model by the tests)."""
    return Response(status_code=status, content_type="application/json",
                    body=json.dumps(body, ensure_ascii=False, separators=(",", ":")))


def _validation_field(err: dict) -> str:
    loc = [str(p) for p in err.get("loc", ()) if str(p) not in ("body",)]
    return ".".join(loc[1:] if loc and loc[0] in ("path", "query") else loc) or "body"


def caller_identity(app: APIGatewayHttpResolver) -> str:
    """Who is calling: JWT ``sub``, IAM user ARN, the dev header, or ``anonymous``."""
    ev = app.current_event
    rc = ev.raw_event.get("requestContext") or {}
    auth = rc.get("authorizer") or {}
    jwt = (auth.get("jwt") or {}).get("claims") or {}
    if jwt.get("sub"):
        return f"jwt:{jwt['sub']}"
    iam = auth.get("iam") or {}
    if iam.get("userArn"):
        return f"iam:{iam['userArn']}"
    dev = (ev.headers or {}).get("x-calroute-user")
    if dev:
        return f"dev:{dev}"
    return "anonymous"


def authorize_user(app: APIGatewayHttpResolver, user_id: str) -> None:
    """Enforce the tenant boundary for the path's ``userId``.

    * ``iam``: API Gateway already authenticated the SigV4 caller (a trusted backend).
    * ``jwt``: the token's ``sub`` must equal the path's user id.
    * ``dev`` (local stack): the ``x-calroute-user`` header plays the part of ``sub``.
    * ``none``: no check (tests, benchmarks).
    """
    mode = settings().auth_mode
    if mode in ("iam", "none"):
        return
    who = caller_identity(app)
    expected = {"jwt": "jwt:", "dev": "dev:"}[mode] + user_id
    if who != expected:
        raise Forbidden("the caller may not act for this user", field="userId")


def require_operator(app: APIGatewayHttpResolver) -> str:
    """Operator-only endpoints: IAM callers, or identities listed in OPERATOR_IDS."""
    cfg = settings()
    who = caller_identity(app)
    if cfg.auth_mode in ("iam", "none") and not who.startswith(("jwt:", "dev:")):
        return who
    if who.split(":", 1)[-1] in cfg.operator_ids:
        return who
    raise Forbidden("operators only")


def make_resolver(**kwargs: Any) -> APIGatewayHttpResolver:
    """A resolver with validation, OpenAPI and calroute's error mapping installed."""
    app = APIGatewayHttpResolver(enable_validation=True, **kwargs)

    @app.exception_handler(RequestValidationError)
    def _validation(exc: RequestValidationError) -> Response:
        errs = exc.errors()
        err = errs[0] if errs else {}
        if err.get("type") == "json_invalid":  # loc is ("body", <position>): not a field
            return error_response(400, "invalid_json", "the body is not valid JSON", "body")
        field = _validation_field(err)
        msg = err.get("msg", "invalid request")
        return error_response(422 if field != "body" else 400, "validation_error", f"{field}: {msg}", field)

    @app.exception_handler(CalrouteError)
    def _domain(exc: CalrouteError) -> Response:
        headers = {}
        if isinstance(exc, ServiceUnavailable):
            headers["Retry-After"] = str(exc.retry_after)
        return error_response(exc.status, exc.code, exc.message, exc.field, headers)

    @app.exception_handler(RequestUnsupportedContentType)
    def _media_type(exc: RequestUnsupportedContentType) -> Response:
        return error_response(415, "unsupported_media_type", "send the body as application/json",
                              "content-type")

    @app.exception_handler(json.JSONDecodeError)
    def _bad_json(exc: json.JSONDecodeError) -> Response:
        return error_response(400, "invalid_json", f"the body is not valid JSON: {exc.msg}", "body")

    # Raised by Powertools while decoding the body, before any route code runs: a base64 body whose
    # bytes are not UTF-8, and JSON nested deeper than the interpreter's recursion limit.
    @app.exception_handler(UnicodeDecodeError)
    def _bad_utf8(exc: UnicodeDecodeError) -> Response:
        return error_response(400, "invalid_json", "the body is not valid UTF-8 text", "body")

    @app.exception_handler(RecursionError)
    def _too_deep(exc: RecursionError) -> Response:
        return error_response(400, "invalid_json", "the body is nested too deeply", "body")

    @app.not_found
    def _not_found(exc: NotFoundError) -> Response:
        return error_response(404, "not_found", "no such route")

    return app


def provided(app: APIGatewayHttpResolver, provider: Callable[[], Any]) -> Any:
    """``provider()``, or ``app.dependency_overrides[provider]()`` when a test put one there: the
    override semantics of Powertools' ``Depends`` for a route that calls its provider itself (the
    hot path, where resolving ``Depends`` per request costs more than the lookup: see
    ``functions/predict/app.py``)."""
    overrides = app.dependency_overrides
    return (overrides.get(provider, provider) if overrides else provider)()


def check_body_size(app: APIGatewayHttpResolver) -> None:
    body = app.current_event.body or ""
    if len(body) > settings().max_body_bytes:
        raise PayloadTooLarge(f"the body is {len(body)} bytes; at most {settings().max_body_bytes} are allowed",
                              field="body")


def discard_disabled_metrics(fn: Callable) -> Callable:
    """With ``POWERTOOLS_METRICS_DISABLED`` (the local stack, tests) Powertools skips the flush but
    keeps the values, and its ``add_metric`` prints them anyway once a metric holds 100 values: a
    stray EMF document every ~100 requests. Drop them after each invocation instead."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            if metrics.metric_set and is_metrics_disabled():
                metrics.clear_metrics()

    return wrapper


def make_handler(app: APIGatewayHttpResolver) -> Callable:
    """The Lambda entry point for ``app``: logging context, tracing and metrics around resolve()."""

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @discard_disabled_metrics
    @metrics.log_metrics
    def handler(event: dict, context: Any) -> dict:
        try:
            return app.resolve(event, context)
        except CalrouteError as exc:  # raised outside a route (e.g. middleware)
            return error_response(exc.status, exc.code, exc.message, exc.field).build(app.current_event)  # pragma: no cover

    return handler


def task_handler(fn: Callable | None = None, *, flush_metrics: bool = False) -> Callable:
    """Decorator for non-HTTP handlers (state-machine tasks, Lambda-to-Lambda): logging context,
    tracing and, with ``flush_metrics``, the EMF flush — one place instead of a stack per handler."""

    def deco(func: Callable) -> Callable:
        wrapped = func
        if flush_metrics:
            wrapped = discard_disabled_metrics(metrics.log_metrics(wrapped))
        wrapped = tracer.capture_lambda_handler(wrapped, capture_response=False)
        return logger.inject_lambda_context(wrapped, clear_state=True)

    return deco(fn) if fn is not None else deco


def parse_json_body(app: APIGatewayHttpResolver) -> Any:
    check_body_size(app)
    try:
        return app.current_event.json_body
    except (ValueError, TypeError) as exc:
        raise InvalidInput("the body is not valid JSON", field="body") from exc
