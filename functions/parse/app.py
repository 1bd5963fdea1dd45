"""ParseFunction: words to an event draft, with a confidence per slot and the calendar the user's
model picks (HTTP API, issue 13).

Thin handler: validate, call ``calroute.services.parse``, respond. The service
(:func:`calroute.wiring.parse_service`: the slot rules with ``dateparser``, the LLM fallback's slot
task, and the predict service in-process for the routing) is built on the first request and kept
for the container's life. This function ships the ParseLayer (dateparser) and the InferenceLayer
(ONNX, for the routing); the predict function never imports the parser.
"""

from __future__ import annotations

from calroute import startup  # noqa: F401 - first: pauses the GC for the cold start (COLD_START_GC)

import functools
from typing import Any, Literal, Optional

from pydantic import BaseModel, Field

from calroute import ids, wiring
from calroute.config import settings
from calroute.http.auth import authorize_user
from calroute.http.observability import logger, metrics
from calroute.http.resolver import UserIdPath, check_body_size, json_response, make_handler, make_resolver, provided
from calroute.services.parse import MAX_TURN_CHARS, MAX_TURNS, ParseService

app = make_resolver()


@functools.cache
def service() -> ParseService:
    """The parse service on the AWS adapters, built from the settings on first use (tests swap it
    with ``app.dependency_overrides[service]``)."""
    return wiring.parse_service(settings(), sink=wiring.metrics_sink(metrics), logger=logger)


class Turn(BaseModel):
    role: Literal["user", "assistant"] = "user"
    text: str = Field(..., max_length=MAX_TURN_CHARS)


class ParseBody(BaseModel):
    text: Optional[str] = Field(None, max_length=MAX_TURN_CHARS,
                                description="What the user said (or give turns)")
    turns: Optional[list[Turn]] = Field(None, min_length=1, max_length=MAX_TURNS,
                                        description="A short conversation, oldest first (or give text)")
    now: Optional[str] = Field(None, max_length=40, description=(
        "ISO 8601 date-time relative dates are resolved against (default: the request time); "
        "a naive one is a wall-clock time in the timezone"))
    timezone: Optional[str] = Field(None, max_length=64, description=(
        "IANA zone of the user (default: the user's profile setting, else UTC)"))


class SlotAnswer(BaseModel):
    value: Any
    confidence: float
    source: Literal["rules", "llm", "default"]
    span: Optional[dict[str, Any]] = Field(..., description="{turn, start, end, text}: where the value was said")
    needs_confirmation: bool = Field(..., description=(
        "false only where the benchmark certifies >= 97% right at this confidence (docs/slots.md)"))
    rule: Optional[str] = None
    note: Optional[str] = Field(None, description="llm | llm_not_configured | llm_<error> | llm_invalid: ... | llm_no_value")


class Draft(BaseModel):
    summary: str
    start: str
    end: str
    all_day: bool
    location: str
    attendees: list[str] = Field(..., description="E-mail addresses said")
    attendee_names: list[str] = Field(..., description="People named (\"with Sam\")")


class ParseResult(BaseModel):
    draft: Draft
    slots: dict[str, SlotAnswer]
    missing: list[str] = Field(..., description="Required slots nobody filled: what to ask next")
    to_confirm: list[str] = Field(..., description="Filled slots the user should confirm")
    timezone: str
    now: str
    calendar: dict[str, Any] = Field(..., description="The classify answer's shape for the draft")
    llm: dict[str, Any]
    latency_ms: float


_RESPONSES = {
    400: {"description": "Invalid input ({error, message, field})"},
    403: {"description": "The caller may not act for this user"},
    413: {"description": "Body too large"},
    422: {"description": "Validation error ({error, message, field})"},
}


@app.post("/v1/users/<userId>/events/parse", summary="Words to an event draft", tags=["parse"],
          responses={200: {"description": "The draft, its slots and the calendar",
                           "content": {"application/json": {"model": ParseResult}}}, **_RESPONSES})
def parse(userId: UserIdPath, body: ParseBody):
    check_body_size(app)
    user = ids.user_id(userId)
    authorize_user(app, user)
    turns = [t.model_dump() for t in body.turns] if body.turns is not None else None
    return json_response(provided(app, service).parse(user, text=body.text, turns=turns, now=body.now,
                                                      timezone=body.timezone))


lambda_handler = make_handler(app)
