"""``python -m bench.review_seeds [--data DIR] [--cuts 0.3,0.4,0.5,0.6,0.7] [--seeds 20] [--out FILE]``: the
review bar of issue 12 with its noise measured (docs/learning.md "Against the bars").

The review experiment (:func:`calroute_dev.replay.review_experiment`: the llm_answers arm streamed to
a cut of each user's first 600 events, then ten LLM-labelled events answered — the review queue's
top ten, or ten drawn at random — and the next model's coverage of the rest of the stream) with
``--seeds`` random draws instead of three, at several cuts. Per cut and user: the queue's coverage,
the random draws' mean, spread and the share of draws the queue beats, and the coverage after no
confirmation; pooled, the mean over the users measured; ``paired``: over every (user, cut) measured,
the mean of queue − random and queue − none with a 90% bootstrap interval over users. The same noisy:0.9 stand-in LLM, correction
rate 0.5, K = 20 and gates 10/2/5 as the docs' figures. ``--window W`` runs the queue with another
``calroute.services.review.UNCERTAINTY_WINDOW`` (0: the stratified sample without its uncertainty
tilt; a diagnostic, restored afterwards); ``--recent S`` with another ``RECENT_SHARE`` (the newest
share of the pending answers the queue is drawn from). Prints one JSON object.
"""

from __future__ import annotations

import statistics
import sys
import time

from bench import emit, on_path, replay_parser

on_path("layers/core", "tools")


def summarize_user(res: dict) -> dict:
    """One user's experiment → ``{queue, none, random_mean, random_sd, random_min, random_max,
    queue_beats, queue_ties}`` (coverages; ``queue_beats``: share of random draws strictly below the
    queue, ``queue_ties``: equal)."""
    draws = [r["coverage"] for r in res["random"]["runs"]]
    q = res["review"]["coverage"]
    rest = res.get("rest_events") or 0

    def answers(runs: list) -> tuple[float, float]:
        """(answers, right answers) of the next model on the rest, averaged over ``runs``."""
        a = [r["coverage"] * rest for r in runs]
        return (statistics.fmean(a),
                statistics.fmean(x * (r.get("accuracy") or 0.0) for x, r in zip(a, runs)))

    qa, qr = answers([res["review"]])
    ra, rr = answers(res["random"]["runs"])
    return {"queue": q, "none": res["none"]["coverage"], "random_mean": round(statistics.fmean(draws), 4),
            "random_sd": round(statistics.pstdev(draws), 4), "random_min": min(draws), "random_max": max(draws),
            "queue_beats": round(sum(d < q for d in draws) / len(draws), 4),
            "queue_ties": round(sum(d == q for d in draws) / len(draws), 4), "draws": len(draws),
            "rest": rest, "queue_answers": round(qa, 2), "queue_right": round(qr, 2),
            "random_answers": round(ra, 2), "random_right": round(rr, 2)}


def pooled(users: dict) -> dict:
    """The mean over the users measured at a cut, and how many of them the queue beats, ties or
    trails (against the mean of their random draws)."""
    rows = [u for u in users.values() if u is not None]
    if not rows:
        return {"users": 0}

    def mean(k: str) -> float:
        return round(statistics.fmean(r[k] for r in rows), 4)

    return {"users": len(rows), "queue": mean("queue"), "random_mean": mean("random_mean"), "none": mean("none"),
            "queue_above_random": sum(r["queue"] > r["random_mean"] for r in rows),
            "queue_below_random": sum(r["queue"] < r["random_mean"] for r in rows),
            "queue_above_none": sum(r["queue"] > r["none"] for r in rows),
            "queue_below_none": sum(r["queue"] < r["none"] for r in rows)}


def paired(cuts: dict, *, resamples: int = 2000, level: float = 0.9, seed: int = 0) -> dict:
    """Over every (user, cut) measured: the mean of queue − the mean of its random draws (and of
    queue − none), with a percentile bootstrap interval that resamples users (a user's cuts travel
    together: they share one stream). ``{"pairs", "users", "queue_minus_random": {"mean", "lo",
    "hi"}, "queue_minus_none": {...}}``; the interval is None with fewer than two users."""
    import random

    by_user: dict[str, list[tuple[float, float]]] = {}
    for c in cuts.values():
        for u, r in c["users"].items():
            if r is not None:
                by_user.setdefault(u, []).append((r["queue"] - r["random_mean"], r["queue"] - r["none"]))
    users = sorted(by_user)
    pairs = [d for u in users for d in by_user[u]]

    def mean(rows, i):
        return statistics.fmean(r[i] for r in rows)

    out: dict = {"pairs": len(pairs), "users": len(users)}
    rng = random.Random(seed)
    for i, key in enumerate(("queue_minus_random", "queue_minus_none")):
        if not pairs:
            out[key] = None
            continue
        stat = {"mean": round(mean(pairs, i), 4), "lo": None, "hi": None}
        if len(users) >= 2:
            boots = sorted(mean([d for u in rng.choices(users, k=len(users)) for d in by_user[u]], i)
                           for _ in range(resamples))
            tail = (1 - level) / 2
            stat["lo"] = round(boots[int(tail * resamples)], 4)
            stat["hi"] = round(boots[min(resamples - 1, int((1 - tail) * resamples))], 4)
        out[key] = stat
    out["level"] = level
    # the next model's own answers on the rest, pooled over the pairs (random: averaged over its draws)
    rows = [r for c in cuts.values() for r in c["users"].values() if r is not None and "queue_answers" in r]
    for who in ("queue", "random"):
        a = sum(r[f"{who}_answers"] for r in rows)
        out[f"{who}_accuracy"] = round(sum(r[f"{who}_right"] for r in rows) / a, 4) if a else None
    return out


def run(data: str, cuts, seeds: int, max_events=600, users=None, window=None, recent=None) -> dict:
    from calroute.services import review

    real = review.UNCERTAINTY_WINDOW, review.RECENT_SHARE
    if window is not None:
        review.UNCERTAINTY_WINDOW = window
    if recent is not None:
        review.RECENT_SHARE = recent
    try:
        return {**_run(data, cuts, seeds, max_events, users), "uncertainty_window": review.UNCERTAINTY_WINDOW,
                "recent_share": review.RECENT_SHARE}
    finally:
        review.UNCERTAINTY_WINDOW, review.RECENT_SHARE = real


def _run(data: str, cuts, seeds: int, max_events, users) -> dict:
    from calroute_dev import replay as rp
    from calroute_dev.evaluation import load_users

    t0 = time.perf_counter()
    loaded = load_users(data)
    sim = rp.SimulatedLlm("noisy:0.9")
    out = {"llm": sim.name, "seeds": seeds, "max_events": max_events, "cuts": {}}
    for at in cuts:
        per_user = {}
        for u in users or sorted(loaded):
            print(f"[{time.strftime('%H:%M:%S')}] review at {at}: {u}", file=sys.stderr, flush=True)
            evs = sorted(loaded[u], key=lambda e: (e.start_utc, e.event_id or ""))[:max_events]
            res = rp.review_experiment(u, evs, llm=sim, k_labelled=20, correct_rate=0.5, gates=rp.DEFAULT_GATES,
                                       at=at, seeds=tuple(range(1, seeds + 1)))
            per_user[u] = summarize_user(res) if res is not None else None
        out["cuts"][str(at)] = {"pooled": pooled(per_user), "users": per_user}
    out["paired"] = paired(out["cuts"])
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv=None) -> int:
    ap = replay_parser("python -m bench.review_seeds", __doc__)
    ap.add_argument("--cuts", type=lambda s: [float(x) for x in s.split(",")], default=[0.3, 0.4, 0.5, 0.6, 0.7])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--window", type=float, help="the queue's UNCERTAINTY_WINDOW for this run (default: as shipped)")
    ap.add_argument("--recent", type=float, help="the queue's RECENT_SHARE for this run (default: as shipped)")
    a = ap.parse_args(argv)
    return emit(run(a.data, a.cuts, a.seeds, a.max_events or 600, a.users, a.window, a.recent), a.out)


if __name__ == "__main__":
    sys.exit(main())
