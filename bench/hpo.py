"""Per-user hyper-parameter search: is it worth turning on? Measured on the bundled real calendars.

    .venv/bin/python -m bench.hpo [--data data/users] [--json] [--out bench/results/hpo.json]

What a per-user search inside TrainUser would do: for each candidate of a small grid (the linear
model's regularisation ``C`` × the dense-column scale), train with the Lambda's
``train_user_model`` on the user's training split and read the candidate's **out-of-fold** figures
(forward-chaining folds, the user's own data only — no peeking at the test split); keep the
candidate with the highest out-of-fold coverage at the user's threshold (the precision target
holds by construction), ties broken by out-of-fold accuracy, then the smaller C. The kept candidate is
evaluated exactly like ``calroute evaluate`` (test split through onnxruntime, the routing rule).

Compared per regime (all training events; the first 20 and 10 per calendar, as in
docs/model-selection.md): the default (``C=20``, dense ×0.1), the searched choice, and the oracle
(the candidate best on the *test* split: the headroom any selector could reach). Cost: the search
trains ``len(GRID)`` models instead of one (sum of their training seconds).

Decision rule (issue 7): turn the search on only if it gains ≥ 1 point of pooled ``accuracy_kept`` or
coverage at an acceptable training time — and (added 2026-12-03, when the re-measured figures showed a
coverage gain beside confident answers at 54 % for one user) only if no regime loses pooled
``accuracy_kept`` and no user's ``accuracy_kept`` falls below the precision target with the search
where it did not without: a gain in coverage never buys confident mistakes (the product's promise).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from bench import on_path  # noqa: E402 - before the calroute imports below

ROOT = on_path("layers/core", "tools")

from calroute_dev import evaluation as ev  # noqa: E402
from calroute.training import DEFAULT_C, DEFAULT_DENSE_SCALE, GateFailed, TrainConfig, train_user_model  # noqa: E402

GRID = [{"C": c, "dense_scale": ds} for c in (2.0, 5.0, 20.0, 100.0) for ds in (0.1, 1.0)]
DEFAULT = {"C": DEFAULT_C, "dense_scale": DEFAULT_DENSE_SCALE}
REGIMES = (("all", None), ("20/cal", 20), ("10/cal", 10))
DECISION_POINTS = 1.0


def _key(params: dict) -> str:
    return f"C={params['C']:g},ds={params['dense_scale']:g}"


def _oof_score(events: list, cfg: TrainConfig, user: str) -> tuple[tuple, float]:
    """(selection key, training seconds) of one candidate from its out-of-fold metrics."""
    t0 = time.perf_counter()
    trained = train_user_model(events, cfg, user_id=user, version=ev.EVAL_VERSION)
    m = trained.metrics
    return ((m.get("coverage_at_threshold") or 0.0, m.get("cv_accuracy") or 0.0, -cfg.C), time.perf_counter() - t0)


def _pooled(results: list[dict]) -> dict:
    done = [r for r in results if "skipped" not in r]
    y = np.concatenate([r["y"] for r in done]) if done else np.zeros(0)
    pred = np.concatenate([r["pred"] for r in done]) if done else np.zeros(0)
    kept = np.concatenate([r["kept"] for r in done]) if done else np.zeros(0, bool)
    return {
        "test_events": int(len(y)),
        "coverage": float(kept.mean()) if len(y) else None,
        "accuracy_kept": float(np.mean(pred[kept] == y[kept])) if kept.any() else None,
        "accuracy_all": float(np.mean(pred == y)) if len(y) else None,
        "kept_correct": int(np.sum(pred[kept] == y[kept])),
    }


def run_regime(users: dict[str, list], n: Optional[int]) -> dict:
    base_cfg = TrainConfig()
    per_user: list[dict] = []
    default_res, search_res, oracle_res = [], [], []
    default_s = search_s = 0.0
    for user, events in users.items():
        train, _test = ev.split_events(events, n)
        cfg_u = ev._relaxed(train, base_cfg, n)[0] if n is not None else base_cfg
        # the search: out-of-fold only
        scores: dict[str, tuple] = {}
        seconds: dict[str, float] = {}
        for params in GRID:
            try:
                scores[_key(params)], seconds[_key(params)] = _oof_score(train, replace(cfg_u, **params), user)
            except GateFailed:
                break
        if not scores:
            per_user.append({"user": user, "skipped": "gates"})
            continue
        chosen = max(GRID, key=lambda p: scores[_key(p)])
        search_s += sum(seconds.values())
        default_s += seconds[_key(DEFAULT)]
        # test-split evaluation of every candidate (for the default, the choice and the oracle)
        evals = {_key(p): ev.evaluate_user(user, events, replace(base_cfg, **p), n) for p in GRID}
        d, c = evals[_key(DEFAULT)], evals[_key(chosen)]

        def kc(r: dict) -> tuple:
            kept = r["kept"]
            return (int(np.sum(r["pred"][kept] == r["y"][kept])), -int(np.sum(r["pred"][kept] != r["y"][kept])))

        oracle_key = max(evals, key=lambda k: kc(evals[k]))
        default_res.append(d)
        search_res.append(c)
        oracle_res.append(evals[oracle_key])
        per_user.append({
            "user": user, "chosen": _key(chosen), "oracle": oracle_key,
            "default": {k: d.get(k) for k in ("coverage", "accuracy_kept", "threshold")},
            "searched": {k: c.get(k) for k in ("coverage", "accuracy_kept", "threshold")},
            "default_train_s": round(seconds[_key(DEFAULT)], 3), "search_train_s": round(sum(seconds.values()), 3),
        })
    out = {"default": _pooled(default_res), "searched": _pooled(search_res), "oracle": _pooled(oracle_res),
           "default_train_s": round(default_s, 3), "search_train_s": round(search_s, 3), "users": per_user}
    for name in ("searched", "oracle"):
        for k in ("accuracy_kept", "coverage"):
            a, b = out["default"][k], out[name][k]
            out[name][f"{k}_gain_points"] = None if a is None or b is None else round(100 * (b - a), 2)
    return out


def below_target(regime: dict, variant: str) -> list[dict]:
    """The users whose ``variant`` keeps answers at an accuracy below the precision target."""
    target = TrainConfig().target_precision
    out = []
    for u in regime["users"]:
        acc = (u.get(variant) or {}).get("accuracy_kept")
        if acc is not None and acc < target:
            out.append({"user": u["user"], "accuracy_kept": round(acc, 4),
                        "coverage": round((u.get(variant) or {}).get("coverage") or 0.0, 4)})
    return out


def decide(regimes: dict) -> dict:
    gains, harms = [], []
    for name, r in regimes.items():
        s = r["searched"]
        gains.append((name, s["accuracy_kept_gain_points"], s["coverage_gain_points"]))
        if (s["accuracy_kept_gain_points"] or 0) < 0:
            harms.append({"regime": name, "pooled_accuracy_kept_points": s["accuracy_kept_gain_points"]})
        already = {u["user"] for u in below_target(r, "default")}
        for u in below_target(r, "searched"):
            if u["user"] not in already:
                harms.append({"regime": name, "below_target": u})
    gain = any((a or 0) >= DECISION_POINTS or (c or 0) >= DECISION_POINTS for _, a, c in gains)
    return {"turn_on": gain and not harms, "gain": gain, "harms": harms,
            "rule": f">= {DECISION_POINTS:g} point of pooled accuracy_kept or coverage in a regime, no regime losing "
                    "pooled accuracy_kept, no user's accuracy_kept newly below the precision target",
            "gains": [{"regime": n, "accuracy_kept_points": a, "coverage_points": c} for n, a, c in gains]}


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "users"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "hpo.json"))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    users = ev.load_users(args.data)
    t0 = time.perf_counter()
    regimes = {name: run_regime(users, n) for name, n in REGIMES}
    result = {"grid": [_key(p) for p in GRID], "default": _key(DEFAULT), "regimes": regimes,
              "decision": decide(regimes), "seconds": round(time.perf_counter() - t0, 1),
              "users": sorted(users)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1, default=float))
    if args.json:
        print(json.dumps(result, default=float))
        return 0
    print(f"grid: {', '.join(result['grid'])} (default {result['default']})")
    print(f"{'regime':8} {'variant':9} {'events':>6} {'coverage':>9} {'acc_kept':>9} {'acc_all':>8} {'train s':>8}")
    for name, r in regimes.items():
        for variant in ("default", "searched", "oracle"):
            p = r[variant]
            secs = r["default_train_s"] if variant == "default" else r["search_train_s"] if variant == "searched" else ""
            acc = "–" if p["accuracy_kept"] is None else f"{100 * p['accuracy_kept']:.2f}%"
            print(f"{name:8} {variant:9} {p['test_events']:>6} {100 * p['coverage']:>8.2f}% "
                  f"{acc:>9} {100 * p['accuracy_all']:>7.2f}% {secs!s:>8}")
        print("         chosen per user: " + ", ".join(f"{u['user']}={u.get('chosen')}" for u in r["users"]))
    print(json.dumps(result["decision"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
