"""TrainUserFunction (Distributed Map item): gates → train → candidate ONNX + parity fixtures in S3
→ registry candidate. Input: ``{"user_id", "run_id", "reason"}`` (one line of users.json)."""

from __future__ import annotations

from typing import Any

from calroute import wiring
from calroute.api import logger, task_handler
from calroute.config import settings
from calroute.services import training_run


@task_handler
def lambda_handler(event: dict, context: Any) -> dict:
    cfg = settings()
    return training_run.run_item(training_run.train_user, event, wiring.stores(cfg), cfg, logger)
