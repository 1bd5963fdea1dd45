"""Sampling of the prediction log and the weights its readers apply (docs/serving.md, "Prediction log").

The predict service keeps an answer in the DynamoDB prediction log with a probability that depends on
the answer: every answer the model did not give confidently (``llm``, ``llm_only``,
``ml_low_confidence``, ``none``) with ``PREDICTION_LOG_SAMPLE_RATE`` (1.0), a confident model answer
(``ml``) or a user's only calendar (``only_calendar``) with ``PREDICTION_LOG_SAMPLE_RATE × PREDICTION_LOG_CONFIDENT_SAMPLE_RATE``. The decision is
deterministic by event id (crc32 bucket out of :data:`RESOLUTION`): the same on every container and
every retry. Each kept item carries the ``sample_rate`` it was kept with, so a reader estimates a
count by summing ``1 / sample_rate`` (:func:`weight`); items logged before sampling existed carry
none and weigh 1.

Pure Python, no I/O (imported on the predict hot path).
"""

from __future__ import annotations

import math
import zlib
from typing import Iterable, Optional, Sequence

#: sampling resolution: rates are whole multiples of 1 / RESOLUTION
RESOLUTION = 10_000
#: the answers given without doubt, the only ones sampled below the base rate: the model's confident
#: answers, and a user's only calendar (no model, no LLM call: nothing to review)
CONFIDENT_METHODS = frozenset({"ml", "only_calendar"})


def cut(rate: float) -> int:
    """The crc32 bucket bound of ``rate`` (0 … RESOLUTION)."""
    return max(0, min(RESOLUTION, int(round(rate * RESOLUTION, 6))))


def kept(event_id: str, bound: int) -> bool:
    """Is ``event_id`` inside the sample of bucket bound ``bound`` (see :func:`cut`)?"""
    if bound >= RESOLUTION:
        return True
    return bound > 0 and zlib.crc32(event_id.encode("utf-8")) % RESOLUTION < bound


def weight(item: dict) -> float:
    """How many answers a logged item stands for: ``1 / sample_rate`` (1 without a rate)."""
    rate = item.get("sample_rate")
    try:
        rate = float(rate) if rate is not None else None
    except (TypeError, ValueError):
        return 1.0
    return 1.0 / rate if rate and rate > 0 else 1.0


def effective_n(weights: Sequence[float]) -> float:
    """Kish's effective sample size ``(Σw)² / Σw²``: what a weighted sample is worth in unweighted
    items (drift's minimum-sample gate uses it, so a few heavy items never decide on their own)."""
    s2 = sum(w * w for w in weights)
    return (sum(weights) ** 2) / s2 if s2 else 0.0


def weighted_percentile(pairs: Iterable[tuple[float, float]], q: float) -> Optional[float]:
    """Nearest-rank percentile (q in 0..100) of ``(value, weight)`` pairs; None for none. With equal
    weights it equals :func:`calroute.experiments.percentile`."""
    s = sorted(pairs)
    if not s:
        return None
    total = sum(w for _, w in s)
    target = q / 100.0 * total
    acc = 0.0
    for v, w in s:
        acc += w
        if acc >= target - 1e-9 * total:
            return float(v)
    return float(s[-1][0])


def weighted_share(items: Sequence[dict], pred) -> Optional[float]:
    """Estimated share of the answers the items stand for that satisfy ``pred``."""
    total = sum(weight(i) for i in items)
    return sum(weight(i) for i in items if pred(i)) / total if total else None


__all__ = ["RESOLUTION", "CONFIDENT_METHODS", "cut", "kept", "weight", "effective_n", "weighted_percentile",
           "weighted_share"]
