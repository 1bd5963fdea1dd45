"""From words to an event (issue 13): ``ParseService.parse(user, body)``.

1. the rules (:func:`calroute.slots.extract.extract`) fill each slot with a confidence fitted on
   the benchmark; ``needs_confirmation`` is false only where the benchmark certifies ≥ 97 % right;
2. slots left empty or below ``SLOT_CONFIDENCE`` go to the LLM fallback function as its second
   task (``{"task": "slots", ...}``: same budgets, same injection guards, a strict schema for just
   those slots); its values are validated again here (a real date/time, a span that occurs in what
   the user said) before use, and always ask for confirmation (no benchmark certifies them). With
   no LLM configured, each such slot says so (``note: llm_not_configured``);
3. the draft (start/end in the user's zone) is classified by the user's own model through the
   predict service in-process (:meth:`calroute.services.predict.PredictService.classify_events`,
   the same ONNX model cache and routing policy as ``/classify``; no prediction-log record for a
   draft), and the answer carries that classification in the classify answer's shape.

The answer::

    {"draft": {summary, start, end, all_day, location, attendees, attendee_names},
     "slots": {summary|date|time|location|attendees: {value, confidence, source, span,
               needs_confirmation, rule?, note?}},
     "missing": [...], "to_confirm": [...], "timezone", "now", "calendar": <classify answer>,
     "llm": {"asked": [...], "status", "usd"}, "latency_ms"}
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Callable, Optional, Sequence

from ..errors import InvalidInput
from ..ids import hashed_user
from ..llm.slots import LLM_SLOTS, check_value
from ..ports import NullSink
from ..schema import parse_event, parse_when
from ..slots.extract import draft as make_draft
from ..slots.extract import extract, parse_zone
from ..slots.types import Slot

#: The confidence given to a validated LLM value (never certified: it always asks to confirm).
LLM_SLOT_CONFIDENCE = 0.6
MAX_TURNS = 20
MAX_TURN_CHARS = 2000
MAX_TOTAL_CHARS = 8000


class ParseService:
    """``classify(user, [Event]) -> [answer]`` is the predict service's ``classify_events``;
    ``invoker`` the LLM fallback function (None: no LLM); ``timezone_of(user)`` the user's
    configured zone or None."""

    def __init__(self, cfg, *, classify: Callable[[str, list], list[dict]], invoker=None,
                 timezone_of: Optional[Callable[[str], Optional[str]]] = None, sink=None, logger=None,
                 clock: Callable[[], float] = time.perf_counter,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)):
        self.cfg = cfg
        self.classify = classify
        self.invoker = invoker
        self.timezone_of = timezone_of
        self.sink = sink or NullSink()
        self.logger = logger
        self.clock = clock
        self.now = now

    # ------------------------------------------------------------------ input

    def _turns(self, text: Optional[str], turns: Optional[Sequence[dict]]) -> list[dict]:
        if (text is None) == (turns is None):
            raise InvalidInput("give either text or turns", field="text")
        if text is not None:
            turns = [{"role": "user", "text": text}]
        if not turns or len(turns) > MAX_TURNS:
            raise InvalidInput(f"turns: 1 to {MAX_TURNS} turns", field="turns")
        out, total = [], 0
        for i, t in enumerate(turns):
            role, body = t.get("role", "user"), t.get("text")
            if role not in ("user", "assistant") or not isinstance(body, str):
                raise InvalidInput("each turn is {role: user|assistant, text}", field=f"turns[{i}]")
            if len(body) > MAX_TURN_CHARS:
                raise InvalidInput(f"a turn has at most {MAX_TURN_CHARS} characters", field=f"turns[{i}].text")
            total += len(body)
            out.append({"role": role, "text": body})
        if total > MAX_TOTAL_CHARS:
            raise InvalidInput(f"at most {MAX_TOTAL_CHARS} characters in all", field="turns")
        if not any(t["role"] == "user" and t["text"].strip() for t in out):
            raise InvalidInput("nothing to parse: the user said nothing", field="text" if text is not None else "turns")
        return out

    def _zone(self, user: str, timezone: Optional[str]):
        if timezone is not None:
            zone = parse_zone(timezone)
            if zone is None:
                raise InvalidInput(f"unknown IANA time zone {timezone[:64]!r}", field="timezone")
            return zone
        if self.timezone_of is not None:
            try:
                zone = parse_zone(self.timezone_of(user))
            except Exception:  # noqa: BLE001 - a profile read fault: the default zone
                zone = None
            if zone is not None:
                return zone
        return parse_zone("UTC")

    @staticmethod
    def _now(value: Optional[str], zone, default: dt.datetime) -> dt.datetime:
        """``now`` validated by the one API date parser (:func:`calroute.schema.parse_when`): an ISO
        date or date-time; a naive one is a wall-clock time in the user's zone."""
        if value is None:
            return default.astimezone(zone)
        try:
            got, _ = parse_when(value, "now", tz=zone.key)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="now") from None
        return got

    # ------------------------------------------------------------------ use case

    def parse(self, user_id: str, *, text: Optional[str] = None, turns: Optional[Sequence[dict]] = None,
              now: Optional[str] = None, timezone: Optional[str] = None) -> dict:
        """``user_id`` must already be validated."""
        t0 = self.clock()
        conv = self._turns(text, turns)
        zone = self._zone(user_id, timezone)
        local_now = self._now(now, zone, self.now())
        ex = extract(conv, local_now)
        slots = ex.slots
        llm = self._llm(user_id, conv, slots, local_now, zone)
        draft, missing = make_draft(slots, local_now, zone)
        calendar = self._route(user_id, draft)
        to_confirm = [n for n, s in slots.items() if s.value is not None and s.needs_confirmation
                      and n not in missing]
        out = {
            "draft": draft,
            "slots": {n: s.to_dict() for n, s in slots.items()},
            "missing": missing,
            "to_confirm": to_confirm,
            "timezone": zone.key,
            "now": local_now.isoformat(),
            "calendar": calendar,
            "llm": llm,
            "latency_ms": round((self.clock() - t0) * 1000.0, 3),
        }
        self.sink.add_metric("ParseLatencyMs", "Milliseconds", out["latency_ms"])
        return out

    def _unsure(self, slots: dict[str, Slot]) -> list[str]:
        return [n for n in LLM_SLOTS if slots[n].value is None or slots[n].confidence < self.cfg.slot_confidence]

    def _llm(self, user_id: str, conv: list[dict], slots: dict[str, Slot], now: dt.datetime, zone) -> dict:
        asked = self._unsure(slots)
        if not asked:
            return {"asked": [], "status": "not_needed", "usd": 0.0}
        if self.invoker is None:
            for n in asked:
                slots[n].note = "llm_not_configured"
            return {"asked": asked, "status": "not_configured", "usd": 0.0}
        payload = {"task": "slots", "user_id": user_id, "turns": conv, "slots": asked,
                   "now": now.isoformat(), "timezone": zone.key}
        answer = self.invoker.invoke(payload)
        if not isinstance(answer, dict) or answer.get("error") or not isinstance(answer.get("slots"), dict):
            code = str((answer or {}).get("error") or "invalid_answer") if isinstance(answer, dict) else "invoke_failed"
            for n in asked:
                slots[n].note = f"llm_{code}"
            if self.logger:
                self.logger.info("llm slots unavailable", extra={"user": hashed_user(user_id), "error": code})
            self.sink.add_metric("ParseLlmFailures", "Count", 1)
            return {"asked": asked, "status": code, "usd": 0.0}
        usd = float(answer.get("usd") or 0.0)
        user_texts = [t["text"] if t["role"] == "user" else "" for t in conv]
        for n in asked:
            got = answer["slots"].get(n)
            ok = self._recheck(n, got, user_texts)
            if ok is None:
                why = (got or {}).get("invalid") if isinstance(got, dict) else None
                slots[n].note = "llm_no_value" if isinstance(got, dict) and got.get("absent") else \
                    f"llm_invalid: {str(why or 'malformed')[:80]}"
                continue
            value, span = ok
            slots[n] = Slot(value=value, confidence=LLM_SLOT_CONFIDENCE, source="llm", span=span,
                            needs_confirmation=True, note="llm")
        self.sink.add_metric("ParseLlmCalls", "Count", 1)
        return {"asked": asked, "status": "answered", "usd": round(usd, 8)}

    @staticmethod
    def _recheck(slot: str, got: Any, user_texts: list[str]) -> Optional[tuple[str, dict]]:
        """The LLM function validated its answer; this boundary checks again what it receives
        (:func:`calroute.llm.slots.check_value`: a valid value, a span said by the user)."""
        if not isinstance(got, dict) or not isinstance(got.get("span"), dict):
            return None
        ok = check_value(slot, got.get("value"), got["span"].get("text"), user_texts)
        return None if isinstance(ok, str) else ok

    def _route(self, user_id: str, draft: dict) -> dict:
        flat = {"summary": draft["summary"], "location": draft["location"], "start": draft["start"],
                "end": draft["end"], "all_day": draft["all_day"], "attendees": draft["attendees"]}
        event = parse_event(flat, field="draft")
        return self.classify(user_id, [event])[0]


__all__ = ["ParseService", "LLM_SLOT_CONFIDENCE"]
