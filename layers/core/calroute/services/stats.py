"""User statistics: the last N days (default 7) of the prediction log and the LLM usage ledger.

Accuracy per method is measured from corrections only: of the logged predictions whose event the
user later labelled (``was_correct`` set by the ingest service), the share that was right.

The log is a sample (``calroute.sampling``: confident model answers are kept at a small rate, the
others all): counts, the overall accuracy and the latency percentile are estimates weighted by
``1 / sample_rate``; ``logged`` is how many items they rest on. Per-method accuracy needs no weight
(one rate per method).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Callable

from ..ports import GLOBAL_PK, PredictionLog, UsageLedger
from ..sampling import weight, weighted_percentile
from ..schema import METHODS



def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class StatsService:
    """``cfg`` (a :class:`~calroute.config.Settings`) enables the operator views over the whole
    prediction log (:class:`~calroute.services.ops.OpsService`: bounded Scan)."""

    def __init__(self, predictions: PredictionLog, usage: UsageLedger, *, cfg=None,
                 now: Callable[[], datetime] = _utcnow):
        self.predictions = predictions
        self.usage = usage
        self.cfg = cfg
        self.now = now

    @property
    def ops(self):
        from .ops import OpsService

        if self.cfg is None:
            raise RuntimeError("StatsService needs cfg for the operator views")
        return OpsService(self.predictions, self.usage, self.cfg, now=self.now)

    def experiment(self, name: str, days: int = 7) -> dict:
        """``GET /v1/experiments/{name}`` — operators only (the caller checks)."""
        return self.ops.experiment(name, days)

    def user_stats(self, user_id: str, days: int = 7) -> dict:
        """``user_id`` must already be validated."""
        now = self.now()
        since = now - timedelta(days=days)
        since_iso = since.isoformat(timespec="milliseconds")
        items = self.predictions.since(user_id, since_iso)
        by_method: dict[str, dict] = {m: {"count": 0, "logged": 0, "judged": 0, "correct": 0, "accuracy": None}
                                      for m in METHODS}
        est: dict[str, float] = {}
        latencies: list[tuple[float, float]] = []
        judged_w = correct_w = 0.0
        for it in items:
            m = it.get("method") or "none"
            w = weight(it)
            row = by_method.setdefault(m, {"count": 0, "logged": 0, "judged": 0, "correct": 0, "accuracy": None})
            est[m] = est.get(m, 0.0) + w
            row["logged"] += 1
            if "was_correct" in it:
                row["judged"] += 1
                row["correct"] += 1 if it["was_correct"] else 0
                judged_w += w
                correct_w += w if it["was_correct"] else 0.0
            if it.get("latency_ms") is not None:
                latencies.append((float(it["latency_ms"]), w))
        judged = 0
        for m, row in by_method.items():
            row["count"] = int(round(est.get(m, 0.0)))
            if row["judged"]:
                row["accuracy"] = round(row["correct"] / row["judged"], 4)
            judged += row["judged"]
        days_usage = self.usage.days(user_id, since.strftime("%Y-%m-%d"))
        llm = {
            "calls": int(sum(d.get("calls", 0) for d in days_usage)),
            "usd": round(float(sum(d.get("usd", 0) for d in days_usage)), 6),
            "input_tokens": int(sum(d.get("input_tokens", 0) for d in days_usage)),
            "output_tokens": int(sum(d.get("output_tokens", 0) for d in days_usage)),
            "by_day": [{"day": d["day"], "calls": int(d.get("calls", 0)), "usd": round(float(d.get("usd", 0)), 6)}
                       for d in sorted(days_usage, key=lambda d: d["day"])],
        }
        return {
            "user_id": user_id,
            "days": days,
            "since": since_iso,
            "predictions": int(round(sum(est.values()))),
            "logged": len(items),
            "judged": judged,
            "accuracy": round(correct_w / judged_w, 4) if judged_w else None,
            "by_method": by_method,
            "latency_p50_ms": weighted_percentile(latencies, 50),
            "llm": llm,
        }

    def global_stats(self, days: int = 7) -> dict:
        """Service-wide LLM usage (the ``_global`` ledger row per day) and, with ``cfg``, the
        prediction-log aggregates of :func:`calroute.services.ops.operator_stats` (ML share,
        confidence histogram, USD and time saved against LLM-only; bounded: see ``scan``) —
        operators only."""
        since = self.now() - timedelta(days=days)
        rows = sorted(self.usage.days(GLOBAL_PK, since.strftime("%Y-%m-%d")), key=lambda d: d["day"])
        extra = self.ops.stats(days) if self.cfg is not None else {}
        return {
            **extra,
            "days": days,
            "since": since.isoformat(timespec="milliseconds"),
            "llm": {
                "calls": int(sum(d.get("calls", 0) for d in rows)),
                "usd": round(float(sum(d.get("usd", 0) for d in rows)), 6),
                "input_tokens": int(sum(d.get("input_tokens", 0) for d in rows)),
                "output_tokens": int(sum(d.get("output_tokens", 0) for d in rows)),
                "by_day": [{"day": d["day"], "calls": int(d.get("calls", 0)), "usd": round(float(d.get("usd", 0)), 6)}
                           for d in rows],
            },
        }
