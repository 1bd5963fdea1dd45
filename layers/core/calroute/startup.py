"""The cyclic garbage collector during a cold start: paused for the init and the first request,
then the objects they made are frozen out of every later collection.

Importing a function (pydantic, numpy, Powertools, boto3, botocore's models, the OpenAI client)
allocates a few hundred thousand container objects, almost none of them garbage; the collector
still runs a young collection every 700 allocations and several full ones over that heap: 10-17%
of a cold start on these machines (interleaved A/B in fresh processes; the bench repeats it on
every run as ``cold_start.*.without_gc_pause``; docs/serving.md, "Cold start"). CPython's documentation recommends the
same for pre-fork servers (``gc.disable()`` early, ``gc.freeze()`` once the long-lived objects
exist); Lambda's init is that situation.

Opt-in per process by ``COLD_START_GC=pause`` (template Globals: every function; unset in tests and
the local tools, where nothing resumes it on a schedule): the first ``calroute`` import of a
function module (``functions/<name>/app.py`` imports this module first) disables the collector; the
handler decorators (:func:`calroute.http.resolver.make_handler`,
:func:`calroute.http.observability.task_handler`) call :func:`resume` when the first invocation
ends, successful or not: ``gc.freeze()`` (what exists now is permanent: later collections skip it,
which also shortens the full collections that would land on warm requests) and ``gc.enable()``.
What the pause can cost is the cyclic garbage of one init and one request, kept until then; it is
never more than that, because the collector runs again from the second request on.
"""

from __future__ import annotations

import functools
import gc
import os
from typing import Any, Callable

ENV = "COLD_START_GC"

_paused = False


def pause() -> bool:
    """Disable the collector if ``COLD_START_GC=pause`` and it is running; True if paused now."""
    global _paused
    if os.environ.get(ENV, "").strip().lower() == "pause" and gc.isenabled() and not _paused:
        gc.disable()
        _paused = True
    return _paused


def paused() -> bool:
    return _paused


def resume() -> None:
    """Freeze what the init and the first request built, and run the collector again (idempotent)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def resumes_after_first_call(fn: Callable) -> Callable:
    """``fn`` (a Lambda handler) resuming the collector when its first invocation ends."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _paused:
            return fn(*args, **kwargs)
        try:
            return fn(*args, **kwargs)
        finally:
            resume()

    return wrapper


pause()
