"""What a rule's value is worth: its fitted confidence, and whether the user should confirm it.

:mod:`calroute.slots.fitted` (written by ``calroute evaluate-slots --fit``, never by hand: a JSON
document in a Python module, so the layer ships it like any module)
holds, per rule, the share of its values that were right on the nl_events **train** split
(add-one smoothed), and per slot the lowest confidence at which the values kept are certified
≥ 97 % right (``calroute.risk.choose_threshold_ltt``: Clopper-Pearson / Learn-then-Test, α = 0.03,
δ = ``RISK_DELTA``), or null when no threshold could be certified (the slot always asks). The dev
split confirms it (docs/slots.md). ``needs_confirmation`` is false only for a value at or above its
slot's certified threshold.

It is plain JSON (no pickle); a missing or malformed table makes every slot ask.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Optional

FITTED_PATH = os.path.join(os.path.dirname(__file__), "fitted.py")

#: A rule the fitted table does not know (a new pattern): low, never confident.
UNKNOWN_RULE_CONFIDENCE = 0.5

_EMPTY = {"rules": {}, "confident_at": {}}


def _load() -> object:
    from . import fitted as module

    return json.loads(module.FITTED_JSON)


@functools.lru_cache(maxsize=1)
def fitted() -> dict:
    """The fitted table (``{"rules": {rule: confidence}, "confident_at": {slot: threshold|null}, ...}``)."""
    try:
        data = _load()
    except (ImportError, AttributeError, ValueError):
        return dict(_EMPTY)
    if not isinstance(data, dict) or not isinstance(data.get("rules"), dict) \
            or not isinstance(data.get("confident_at"), dict):
        return dict(_EMPTY)
    return data


def rule_confidence(rule: str) -> float:
    value = fitted()["rules"].get(rule)
    return float(value) if isinstance(value, (int, float)) else UNKNOWN_RULE_CONFIDENCE


def confident_at(slot: str) -> Optional[float]:
    """The slot's certified threshold, or None (never confident without asking)."""
    value = fitted()["confident_at"].get(slot)
    return float(value) if isinstance(value, (int, float)) else None


def needs_confirmation(slot: str, confidence: float, *, threshold: Optional[float] = None) -> bool:
    """True unless ``confidence`` reaches the slot's certified threshold (``threshold`` overrides
    the fitted one: the LLM's answers are never certified, see ``calroute.services.parse``)."""
    t = confident_at(slot) if threshold is None else threshold
    return t is None or confidence < t
