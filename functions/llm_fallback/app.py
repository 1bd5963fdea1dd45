"""LlmFallbackFunction: asked by the predict function (Lambda invoke, RequestResponse) to pick a
calendar when the model is unsure or absent.

Payload ``{"user_id", "event", "candidates": [{"calendar_id","probability"}], "model_version"?}`` →
``{"calendar_id","reason","usd","input_tokens","output_tokens","latency_ms"}`` or
``{"error": code, "message"}``. Second task (asked by the parse function for unsure event slots,
:mod:`calroute.llm.slots`): ``{"task": "slots", "user_id", "turns", "slots", "now", "timezone"}`` →
``{"slots": {slot: {value, span} | {invalid} | {absent}}, "usd", ...}``, same budgets and guards. Never raises for LLM faults (the caller then falls back to the
model's answer or to "none").
"""

from __future__ import annotations

from calroute import startup  # noqa: F401 - first: pauses the GC for the cold start (COLD_START_GC)

import functools
from typing import Any

from calroute import wiring
from calroute.http.observability import logger, metrics, task_handler
from calroute.config import settings
from calroute.services.llm_fallback import FallbackService


@functools.cache
def service() -> FallbackService:
    """The fallback service on the AWS adapters and the OpenAI client, built from the settings on
    first use and kept for the container's life (with its per-user example cache); tests rebuild it
    with ``service.cache_clear()``."""
    return wiring.fallback_service(settings(), sink=wiring.metrics_sink(metrics), logger=logger)


@task_handler(flush_metrics=True)
def lambda_handler(event: Any, context: Any) -> dict:
    try:
        return service().handle(event)
    except Exception as exc:  # noqa: BLE001 - storage faults etc.: an error answer, not a crash
        logger.exception("llm fallback crashed")
        return {"error": "internal", "message": type(exc).__name__}


def _prime() -> None:
    """SnapStart init only (:func:`calroute.wiring.snapstart_init`): the service, its boto3
    clients and the imported OpenAI SDK (~0.7 s of this function's cold start, its ~500 modules of
    pydantic models) go into the snapshot. The LLM client itself is not created: it reads the API
    key, and a secret is never put in a snapshot."""
    service()
    wiring.prime_aws()
    wiring.prime_llm_sdk()


wiring.snapstart_init(_prime)
