"""The Logger / Tracer / Metrics singletons (Powertools) and the decorators that put them around a
Lambda handler: :func:`task_handler` for non-HTTP handlers; :func:`calroute.http.resolver.make_handler`
for HTTP ones."""

from __future__ import annotations

import functools
import os
from typing import Any, Callable

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from ..startup import resumes_after_first_call

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "calroute")
logger = Logger(service=SERVICE)


def tracing_enabled() -> bool:
    """Powertools' own switch: POWERTOOLS_TRACE_DISABLED=true turns tracing off."""
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() not in ("1", "true", "yes")


class LazyTracer:
    """The Powertools Tracer, created on first use.

    Creating a Tracer imports ``aws_xray_sdk`` (+ botocore), ~0.4-0.9 s of cold start. A function
    deployed with tracing off (the predict function by default: see the ``PredictTracing``
    template parameter) never pays it, and its handler is not wrapped at all.
    """

    def __init__(self, service: str):
        self.service = service
        self._tracer = None

    def _get(self):
        if self._tracer is None:
            from aws_lambda_powertools import Tracer

            self._tracer = Tracer(service=self.service)
        return self._tracer

    def capture_lambda_handler(self, fn: Callable | None = None, **kwargs: Any):
        def deco(func: Callable) -> Callable:
            if not tracing_enabled():
                return func
            return self._get().capture_lambda_handler(func, **kwargs)

        return deco(fn) if fn is not None else deco

    def __getattr__(self, name: str) -> Any:
        return getattr(self._get(), name)


tracer = LazyTracer(SERVICE)
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "calroute"), service=SERVICE)


def discard_disabled_metrics(fn: Callable) -> Callable:
    """With ``POWERTOOLS_METRICS_DISABLED`` (the local stack, tests) Powertools skips the flush but
    keeps the values, and its ``add_metric`` prints them anyway once a metric holds 100 values: a
    stray EMF document every ~100 requests. Drop them after each invocation instead."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        finally:
            if metrics.metric_set and is_metrics_disabled():
                metrics.clear_metrics()

    return wrapper


def task_handler(fn: Callable | None = None, *, flush_metrics: bool = False) -> Callable:
    """Decorator for non-HTTP handlers (state-machine tasks, Lambda-to-Lambda): logging context,
    tracing and, with ``flush_metrics``, the EMF flush — one place instead of a stack per handler;
    the first invocation's end resumes the garbage collector paused for the cold start
    (:mod:`calroute.startup`)."""

    def deco(func: Callable) -> Callable:
        wrapped = func
        if flush_metrics:
            wrapped = discard_disabled_metrics(metrics.log_metrics(wrapped))
        wrapped = tracer.capture_lambda_handler(wrapped, capture_response=False)
        return resumes_after_first_call(logger.inject_lambda_context(wrapped, clear_state=True))

    return deco(fn) if fn is not None else deco
