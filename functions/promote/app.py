"""PromoteFunction (Distributed Map item): champion/challenger on the candidate's holdout, then a
conditional write of the ACTIVE pointer (retried once on a race). Input: Validate's output."""

from __future__ import annotations

from calroute import startup  # noqa: F401 - first: pauses the GC for the cold start (COLD_START_GC)

from typing import Any

from calroute import wiring
from calroute.http.observability import logger, task_handler
from calroute.config import settings
from calroute.services.training import promote as step
from calroute.services.training.common import run_item


@task_handler
def lambda_handler(event: dict, context: Any) -> dict:
    cfg = settings()
    return run_item(step.promote, event, wiring.stores(cfg), cfg, logger)
