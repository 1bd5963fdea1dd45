"""ValidateFunction (Distributed Map item): the parity gate in the INFERENCE runtime — onnxruntime
and numpy only, never sklearn. Input: TrainUser's output (``status == "candidate"``)."""

from __future__ import annotations

from calroute import startup  # noqa: F401 - first: pauses the GC for the cold start (COLD_START_GC)

from typing import Any

from calroute import wiring
from calroute.http.observability import logger, task_handler
from calroute.config import settings
from calroute.services.training import validate as step
from calroute.services.training.common import run_item


@task_handler
def lambda_handler(event: dict, context: Any) -> dict:
    cfg = settings()
    return run_item(step.validate, event, wiring.stores(cfg), cfg, logger)
