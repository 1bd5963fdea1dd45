"""Experiment analysis: per-arm aggregates from prediction-log items and a two-proportion z-test.

An arm's *accuracy* is measured from corrections: of the logged predictions whose event the user
later labelled (``was_correct`` present), the share that was right. A prediction never corrected is
not counted either way (corrections are the only ground truth the service sees).
"""

from __future__ import annotations

import math
from typing import Iterable


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return float(s[k])


def two_proportion_z(success_a: int, n_a: int, success_b: int, n_b: int) -> dict:
    """Two-sided two-proportion z-test (pooled). Returns z, p-value and both proportions."""
    if n_a == 0 or n_b == 0:
        return {"z": 0.0, "p_value": 1.0, "p_a": None, "p_b": None, "significant": False}
    p_a, p_b = success_a / n_a, success_b / n_b
    pooled = (success_a + success_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return {"z": 0.0, "p_value": 1.0, "p_a": p_a, "p_b": p_b, "significant": False}
    z = (p_b - p_a) / se
    p_value = math.erfc(abs(z) / math.sqrt(2))
    return {"z": round(z, 4), "p_value": p_value, "p_a": p_a, "p_b": p_b, "significant": p_value < 0.05}


def arm_stats(items: Iterable[dict]) -> dict:
    """Aggregate prediction-log items of one arm. The log is sampled (``calroute.sampling``):
    ``requests``, ``by_method``, ``llm_calls``, ``cost_usd``, the latency percentiles and ``accuracy``
    are estimates weighted by ``1 / sample_rate``; ``logged`` and ``judged`` are item counts;
    ``correct`` is ``judged × accuracy`` (the z-test's successes); ``ml_accuracy`` is over the judged
    ``ml`` items (one rate: no weight needed)."""
    from .sampling import weight, weighted_percentile

    items = list(items)
    ws = [weight(i) for i in items]
    judged = [(i, w) for i, w in zip(items, ws) if "was_correct" in i]
    judged_w = sum(w for _, w in judged)
    accuracy = (sum(w for i, w in judged if i["was_correct"]) / judged_w) if judged_w else None
    lat = [(float(i.get("latency_ms", 0)), w) for i, w in zip(items, ws)]
    llm_calls = sum(w for i, w in zip(items, ws) if i.get("method") in ("llm", "llm_only"))
    by_method: dict[str, float] = {}
    for i, w in zip(items, ws):
        by_method[i.get("method", "?")] = by_method.get(i.get("method", "?"), 0) + w
    ml = [i for i, _ in judged if i.get("method") == "ml"]
    return {
        "requests": int(round(sum(ws))),
        "logged": len(items),
        "by_method": {m: int(round(c)) for m, c in by_method.items()},
        "judged": len(judged),
        "correct": int(round(accuracy * len(judged))) if accuracy is not None else 0,
        "accuracy": accuracy,
        "ml_accuracy": (sum(1 for i in ml if i["was_correct"]) / len(ml)) if ml else None,
        "llm_calls": int(round(llm_calls)),
        "cost_usd": round(sum(float(i.get("llm_usd", 0) or 0) * w for i, w in zip(items, ws)), 6),
        "latency_p50_ms": round(weighted_percentile(lat, 50) or 0.0, 3),
        "latency_p99_ms": round(weighted_percentile(lat, 99) or 0.0, 3),
    }


def compare_arms(control: dict, treatment: dict) -> dict:
    """The seed's A/B questions answered from two arms' aggregates: accuracy difference with a
    z-test, latency change and cost change (treatment vs control)."""
    test = two_proportion_z(control["correct"], control["judged"], treatment["correct"], treatment["judged"])

    def change(a: float, b: float):
        return None if not a else round((b - a) / a, 4)

    return {
        "accuracy_z_test": test,
        "latency_p50_change": change(control["latency_p50_ms"], treatment["latency_p50_ms"]),
        "cost_change": change(control["cost_usd"], treatment["cost_usd"]),
        "seed_targets": {
            "ml_accuracy_ge_0_90": (treatment.get("ml_accuracy") or 0) >= 0.90 if treatment.get("ml_accuracy") is not None else None,
            "latency_minus_50pct": (change(control["latency_p50_ms"], treatment["latency_p50_ms"]) or 0) <= -0.5
            if control["latency_p50_ms"] else None,
            "cost_minus_60pct": (change(control["cost_usd"], treatment["cost_usd"]) or 0) <= -0.6
            if control["cost_usd"] else None,
        },
    }
