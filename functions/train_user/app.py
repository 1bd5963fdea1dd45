"""TrainUserFunction (Distributed Map item): gates → train → candidate ONNX + parity fixtures in S3
→ registry candidate. Input: ``{"user_id", "run_id", "reason"}`` (one line of users.json)."""

from __future__ import annotations

from calroute import startup  # noqa: F401 - first: pauses the GC for the cold start (COLD_START_GC)

from typing import Any

from calroute import wiring
from calroute.http.observability import logger, task_handler
from calroute.config import settings
from calroute.services.training import train_user as step
from calroute.services.training.common import run_item


@task_handler
def lambda_handler(event: dict, context: Any) -> dict:
    cfg = settings()
    return run_item(step.train_user, event, wiring.stores(cfg), cfg, logger)
