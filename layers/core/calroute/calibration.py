"""Calibration of confidences: reliability bins and the one expected calibration error (ECE).

numpy only (no sklearn, no matplotlib): the trainer records ``metrics["calibration"]`` with
:func:`calibration_summary`; the evaluation report draws :func:`reliability_bins` and titles the
diagram with :func:`expected_calibration_error` of the same bins.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[dict]:
    """Per confidence bin ``[lo, hi)`` (the last bin closed): count, mean confidence, accuracy."""
    conf = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": int(m.sum()),
                    "confidence": float(conf[m].mean()) if m.any() else None,
                    "accuracy": float(ok[m].mean()) if m.any() else None})
    return out


def expected_calibration_error(bins: list[dict]) -> Optional[float]:
    """ECE of :func:`reliability_bins`: the events' share of each bin times |accuracy − mean
    confidence| in it, summed; None without events."""
    total = sum(b["count"] for b in bins)
    if not total:
        return None
    ece = 0.0
    for b in bins:  # accumulated in bin order (not math.fsum / sum()'s compensated sum): the trainer's value
        if b["count"]:
            ece += b["count"] / total * abs(b["confidence"] - b["accuracy"])
    return float(ece)


def calibration_summary(confidence: Sequence[float], correct: Sequence[float], bins: int = 10) -> dict:
    """``{"ece", "mean_confidence", "accuracy"}`` (4 decimals; None each without events): how the
    trainer records the calibration of its out-of-fold predictions."""
    conf = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=float)
    if len(conf) == 0:
        return {"ece": None, "mean_confidence": None, "accuracy": None}
    ece = expected_calibration_error(reliability_bins(conf, ok, bins))
    return {"ece": round(float(ece), 4), "mean_confidence": round(float(conf.mean()), 4),
            "accuracy": round(float(ok.mean()), 4)}


__all__ = ["reliability_bins", "expected_calibration_error", "calibration_summary"]
