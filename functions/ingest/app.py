"""IngestFunction: labelled events, corrections, calendars and ICS import (HTTP API).

Thin handler: authorise the path's user, validate, call ``calroute.services.ingest``, respond.
The service (:func:`calroute.wiring.ingest_service`) is built on the first request and kept for the
container's life; routes receive it with Powertools' ``Depends`` (tests swap it through
``app.dependency_overrides[service]``). Importing this module does no I/O.
"""

from __future__ import annotations

from calroute import startup  # noqa: F401 - first: pauses the GC for the cold start (COLD_START_GC)

import base64
import binascii
import functools
from typing import Annotated, Any, Literal, Optional

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, Field, StrictBool

from calroute import ids, wiring
from calroute.http.auth import authorize_user
from calroute.http.observability import metrics
from calroute.http.resolver import (
    CalendarIdPath,
    EventIdPath,
    UserIdPath,
    check_body_size,
    make_handler,
    make_resolver,
)
from calroute.config import settings
from calroute.schema import Method
from calroute.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from calroute.services import ingest as svc
from calroute.services.ingest import IngestService

app = make_resolver()

ICS_CONTENT_TYPES = ("text/calendar", "text/plain", "application/octet-stream", "application/ics")


@functools.cache
def service() -> IngestService:
    """The ingest use cases on the AWS adapters, built from the settings on first use."""
    return wiring.ingest_service(settings())


Service = Annotated[IngestService, Depends(service)]


# ----------------------------------------------------------------------------- models


class IngestBody(BaseModel):
    events: list[dict[str, Any]] = Field(
        ..., description="Labelled events, flat form ({event_id, summary, ..., start, end, calendar_id}) or "
        "Google Calendar event resources with a calendar_id; every one needs an id and a calendar_id. "
        "At most INGEST_MAX_EVENTS (default 500) per request.")


class IngestResult(BaseModel):
    upserted: int = Field(..., description="Distinct event ids written (upserts: re-posting is idempotent)")
    new: int = Field(..., description="Of those, ids that were not stored before")
    calendars_added: list[str] = Field(..., description="Calendar ids registered by this request")


class PredictedEcho(BaseModel):
    """The answer the client got from classify, echoed back (the prediction log is sampled)."""
    model_config = {"extra": "forbid"}

    calendar_id: Optional[str] = Field(None, pattern=ids.CALENDAR_ID_PATTERN, max_length=128,
                                       description="The calendar classify chose (null when method is none)")
    method: Method
    model_version: Optional[str] = Field(None, pattern=ids.VERSION_PATTERN, description="classify's model_version")


class CorrectionBody(BaseModel):
    calendar_id: str = Field(..., pattern=ids.CALENDAR_ID_PATTERN, max_length=128,
                             description="The calendar the event really belongs to")
    predicted: Optional[PredictedEcho] = Field(None, description=(
        "Optional: what classify answered for this event. Recorded with the correction when the "
        "prediction log has no item for the event (it keeps a sample of confident answers)"))


class CorrectionResult(BaseModel):
    event_id: str
    from_calendar: str = Field(..., description="The label before the correction")
    to_calendar: str
    created_at: str
    changed: bool = Field(..., description="False when the event already had this label")
    predicted_calendar: Optional[str] = Field(None, description="What had been predicted, if logged")
    predicted_method: Optional[str] = None
    predicted_model_version: Optional[str] = None
    predicted_source: Optional[Literal["log", "client"]] = Field(None, description=(
        "Where the predicted_* fields come from: the prediction log, or the client's echo"))
    was_correct: Optional[bool] = Field(None, description="Whether the prediction (logged or echoed) was right")


class CalendarBody(BaseModel):
    name: str = Field("", max_length=svc.MAX_CALENDAR_NAME, description="Display name")
    description: str = Field("", max_length=svc.MAX_CALENDAR_DESCRIPTION,
                             description="What goes in this calendar (shown to the LLM fallback)")


class SettingsBody(BaseModel):
    model_config = {"extra": "forbid"}

    remember: Optional[StrictBool] = Field(None, description=(
        "Keep the answered events of classify requests that do not say remember (as if they sent "
        "remember=true); a request's own remember wins"))


class Settings(BaseModel):
    remember: bool = Field(..., description="Classify keeps answered events by default (see SettingsBody)")
    updated_at: Optional[str] = Field(None, description="When the settings were last set (null: never)")


class CalendarResult(BaseModel):
    calendar_id: str
    name: str
    description: str


class ImportResult(BaseModel):
    calendar_id: str
    calendar_registered: bool = Field(..., description="True when the import registered the calendar")
    events: int = Field(..., description="Events upserted (single events + expanded occurrences)")
    new: int
    vevents: int = Field(..., description="VEVENT components in the file")
    recurring_series: int
    recurring_expanded: int = Field(..., description="Events produced by expanding recurring series")
    skipped: int = Field(..., description="VEVENTs/occurrences left out (unusable, cancelled, duplicate)")
    skipped_reasons: dict[str, int]
    window: dict[str, str] = Field(..., description="The expansion window of recurring series (UTC)")


class ReviewItem(BaseModel):
    event_id: str
    calendar_id: str = Field(..., description="The calendar the LLM answered (the remembered label)")
    summary: str
    start: str
    margin: Optional[float] = Field(None, description="The model's top-two probability margin when it answered")
    novelty: Optional[float] = Field(None, description="Share of the title unseen in the model's training events")
    confidence: Optional[float] = None
    method: Optional[str] = None
    model_version: Optional[str] = None
    priority: float = Field(..., description="margin x (1 - 0.5 x novelty): how sure the answer was (lower: less sure)")
    represents: int = Field(..., description="How many pending answers this one stands for in the sample (itself, its "
                            "repeats and the similar events nearest to it in the queue's order)")
    answered_at: str


class ReviewQueue(BaseModel):
    user_id: str
    pending: int = Field(..., description="LLM-labelled events not confirmed or corrected yet")
    events: list[ReviewItem]


class ConfirmResult(BaseModel):
    event_id: str
    calendar_id: str
    provenance: Literal["confirmed", "user"] = Field(..., description=(
        "confirmed; user when the label already was the user's own (nothing changed)"))
    changed: bool


_ERRORS = {
    400: {"description": "Invalid input ({error, message, field})"},
    403: {"description": "The caller may not act for this user"},
    422: {"description": "Validation error ({error, message, field})"},
    503: {"description": "Storage is throttling; retry after Retry-After seconds (writes are idempotent)"},
}


# ----------------------------------------------------------------------------- routes


@app.post("/v1/users/<userId>/events", summary="Upsert labelled events", tags=["ingest"],
          description="Validates the whole batch first (one bad event: nothing is written), then upserts "
          "by event id. Unknown calendar ids are registered with their id as name.",
          response_description="How many events were written",
          responses={200: {"description": "OK"}, 413: {"description": "Too many events or body too large"},
                     **_ERRORS})
def post_events(userId: UserIdPath, body: IngestBody, ingest: Service) -> IngestResult:
    authorize_user(app, userId)
    check_body_size(app)
    result = ingest.ingest_events(userId, body.events)
    metrics.add_metric(name="EventsIngested", unit="Count", value=result["upserted"])
    return result  # type: ignore[return-value]


@app.post("/v1/users/<userId>/events/<eventId>/correction", summary="Correct an event's calendar",
          tags=["ingest"], description="Relabels a stored event, records the correction with what had been "
          "predicted, and marks the prediction log.",
          response_description="The correction record",
          responses={200: {"description": "OK"}, 404: {"description": "No such event"}, **_ERRORS})
def post_correction(userId: UserIdPath, eventId: EventIdPath, body: CorrectionBody,
                    ingest: Service) -> CorrectionResult:
    authorize_user(app, userId)
    check_body_size(app)
    echo = body.predicted.model_dump() if body.predicted is not None else None
    result = ingest.correct_event(userId, eventId, body.calendar_id, echo)
    if result.get("changed"):
        metrics.add_metric(name="Corrections", unit="Count", value=1)
    return result  # type: ignore[return-value]


@app.get("/v1/users/<userId>/review", summary="Events worth confirming (review queue)", tags=["ingest"],
         description="The user's events labelled by the LLM (classify with remember) and not yet confirmed or "
         "corrected, a representative sample first: calendars, groups of similar events and weeks in proportion to "
         "their pending answers, the least sure answer within each stratum (docs/learning.md, Review queue).",
         response_description="The queue", responses={200: {"description": "OK"}, **_ERRORS})
def get_review(userId: UserIdPath, ingest: Service,
               limit: Annotated[int, Query(ge=1, le=100, description="Events to return")] = 10) -> ReviewQueue:
    authorize_user(app, userId)
    return ingest.review_queue(userId, limit)  # type: ignore[return-value]


@app.post("/v1/users/<userId>/events/<eventId>/confirm", summary="Confirm an event's label", tags=["ingest"],
          description="The user accepts the stored (remembered) answer: its provenance becomes confirmed, "
          "a label the model may be certified on. To change the calendar, post a correction instead.",
          response_description="The confirmed label",
          responses={200: {"description": "OK"}, 404: {"description": "No such event"}, **_ERRORS})
def post_confirm(userId: UserIdPath, eventId: EventIdPath, ingest: Service) -> ConfirmResult:
    authorize_user(app, userId)
    check_body_size(app)
    result = ingest.confirm_event(userId, eventId)
    if result["changed"]:
        metrics.add_metric(name="Confirmations", unit="Count", value=1)
    return result  # type: ignore[return-value]


@app.get("/v1/users/<userId>/settings", summary="The user's settings", tags=["ingest"],
         response_description="The settings (defaults where never set)",
         responses={200: {"description": "OK"}, **_ERRORS})
def get_settings(userId: UserIdPath, ingest: Service) -> Settings:
    authorize_user(app, userId)
    return ingest.settings(userId)  # type: ignore[return-value]


@app.put("/v1/users/<userId>/settings", summary="Change the user's settings", tags=["ingest"],
         description="Only the settings named change. remember=true: classify requests that do not say "
         "remember keep their answered events (docs/learning.md, Classify and remember).",
         response_description="The settings", responses={200: {"description": "OK"}, **_ERRORS})
def put_settings(userId: UserIdPath, body: SettingsBody, ingest: Service) -> Settings:
    authorize_user(app, userId)
    check_body_size(app)
    return ingest.put_settings(userId, body.model_dump(exclude_none=True))  # type: ignore[return-value]


@app.put("/v1/users/<userId>/calendars/<calendarId>", summary="Create or update a calendar",
         tags=["ingest"], response_description="The stored calendar",
         responses={200: {"description": "OK"}, **_ERRORS})
def put_calendar(userId: UserIdPath, calendarId: CalendarIdPath, body: CalendarBody,
                 ingest: Service) -> CalendarResult:
    authorize_user(app, userId)
    check_body_size(app)
    return ingest.put_calendar(userId, calendarId, body.name, body.description)  # type: ignore[return-value]


def _ics_body() -> bytes:
    ev = app.current_event
    ctype = (ev.headers or {}).get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype and ctype not in ICS_CONTENT_TYPES:
        raise UnsupportedMediaType(f"content-type {ctype!r} is not supported; send text/calendar",
                                   field="content-type")
    raw = ev.body or ""
    limit = settings().ics_max_bytes
    if len(raw) > limit * 4 // 3 + 4:  # cheap bound before decoding (base64 grows by 4/3)
        raise PayloadTooLarge(f"the calendar is over ics_max_bytes={limit} bytes", field="body")
    if ev.is_base64_encoded:
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidInput("the body is marked base64 but is not valid base64", field="body") from None
    return raw.encode("utf-8", errors="surrogatepass")


@app.post("/v1/users/<userId>/calendars/<calendarId>/import", summary="Import an iCalendar file",
          tags=["ingest"], description="Request body: the raw iCalendar file (content-type text/calendar, "
          "at most ICS_MAX_BYTES). Every VEVENT is labelled with calendarId; recurring series are expanded "
          "within now-ICS_WINDOW_DAYS_BACK .. now+ICS_WINDOW_DAYS_FORWARD (at most ICS_MAX_OCCURRENCES "
          "events). Idempotent: ids come from UIDs or are derived deterministically.",
          response_description="What was imported",
          responses={200: {"description": "OK"}, 413: {"description": "File too large"},
                     415: {"description": "Not text/calendar"}, **_ERRORS},
          openapi_extensions={"x-request-content-type": "text/calendar"})
def import_calendar(userId: UserIdPath, calendarId: CalendarIdPath, ingest: Service) -> ImportResult:
    authorize_user(app, userId)
    result = ingest.import_ics(userId, calendarId, _ics_body())
    metrics.add_metric(name="IcsEventsImported", unit="Count", value=result["events"])
    return result  # type: ignore[return-value]


lambda_handler = make_handler(app)
