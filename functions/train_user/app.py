"""TrainUserFunction (Distributed Map item): gates → train → candidate ONNX + parity fixtures in S3
→ registry candidate. Input: ``{"user_id", "run_id", "reason"}`` (one line of users.json)."""

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
    user = ids.user_id(event.get("user_id"), field="user_id")
    logger.append_keys(user=ids.hashed_user(user), run_id=event.get("run_id"))
    out = training_run.train_user(event, resources_from(cfg), cfg)
    logger.info("train_user done", extra={"status": out["status"], "version": out.get("version"),
                                          "reason": out.get("reason"), "duration_ms": out.get("duration_ms")})
    return out
