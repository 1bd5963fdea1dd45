"""The LLM fallback use case: ``FallbackService.handle(payload)`` builds the prompt from the caller's
calendars, learned profiles and similar past events, calls the LLM through the
:class:`~calroute.llm.types.LlmClient` port within the daily budgets, books the cost and validates the
answer. The guardrails are described in :mod:`calroute.llm`."""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from .. import ids
from ..errors import CalrouteError
from ..llm.cost import budget_exceeded, cost_usd
from ..llm.prompt import build_messages, parse_answer, response_format
from ..llm.similar import ExampleCache, similar_events
from ..llm.types import LlmClient, LlmError
from ..ports import EventStore, MetricsSink, ModelRegistry, NullSink, UsageLedger, UserStore
from ..schema import CalendarInfo, parse_event

SIMILAR_SCAN_LIMIT = 2000
#: LLM error codes that are a state, not a fault (logged at INFO, not WARNING)
EXPECTED_CODES = frozenset({"not_configured"})


def _describe_profiles(profiles: Any) -> dict[str, str]:
    if not isinstance(profiles, dict) or not profiles:
        return {}
    try:
        from ..profiles import describe_profile
    except ImportError:  # pragma: no cover - profiles module not deployed
        describe_profile = None
    out = {}
    for cal, prof in profiles.items():
        try:
            if isinstance(prof, str):
                text = prof
            elif isinstance(prof, dict) and describe_profile is not None:
                text = describe_profile(prof)
            else:
                text = ""
        except Exception:  # noqa: BLE001 - a malformed profile only loses its description
            text = ""
        if text:
            out[str(cal)] = str(text)
    return out


class FallbackService:
    """``handle(payload)`` → ``{"calendar_id","reason","usd","input_tokens","output_tokens","latency_ms"}``
    or ``{"error": code, "message"}``. Never raises for LLM faults.

    Payload: ``{"user_id", "event" (either form), "candidates": [{"calendar_id","probability"}],
    "model_version"?}``.
    """

    def __init__(self, cfg, *, client_factory: Callable[[], LlmClient], users: UserStore, events: EventStore,
                 registry: ModelRegistry, usage: UsageLedger, metrics: Optional[MetricsSink] = None, clock: Callable[[], float] = time.perf_counter, logger=None):
        self.cfg = cfg
        self._client_factory = client_factory
        self._client: Optional[LlmClient] = None
        self.users, self.events, self.registry, self.usage = users, events, registry, usage
        self.metrics = metrics or NullSink()
        self.clock = clock
        self.logger = logger
        self.examples = ExampleCache(lambda user: self.events.list_events(user, limit=SIMILAR_SCAN_LIMIT),
                                     ttl=cfg.llm_examples_cache_seconds, max_events=cfg.llm_examples_cache_events)

    def client(self) -> LlmClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def handle(self, payload: Any) -> dict:
        t0 = self.clock()
        try:
            out = self._handle(payload)
        except LlmError as exc:
            self.metrics.add_metric(name="LlmErrors", unit="Count", value=1)
            if self.logger:
                # no LLM configured is a deployment choice, not a fault: not a warning per deferral
                log = self.logger.info if exc.code in EXPECTED_CODES else self.logger.warning
                log("llm fallback failed", extra={"error": exc.code})
            return {"error": exc.code, "message": exc.message,
                    "latency_ms": round((self.clock() - t0) * 1000.0, 3)}
        out["latency_ms"] = round((self.clock() - t0) * 1000.0, 3)
        self.metrics.add_metric(name="LlmLatencyMs", unit="Milliseconds", value=out["latency_ms"])
        return out

    def _handle(self, payload: Any) -> dict:
        if not isinstance(payload, dict):
            raise LlmError("invalid_input", "the payload must be an object")
        if payload.get("task") == "slots":
            return self._handle_slots(payload)
        try:
            user = ids.user_id(payload.get("user_id"), field="user_id")
            event = parse_event(payload.get("event"), field="event")
        except CalrouteError as exc:
            raise LlmError("invalid_input", exc.message) from None
        if not self.cfg.llm_configured:
            raise LlmError("not_configured", "no LLM endpoint is configured")

        calendars = self._calendars(user)
        if not calendars:
            raise LlmError("no_calendars", "the user has no calendars")
        allowed = [c.calendar_id for c in calendars]

        over = budget_exceeded(self.usage, user, self.cfg)
        if over:
            raise LlmError("budget", f"the daily LLM budget is spent ({over})")

        descriptions = self._profiles(user)
        similar = []
        if self.cfg.llm_similar_examples > 0:
            similar = similar_events(event, self.examples.get(user), self.cfg.llm_similar_examples, set(allowed))
        candidates = payload.get("candidates") or []
        if not isinstance(candidates, list):
            candidates = []
        candidates = [c for c in candidates if isinstance(c, dict)]
        messages = build_messages(event=event, calendars=calendars, descriptions=descriptions,
                                  candidates=candidates, similar=similar)
        model = self.cfg.llm_model
        reply = self.client().complete(model=model, messages=messages, response_format=response_format(allowed))
        usd = cost_usd(model, reply.input_tokens, reply.output_tokens, self.cfg.llm_prices)
        if reply.input_tokens or reply.output_tokens:
            self.usage.add(user, usd=usd, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens)
        self.metrics.add_metric(name="LlmCalls", unit="Count", value=1)
        self.metrics.add_metric(name="LlmTokens", unit="Count", value=reply.input_tokens + reply.output_tokens)
        cal, reason = parse_answer(reply.content, allowed)
        return {"calendar_id": cal, "reason": reason, "usd": round(usd, 8), "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens, "model": model}

    def _handle_slots(self, payload: dict) -> dict:
        """The second task (issue 13): fill the asked event slots from a conversation
        (:mod:`calroute.llm.slots`); same configuration check, budgets, cost booking and injection
        guards as the calendar task. ``{"slots": {slot: {value, span} | {invalid} | {absent}}, usd, ...}``."""
        from ..llm import slots as slot_task

        try:
            user = ids.user_id(payload.get("user_id"), field="user_id")
        except CalrouteError as exc:
            raise LlmError("invalid_input", exc.message) from None
        turns, asked, now, tz = slot_task.check_payload(payload)
        if not self.cfg.llm_configured:
            raise LlmError("not_configured", "no LLM endpoint is configured")
        over = budget_exceeded(self.usage, user, self.cfg)
        if over:
            raise LlmError("budget", f"the daily LLM budget is spent ({over})")
        messages = slot_task.build_messages(turns=turns, slots=asked, now=now, timezone=tz)
        model = self.cfg.llm_model
        reply = self.client().complete(model=model, messages=messages, response_format=slot_task.response_format(asked))
        usd = cost_usd(model, reply.input_tokens, reply.output_tokens, self.cfg.llm_prices)
        if reply.input_tokens or reply.output_tokens:
            self.usage.add(user, usd=usd, input_tokens=reply.input_tokens, output_tokens=reply.output_tokens)
        self.metrics.add_metric(name="LlmSlotCalls", unit="Count", value=1)
        self.metrics.add_metric(name="LlmTokens", unit="Count", value=reply.input_tokens + reply.output_tokens)
        answer = slot_task.parse_slot_answer(reply.content, asked, turns)
        return {"slots": answer, "usd": round(usd, 8), "input_tokens": reply.input_tokens,
                "output_tokens": reply.output_tokens, "model": model}

    def _calendars(self, user: str) -> list[CalendarInfo]:
        cals = self.users.calendars(user)
        if cals:
            return cals
        # no registered calendars: the labels of the active model, else of the labelled events
        active = self.registry.active(user) or {}
        labels = [l for l in active.get("labels") or [] if isinstance(l, str)]
        if not labels:
            labels = sorted({e.calendar_id for e in self.events.list_events(user, limit=SIMILAR_SCAN_LIMIT)
                             if e.calendar_id})
        removed = self.users.removed_calendars(user) if labels else {}  # a model's labels outlive a deletion
        return [CalendarInfo(calendar_id=l) for l in labels
                if ids.CALENDAR_ID_RE.fullmatch(l) and l not in removed]

    def _profiles(self, user: str) -> dict[str, str]:
        active = self.registry.active(user)
        if not active:
            return {}
        profiles = active.get("profiles")
        if profiles is None:
            record = self.registry.get_version(user, active["version"]) or {}
            profiles = record.get("profiles")
        return _describe_profiles(profiles)
