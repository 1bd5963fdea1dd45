"""The Powertools resolver with validation, OpenAPI and calroute's error mapping
(``{"error": code, "message": ...}`` for every 4xx), the path parameter types, JSON answers, body
checks, the ``Depends`` override helper and the HTTP Lambda entry point."""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any, Callable, Optional

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths

from .. import ids
from ..config import settings
from ..errors import CalrouteError, InvalidInput, PayloadTooLarge, ServiceUnavailable
from ..startup import resumes_after_first_call
from .observability import discard_disabled_metrics, logger, metrics, tracer

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


def make_handler(app: APIGatewayHttpResolver, *, after_invocation: Optional[Callable[[Optional[str]], Any]] = None) -> Callable:
    """The Lambda entry point for ``app``: logging context, tracing and metrics around resolve().

    ``after_invocation(request_id)`` runs in a ``finally`` outside all of them, once the response
    and its metrics are built, whatever happened (:meth:`calroute.ports.AfterResponse.invocation_done`:
    the after-response work of this invocation may start). The first invocation's end also resumes
    the garbage collector paused for the cold start (:mod:`calroute.startup`)."""

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @discard_disabled_metrics
    @metrics.log_metrics
    def handler(event: dict, context: Any) -> dict:
        try:
            return app.resolve(event, context)
        except CalrouteError as exc:  # raised outside a route (e.g. middleware)
            return error_response(exc.status, exc.code, exc.message, exc.field).build(app.current_event)  # pragma: no cover

    if after_invocation is None:
        return resumes_after_first_call(handler)

    @functools.wraps(handler)
    def handler_then_after(event: dict, context: Any) -> dict:
        try:
            return handler(event, context)
        finally:
            after_invocation(getattr(context, "aws_request_id", None))

    return resumes_after_first_call(handler_then_after)


def parse_json_body(app: APIGatewayHttpResolver) -> Any:
    check_body_size(app)
    try:
        return app.current_event.json_body
    except (ValueError, TypeError) as exc:
        raise InvalidInput("the body is not valid JSON", field="body") from exc
