"""StatsFunction: ``GET /v1/users/<userId>/stats`` — the last 7 days of predictions (count and
accuracy per method, from corrections) and LLM usage (calls, tokens, USD)."""

from __future__ import annotations

from typing import Annotated, Any, Optional

from aws_lambda_powertools.event_handler.openapi.params import Query
from pydantic import BaseModel

from calroute import ids
from calroute.adapters.aws import PredictionLog, UsageLedger
from calroute.api import UserIdPath, authorize_user, make_handler, make_resolver, require_operator
from calroute.config import settings
from calroute.services.stats import StatsService

app = make_resolver()
_service: Optional[StatsService] = None


def service() -> StatsService:
    global _service
    if _service is None:
        cfg = settings()
        _service = StatsService(PredictionLog(cfg.predictions_table, cfg.prediction_ttl_days),
                                UsageLedger(cfg.usage_table))
    return _service


class MethodStats(BaseModel):
    count: int
    judged: int
    correct: int
    accuracy: Optional[float]


class UserStats(BaseModel):
    user_id: str
    days: int
    since: str
    predictions: int
    judged: int
    accuracy: Optional[float]
    by_method: dict[str, MethodStats]
    latency_p50_ms: Optional[float]
    llm: dict[str, Any]


@app.get("/v1/users/<userId>/stats", summary="A user's last days of predictions and LLM usage", tags=["stats"])
def user_stats(userId: UserIdPath,
               days: Annotated[int, Query(ge=1, le=90, description="How many days back")] = 7) -> UserStats:
    user = ids.user_id(userId)
    authorize_user(app, user)
    return service().user_stats(user, days)  # type: ignore[return-value]


@app.get("/v1/stats", summary="Service-wide LLM usage (operators)", tags=["stats"])
def global_stats(days: Annotated[int, Query(ge=1, le=90, description="How many days back")] = 7) -> dict:
    require_operator(app)
    return service().global_stats(days)


lambda_handler = make_handler(app)
