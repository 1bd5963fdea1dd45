"""LLM economics: hybrid (per-user model + LLM fallback) against LLM-only, on the bundled real users.

Per user (``data/users``): the evaluation split (first 70% of each calendar trains, the rest is
classified), the model trained by the Lambda's trainer and installed as the ACTIVE model, the
training events stored (the fallback's similar-event examples), the learned calendar profiles on the
model record (the fallback's calendar descriptions). Every test event then goes through the REAL
predict handler; unsure events go to the REAL fallback service (in-process invoke) and the REAL
openai client, which talks to :class:`bench.llm_standin.StandInLLM`.

Measured: methods, coverage, accuracy of the model's own answers, handler latency (including the
stand-in's latency for fallbacks), prompt sizes from the real prompt builder. Assumed (stated in the
output): the stand-in's latency (uniform 0.4-0.8 s) and its accuracy (``LLM_ASSUMED_ACCURACY``), the
token estimate (4 characters per token), prices (``calroute.config.DEFAULT_LLM_PRICES``, AWS us-east-1
list prices below).
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import replace
import time
from typing import Any

from .aws_env import http_event, install_model, load_function, set_env
from .harness import percentile, progress
from .llm_standin import StandInLLM
from .users import real_users

LLM_ASSUMED_ACCURACY = 0.90
FEW_SHOT = 10  # training events per calendar of the "new user" scenario
LATENCY_RANGE_S = (0.4, 0.8)
# AWS us-east-1 list prices (x86): Lambda requests and GB-seconds, API Gateway HTTP API requests.
LAMBDA_PER_REQUEST = 0.20 / 1e6
LAMBDA_PER_GB_S = 0.0000166667
HTTP_API_PER_REQUEST = 1.00 / 1e6
PREDICT_MEMORY_GB = 1769 / 1024
LLM_FN_MEMORY_GB = 512 / 1024


def _lambda_usd(seconds: float, gb: float) -> float:
    billed = max(0.001, round(seconds, 3))  # 1 ms granularity
    return LAMBDA_PER_REQUEST + billed * gb * LAMBDA_PER_GB_S


def _stats(ms: list[float]) -> dict:
    if not ms:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None, "n": 0}
    return {"p50_ms": round(percentile(ms, 50), 3), "p99_ms": round(percentile(ms, 99), 3),
            "mean_ms": round(sum(ms) / len(ms), 3), "n": len(ms)}


def run(quick: bool) -> dict:
    import json

    from calroute.adapters.dynamo.events import DynamoEventStore
    from calroute.adapters.dynamo.users import DynamoUserStore
    from calroute.config import DEFAULT_LLM_PRICES, settings
    from calroute_dev.evaluation import split_events
    from calroute.llm.cost import cost_usd
    from calroute.schema import CalendarInfo
    from calroute.training import TrainConfig, train_user_model

    users = real_users()
    truth: dict[tuple[str, str], str] = {}
    tests: dict[str, list] = {}
    few: dict[str, list] = {}
    cfg = settings()

    def setup(user: str, events: list, max_train: int | None, n: int) -> list:
        """Train on the split (first ``max_train`` per calendar), install, store the training events
        and the calendars; returns the test events."""
        train, test = split_events(events, max_train)
        tc = TrainConfig()
        if max_train is not None:  # gates relaxed as `calroute evaluate --max-train-per-calendar` does
            tc = replace(tc, min_events=max(2, min(tc.min_events, len(train))),
                         min_per_calendar=max(1, min(tc.min_per_calendar, max_train)))
        progress(f"llm economics: training {user} ({len(train)} train / {len(test)} test events)")
        trained = train_user_model(train, tc, user_id=user, version=f"v20260102000000-{n:06x}")
        install_model(user, trained.onnx_bytes, version=trained.version, threshold=trained.threshold,
                      labels=trained.labels, extra={"profiles": trained.profiles})
        DynamoEventStore(cfg.events_table).put_events(user, train)
        for cal in trained.labels:
            DynamoUserStore(cfg.users_table).put_calendar(user, CalendarInfo(calendar_id=cal, name=cal.replace("_", " ")))
        for e in test:
            truth[(e.summary, e.start.isoformat())] = e.calendar_id
        return test if not quick else test[:20]

    for n, (user, events) in enumerate(sorted(users.items())):
        tests[user] = setup(user, events, None, n)
        # the same user as a newcomer: FEW_SHOT events per calendar (another user id, own data)
        few[f"{user}-new"] = setup(f"{user}-new", events, FEW_SHOT, 100 + n)

    rng = random.Random(1)

    def answer(title: str, start: str, allowed: list[str]) -> str:
        true = truth.get((title, start))
        if true in allowed and rng.random() < LLM_ASSUMED_ACCURACY:
            return true
        wrong = [a for a in allowed if a != true]
        return rng.choice(wrong) if wrong else allowed[0]

    app = load_function("predict")
    from calroute_dev.local.lambdas import LambdaContext

    ctx = LambdaContext(name="calroute-bench", memory=1769)
    model = cfg.llm_model
    prices = DEFAULT_LLM_PRICES

    def classify_all(pairs, standin) -> list[dict]:
        out = []
        for user, ev in pairs:
            flat = ev.to_flat()
            flat.pop("calendar_id", None)
            req = http_event("POST", f"/v1/users/{user}/classify", {"event": flat})
            before = len(standin.calls)
            t0 = time.perf_counter_ns()
            resp = app.lambda_handler(req, ctx)
            ms = (time.perf_counter_ns() - t0) / 1e6
            body = json.loads(resp["body"])
            calls = standin.calls[before:]
            alts = body.get("alternatives") or []
            out.append({"user": user, "truth": ev.calendar_id, "calendar_id": body.get("calendar_id"),
                        "ml_top": alts[0]["calendar_id"] if alts else None,
                        "method": body.get("method"), "reason": body.get("reason"), "ms": ms,
                        "in_tok": sum(c["input_tokens"] for c in calls),
                        "out_tok": sum(c["output_tokens"] for c in calls), "llm_calls": len(calls),
                        "llm_s": sum(c["delay"] for c in calls)})
        return out

    pairs = [(u, e) for u in sorted(tests) for e in tests[u]]
    res: dict[str, Any] = {"assumptions": {
        "llm_latency_s": list(LATENCY_RANGE_S), "llm_accuracy": LLM_ASSUMED_ACCURACY, "llm_model": model,
        "llm_price_per_1m_tokens": prices.get(model), "tokens": "≈ characters / 4 of the real prompt",
        "lambda_usd_per_gb_s": LAMBDA_PER_GB_S, "lambda_usd_per_request": LAMBDA_PER_REQUEST,
        "http_api_usd_per_request": HTTP_API_PER_REQUEST, "predict_memory_mb": 1769, "llm_memory_mb": 512,
        "invoke": "in-process (LAMBDA_INVOKE_MODE=inprocess): no Lambda invoke round trip is included"}}

    with StandInLLM(latency=LATENCY_RANGE_S, answer_fn=answer) as standin, \
            open("/dev/null", "w") as devnull, contextlib.redirect_stdout(devnull):
        common = dict(OPENAI_BASE_URL=standin.base_url, OPENAI_API_KEY="sk-bench", LAMBDA_INVOKE_MODE="inprocess",
                      PREDICTION_LOG_SAMPLE_RATE="0", LLM_USER_DAILY_BUDGET_USD="100000",
                      LLM_DAILY_BUDGET_USD="1000000", LLM_TIMEOUT_SECONDS="5")
        # --- hybrid: every test event, stand-in latency on the fallbacks -------------------------------
        set_env(ML_ENABLED="true", **common)
        app.service.cache_clear()
        progress(f"llm economics: hybrid, {len(pairs)} events through the predict handler")
        hybrid = classify_all(pairs, standin)
        few_pairs = [(u, e) for u in sorted(few) for e in few[u]]
        progress(f"llm economics: hybrid for new users ({FEW_SHOT} events per calendar), {len(few_pairs)} events")
        hybrid_few = classify_all(few_pairs, standin)
        # --- LLM-only: prompt sizes on a sample without latency, then end-to-end latency on a sample ---
        set_env(ML_ENABLED="false", **common)
        app.service.cache_clear()
        per_user = 6 if quick else 30
        sample = [(u, e) for u in sorted(tests) for e in tests[u][:: max(1, len(tests[u]) // per_user)][:per_user]]
        standin.latency = (0.0, 0.0)
        progress(f"llm economics: LLM-only prompt sizes on {len(sample)} events")
        llm_tokens = classify_all(sample, standin)
        standin.latency = LATENCY_RANGE_S
        lat_sample = sample[:: max(1, len(sample) // (4 if quick else 24))]
        progress(f"llm economics: LLM-only latency on {len(lat_sample)} events (stand-in sleeps 0.4-0.8 s)")
        llm_only = classify_all(lat_sample, standin)
        set_env(ML_ENABLED="true", OPENAI_BASE_URL=None, OPENAI_API_KEY=None)
        app.service.cache_clear()

    # --- figures ------------------------------------------------------------------------------------
    n = len(hybrid)
    by_method: dict[str, int] = {}
    for r in hybrid:
        by_method[r["method"]] = by_method.get(r["method"], 0) + 1
    ml = [r for r in hybrid if r["method"] == "ml"]
    fell = [r for r in hybrid if r["llm_calls"]]
    acc_kept = sum(r["calendar_id"] == r["truth"] for r in ml) / len(ml) if ml else None
    acc_hybrid = sum(r["calendar_id"] == r["truth"] for r in hybrid) / n if n else None
    hy_ms = [r["ms"] for r in hybrid]
    ml_ms = [r["ms"] for r in ml]
    in_tok = [r["in_tok"] for r in llm_tokens if r["llm_calls"]]
    out_tok = [r["out_tok"] for r in llm_tokens if r["llm_calls"]]
    mean_in = sum(in_tok) / len(in_tok) if in_tok else 0.0
    mean_out = sum(out_tok) / len(out_tok) if out_tok else 0.0
    usd_call = cost_usd(model, round(mean_in), round(mean_out), prices)
    lo_ms = [r["ms"] for r in llm_only]
    mean_llm_s = (sum(lo_ms) / len(lo_ms) / 1000) if lo_ms else sum(LATENCY_RANGE_S) / 2

    def per_event_usd(rows, llm_token_usd_per_call: float) -> dict:
        tokens = sum(llm_token_usd_per_call if r["llm_calls"] else 0.0 for r in rows) / len(rows)
        lam = sum(_lambda_usd(r["ms"] / 1000, PREDICT_MEMORY_GB)
                  + (_lambda_usd(mean_llm_s, LLM_FN_MEMORY_GB) if r["llm_calls"] else 0.0) for r in rows) / len(rows)
        total = tokens + lam + HTTP_API_PER_REQUEST
        return {"llm_tokens_usd": tokens, "lambda_usd": lam, "api_usd": HTTP_API_PER_REQUEST, "total_usd": total,
                "per_million_events_usd": round(total * 1e6, 2)}

    # hybrid tokens: the calls it made, priced with the prompt size measured for LLM-only calls of the
    # same users (the hybrid's own calls carry model candidates too; their measured size is below)
    hy_in = [r["in_tok"] for r in fell]
    hy_usd_call = cost_usd(model, round(sum(hy_in) / len(hy_in)), round(mean_out), prices) if hy_in else usd_call
    hybrid_cost = per_event_usd(hybrid, hy_usd_call)
    llm_only_cost = per_event_usd([{"ms": r["ms"], "llm_calls": 1} for r in llm_only] or
                                  [{"ms": mean_llm_s * 1000, "llm_calls": 1}], usd_call)
    ml_only_cost = per_event_usd([{"ms": r["ms"], "llm_calls": 0} for r in ml] or [{"ms": 1, "llm_calls": 0}], 0.0)
    reasons: dict[str, int] = {}
    for r in hybrid + llm_tokens:
        if r["method"] != "ml":
            key = f"{r['method']}: {str(r['reason'])[:40]}" if not r["llm_calls"] else r["method"]
            reasons[key] = reasons.get(key, 0) + 1
    res.update({
        "events": n,
        "non_ml_outcomes": reasons,
        "methods": by_method,
        "llm_calls_per_1000": round(1000 * len(fell) / n, 1) if n else None,
        "coverage": round(len(ml) / n, 4) if n else None,
        "accuracy_ml_kept": round(acc_kept, 4) if acc_kept is not None else None,
        "accuracy_hybrid_with_assumed_llm": round(acc_hybrid, 4) if acc_hybrid is not None else None,
        "accuracy_llm_only": f"assumed {LLM_ASSUMED_ACCURACY:.0%} (stand-in)",
        # the model's argmax on every event (what an ML-only router without the LLM would answer)
        "accuracy_ml_only": round(sum(r["ml_top"] == r["truth"] for r in hybrid) / n, 4) if n else None,
        "prompt_tokens_mean": round(mean_in, 1), "completion_tokens_mean": round(mean_out, 1),
        "prompt_tokens_p99": round(percentile(in_tok, 99), 1) if in_tok else None,
        "hybrid_fallback_prompt_tokens_mean": round(sum(hy_in) / len(hy_in), 1) if hy_in else None,
        "usd_per_llm_call": usd_call,
        "latency": {"hybrid": _stats(hy_ms), "ml_answered": _stats(ml_ms), "llm_only": _stats(lo_ms),
                    "llm_only_overhead_without_llm_latency": _stats([r["ms"] for r in llm_tokens])},
        "cost_per_event": {"hybrid": hybrid_cost, "llm_only": llm_only_cost, "ml_only": ml_only_cost},
    })
    f_ml = [r for r in hybrid_few if r["method"] == "ml"]
    f_fell = [r for r in hybrid_few if r["llm_calls"]]
    f_in = [r["in_tok"] for r in f_fell]
    f_usd_call = cost_usd(model, round(sum(f_in) / len(f_in)), round(mean_out), prices) if f_in else usd_call
    f_methods: dict[str, int] = {}
    for r in hybrid_few:
        f_methods[r["method"]] = f_methods.get(r["method"], 0) + 1
    nf = len(hybrid_few)
    res["few_shot"] = {
        "train_per_calendar": FEW_SHOT, "events": nf, "methods": f_methods,
        "llm_calls_per_1000": round(1000 * len(f_fell) / nf, 1) if nf else None,
        "coverage": round(len(f_ml) / nf, 4) if nf else None,
        "accuracy_ml_kept": round(sum(r["calendar_id"] == r["truth"] for r in f_ml) / len(f_ml), 4) if f_ml else None,
        "accuracy_hybrid_with_assumed_llm": round(sum(r["calendar_id"] == r["truth"] for r in hybrid_few) / nf, 4)
        if nf else None,
        "accuracy_ml_only": round(sum(r["ml_top"] == r["truth"] for r in hybrid_few) / nf, 4) if nf else None,
        "latency": _stats([r["ms"] for r in hybrid_few]),
        "cost_per_event": per_event_usd(hybrid_few, f_usd_call) if nf else None,
    }
    hy_p50, lo_p50 = res["latency"]["hybrid"]["p50_ms"], res["latency"]["llm_only"]["p50_ms"]
    hy_mean, lo_mean = res["latency"]["hybrid"]["mean_ms"], res["latency"]["llm_only"]["mean_ms"]
    res["claims"] = {
        "ml_share": res["coverage"],
        "speedup_p50": round(lo_p50 / hy_p50, 1) if hy_p50 and lo_p50 else None,
        "speedup_mean": round(lo_mean / hy_mean, 1) if hy_mean and lo_mean else None,
        # LLM-only counted as the stand-in's latency alone (no emulator overhead): the conservative ratio
        "speedup_p50_llm_latency_only": round(percentile([r["llm_s"] * 1000 for r in llm_only], 50) / hy_p50, 1)
        if hy_p50 and llm_only else None,
        "cheaper_x": round(llm_only_cost["total_usd"] / hybrid_cost["total_usd"], 1)
        if hybrid_cost["total_usd"] else None,
        "accuracy_on_handled": res["accuracy_ml_kept"],
    }
    return res
