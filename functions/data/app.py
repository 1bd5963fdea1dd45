"""DataFunction: the user's data lifecycle — list, delete, erase (HTTP API).

Thin handler: authorise (the path's user, or an operator: ``OPERATOR_IDS``), call
``calroute.services.lifecycle``, respond. The only function with delete permissions on the tables
and the model bucket's object versions (template.yaml; tests/integration/test_template.py).
The service (:func:`calroute.wiring.lifecycle_service`) is built on the first request and kept for
the container's life; tests swap it through ``app.dependency_overrides[service]``.
"""

from __future__ import annotations

from calroute import startup  # noqa: F401 - first: pauses the GC for the cold start (COLD_START_GC)

import functools
from typing import Annotated, Any, Optional

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel, Field

from calroute import ids, wiring
from calroute.http.auth import authorize_user, caller_identity, require_operator
from calroute.http.observability import metrics
from calroute.http.resolver import CalendarIdPath, EventIdPath, UserIdPath, make_handler, make_resolver
from calroute.config import settings
from calroute.errors import Forbidden
from calroute.services import lifecycle as svc
from calroute.services.lifecycle import LifecycleService

app = make_resolver()


@functools.cache
def service() -> LifecycleService:
    """The lifecycle use cases on the AWS adapters, built from the settings on first use."""
    return wiring.lifecycle_service(settings(), sink=wiring.metrics_sink(metrics))


Service = Annotated[LifecycleService, Depends(service)]


def authorize_owner_or_operator(user_id: str) -> str:
    """The path's user (the tenant check of every route) or an operator. Returns who acts, as the
    erasure audit records it: ``self`` for the user (never their id), else the caller identity."""
    try:
        authorize_user(app, user_id)
    except Forbidden:
        return require_operator(app)
    who = caller_identity(app)
    return "self" if who in (f"jwt:{user_id}", f"dev:{user_id}") else who


# ----------------------------------------------------------------------------- models


class CalendarListItem(BaseModel):
    calendar_id: str
    name: str
    description: str
    events: int = Field(..., description="Labelled events stored in this calendar")


class CalendarList(BaseModel):
    calendars: list[CalendarListItem]


class EventPage(BaseModel):
    events: list[dict[str, Any]] = Field(..., description="Flat labelled events, newest (start) first")
    count: int
    next_cursor: Optional[str] = Field(None, description="Pass as ?cursor= for the next page; null on the last")


class EventDeleted(BaseModel):
    event_id: str
    deleted: bool
    corrections_deleted: int
    predictions_deleted: int


class CalendarDeleted(BaseModel):
    calendar_id: str
    deleted: bool
    events_deleted: int
    events_moved: int
    moved_to: Optional[str]
    retrain_requested: bool
    removed_at: str = Field(..., description="From this time on no model trained before it answers with the calendar")


class UserErased(BaseModel):
    erased: bool
    user_hash: str = Field(..., description="HMAC of the user id (the audit record's key), not the id")
    removed: dict[str, int] = Field(..., description="Items / object versions removed per store")
    total: int
    at: str


_ERRORS = {
    400: {"description": "Invalid input ({error, message, field})"},
    403: {"description": "The caller is neither this user nor an operator"},
    422: {"description": "Validation error ({error, message, field})"},
    503: {"description": "Storage is throttling; retry after Retry-After seconds (every step is idempotent)"},
}

CalendarQuery = Annotated[Optional[str], Query(pattern=ids.CALENDAR_ID_PATTERN, max_length=128,
                                               description="Only this calendar's events")]


# ----------------------------------------------------------------------------- routes


@app.get("/v1/users/<userId>/calendars", summary="The user's calendars with event counts", tags=["data"],
         responses={200: {"description": "OK"}, **_ERRORS})
def get_calendars(userId: UserIdPath, data: Service) -> CalendarList:
    authorize_owner_or_operator(userId)
    return data.list_calendars(userId)  # type: ignore[return-value]


@app.get("/v1/users/<userId>/events", summary="The user's labelled events, newest first (paged)", tags=["data"],
         responses={200: {"description": "OK"}, **_ERRORS})
def get_events(userId: UserIdPath, data: Service, calendar_id: CalendarQuery = None,
               cursor: Annotated[Optional[str], Query(max_length=2048, description="next_cursor of the previous page")] = None,
               limit: Annotated[int, Query(ge=1, le=svc.MAX_PAGE, description="Events per page")] = svc.DEFAULT_PAGE,
               ) -> EventPage:
    authorize_owner_or_operator(userId)
    return data.list_events(userId, calendar_id=calendar_id, cursor=cursor, limit=limit)  # type: ignore[return-value]


@app.delete("/v1/users/<userId>/events/<eventId>", summary="Delete an event and its corrections", tags=["data"],
            description="Removes the event, its corrections and its prediction-log entry; counts as a "
            "correction toward retraining. Deleting it again answers 404 event_not_found.",
            responses={200: {"description": "Deleted"}, 404: {"description": "event_not_found (never stored, or "
                       "deleted already)"}, **_ERRORS})
def delete_event(userId: UserIdPath, eventId: EventIdPath, data: Service) -> EventDeleted:
    authorize_owner_or_operator(userId)
    return data.delete_event(userId, eventId)  # type: ignore[return-value]


@app.delete("/v1/users/<userId>/calendars/<calendarId>", summary="Delete a calendar (and its events)",
            tags=["data"], description="Removes the calendar, its description and its events (or, with "
            "?move_to=<calendarId>, relabels its events to that calendar). From that moment no classify answer "
            "names it, even before the model retrains; a retrain is queued for the next training run. "
            "Deleting it again answers 404 calendar_not_found.",
            responses={200: {"description": "Deleted"}, 404: {"description": "calendar_not_found"}, **_ERRORS})
def delete_calendar(userId: UserIdPath, calendarId: CalendarIdPath, data: Service,
                    move_to: Annotated[Optional[str], Query(pattern=ids.CALENDAR_ID_PATTERN, max_length=128,
                                                            description="Relabel the events to this calendar")] = None,
                    ) -> CalendarDeleted:
    authorize_owner_or_operator(userId)
    return data.delete_calendar(userId, calendarId, move_to=move_to)  # type: ignore[return-value]


@app.delete("/v1/users/<userId>", summary="Erase everything of the user", tags=["data"],
            description="Every table, the model bucket (all object versions), the prediction log and the LLM "
            "usage ledger. Idempotent: erasing again (or after a partial failure) removes what is left and "
            "answers 200. An audit record keeps when, by whom and the counts, under an HMAC of the user id.",
            responses={200: {"description": "Erased (counts per store)"}, **_ERRORS})
def erase_user(userId: UserIdPath, data: Service) -> UserErased:
    actor = authorize_owner_or_operator(userId)
    return data.erase(userId, actor=actor)  # type: ignore[return-value]


lambda_handler = make_handler(app)
