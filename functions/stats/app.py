"""StatsFunction:

* ``GET /v1/users/<userId>/stats`` — the user's last days of predictions (count and accuracy per
  method, from corrections) and LLM usage (calls, tokens, USD);
* ``GET /v1/stats`` (operators) — service-wide: LLM usage ledger, ML share, confidence histogram,
  USD and time saved against LLM-only, from a bounded Scan of the prediction log;
* ``GET /v1/experiments/<name>`` (operators) — the configured A/B experiment's arms compared.
"""

from __future__ import annotations

from calroute import startup  # noqa: F401 - first: pauses the GC for the cold start (COLD_START_GC)

import functools
from typing import Annotated, Any, Optional

from aws_lambda_powertools.event_handler import Depends
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import BaseModel, Field

from calroute import ids, wiring
from calroute.http.auth import authorize_user, require_operator
from calroute.http.resolver import UserIdPath, make_handler, make_resolver
from calroute.config import settings
from calroute.services.stats import StatsService

app = make_resolver()


@functools.cache
def service() -> StatsService:
    """The stats service on the AWS adapters, built from the settings on first use and kept for the
    container's life; routes receive it with ``Depends`` (tests: ``app.dependency_overrides``)."""
    return wiring.stats_service(settings())


Service = Annotated[StatsService, Depends(service)]


class MethodStats(BaseModel):
    count: int = Field(..., description="Estimated answers (logged items weighted by 1 / sample_rate)")
    logged: int = Field(0, description="Prediction-log items the estimate rests on")
    judged: int
    correct: int
    accuracy: Optional[float]


class UserStats(BaseModel):
    user_id: str
    days: int
    since: str
    predictions: int = Field(..., description="Estimated answers (the log is sampled: docs/serving.md)")
    logged: int = Field(0, description="Prediction-log items read")
    judged: int
    accuracy: Optional[float] = Field(..., description="Share right among corrected items, weighted by 1 / sample_rate")
    by_method: dict[str, MethodStats]
    latency_p50_ms: Optional[float]
    llm: dict[str, Any]


@app.get("/v1/users/<userId>/stats", summary="A user's last days of predictions and LLM usage", tags=["stats"])
def user_stats(userId: UserIdPath, stats: Service,
               days: Annotated[int, Query(ge=1, le=90, description="How many days back")] = 7) -> UserStats:
    user = ids.user_id(userId)
    authorize_user(app, user)
    return stats.user_stats(user, days)  # type: ignore[return-value]


_OPS_RESPONSES = {200: {"description": "OK"}, 403: {"description": "Operators only"},
                  404: {"description": "Not found"}, 422: {"description": "Validation error"}}
ExperimentPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", max_length=64,
                                     description="The experiment's name (EXPERIMENT_NAME)")]


@app.get("/v1/stats", summary="Service-wide usage, ML share and savings (operators)", tags=["stats"],
         description="LLM usage from the ledger; ML share, confidence histogram, USD and time saved against "
         "LLM-only from a bounded Scan of the prediction log (at most STATS_MAX_DAYS days and "
         "STATS_MAX_ITEMS items: the `scan` field says which bound applied).", responses=_OPS_RESPONSES)
def global_stats(stats: Service,
                 days: Annotated[int, Query(ge=1, le=90, description="How many days back")] = 7) -> dict:
    require_operator(app)
    return stats.global_stats(days)


@app.get("/v1/experiments/<name>", summary="An A/B experiment's arms compared (operators)", tags=["stats"],
         description="Control (LLM only) vs treatment (hybrid) per cohort: requests, accuracy from corrections, "
         "LLM calls, cost, latency p50/p99, a two-proportion z-test and the seed's targets.",
         responses=_OPS_RESPONSES)
def experiment(name: ExperimentPath, stats: Service,
               days: Annotated[int, Query(ge=1, le=90, description="How many days back")] = 7) -> dict:
    require_operator(app)
    return stats.experiment(name, days)


lambda_handler = make_handler(app)
