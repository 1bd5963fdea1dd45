"""Local runs of the training state machine (infra/statemachine/training.asl.json, executed by moto's
Step Functions interpreter through :mod:`calroute_dev.local.asl_compat`; its Lambda tasks run the
REAL handlers in-process) over N synthetic users, a cost estimate for 10k and 100k users on Lambda +
Step Functions, and a paper model of a 1M-user run.

**Before vs after, one code path.** Two runs of the same bench function, on two sets of N users with
the same events (so the same training outcomes): ``before`` executes :func:`unbatched` of the
deployed definition — the definition this change replaced: one user per STANDARD child workflow —
and ``after`` the deployed definition (EXPRESS children, ``ItemBatcher``). Each run's cost comes
from :func:`orchestration_cost` and :func:`lambda_cost` applied to that run's own measurements and
definition; the outcome counts of the two runs are compared (``same_outcomes``).

Cost assumptions (AWS us-east-1 list prices, x86, no free tier):

* Lambda $0.20 per 1M requests and $0.0000166667 per GB-s at the template's MemorySize of each
  function; seconds are the in-process handler durations measured here (2-core machine, other
  processes running: see the load average in the machine block; Lambda's 1769 MB TrainUser gets
  one vCPU, similar to one core here, and its fits are single-threaded; the 1024 MB functions get
  ~0.58 vCPU, so their CPU-bound part would take ~1.7× as long there: their share of the total is
  small, see the per-function table). Plan and Summarize are scaled linearly with the users.
* Step Functions Standard: $25 per 1M state transitions, counted on the happy path (a user trained,
  validated and promoted: every state entered is one transition; a Map inside a child counts one
  plus its items' states) and one per child workflow execution the Distributed Map starts.
* Step Functions Express (children): $1.00 per 1M requests (one per child) and $0.00001667 per GB-s
  (the first tier, $0.06 per GB-hour) at 64 MB (the minimum billed memory; a child's definition and
  payload are a few KB), the duration rounded up to 100 ms per child. A child's duration is the sum
  of its users' step durations measured here plus ``TASK_OVERHEAD_S`` per Lambda task (the
  Step Functions → Lambda round trip, assumed).
* S3 and DynamoDB request charges and CloudWatch Logs are left out of the 10k/100k figures (as
  before) and put in the 1M paper model, from the requests counted in the run.
* Wall time on a loaded 2-core machine overstates Lambda's billed time (and the moto server is
  slower than DynamoDB/S3), so a second, load-independent Lambda figure is given next to it
  (``*_modelled``): each handler's thread CPU time plus its DynamoDB calls × ``DDB_CALL_S`` and S3
  calls × ``S3_CALL_S``. The headline (``cost_10k_usd``) stays the wall-based one, as before.

**Where a handler's wall goes here** (measured 2026-12-01; each function reports ``aws_wall_s``, its
wall seconds inside boto3 calls, and each run ``process_cpu_s``, the CPU of the whole process). The
handlers run in the moto server's process: a handler's wall is its own CPU, plus the emulator
answering its calls (in the server's request threads, under the same GIL), plus waits for the GIL or
a core. With moto 5.2 as it is, TrainUser spent 98 s of its 132 s (100 users) inside its 5 AWS calls
a user: moto's DynamoDB ``Query`` walks and sorts every item of the table for one user's partition,
and its response serializer resolves every attribute value through the service model (30-50 ms for
one registry record). Neither is DynamoDB's cost. Since then the emulator installs
:mod:`calroute_dev.local.moto_speed` (a table Query reads its partition, attribute values are
serialized directly; same answers, tested byte for byte), and the same run spends 12-20 s in its AWS
calls (25-40 ms a call; DynamoDB/S3 from Lambda: a few ms to ~20 ms). What the wall figure measures is
unchanged: the handler's wall time, now against an emulator whose per-call cost is close to the
services'; it remains an upper bound on this loaded machine (the other threads and processes
compete for the CPU). The run polls ``DescribeExecution`` every ``POLL_S`` (0.5 s; 0.1 s before),
which only moves the run's own ``wall_s`` by under ``POLL_S``.
"""

from __future__ import annotations

import copy
import json
import math
import os
import threading
import time
from collections import Counter
from typing import Any, Callable, Optional

from .harness import percentile, progress
from .users import synthetic_user

SFN_PER_TRANSITION = 25.0 / 1e6
EXPRESS_PER_REQUEST = 1.0 / 1e6
EXPRESS_PER_GB_S = 0.06 / 3600
EXPRESS_MEMORY_GB = 64 / 1024
LAMBDA_PER_REQUEST = 0.20 / 1e6
LAMBDA_PER_GB_S = 0.0000166667
#: Step Functions → Lambda invoke round trip per Task (assumed; not measurable locally)
TASK_OVERHEAD_S = 0.05
#: the load-independent Lambda estimate: a call's latency from Lambda in the same region (assumed)
DDB_CALL_S = 0.005
S3_CALL_S = 0.020
#: DynamoDB on-demand (us-east-1): per million read / write request units
DDB_PER_READ_UNIT = 0.125 / 1e6
DDB_PER_WRITE_UNIT = 0.625 / 1e6
#: S3 Standard: GET $0.0004 / PUT $0.005 per 1,000
S3_PER_GET = 0.0004 / 1000
S3_PER_PUT = 0.005 / 1000
#: CloudWatch Logs ingestion (the state machine logs at Level ALL, without execution data)
LOGS_PER_GB = 0.50
LOG_EVENT_BYTES = 400
EXPRESS_MAX_S = 300
#: how often the bench asks the emulator whether the run has finished: each DescribeExecution costs
#: ~10 ms of this process's CPU (client + moto), taken from the handlers running under the same GIL
POLL_S = 0.5
PER_USER_FUNCTIONS = ("TrainUserFunction", "ValidateFunction", "PromoteFunction")
DDB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
S3_PUTS = {"PutObject", "DeleteObject", "CopyObject"}
MAP_STATE = "TrainUsers"


# ----------------------------------------------------------------------------- the definitions


def happy_path_transitions(definition: dict) -> tuple[int, int]:
    """(transitions of the parent workflow, transitions per user item) along the success path of a
    one-user-per-child definition: a Choice takes its first rule, a Task its ``Next``; a
    Distributed Map item counts one extra (its child execution)."""
    parent = _walk(definition["States"], definition["StartAt"], items=0)
    per_user = 0
    for st in definition["States"].values():
        if st["Type"] == "Map":
            proc = st.get("ItemProcessor") or st.get("Iterator")
            per_user = _walk(proc["States"], proc["StartAt"], items=1) + 1
    return parent, per_user


def _walk(states: dict, start: str, *, items: int) -> int:
    """States entered on the happy path; a Map inside counts 1 + ``items`` × its item's states."""
    n, cur, seen = 0, start, set()
    while cur and cur not in seen:
        seen.add(cur)
        st = states[cur]
        n += 1
        if st["Type"] == "Map":
            proc = st.get("ItemProcessor") or st.get("Iterator")
            n += items * _walk(proc["States"], proc["StartAt"], items=1)
        if st.get("End") or st["Type"] in ("Succeed", "Fail"):
            break
        cur = st["Choices"][0]["Next"] if st["Type"] == "Choice" else st.get("Next")
    return n


def map_config(definition: dict) -> dict:
    """The Distributed Map's shape: ``execution_type``, ``batch`` (users per child, 1 without an
    ``ItemBatcher``), ``parent`` (transitions of the parent, the Map counted once), and the child's
    happy-path transitions ``child_fixed`` + ``child_per_user`` × users."""
    m = definition["States"][MAP_STATE]
    proc = m["ItemProcessor"]
    batch = int((m.get("ItemBatcher") or {}).get("MaxItemsPerBatch") or 1)
    one = _walk(proc["States"], proc["StartAt"], items=1)
    if "ItemBatcher" in m:  # the child's states: fixed ones + a Map over the batch's users
        per_user = _walk(proc["States"], proc["StartAt"], items=2) - one
        fixed = one - per_user
    else:  # the child is one user's states
        per_user, fixed = one, 0
    return {"execution_type": proc["ProcessorConfig"].get("ExecutionType", "STANDARD"), "batch": batch,
            "parent": _walk(definition["States"], definition["StartAt"], items=0),
            "child_fixed": fixed, "child_per_user": per_user}


def unbatched(definition: dict) -> dict:
    """The definition this change replaced: no ``ItemBatcher``, STANDARD children, each child the
    per-user states directly (the batch's inline Map over ``$.Items`` unwrapped)."""
    d = copy.deepcopy(definition)
    m = d["States"][MAP_STATE]
    m.pop("ItemBatcher", None)
    proc = m["ItemProcessor"]
    proc["ProcessorConfig"] = {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    inner = proc["States"][proc["StartAt"]]
    if inner["Type"] == "Map" and inner.get("ItemsPath") == "$.Items":
        proc["StartAt"] = inner["ItemProcessor"]["StartAt"]
        proc["States"] = inner["ItemProcessor"]["States"]
    return d


# ----------------------------------------------------------------------------- the cost model


def _child_sizes(users: int, batch: int) -> list[tuple[int, int]]:
    """``[(users in a child, how many such children)]``."""
    full, rest = divmod(users, batch)
    return [(batch, full)] + ([(rest, 1)] if rest else [])


def orchestration_cost(definition: dict, users: int, *, user_seconds: float,
                       task_overhead_s: float = TASK_OVERHEAD_S) -> dict:
    """Step Functions charges of one run over ``users`` planned users (happy path), for the
    definition's child type and batch size. ``user_seconds``: one user's step time in a child."""
    cfg = map_config(definition)
    sizes = _child_sizes(users, cfg["batch"])
    children = sum(n for _, n in sizes)
    transitions = cfg["parent"] + children  # one per child execution started
    express_gb_s = 0.0
    tasks_per_user = 3
    if cfg["execution_type"] == "EXPRESS":
        for k, n in sizes:
            seconds = k * (user_seconds + tasks_per_user * task_overhead_s)
            express_gb_s += n * math.ceil(seconds * 10 - 1e-9) / 10 * EXPRESS_MEMORY_GB
        usd = transitions * SFN_PER_TRANSITION + children * EXPRESS_PER_REQUEST + express_gb_s * EXPRESS_PER_GB_S
    else:
        transitions += children * cfg["child_fixed"] + users * cfg["child_per_user"]
        usd = transitions * SFN_PER_TRANSITION
    return {"execution_type": cfg["execution_type"], "users_per_child": cfg["batch"], "children": children,
            "state_transitions": transitions, "express_requests": children if cfg["execution_type"] == "EXPRESS" else 0,
            "express_gb_s": round(express_gb_s, 1), "step_functions_usd": round(usd, 4)}


def lambda_cost(users: int, *, gb_s_user: float, requests_user: float, gb_s_fixed_per_user: float,
                fixed_requests: int = 2) -> dict:
    gb_s = (gb_s_user + gb_s_fixed_per_user) * users
    usd = gb_s * LAMBDA_PER_GB_S + (requests_user * users + fixed_requests) * LAMBDA_PER_REQUEST
    return {"lambda_gb_s": round(gb_s, 1), "lambda_usd": round(usd, 4)}


def estimate(definition: dict, users: int, m: dict) -> dict:
    """Lambda + Step Functions per run for ``users`` planned users, from a run's measurements ``m``."""
    lam = lambda_cost(users, gb_s_user=m["gb_s_user"], requests_user=m["requests_user"],
                      gb_s_fixed_per_user=m["gb_s_fixed_per_user"])
    sfn = orchestration_cost(definition, users, user_seconds=m["user_seconds"])
    total = lam["lambda_usd"] + sfn["step_functions_usd"]
    out = {**lam, **sfn, "lambda_usd": round(lam["lambda_usd"], 2), "step_functions_usd": round(sfn["step_functions_usd"], 2),
           "total_usd": round(total, 2), "usd_per_1000_users": round(total / users * 1000, 4)}
    if "gb_s_user_modelled" in m:
        lm = lambda_cost(users, gb_s_user=m["gb_s_user_modelled"], requests_user=m["requests_user"],
                         gb_s_fixed_per_user=m["gb_s_fixed_per_user_modelled"])
        out.update(lambda_usd_modelled=round(lm["lambda_usd"], 2),
                   total_usd_modelled=round(lm["lambda_usd"] + sfn["step_functions_usd"], 2))
    return out


# ----------------------------------------------------------------------------- the 1M-user paper model


def paper_model(definition: dict, m: dict, *, users: int = 1_000_000,
                concurrencies: tuple[int, ...] = (20, 100, 500, 1000)) -> dict:
    """A 1M-user run on paper, from a run's per-user measurements ``m``: duration at each
    MaxConcurrency, Lambda concurrency, DynamoDB/S3 request rates against their limits, cost."""
    cfg = map_config(definition)
    # AWS-like figures: the load-independent (modelled) Lambda seconds, not this machine's wall time
    m = {**m, "user_seconds": m.get("user_seconds_modelled", m["user_seconds"]),
         "gb_s_user": m.get("gb_s_user_modelled", m["gb_s_user"]),
         "gb_s_fixed_per_user": m.get("gb_s_fixed_per_user_modelled", m["gb_s_fixed_per_user"]),
         "plan_seconds_per_user": m.get("plan_seconds_per_user_modelled", m["plan_seconds_per_user"])}
    per_user_s = m["user_seconds"] + 3 * TASK_OVERHEAD_S
    ddb_r, ddb_w = m["ddb_reads_user"], m["ddb_writes_user"]
    s3_g, s3_p = m["s3_gets_user"], m["s3_puts_user"]
    plan_s = m["plan_seconds_per_user"] * users
    rows = []
    for c in concurrencies:
        users_per_s = c / per_user_s
        rows.append({
            "max_concurrency": c,
            "map_hours": round(users * per_user_s / c / 3600, 2),
            "lambda_concurrency": c,
            "ddb_reads_per_s": round(users_per_s * ddb_r), "ddb_writes_per_s": round(users_per_s * ddb_w),
            "s3_gets_per_s": round(users_per_s * s3_g), "s3_puts_per_s": round(users_per_s * s3_p),
        })
    orchestration = orchestration_cost(definition, users, user_seconds=m["user_seconds"])
    lam = lambda_cost(users, gb_s_user=m["gb_s_user"], requests_user=m["requests_user"],
                      gb_s_fixed_per_user=m["gb_s_fixed_per_user"])
    # DynamoDB: one request unit per call, plus the events a user's TrainUser and Promote Query read
    # (≈0.4 KB an event, 4 KB a read unit, eventually consistent halves it: not assumed)
    event_units = 2 * m["events_per_user_mean"] * 0.4 / 4
    ddb_usd = users * ((ddb_r + event_units) * DDB_PER_READ_UNIT + ddb_w * DDB_PER_WRITE_UNIT)
    s3_usd = users * (s3_g * S3_PER_GET + s3_p * S3_PER_PUT)
    log_events = users * m["log_events_user"]
    logs_usd = log_events * LOG_EVENT_BYTES / 1e9 * LOGS_PER_GB
    total = lam["lambda_usd"] + orchestration["step_functions_usd"] + ddb_usd + s3_usd + logs_usd
    child_s = cfg["batch"] * per_user_s
    return {
        "users": users,
        "assumptions": {
            "trained_per_run": f"all {users:,} users planned and trained (a feature-spec bump; a normal night trains "
                               "only those Plan finds due, and every figure but Plan's scales with them)",
            "per_user_seconds": round(per_user_s, 3),
            "per_user_seconds_source": "this run's mean TrainUser+Validate+Promote time, modelled (thread CPU + "
                                       f"{DDB_CALL_S} s per DynamoDB call + {S3_CALL_S} s per S3 call), + 3 × "
                                       f"{TASK_OVERHEAD_S} s task overhead (60-99 events a user); Lambda cost "
                                       "from the same modelled seconds",
            "users_per_child": cfg["batch"], "child_seconds": round(child_s, 1), "express_limit_s": EXPRESS_MAX_S,
            "limits": {"lambda_concurrency": "1,000 per account and region by default, shared with serving "
                                             "(raise it, or keep MaxConcurrency ≤ ~300)",
                       "distributed_map_children": "10,000 concurrent child executions per Map Run",
                       "dynamodb_on_demand": "40,000 read and 40,000 write request units/s per table (account "
                                             "quota); 3,000 reads / 1,000 writes per second per partition — the "
                                             "keys are per user, so one user's items never approach it",
                       "s3": "5,500 GET and 3,500 PUT per second per prefix; keys are models/{userId}/…, one "
                             "prefix per user"},
            "prices": {"dynamodb_usd_per_million_read_units": 0.125, "dynamodb_usd_per_million_write_units": 0.625,
                       "s3_usd_per_1000_get": 0.0004, "s3_usd_per_1000_put": 0.005,
                       "logs_usd_per_gb": LOGS_PER_GB, "log_event_bytes": LOG_EVENT_BYTES},
        },
        "per_user_requests": {"dynamodb_reads": round(ddb_r, 1), "dynamodb_writes": round(ddb_w, 1),
                              "s3_gets": round(s3_g, 1), "s3_puts": round(s3_p, 1),
                              "log_events": round(m["log_events_user"], 1)},
        "by_max_concurrency": rows,
        "plan_seconds": round(plan_s), "plan_lambda_limit_s": 900,
        "results_bytes": users * m["result_bytes_user"], "results_limit_bytes": 256 * 1024,
        "users_json_bytes": users * m["manifest_bytes_user"],
        "cost": {"lambda_usd": round(lam["lambda_usd"], 2), "step_functions_usd": round(orchestration["step_functions_usd"], 2),
                 "dynamodb_usd": round(ddb_usd, 2), "s3_usd": round(s3_usd, 2), "logs_usd": round(logs_usd, 2),
                 "total_usd": round(total, 2)},
    }


# ----------------------------------------------------------------------------- the runs


class _CallCounter:
    """Counts the boto3 calls this process makes (handlers, adapters and moto's ASL interpreter), and
    the wall seconds each function spends inside them (the request, the emulator's answer, the parse)."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()  # (service, operation)
        self.by_function: Counter = Counter()  # (function logical id or "-", service)
        self.seconds: Counter = Counter()  # function logical id or "-" -> wall seconds inside calls
        self._lock = threading.Lock()
        self._orig: Optional[Callable] = None

    def __enter__(self) -> "_CallCounter":
        from botocore.client import BaseClient

        from calroute_dev.local.lambdas import current_function

        orig = BaseClient._make_api_call
        counter = self

        def counted(client, operation_name, api_params):  # noqa: ANN001 - botocore's signature
            service = client.meta.service_model.service_name
            fn = current_function() or "-"
            with counter._lock:
                counter.calls[(service, operation_name)] += 1
                counter.by_function[(fn, service)] += 1
            t0 = time.perf_counter()
            try:
                return orig(client, operation_name, api_params)
            finally:
                with counter._lock:
                    counter.seconds[fn] += time.perf_counter() - t0

        self._orig = orig
        BaseClient._make_api_call = counted
        return self

    def __exit__(self, *exc: Any) -> None:
        from botocore.client import BaseClient

        BaseClient._make_api_call = self._orig


def _seed(repos, prefix: str, n_users: int) -> list[int]:
    sizes = []
    for i in range(n_users):
        user = f"{prefix}{i:04d}"
        n = 60 + (i * 37) % 40  # 60..99 events, 3 calendars
        events = synthetic_user(n, n_calendars=3, seed=1000 + i, user=user)  # same events for every prefix
        repos.events.put_events(user, events)
        repos.users.bump(user, events=len(events))
        sizes.append(n)
    return sizes


def _map_results(em, execution_arn: str) -> tuple[list, int]:
    """The Map's results (from the parent's history: the inline list, or the ResultWriter's reference)
    and the number of history events of the run."""
    sfn = em.client("stepfunctions")
    events, token = [], None
    while True:
        kw = {"executionArn": execution_arn, "maxResults": 1000, **({"nextToken": token} if token else {})}
        page = sfn.get_execution_history(**kw)
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            break
    for e in events:
        d = e.get("stateExitedEventDetails") or {}
        if d.get("name") == MAP_STATE:
            return json.loads(d["output"]).get("results") or [], len(events)
    return [], len(events)


def one_run(em, repos, *, label: str, prefix: str, n_users: int, definition: dict, state_machine_arn: str) -> dict:
    """Seed ``n_users`` users, run ``state_machine_arn`` once, and measure it."""
    from calroute_dev.local.lambdas import function_specs
    from calroute_dev.local.moto_server import run_training

    progress(f"state machine ({label}): seeding {n_users} synthetic users")
    sizes = _seed(repos, prefix, n_users)
    em.lambdas.invocations.clear()
    progress(f"state machine ({label}): running over {n_users} users")
    name = f"bench-{label}-{int(time.time())}"
    t0, cpu0 = time.perf_counter(), _process_cpu()
    with _CallCounter() as counter:
        res = run_training(em, {"trigger": "schedule"}, name=name, timeout=3600, state_machine_arn=state_machine_arn,
                           poll_seconds=POLL_S)
    wall, process_cpu = time.perf_counter() - t0, _process_cpu() - cpu0
    out = res.get("output") or {}
    results, history_events = _map_results(em, res["execution_arn"])
    if isinstance(results, dict) and out.get("run_id"):
        # the Map wrote its results to S3 (ResultWriter): the children's outputs, as Summarize reads them
        from calroute.services.training.summarize import child_results

        results = child_results(results, out["run_id"], repos)
    calls = list(em.lambdas.invocations)
    specs = {s.logical_id: s for s in function_specs(em.resolver).values()}
    by_fn: dict[str, list[float]] = {}
    for c in calls:
        by_fn.setdefault(c["function"], []).append(float(c["seconds"]))
    planned = max(1, int(out.get("planned") or n_users))
    scanned = planned + int(out.get("not_needed") or 0)  # profiles Plan read
    gb = {f: sum(v) * (specs[f].memory / 1024) for f, v in by_fn.items() if f in specs}
    cpu: dict[str, float] = {}
    for c in calls:
        cpu[c["function"]] = cpu.get(c["function"], 0.0) + float(c.get("cpu_seconds") or 0.0)
    modelled_s = {f: cpu.get(f, 0.0) + counter.by_function[(f, "dynamodb")] * DDB_CALL_S
                  + counter.by_function[(f, "s3")] * S3_CALL_S for f in by_fn}
    gb_modelled = {f: s * (specs[f].memory / 1024) for f, s in modelled_s.items() if f in specs}
    per_user_s = sum(sum(by_fn.get(f, [])) for f in PER_USER_FUNCTIONS) / planned
    children = [r if isinstance(r, list) else [r] for r in results]
    child_s = [sum(int((u or {}).get("duration_ms") or 0) for u in child) / 1000 for child in children]
    ddb = {op: n for (svc, op), n in counter.calls.items() if svc == "dynamodb"}
    s3 = {op: n for (svc, op), n in counter.calls.items() if svc == "s3"}
    measured = {
        "user_seconds": round(per_user_s, 4),
        "user_seconds_modelled": round(sum(modelled_s.get(f, 0.0) for f in PER_USER_FUNCTIONS) / planned, 4),
        "gb_s_user": round(sum(g for f, g in gb.items() if f in PER_USER_FUNCTIONS) / planned, 4),
        "gb_s_user_modelled": round(sum(g for f, g in gb_modelled.items() if f in PER_USER_FUNCTIONS) / planned, 4),
        "gb_s_fixed_per_user_modelled": round(sum(g for f, g in gb_modelled.items()
                                                  if f not in PER_USER_FUNCTIONS) / scanned, 5),
        "requests_user": round(sum(len(by_fn.get(f, [])) for f in PER_USER_FUNCTIONS) / planned, 3),
        # Plan and Summarize, per profile Plan read (the estimates assume every user is planned)
        "gb_s_fixed_per_user": round(sum(g for f, g in gb.items() if f not in PER_USER_FUNCTIONS) / scanned, 5),
        "plan_seconds_per_user": round(sum(by_fn.get("PlanFunction", [0.0])) / scanned, 5),
        "plan_seconds_per_user_modelled": round(modelled_s.get("PlanFunction", 0.0) / scanned, 5),
        "ddb_reads_user": round(sum(n for op, n in ddb.items() if op not in DDB_WRITES) / planned, 2),
        "ddb_writes_user": round(sum(n for op, n in ddb.items() if op in DDB_WRITES) / planned, 2),
        "s3_gets_user": round(sum(n for op, n in s3.items() if op not in S3_PUTS) / planned, 2),
        "s3_puts_user": round(sum(n for op, n in s3.items() if op in S3_PUTS) / planned, 2),
        "events_per_user_mean": round(sum(sizes) / len(sizes), 1),
        # the parent's history here; each STANDARD child's (or EXPRESS child's, logged the same) on top
        "log_events_user": round(history_events / planned + _child_log_events(definition), 1),
        "result_bytes_user": round(len(json.dumps(results)) / planned),
        "manifest_bytes_user": round(len(json.dumps(repos.models.get_json(f"runs/{out.get('run_id', name)}/users.json")))
                                     / planned) if out.get("run_id") else 0,
    }
    return {
        "label": label, "status": res["status"], "wall_s": round(wall, 2), "users": n_users,
        # CPU of the whole process (handlers, moto server, ASL interpreter: one GIL) during the run
        "process_cpu_s": round(process_cpu, 2),
        "events_per_user": [min(sizes), max(sizes)],
        "counts": {k: out.get(k) for k in ("planned", "trained", "skipped", "failed", "rejected", "conflict",
                                           "not_needed", "recovered", "lost_batches")},
        "per_user_p50_ms": out.get("user_ms_p50"), "per_user_max_ms": out.get("user_ms_max"),
        "train_user_p50_s": round(percentile(by_fn["TrainUserFunction"], 50), 3) if by_fn.get("TrainUserFunction") else None,
        "children": len(children), "users_per_child_max": max((len(c) for c in children), default=0),
        "child_seconds_max": round(max(child_s, default=0.0), 2),
        "functions": {f: {"calls": len(v), "p50_s": round(percentile(v, 50), 3), "total_s": round(sum(v), 2),
                          "cpu_s": round(cpu.get(f, 0.0), 2), "modelled_s": round(modelled_s.get(f, 0.0), 2),
                          "aws_wall_s": round(counter.seconds[f], 2),
                          "aws_calls": {s: n for (fn, s), n in counter.by_function.items() if fn == f},
                          "memory_mb": specs[f].memory if f in specs else None} for f, v in sorted(by_fn.items())},
        "aws_calls": {f"{s}:{o}": n for (s, o), n in sorted(counter.calls.items())},
        "measured": measured,
        "config": map_config(definition),
    }


def _process_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _child_log_events(definition: dict) -> float:
    """History events a user adds in its child (per state entered and exited, a Task's scheduled/
    started/succeeded): what the Level ALL log of the machine ingests."""
    cfg = map_config(definition)
    states = cfg["child_per_user"] + cfg["child_fixed"] / cfg["batch"]
    return states * 2 + 3 * 3


def run(em, quick: bool, *, n_users: int | None = None, compare: bool = True) -> dict:
    from calroute import wiring
    from calroute.config import settings
    from calroute_dev.local.moto_server import create_variant

    n_users = n_users or (4 if quick else 100)
    repos = wiring.stores(settings())
    deployed = json.loads(em.definition)
    # a small unmeasured run first: every handler imported (sklearn, onnxruntime) before either run
    one_run(em, repos, label="warm-up", prefix="sw", n_users=2, definition=deployed,
            state_machine_arn=em.state_machine_arn)
    runs = {}
    if compare:
        before_def = unbatched(deployed)
        arn = create_variant(em, "calroute-bench-training-unbatched", json.dumps(before_def))
        runs["before"] = (before_def, one_run(em, repos, label="before", prefix="sb", n_users=n_users,
                                              definition=before_def, state_machine_arn=arn))
    runs["after"] = (deployed, one_run(em, repos, label="after", prefix="sm", n_users=n_users, definition=deployed,
                                       state_machine_arn=em.state_machine_arn))
    variants = {}
    for label, (definition, r) in runs.items():
        r["cost"] = {str(u): estimate(definition, u, r["measured"]) for u in (10_000, 100_000)}
        variants[label] = r
    after = variants["after"]
    # the other two combinations, from the after run's measurements (what each change buys alone)
    express_only = copy.deepcopy(unbatched(deployed))
    express_only["States"][MAP_STATE]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = "EXPRESS"
    batched_standard = copy.deepcopy(deployed)
    batched_standard["States"][MAP_STATE]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = "STANDARD"
    alternatives = {name: estimate(d, 10_000, after["measured"]) for name, d in (
        ("standard_one_user_per_child", unbatched(deployed)), ("express_one_user_per_child", express_only),
        ("standard_batched", batched_standard), ("express_batched", deployed))}
    before = variants.get("before")
    # not_needed differs by design: the after run's Plan also sees the before run's (now trained) users
    outcome = ("planned", "trained", "skipped", "failed", "rejected", "conflict")
    same = None if before is None else all(before["counts"][k] == after["counts"][k] for k in outcome)
    return {
        # the headline keys of the section (stable): the deployed definition's run
        "users": after["users"], "events_per_user": after["events_per_user"], "status": after["status"],
        "wall_s": after["wall_s"], "counts": after["counts"], "per_user_p50_ms": after["per_user_p50_ms"],
        "per_user_max_ms": after["per_user_max_ms"], "train_user_p50_s": after["train_user_p50_s"],
        "functions": after["functions"], "cost": after["cost"],
        "cost_10k_usd": after["cost"]["10000"]["total_usd"],
        "cost_10k_modelled_usd": after["cost"]["10000"].get("total_usd_modelled"),
        "cost_10k_before_usd": before["cost"]["10000"]["total_usd"] if before else None,
        "same_outcomes": same,
        "child_seconds_max": after["child_seconds_max"], "express_limit_s": EXPRESS_MAX_S,
        "variants": variants, "alternatives_10k": alternatives,
        "paper_1m": paper_model(deployed, after["measured"]),
        "prices": {"lambda_usd_per_gb_s": LAMBDA_PER_GB_S, "lambda_usd_per_request": LAMBDA_PER_REQUEST,
                   "sfn_usd_per_transition": SFN_PER_TRANSITION, "express_usd_per_request": EXPRESS_PER_REQUEST,
                   "express_usd_per_gb_s": round(EXPRESS_PER_GB_S, 10), "express_memory_mb": 64,
                   "task_overhead_s": TASK_OVERHEAD_S, "ddb_call_s": DDB_CALL_S, "s3_call_s": S3_CALL_S,
                   "region": "us-east-1 (list, x86)"},
    }
