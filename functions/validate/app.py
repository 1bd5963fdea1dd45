"""ValidateFunction (Distributed Map item): the parity gate in the INFERENCE runtime — onnxruntime
and numpy only, never sklearn. Input: TrainUser's output (``status == "candidate"``)."""

from __future__ import annotations

from typing import Any

from calroute import wiring
from calroute.api import logger, task_handler
from calroute.config import settings
from calroute.services import training_run


@task_handler
def lambda_handler(event: dict, context: Any) -> dict:
    cfg = settings()
    return training_run.run_item(training_run.validate, event, wiring.stores(cfg), cfg, logger)
