"""ValidateFunction (Distributed Map item): the parity gate in the INFERENCE runtime — onnxruntime
and numpy only, never sklearn. Input: TrainUser's output (``status == "candidate"``)."""

from __future__ import annotations

from typing import Any

from calroute import ids
from calroute.adapters.aws import resources_from
from calroute.api import logger, task_handler
from calroute.config import settings
from calroute.services import training_run


@task_handler
def lambda_handler(event: dict, context: Any) -> dict:
    cfg = settings()
    logger.append_keys(user=ids.hashed_user(ids.user_id(event.get("user_id"), field="user_id")),
                       run_id=event.get("run_id"))
    out = training_run.validate(event, resources_from(cfg), cfg)
    logger.info("validate done", extra={"status": out["status"], "version": out.get("version"),
                                        "reason": out.get("reason")})
    return out
