"""Drift: do the events a user classifies now look like the events their model was trained on?

Text never leaves the request: what is kept per classified event (in the prediction log) and per
training set (on the registry version) is a *summary* — hour and weekday bins, a duration bin, the
all-day / location / attendee flags, and up to 16 coarse token buckets (crc32 hash of the token,
modulo 256: not reversible to text).

``drift_report`` compares a training reference with recent summaries: the Population Stability
Index (PSI) per feature group (``time``, ``shape``, ``tokens``) and the shift of the label mix
(PSI between the training label distribution and the predicted label distribution). A user whose
largest value exceeds ``DRIFT_THRESHOLD`` (0.15, the usual "moderate shift" PSI bound) is drifted:
the planner schedules a retraining and the value is emitted as the ``DriftPsi`` metric.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from typing import Iterable, Optional, Sequence

from .features import event_tokens
from .schema import Event

DRIFT_THRESHOLD = 0.15
TOKEN_BUCKETS = 256
MAX_TOKENS = 16
MIN_SAMPLES = 30
_DURATION_EDGES = (0, 15, 30, 60, 90, 120, 240, 480, 1440, 2880)
_EPS = 1e-4


def _duration_bin(minutes: float) -> int:
    for i, edge in enumerate(_DURATION_EDGES):
        if minutes <= edge:
            return i
    return len(_DURATION_EDGES)


def summarize_event(ev: Event) -> dict:
    """The compact, text-free summary stored in the prediction log (and used for references)."""
    toks = event_tokens(ev)
    buckets = sorted({zlib.crc32(t.encode("utf-8")) % TOKEN_BUCKETS for t in toks["t"] + toks["l"]})[:MAX_TOKENS]
    return {
        "h": -1 if ev.all_day else ev.start.hour,
        "w": ev.start.weekday(),
        "b": _duration_bin(ev.duration_minutes),
        "f": (1 if ev.all_day else 0) | (2 if ev.location else 0) | (4 if ev.attendees else 0),
        "t": buckets,
    }


def _group_counts(summaries: Iterable[dict], weights: Optional[Sequence[float]] = None) -> dict[str, Counter]:
    time_c, shape_c, tok_c = Counter(), Counter(), Counter()
    for k, s in enumerate(summaries):
        w = weights[k] if weights is not None else 1
        time_c[f"h{s.get('h', -1)}"] += w
        time_c[f"w{s.get('w', 0)}"] += w
        shape_c[f"b{s.get('b', 0)}"] += w
        shape_c[f"f{s.get('f', 0)}"] += w
        for t in s.get("t", ()):
            tok_c[str(t)] += w
    return {"time": time_c, "shape": shape_c, "tokens": tok_c}


def reference_profile(events: Sequence[Event]) -> dict:
    """Training-time reference: per-group histograms (JSON-able) and the label mix."""
    counts = _group_counts(summarize_event(e) for e in events)
    labels = Counter(e.calendar_id or "" for e in events)
    return {
        "n": len(events),
        "groups": {g: dict(c) for g, c in counts.items()},
        "labels": dict(labels),
    }


def psi(expected: dict, actual: dict) -> float:
    """Population Stability Index between two histograms (dicts of bin → count)."""
    keys = set(expected) | set(actual)
    e_tot = sum(expected.values()) or 1
    a_tot = sum(actual.values()) or 1
    total = 0.0
    for k in keys:
        e = max(expected.get(k, 0) / e_tot, _EPS)
        a = max(actual.get(k, 0) / a_tot, _EPS)
        total += (a - e) * math.log(a / e)
    return total


def drift_report(reference: dict, summaries: Sequence[dict], predicted_labels: Sequence[str],
                 threshold: float = DRIFT_THRESHOLD, min_samples: int = MIN_SAMPLES, *,
                 weights: Optional[Sequence[float]] = None,
                 label_weights: Optional[Sequence[float]] = None) -> dict:
    """PSI per feature group and label-mix shift of recent requests against a training reference.

    ``weights`` (one per summary) and ``label_weights`` (one per label): what each logged request
    stands for (``calroute.sampling.weight``: the prediction log is sampled). With fewer than
    ``min_samples`` recent requests — counted as the weighted sample's effective size
    (``sampling.effective_n``), so a few heavily weighted items never conclude on their own —
    nothing is concluded (``drifted`` False, ``reason`` says why).
    """
    from .sampling import effective_n

    n = len(summaries)
    eff = effective_n(list(weights)) if weights is not None else float(n)
    if eff + 1e-9 < min_samples or not reference or not reference.get("n"):
        return {"n": n, "effective_n": round(eff, 1), "psi": {}, "label_shift": 0.0, "max": 0.0, "drifted": False,
                "reason": f"too few recent requests ({n} < {min_samples})" if n < min_samples else
                f"too few recent requests (effective {eff:.1f} < {min_samples}: sampled log)"}
    recent = _group_counts(summaries, weights)
    groups = {g: round(psi(reference["groups"].get(g, {}), dict(recent[g])), 4) for g in recent}
    mix: Counter = Counter()
    for k, label in enumerate(predicted_labels):
        if label:
            mix[label] += label_weights[k] if label_weights is not None else 1
    label_shift = round(psi(reference.get("labels", {}), dict(mix)), 4)
    worst = max([*groups.values(), label_shift])
    return {"n": n, "effective_n": round(eff, 1), "psi": groups, "label_shift": label_shift, "max": worst,
            "drifted": worst > threshold, "reason": "drift" if worst > threshold else "stable"}
