"""A local run of the training state machine (infra/statemachine/training.asl.json, executed by
moto's Step Functions interpreter; its Lambda tasks run the REAL handlers in-process) over N
synthetic users, and from it a cost estimate for 10k and 100k users on Lambda + Step Functions.

Cost assumptions (AWS us-east-1 list prices, x86): Lambda $0.20 per 1M requests and
$0.0000166667 per GB-second at the template's MemorySize of each function; Step Functions Standard
$25 per 1M state transitions, counted on the definition's happy path (a user trained, validated and
promoted; every state entered is one transition, one more per Distributed Map child execution);
S3/DynamoDB requests of a run are not included (cents per 100k users). Lambda seconds per user are the
in-process handler durations measured here (2-core machine, other processes running: see the
load average in the machine block); Lambda's 2048 MB TrainUser gets ~1.2 vCPU, similar to one core
here.
"""

from __future__ import annotations

import json
import time

from .harness import percentile, progress
from .users import synthetic_user

SFN_PER_TRANSITION = 25.0 / 1e6
LAMBDA_PER_REQUEST = 0.20 / 1e6
LAMBDA_PER_GB_S = 0.0000166667
PER_USER_FUNCTIONS = ("TrainUserFunction", "ValidateFunction", "PromoteFunction")


def happy_path_transitions(definition: dict) -> tuple[int, int]:
    """(transitions of the parent workflow, transitions per user item) along the success path: a
    Choice takes its first rule, a Task its ``Next``; a Distributed Map item counts one extra."""

    def walk(states: dict, start: str) -> int:
        n, cur, seen = 0, start, set()
        while cur and cur not in seen:
            seen.add(cur)
            n += 1
            st = states[cur]
            if st.get("End") or st["Type"] in ("Succeed", "Fail"):
                break
            cur = st["Choices"][0]["Next"] if st["Type"] == "Choice" else st.get("Next")
        return n

    parent = walk(definition["States"], definition["StartAt"])
    per_user = 0
    for st in definition["States"].values():
        if st["Type"] == "Map":
            proc = st.get("ItemProcessor") or st.get("Iterator")
            per_user = walk(proc["States"], proc["StartAt"]) + 1
    return parent, per_user


def run(em, quick: bool, *, n_users: int | None = None) -> dict:
    from calroute import wiring
    from calroute.config import settings
    from calroute_dev.local.lambdas import function_specs
    from calroute_dev.local.moto_server import run_training, state_machine_definition

    n_users = n_users or (4 if quick else 100)
    repos = wiring.stores(settings())
    progress(f"state machine: seeding {n_users} synthetic users")
    sizes = []
    for i in range(n_users):
        user = f"sm{i:04d}"
        n = 60 + (i * 37) % 40  # 60..99 events, 3 calendars
        events = synthetic_user(n, n_calendars=3, seed=1000 + i, user=user)
        repos.events.put_events(user, events)
        repos.users.bump(user, events=len(events))
        sizes.append(n)
    em.lambdas.invocations.clear()
    progress(f"state machine: running the training state machine over {n_users} users")
    t0 = time.perf_counter()
    res = run_training(em, {"trigger": "schedule"}, name=f"bench-{int(time.time())}", timeout=1800)
    wall = time.perf_counter() - t0
    out = res.get("output") or {}
    record = repos.registry.get_run(res["execution_arn"].rsplit(":", 1)[-1]) or {}
    calls = list(em.lambdas.invocations)
    specs = {s.logical_id: s for s in function_specs(em.resolver).values()}
    by_fn: dict[str, list[float]] = {}
    for c in calls:
        by_fn.setdefault(c["function"], []).append(float(c["seconds"]))
    fn_stats = {f: {"calls": len(v), "p50_s": round(percentile(v, 50), 3), "total_s": round(sum(v), 2),
                    "memory_mb": specs[f].memory if f in specs else None} for f, v in sorted(by_fn.items())}

    definition = json.loads(state_machine_definition(em.resolver, function_specs(em.resolver)))
    parent_t, user_t = happy_path_transitions(definition)
    trained = max(1, int(out.get("trained") or 0))
    gb_s_user = sum(sum(by_fn.get(f, [])) * (specs[f].memory / 1024) for f in PER_USER_FUNCTIONS if f in specs) / trained
    req_user = sum(len(by_fn.get(f, [])) for f in PER_USER_FUNCTIONS) / trained
    fixed = [f for f in by_fn if f not in PER_USER_FUNCTIONS]
    gb_s_fixed = sum(sum(by_fn[f]) * (specs[f].memory / 1024) for f in fixed if f in specs)
    per_user_s = [v for f in ("TrainUserFunction",) for v in by_fn.get(f, [])]

    def estimate(users: int) -> dict:
        # Plan and Summarize scale with the number of users too (a scan, a list): scaled linearly
        gb_s = gb_s_user * users + gb_s_fixed * users / n_users
        lam = gb_s * LAMBDA_PER_GB_S + (req_user * users + len(fixed)) * LAMBDA_PER_REQUEST
        sfn = (parent_t + user_t * users) * SFN_PER_TRANSITION
        return {"lambda_gb_s": round(gb_s, 1), "lambda_usd": round(lam, 2),
                "state_transitions": parent_t + user_t * users, "step_functions_usd": round(sfn, 2),
                "total_usd": round(lam + sfn, 2), "usd_per_1000_users": round((lam + sfn) / users * 1000, 4)}

    return {
        "users": n_users, "events_per_user": [min(sizes), max(sizes)], "status": res["status"],
        "wall_s": round(wall, 2), "counts": {k: out.get(k) for k in ("planned", "trained", "skipped", "failed",
                                                                        "rejected", "conflict", "not_needed")},
        "per_user_p50_ms": record.get("user_ms_p50"), "per_user_max_ms": record.get("user_ms_max"),
        "train_user_p50_s": round(percentile(per_user_s, 50), 3) if per_user_s else None,
        "functions": fn_stats,
        "transitions": {"parent": parent_t, "per_user": user_t},
        "per_user_lambda_gb_s": round(gb_s_user, 3),
        "cost": {"10000": estimate(10_000), "100000": estimate(100_000)},
        "prices": {"lambda_usd_per_gb_s": LAMBDA_PER_GB_S, "lambda_usd_per_request": LAMBDA_PER_REQUEST,
                   "sfn_usd_per_transition": SFN_PER_TRANSITION, "region": "us-east-1 (list, x86)"},
    }
