"""Load against the local stack (HTTP on 127.0.0.1 → the real handlers → moto server): 50 concurrent
clients send 2,000 classify requests each while 10,000 events are ingested concurrently by 4 other
clients. Afterwards: zero errors, and every ingested event is readable with its content. Latency
percentiles are printed (run with ``-s`` to see them).

The clients run in two worker processes (``load_client.py``) so that they do not compete with the
stack for this process's GIL. The stack logs 1 % of predictions (``PREDICTION_LOG_SAMPLE_RATE``):
against the moto server one prediction-log write costs ~9 ms of CPU in this process (a DynamoDB
PutItem from Lambda is network time, not CPU) and would otherwise dominate the run.

This is the issue's full size and it runs in ``make test`` (CI). For a quick local run, shrink it:
``CALROUTE_LOAD_PER_CLIENT=20 CALROUTE_LOAD_EVENTS=1000``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import figures
from load_client import BATCH, INGESTERS, MODEL_USER, ingest_event, ingest_user
from rel_support import http, stack  # noqa: F401 - fixtures

pytestmark = [pytest.mark.slow, pytest.mark.integration]

CLIENTS = 50
PER_CLIENT = int(os.environ.get("CALROUTE_LOAD_PER_CLIENT", "2000"))
INGEST_EVENTS = int(os.environ.get("CALROUTE_LOAD_EVENTS", "10000"))
WORKERS = 2
CLIENT_SCRIPT = Path(__file__).resolve().parent / "load_client.py"


@pytest.fixture(scope="module", autouse=True)
def sampled_prediction_log():
    """Set before the stack starts (autouse fixtures come first), restored after it stops."""
    old = os.environ.get("PREDICTION_LOG_SAMPLE_RATE")
    os.environ["PREDICTION_LOG_SAMPLE_RATE"] = "0.01"
    yield
    if old is None:
        os.environ.pop("PREDICTION_LOG_SAMPLE_RATE", None)
    else:
        os.environ["PREDICTION_LOG_SAMPLE_RATE"] = old


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def test_concurrent_classify_while_ingesting(stack, http):
    from calroute.adapters.dynamo.events import DynamoEventStore
    from calroute.config import settings
    from support.models import install_model

    assert settings().prediction_log_sample_rate == 0.01
    install_model(MODEL_USER, calendars=("work", "home"))
    warm = http.request("POST", f"/v1/users/{MODEL_USER}/classify", user=MODEL_USER,
                        json_body={"event": {"summary": "sprint standup", "start": "2026-03-03T10:00:00Z"}})
    assert warm.status == 200 and warm.json()["model_version"], warm.raw

    specs = [{"port": stack.gateway.port, "per_client": PER_CLIENT, "events": INGEST_EVENTS,
              "classifiers": list(range(w, CLIENTS, WORKERS)), "ingesters": list(range(w, INGESTERS, WORKERS))}
             for w in range(WORKERS)]
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(CLIENT_SCRIPT), json.dumps(s)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for s in specs]
    outs = []
    for proc in procs:
        out, errs = proc.communicate(timeout=3600)
        assert proc.returncode == 0, errs[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    wall = time.perf_counter() - t0

    errors = [e for o in outs for e in o["errors"]]
    lat_classify = [x for o in outs for x in o["lat_classify"]]
    lat_ingest = [x for o in outs for x in o["lat_ingest"]]
    n = CLIENTS * PER_CLIENT
    print(f"\nLOAD: {CLIENTS} clients x {PER_CLIENT} classify = {n} requests + {INGEST_EVENTS} events ingested "
          f"by {INGESTERS} clients in batches of {BATCH}, concurrently ({WORKERS} client processes), in {wall:.1f}s; "
          f"classify {n / wall:.0f} req/s, p50 {pct(lat_classify, 50):.1f} ms, p95 {pct(lat_classify, 95):.1f} ms, "
          f"p99 {pct(lat_classify, 99):.1f} ms, max {max(lat_classify):.1f} ms; "
          f"ingest batch p50 {pct(lat_ingest, 50):.1f} ms, p99 {pct(lat_ingest, 99):.1f} ms; errors {len(errors)}")
    assert not errors, errors
    assert len(lat_classify) == n

    # every ingested event is readable afterwards: count and content
    repo = DynamoEventStore(settings().events_table)
    table = repo.t.table(settings().events_table)
    total = 0
    for w in range(INGESTERS):
        user = ingest_user(w)
        items, kw = {}, {"KeyConditionExpression": "user_id = :u", "ExpressionAttributeValues": {":u": user}}
        while True:
            page = table.query(**kw)
            for it in page["Items"]:
                items[it["event_id"]] = json.loads(it["data"])
            if "LastEvaluatedKey" not in page:
                break
            kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        expected = {f"load-{i:06d}": ingest_event(i) for i in range(w, INGEST_EVENTS, INGESTERS)}
        assert set(items) == set(expected), (user, len(items), len(expected))
        for eid, src in expected.items():
            got = items[eid]
            assert (got["summary"], got["description"], got["attendees"]) == (
                src["summary"], src["description"], src["attendees"]), eid
        total += len(items)
    assert total == INGEST_EVENTS
    if figures.should_record(PER_CLIENT == 2000 and INGEST_EVENTS == 10000):
        figures.record("load", {
            "clients": CLIENTS, "per_client": PER_CLIENT, "requests": n, "events": INGEST_EVENTS, "read_back": total,
            "wall": round(wall, 1), "p50": pct(lat_classify, 50), "p95": pct(lat_classify, 95),
            "p99": pct(lat_classify, 99), "max": max(lat_classify), "ingest_p50": pct(lat_ingest, 50),
            "ingest_p99": pct(lat_ingest, 99), "errors": len(errors)})
