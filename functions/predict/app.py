"""PredictFunction: classify one event or a batch for a user (HTTP API).

Thin handler: validate, call ``calroute.services.predict``, respond. The service (model cache,
adapters, invoker: :func:`calroute.wiring.predict_service`) is built on the first request and kept
for the container's life; importing this module does no I/O and never imports sklearn or openai
(in a SnapStart init it also builds the service and its clients, still without I/O: ``_prime``).

Requests are validated by the resolver (OpenAPI + pydantic). Answers are built by the service and
sent as JSON as they are: the response models below document them in the OpenAPI document, and
tests validate every answer against them, instead of re-validating each one on the hot path
(~60 µs of a ~0.5 ms request; see docs/serving.md).
"""

from __future__ import annotations

from calroute import startup  # noqa: F401 - first: pauses the GC for the cold start (COLD_START_GC)

import functools
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from calroute import ids, wiring
from calroute.http.auth import authorize_user
from calroute.http.observability import logger, metrics
from calroute.http.resolver import (
    UserIdPath,
    check_body_size,
    json_response,
    make_handler,
    make_resolver,
    provided,
)
from calroute.config import settings
from calroute.schema import Method
from calroute.services.predict import PredictService

app = make_resolver()

#: where the prediction log's DynamoDB write runs: after the response, through a Lambda internal
#: extension registered now (the init phase is the only time the Extensions API takes one), or at
#: once outside Lambda and under SnapStart (:func:`calroute.wiring.after_response`)
AFTER = wiring.after_response(settings(), logger=logger)


@functools.cache
def service() -> PredictService:
    """The classification service on the AWS adapters, built from the settings on first use and
    kept for the container's life (its model cache lives as long).

    The routes below call it through :func:`calroute.http.resolver.provided` instead of declaring
    ``Depends(service)`` as the other HTTP functions do: Powertools resolves ``Depends`` by
    evaluating the route's type hints again on every request, which added ~190 µs to a ~430 µs warm
    classify (Powertools 3.37; ``python -m bench.depends_cost`` measures it), far over the ~20 µs
    this path may spend on wiring. ``provided`` honours ``app.dependency_overrides[service]`` all
    the same, so tests swap this service exactly as they swap the others."""
    return wiring.predict_service(settings(), sink=wiring.metrics_sink(metrics), logger=logger,
                                  lines=wiring.stdout_lines, after=AFTER)


_REMEMBER = ("Keep the event with the answered calendar as a remembered label (provenance ml, llm, or sole for "
             "the user's only calendar; never "
             "over the user's own label), so the model learns from it; needs event ids (docs/learning.md). "
             "Omitted: the user's setting (PUT /v1/users/{userId}/settings, default false), under which "
             "events without an id are answered and not kept")


class ClassifyBody(BaseModel):
    event: dict[str, Any] = Field(..., description="The event, flat form or Google Calendar event resource")
    remember: Optional[bool] = Field(None, description=_REMEMBER)


# Models a classify request does not validate are built on first use (``defer_build``): the batch
# body, and the response models, which only the OpenAPI document and the tests use.
_LAZY = ConfigDict(defer_build=True)


class BatchBody(BaseModel):
    model_config = _LAZY

    events: list[dict[str, Any]] = Field(..., min_length=1, max_length=1000,
                                         description="Events to classify (at most BATCH_MAX_EVENTS, default 100)")
    remember: Optional[bool] = Field(None, description=_REMEMBER)


class Alternative(BaseModel):
    model_config = _LAZY

    calendar_id: str
    probability: float


class Classification(BaseModel):
    model_config = _LAZY

    event_id: str = Field(..., description="The event's id, or a generated one")
    calendar_id: Optional[str] = Field(..., description="The chosen calendar (null when method is none)")
    confidence: Optional[float] = Field(..., description="The model's probability for the chosen calendar")
    method: Method
    model_version: Optional[str]
    threshold: Optional[float] = Field(..., description=(
        "The user's certified threshold on confidence x (1 - w x novelty); 1.0 = no threshold could be "
        "certified, the model never answers on its own"))
    alternatives: list[Alternative] = Field(..., description="The model's top 3")
    reason: str = Field(..., description=(
        "confident | low_confidence | novel_event | unusual_time | unmet_calendar | uncertified_model | no_model | ... "
        "(why the model answered or deferred; the LLM's reason when it answered)"))
    defer_reason: Optional[str] = Field(None, description=(
        "Null when the model answered on its own; else why it deferred: low_confidence | novel_event | "
        "unusual_time | unmet_calendar | uncertified_model | no_model | kill_switch | control_cohort | model_unavailable"))
    novelty: Optional[float] = Field(None, description=(
        "Share of the event's title unseen in the user's training events (feature spec 2 models)"))
    anomaly: Optional[float] = Field(None, description=(
        "Share of the event's when/how-long tokens (hour or all-day, weekday, duration, multi-day) that "
        "no training event of the predicted calendar had; at >= 0.75 the model defers (unusual_time)"))
    cohort: Literal["control", "treatment"]
    latency_ms: float
    remembered: Optional[bool] = Field(None, description=(
        "Only with remember: the event is kept (with this answer, or with the user's own label when it had "
        "one); false for none, a declined or over-budget fallback, or when storing failed"))


class BatchResult(BaseModel):
    model_config = _LAZY

    results: list[Classification]


_RESPONSES = {
    400: {"description": "Invalid input ({error, message, field})"},
    403: {"description": "The caller may not act for this user"},
    413: {"description": "Too many events"},
    422: {"description": "Validation error ({error, message, field})"},
}


def _ok(model: type[BaseModel], description: str) -> dict:
    return {200: {"description": description, "content": {"application/json": {"model": model}}}, **_RESPONSES}


@app.post("/v1/users/<userId>/classify", summary="Classify one event", tags=["predict"],
          responses=_ok(Classification, "The calendar chosen for the event"))
def classify(userId: UserIdPath, body: ClassifyBody):
    check_body_size(app)
    user = ids.user_id(userId)
    authorize_user(app, user)
    return json_response(provided(app, service).classify(user, body.event, remember=body.remember))


@app.post("/v1/users/<userId>/classify/batch", summary="Classify a batch of events", tags=["predict"],
          responses=_ok(BatchResult, "One classification per event, in order"))
def classify_batch(userId: UserIdPath, body: BatchBody):
    check_body_size(app)
    user = ids.user_id(userId)
    authorize_user(app, user)
    return json_response({"results": provided(app, service).classify_batch(user, body.events,
                                                                              remember=body.remember)})


def _after_invocation(request_id: Optional[str]) -> None:
    AFTER.invocation_done(request_id)


lambda_handler = make_handler(app, after_invocation=_after_invocation)


def _prime() -> None:
    """SnapStart init only (:func:`calroute.wiring.snapstart_init`): the service, its boto3
    clients and onnxruntime go into the snapshot instead of into the first request."""
    service()
    wiring.prime_predict()


wiring.snapstart_init(_prime)
