"""PlanFunction (state machine): which users train in this run → ``runs/{runId}/users.json``.

Input (from the ASL): ``{"input": <execution input>, "execution_name", "execution_start"}``; the
execution input is ``{}`` / ``{"trigger": "schedule"}`` for the nightly run, or
``{"trigger": "api", "user_ids": [...], "run_id": ...}`` for ``POST /v1/users/<userId>/train``.
"""

from __future__ import annotations

from calroute import startup  # noqa: F401 - first: pauses the GC for the cold start (COLD_START_GC)

from typing import Any

from calroute import wiring
from calroute.http.observability import logger, task_handler
from calroute.config import settings
from calroute.services.training import plan as step


@task_handler
def lambda_handler(event: dict, context: Any) -> dict:
    cfg = settings()
    run_input = event.get("input", event) if isinstance(event, dict) else {}
    out = step.plan(run_input or {}, wiring.stores(cfg), cfg,
                    execution_name=(event or {}).get("execution_name"))
    logger.info("training run planned", extra={"run_id": out["run_id"], "count": out["count"],
                                               "not_needed": out["skipped_total"], "trigger": out["trigger"]})
    return out
