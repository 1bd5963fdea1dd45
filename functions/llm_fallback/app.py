"""LlmFallbackFunction: asked by the predict function (Lambda invoke, RequestResponse) to pick a
calendar when the model is unsure or absent.

Payload ``{"user_id", "event", "candidates": [{"calendar_id","probability"}], "model_version"?}`` →
``{"calendar_id","reason","usd","input_tokens","output_tokens","latency_ms"}`` or
``{"error": code, "message"}``. Never raises for LLM faults (the caller then falls back to the
model's answer or to "none").
"""

from __future__ import annotations

from typing import Any, Optional

from calroute.api import logger, metrics, task_handler
from calroute.config import settings
from calroute.llm import FallbackService, build_fallback_service

_service: Optional[FallbackService] = None


def service() -> FallbackService:
    global _service
    if _service is None:
        _service = build_fallback_service(settings(), sink=metrics, logger=logger)
    return _service


@task_handler(flush_metrics=True)
def lambda_handler(event: Any, context: Any) -> dict:
    try:
        return service().handle(event)
    except Exception as exc:  # noqa: BLE001 - storage faults etc.: an error answer, not a crash
        logger.exception("llm fallback crashed")
        return {"error": "internal", "message": type(exc).__name__}
