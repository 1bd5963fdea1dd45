"""SummarizeFunction (state machine): the run record (registry pk ``_run``) and the
TrainingUsers* metrics. Input: Plan's output plus ``results`` (the Distributed Map's results)."""

from __future__ import annotations

from calroute import startup  # noqa: F401 - first: pauses the GC for the cold start (COLD_START_GC)

from typing import Any

from calroute import wiring
from calroute.http.observability import logger, metrics, task_handler
from calroute.config import settings
from calroute.services.training import summarize as step


@task_handler(flush_metrics=True)
def lambda_handler(event: dict, context: Any) -> dict:
    cfg = settings()
    out = step.summarize(event, wiring.stores(cfg), cfg, metrics=metrics)
    logger.info("training run finished", extra={k: out.get(k) for k in (
        "run_id", "planned", "trained", "skipped", "rejected", "failed", "conflict", "seconds")})
    return out
