"""Operations: drift monitoring inside training runs, and the operator views of the prediction log
(``GET /v1/stats``, ``GET /v1/experiments/{name}``).

Drift (``check_user_drift``): the training reference (``drift.reference_profile`` of the training
events, stored on the registry version as ``drift_reference`` by TrainUser) against the text-free
``drift`` summaries of the user's logged requests since the active model's promotion (at most
``drift_window_days`` back, at most ``drift_max_items``). The planner stores the report on the
registry (``ModelRegistry.mark_drift``: ACTIVE + version, ``drift``/``drifted``/``drift_at``) and the
retraining policy schedules a drifted user (``retrain.needs_training``).

Operator views aggregate a bounded Scan of the prediction log (``PredictionLog.scan_since``: a day
window, a maximum item count, projected to aggregate fields — no user id is ever read); every answer
says which bound applied (``scan``).

The log is a sample (``calroute.sampling``: confident model answers at a small rate, the others
all): counts, shares, the histogram, USD, latency percentiles and the overall accuracy are estimates
weighted by ``1 / sample_rate``; per-method accuracy is over that method's judged items (one rate);
drift weights the summaries and gates on the effective sample size.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Optional

from .. import drift as drift_mod
from ..experiments import arm_stats, compare_arms
from ..ports import GLOBAL_PK, PredictionLog, UsageLedger
from ..sampling import weight, weighted_percentile
from ..timeutil import parse_ts

#: confidence histogram edges (upper bounds, inclusive); the routing threshold is per user
CONFIDENCE_BINS = (0.5, 0.7, 0.85, 0.95, 1.0)
#: prompt-size estimate used to price an LLM call when no call was measured in the window: the
#: fallback prompt (system prompt + calendars with profiles + 5 similar events + the event + the
#: JSON schema) measured 3,886 characters median (157 events of the bundled users, max 4,795)
#: ≈ 1,000 tokens at 4 characters per token; the structured answer ≈ 40 tokens
EST_INPUT_TOKENS = 1000
EST_OUTPUT_TOKENS = 40
LLM_METHODS = ("llm", "llm_only")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


# ----------------------------------------------------------------------------- drift


def drift_since(active: dict, now: datetime, window_days: int) -> str:
    """The start of the comparison window: the later of the promotion and ``now − window_days``."""
    floor = now - timedelta(days=window_days)
    promoted = parse_ts(active.get("promoted_at"))
    start = max(floor, promoted) if promoted else floor
    return start.isoformat(timespec="milliseconds")


def check_user_drift(user_id: str, active: dict, record: Optional[dict], predictions: Any, cfg: Any,
                     now: Optional[datetime] = None) -> Optional[dict]:
    """The drift report of one user's active model, or None when the version carries no training
    reference (trained before drift monitoring existed). ``user_id`` must be validated."""
    reference = (record or {}).get("drift_reference")
    if not reference:
        return None
    now = now or _utcnow()
    since = drift_since(active, now, cfg.drift_window_days)
    items = predictions.since(user_id, since, limit=cfg.drift_max_items)
    summaries, labels, weights, label_weights = [], [], [], []
    for it in items:
        s = it.get("drift")
        if isinstance(s, dict):
            w = weight(it)
            summaries.append(s)
            weights.append(w)
            label = it.get("corrected_to") or it.get("calendar_id")
            if label:
                labels.append(str(label))
                label_weights.append(w)
    report = drift_mod.drift_report(reference, summaries, labels, min_samples=cfg.drift_min_samples,
                                    weights=weights, label_weights=label_weights)
    report.update(version=active.get("version", ""), since=since)
    return report


class DriftTally:
    """What a training run saw of drift (no per-user figures leave it: only counts and the max)."""

    def __init__(self) -> None:
        self.checked = self.drifted = self.insufficient = self.no_reference = self.stale = 0
        self.max_psi = 0.0

    def add(self, report: Optional[dict]) -> None:
        if report is None:
            self.no_reference += 1
            return
        if not report.get("psi"):
            self.insufficient += 1
            return
        self.checked += 1
        self.drifted += 1 if report.get("drifted") else 0
        self.max_psi = max(self.max_psi, float(report.get("max") or 0.0))

    def as_dict(self) -> dict:
        return {"checked": self.checked, "drifted": self.drifted, "max_psi": round(self.max_psi, 4),
                "insufficient": self.insufficient, "no_reference": self.no_reference, "stale": self.stale,
                "threshold": drift_mod.DRIFT_THRESHOLD}


# ----------------------------------------------------------------------------- operator stats


def confidence_histogram(items: Iterable[dict]) -> list[dict]:
    """Counts of the model's confidence per bin ``(lo, hi]`` (the first bin is ``[0, 0.5]``)."""
    counts = [0.0] * len(CONFIDENCE_BINS)
    for it in items:
        c = it.get("confidence")
        if c is None:
            continue
        c = float(c)
        for i, hi in enumerate(CONFIDENCE_BINS):
            if c <= hi or i == len(CONFIDENCE_BINS) - 1:
                counts[i] += weight(it)
                break
    lows = (0.0, *CONFIDENCE_BINS[:-1])
    return [{"from": lo, "to": hi, "count": int(round(n))} for lo, hi, n in zip(lows, CONFIDENCE_BINS, counts)]


def llm_unit_cost(items: list[dict], ledger: dict, cfg: Any) -> tuple[float, str]:
    """USD of one LLM call: measured in the log window, else from the usage ledger, else the
    prompt-size estimate at the configured model's price."""
    priced = [float(i["llm_usd"]) for i in items if i.get("method") in LLM_METHODS and i.get("llm_usd")]
    if priced:
        return sum(priced) / len(priced), f"measured: mean of {len(priced)} logged LLM calls"
    if ledger.get("calls"):
        return float(ledger["usd"]) / int(ledger["calls"]), f"measured: usage ledger ({ledger['calls']} calls)"
    from ..llm.cost import cost_usd

    est = cost_usd(cfg.llm_model, EST_INPUT_TOKENS, EST_OUTPUT_TOKENS, cfg.llm_prices)
    return est, (f"estimate: {EST_INPUT_TOKENS} input + {EST_OUTPUT_TOKENS} output tokens at "
                 f"{cfg.llm_model} prices")


def operator_stats(items: list[dict], ledger: dict, cfg: Any) -> dict:
    """The seed's dashboard questions from prediction-log items (see :func:`PredictionLog.scan_since`)
    and the ``_global`` usage-ledger totals: ML share, confidence histogram, LLM calls, USD spent and
    saved against LLM-only, LLM time avoided, latency and accuracy (from corrections) per method."""
    n_logged = len(items)
    n = sum(weight(i) for i in items)
    by_method: dict[str, list[dict]] = {}
    for it in items:
        by_method.setdefault(str(it.get("method") or "none"), []).append(it)

    def lat_pairs(its: Iterable[dict]) -> list[tuple[float, float]]:
        return [(float(i["latency_ms"]), weight(i)) for i in its if i.get("latency_ms") is not None]

    def wmean(pairs: list[tuple[float, float]]) -> Optional[float]:
        tot = sum(w for _, w in pairs)
        return sum(v * w for v, w in pairs) / tot if tot else None

    def pct(pairs: list[tuple[float, float]], q: float) -> Optional[float]:
        v = weighted_percentile(pairs, q)
        return round(v, 3) if v is not None else None

    methods = {}
    for m, its in sorted(by_method.items()):
        lat = lat_pairs(its)
        judged = [i for i in its if "was_correct" in i]
        est = sum(weight(i) for i in its)
        methods[m] = {
            "count": int(round(est)),
            "logged": len(its),
            "share": round(est / n, 4) if n else None,
            "judged": len(judged),
            "accuracy": round(sum(1 for i in judged if i["was_correct"]) / len(judged), 4) if judged else None,
            "latency_p50_ms": pct(lat, 50),
            "latency_p99_ms": pct(lat, 99),
        }
    ml = by_method.get("ml", [])
    n_ml = sum(weight(i) for i in ml)
    # answered without the LLM though LLM-only would have asked it: the model's and a sole calendar's
    only = by_method.get("only_calendar", [])
    n_only = sum(weight(i) for i in only)
    llm_items = [i for i in items if i.get("method") in LLM_METHODS]
    n_llm = sum(weight(i) for i in llm_items)
    spent_log = round(sum(float(i.get("llm_usd") or 0) * weight(i) for i in items), 6)
    unit, unit_source = llm_unit_cost(items, ledger, cfg)
    saved = (n_ml + n_only) * unit

    # the LLM path's latency: LLM-only requests (no model in the way) if any, else hybrid LLM answers
    llm_only_lat = lat_pairs(by_method.get("llm_only", []))
    llm_lat = lat_pairs(by_method.get("llm", []))
    llm_path = wmean(llm_only_lat) if llm_only_lat else wmean(llm_lat)
    ml_lat = lat_pairs(ml) + lat_pairs(only)
    time_saved_s = None
    if llm_path is not None and ml_lat:
        time_saved_s = round(sum(max(0.0, llm_path - x) * w for x, w in ml_lat) / 1000.0, 3)
    all_lat = lat_pairs(items)
    judged = [i for i in items if "was_correct" in i]
    judged_w = sum(weight(i) for i in judged)
    return {
        "requests": int(round(n)),
        "logged": n_logged,
        "ml_share": round(n_ml / n, 4) if n else None,
        "llm_share": round(n_llm / n, 4) if n else None,
        "by_method": methods,
        "confidence_histogram": confidence_histogram(i for i in items if i.get("method") in (
            "ml", "llm", "ml_low_confidence")),
        "accuracy": round(sum(weight(i) for i in judged if i["was_correct"]) / judged_w, 4) if judged_w else None,
        "judged": len(judged),
        "latency_p50_ms": pct(all_lat, 50),
        "latency_p99_ms": pct(all_lat, 99),
        "llm_calls": int(round(n_llm)),
        "spent_usd": spent_log,
        "saved": {
            "ml_answered": int(round(n_ml)),
            "only_calendar": int(round(n_only)),
            "usd_per_llm_call": round(unit, 8),
            "usd_per_llm_call_source": unit_source,
            "usd": round(saved, 6),
            "llm_only_usd": round(spent_log + saved, 6),
            "share": round(saved / (spent_log + saved), 4) if (spent_log + saved) > 0 else None,
            "llm_path_ms": round(llm_path, 3) if llm_path is not None else None,
            "llm_path_source": ("llm_only requests" if llm_only_lat else "llm requests" if llm_lat else None),
            "time_seconds": time_saved_s,
        },
    }


# ----------------------------------------------------------------------------- the service


class OpsService:
    """Operator aggregates over a bounded Scan of the prediction log (``PredictionLog.scan_since``)
    and the ``_global`` rows of the usage ledger."""

    def __init__(self, predictions: PredictionLog, usage: UsageLedger, cfg: Any, *,
                 now: Callable[[], datetime] = _utcnow):
        self.predictions, self.usage, self.cfg, self.now = predictions, usage, cfg, now

    def _scan(self, days: int) -> tuple[list[dict], dict]:
        cfg = self.cfg
        window = min(int(days), cfg.stats_max_days)
        since = (self.now() - timedelta(days=window)).isoformat(timespec="milliseconds")
        items, info = self.predictions.scan_since(since, max_items=cfg.stats_max_items)
        note = f"prediction log items created since {since} ({window} day(s), at most {cfg.stats_max_items} items)"
        if window < days:
            note += f"; {days} days were asked, STATS_MAX_DAYS is {cfg.stats_max_days}"
        if info["truncated"]:
            note += "; the item bound was reached: figures cover the first items scanned, not the whole window"
        return items, {"since": since, "days": window, "max_items": cfg.stats_max_items, "items": len(items),
                       **info, "note": note}

    def stats(self, days: int = 1) -> dict:
        """``GET /v1/stats`` (without the ledger part, which :class:`StatsService` adds)."""
        items, scan = self._scan(days)
        since_day = scan["since"][:10]
        rows = self.usage.days(GLOBAL_PK, since_day)
        ledger = {"calls": int(sum(r.get("calls", 0) for r in rows)),
                  "usd": round(float(sum(r.get("usd", 0) for r in rows)), 6)}
        return {**operator_stats(items, ledger, self.cfg), "scan": scan}

    def experiment(self, name: str, days: int = 7) -> dict:
        """``GET /v1/experiments/{name}``: the configured experiment's arms (cohorts), compared."""
        from ..errors import NotFound

        cfg = self.cfg
        if name != cfg.experiment_name:
            raise NotFound(f"no experiment named {name!r} is configured (EXPERIMENT_NAME is "
                           f"{cfg.experiment_name!r})", field="name")
        items, scan = self._scan(days)
        control = arm_stats(i for i in items if i.get("cohort") == "control")
        treatment = arm_stats(i for i in items if i.get("cohort") == "treatment")
        notes = []
        if cfg.experiment_control_percent <= 0:
            notes.append("EXPERIMENT_CONTROL_PERCENT is 0: every user is in the treatment arm (no control)")
        if not control["judged"] or not treatment["judged"]:
            notes.append("accuracy needs corrected predictions in both arms (was_correct); the z-test is void")
        return {
            "name": name,
            "arms": {
                "control": {"description": "LLM only", **control},
                "treatment": {"description": "hybrid: per-user model, LLM fallback when unsure", **treatment},
            },
            "config": {"experiment_control_percent": cfg.experiment_control_percent,
                       "assignment": "blake2b(experiment name, user id) bucket (calroute.policy.cohort_for)"},
            "comparison": compare_arms(control, treatment),
            "notes": notes,
            "scan": scan,
        }


__all__ = ["check_user_drift", "drift_since", "DriftTally", "operator_stats", "confidence_histogram",
           "llm_unit_cost", "OpsService", "CONFIDENCE_BINS", "EST_INPUT_TOKENS", "EST_OUTPUT_TOKENS"]
