"""The types of slot extraction: a found value (:class:`Found`), a slot of the answer
(:class:`Slot`) and the names of the slots."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

#: The slots of a draft, in the order the assistant should ask for missing ones.
SLOT_NAMES = ("summary", "date", "time", "location", "attendees")

#: Slots without which the event cannot be created (what ``missing`` lists when empty or unsure).
REQUIRED = ("summary", "date", "time")

#: Where a value comes from.
SOURCES = ("rules", "llm", "default")


@dataclass(frozen=True)
class Found:
    """A value a rule found: ``value`` (normalised: ``YYYY-MM-DD``, ``HH:MM``, text, list of names),
    ``rule`` (the pattern that matched: its confidence is fitted per rule, :mod:`.confidence`),
    ``turn`` (index of the turn it was found in) and ``span`` (``[start, end)`` in that turn's text)."""

    value: Any
    rule: str
    turn: int
    start: int
    end: int
    text: str = ""  # the matched text (the span's substring)


@dataclass
class Slot:
    """One slot of the answer."""

    value: Any = None
    confidence: float = 0.0
    source: str = "default"
    span: Optional[dict] = None  # {"turn", "start", "end", "text"}
    needs_confirmation: bool = True
    rule: Optional[str] = None
    note: Optional[str] = None  # why an LLM was not asked / what it said, e.g. "llm_not_configured"

    def to_dict(self) -> dict:
        out = {"value": self.value, "confidence": round(float(self.confidence), 4), "source": self.source,
               "span": self.span, "needs_confirmation": bool(self.needs_confirmation)}
        if self.rule:
            out["rule"] = self.rule
        if self.note:
            out["note"] = self.note
        return out


@dataclass
class Extraction:
    """What the rules made of the text: a :class:`Slot` per name, and the turns they read."""

    slots: dict[str, Slot] = field(default_factory=dict)
    turns: list[str] = field(default_factory=list)
