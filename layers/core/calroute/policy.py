"""Routing policy: which path answers a classification.

Inputs: the model's top probability and the user's threshold (when a model is in use), the kill
switch (``Settings.ml_enabled``, overridable at runtime by an SSM parameter through
:class:`SsmFlagProvider`), the experiment cohort, and whether the LLM fallback is available
(configured, within budget). Output: a :class:`Decision` with the ``method``:

==================  =====================================================================
``ml``              the model is confident (top probability ≥ threshold): its answer
``llm``             the model is unsure, the LLM fallback answered
``ml_low_confidence``  the model is unsure and the LLM is unavailable, over budget or failed:
                    the model's top answer, flagged
``llm_only``        no model is used (none yet, kill switch, control cohort): the LLM answered
``only_calendar``   no model is used and the user has exactly one calendar: that calendar, with no
                    LLM call (the fallback could answer nothing else)
``none``            no model is used and the LLM is unavailable or failed: ``calendar_id`` null
==================  =====================================================================

Cohorts are deterministic: ``blake2b(experiment name + user id)`` → a bucket in [0, 10000); the
first ``experiment_control_percent`` % of buckets are ``control`` (LLM only), the rest
``treatment`` (hybrid). Stable across calls, processes and machines (never built-in ``hash()``).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Callable, Literal, Optional, Protocol

Cohort = Literal["control", "treatment"]
CONTROL: Cohort = "control"
TREATMENT: Cohort = "treatment"
_BUCKETS = 10_000


def cohort_bucket(experiment: str, user_id: str) -> int:
    """The user's bucket in [0, 10000) for ``experiment`` (blake2b, process-independent)."""
    digest = hashlib.blake2b(f"{experiment}\x1f{user_id}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _BUCKETS


def cohort_for(user_id: str, experiment: str, control_percent: float) -> Cohort:
    """``control`` for the first ``control_percent`` % of buckets, else ``treatment``."""
    if control_percent <= 0:
        return TREATMENT
    if control_percent >= 100:
        return CONTROL
    return CONTROL if cohort_bucket(experiment, user_id) < control_percent * (_BUCKETS / 100.0) else TREATMENT


# ----------------------------------------------------------------------------- kill switch


class FlagProvider(Protocol):
    """Where the ML kill switch is read from at request time."""

    def ml_enabled(self) -> bool: ...


class StaticFlags:
    """The environment value (``ML_ENABLED``) — what runs locally."""

    def __init__(self, enabled: bool):
        self.enabled = bool(enabled)

    def ml_enabled(self) -> bool:
        return self.enabled


_TRUE = {"1", "true", "on", "yes", "enabled"}
_FALSE = {"0", "false", "off", "no", "disabled"}


def parse_flag(value: object, default: bool) -> bool:
    """Lenient boolean: ``true/false/on/off/1/0/yes/no`` (or JSON ``{"ml_enabled": ...}``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, dict):
        return parse_flag(value.get("ml_enabled", default), default)
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return default


class SsmFlagProvider:
    """The kill switch from an SSM parameter (``/calroute/ml-enabled`` = ``true``/``false``), read
    through Powertools parameters and cached ``max_age`` seconds per container, so flipping the
    parameter takes effect within ``max_age`` seconds without a deployment.

    Any read error keeps the last known value (or ``default``): a parameter-store outage never
    turns the model off nor on by itself.
    """

    def __init__(self, name: str, default: bool, *, max_age: float = 30.0,
                 fetch: Optional[Callable[[str], str]] = None, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.default = bool(default)
        self.max_age = max_age
        self._fetch = fetch or self._ssm_fetch
        self._clock = clock
        self._value: Optional[bool] = None
        self._read_at = float("-inf")
        self._provider = None

    def _ssm_fetch(self, name: str) -> str:
        if self._provider is None:
            from aws_lambda_powertools.utilities.parameters import SSMProvider

            self._provider = SSMProvider()
        # our own TTL governs the caching; Powertools' cache is bypassed
        return self._provider.get(name, force_fetch=True)

    def ml_enabled(self) -> bool:
        now = self._clock()
        if self._value is not None and now - self._read_at < self.max_age:
            return self._value
        self._read_at = now
        try:
            self._value = parse_flag(self._fetch(self.name), self.default)
        except Exception:  # noqa: BLE001 - parameter store down/absent: keep the last known value
            if self._value is None:
                self._value = self.default
        return self._value


def flag_provider(cfg) -> FlagProvider:
    """SSM-backed when ``ml_enabled_param`` is configured (AWS), else the environment value."""
    name = getattr(cfg, "ml_enabled_param", "")
    if name:
        return SsmFlagProvider(name, cfg.ml_enabled, max_age=getattr(cfg, "flag_max_age_seconds", 30.0))
    return StaticFlags(cfg.ml_enabled)


# ----------------------------------------------------------------------------- decision


@dataclass(frozen=True)
class Decision:
    """``method`` assumes the LLM call (if ``call_llm``) succeeds; :meth:`after_llm` gives the
    final method once its outcome is known."""

    method: str
    call_llm: bool
    reason: str

    def after_llm(self, answered: bool, failure_reason: str = "llm_failed") -> "Decision":
        if not self.call_llm:
            return self
        if answered:
            return Decision(self.method, False, self.reason)
        if self.method == "llm":
            return Decision("ml_low_confidence", False, failure_reason)
        return Decision("none", False, failure_reason)


def use_model(*, ml_enabled: bool, cohort: str) -> bool:
    """Whether the model is consulted at all: the kill switch is on and the user is in treatment."""
    return ml_enabled and cohort == TREATMENT


def decide(*, top_prob: Optional[float], threshold: Optional[float], llm_available: bool,
           llm_unavailable_reason: str = "llm_unavailable", no_model_reason: str = "no_model",
           confidence: Optional[float] = None, unmet: bool = False, anomalous: bool = False,
           sole_calendar: bool = False) -> Decision:
    """The routing decision for one event.

    ``top_prob`` is the routing score the threshold applies to (the model's top probability, for
    feature spec 2 discounted by novelty: :func:`calroute.novelty.routing_score`), None when no model
    was used (``no_model_reason`` says why: ``no_model``, ``kill_switch``, ``control_cohort``,
    ``model_unavailable``). ``confidence`` is the top probability itself (to tell a novel event from
    an unsure one); ``unmet`` says the event may belong to a calendar the model has not met;
    ``anomalous`` that its time/shape is unlike every training event of the predicted calendar
    (the veto of :func:`calroute.novelty.routing_score`). ``sole_calendar``: the user has exactly
    one calendar, so without a model the answer is known without asking the LLM (whose answer must
    be one of the user's calendars): ``only_calendar``, whatever the LLM's availability.

    Reasons for deferring: ``uncertified_model`` (no threshold could be certified: threshold ≥ 1),
    ``unmet_calendar``, ``unusual_time`` (confident, but at a time/duration the predicted calendar
    never had), ``novel_event`` (confident, but unlike the user's training events),
    ``low_confidence``.
    """
    if top_prob is None:
        if sole_calendar:
            return Decision("only_calendar", False, "only_calendar")
        if llm_available:
            return Decision("llm_only", True, no_model_reason)
        return Decision("none", False, f"{no_model_reason}+{llm_unavailable_reason}")
    certified = threshold is not None and threshold < 1.0
    if certified and top_prob >= threshold and not unmet:
        return Decision("ml", False, "confident")
    if not certified:
        why = "uncertified_model"
    elif unmet:
        why = "unmet_calendar"
    elif anomalous and confidence is not None and confidence >= threshold:
        why = "unusual_time"
    elif confidence is not None and confidence >= threshold:
        why = "novel_event"
    else:
        why = "low_confidence"
    if llm_available:
        return Decision("llm", True, why)
    # the deferral's cause first, always (``defer_reason`` is the part before "+")
    return Decision("ml_low_confidence", False, f"{why}+{llm_unavailable_reason}")
