"""PromoteFunction (Distributed Map item): champion/challenger on the candidate's holdout, then a
conditional write of the ACTIVE pointer (retried once on a race). Input: Validate's output."""

from __future__ import annotations

from typing import Any

from calroute import wiring
from calroute.api import logger, task_handler
from calroute.config import settings
from calroute.services import training_run


@task_handler
def lambda_handler(event: dict, context: Any) -> dict:
    cfg = settings()
    return training_run.run_item(training_run.promote, event, wiring.stores(cfg), cfg, logger)
