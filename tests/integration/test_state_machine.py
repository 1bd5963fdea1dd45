"""The state-machine definition itself (infra/statemachine/training.asl.json) executed by moto's
Step Functions interpreter in server mode, its Lambda tasks dispatched in-process to the REAL
handlers (functions/*/app.py), with the real trainer.

One scheduled run over four users: one trains, one cannot (one calendar only: skipped by the
gates), one crashes (a corrupt stored event), one is up to date (not planned). The run SUCCEEDS and
its record counts them right.
"""

from __future__ import annotations

import time

import pytest

from calroute.adapters.aws import resources_from
from calroute.config import settings
from calroute.local.moto_server import free_port, run_training, start_emulator
from support.models import install_model, make_events


@pytest.fixture
def emulator(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    em = start_emulator(free_port(), stack_name="calroute-sfn-test", max_concurrency=2)
    try:
        yield em
    finally:
        em.stop()


def _seed(repos, user, events):
    repos["events"].put_events(user, events)
    repos["users"].bump(user, events=len(events))


def test_scheduled_run_trains_skips_and_survives_a_crash(emulator):
    cfg = settings()
    repos = resources_from(cfg)
    assert cfg.events_table.startswith("calroute-") and emulator.endpoint.startswith("http://127.0.0.1:")
    _seed(repos, "ana", make_events(("home", "kids", "work"), 25))         # trains
    _seed(repos, "ben", make_events(("work",), 60))                        # one calendar: gates fail
    _seed(repos, "cid", make_events(("home", "work"), 30))                 # crashes: a corrupt item
    repos["events"].t.table(cfg.events_table).put_item(
        Item={"user_id": "cid", "event_id": "zz-corrupt", "calendar_id": "work", "data": "{not json"})
    _seed(repos, "dot", make_events(("home", "work"), 30))                 # up to date
    install_model("dot", calendars=("home", "work"))
    repos["registry"].set_status("dot", repos["registry"].active("dot")["version"], "active", "",
                                 events_total_at_training=60, trained_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00",
                                                                                        time.gmtime()))

    lines: list[str] = []
    t0 = time.perf_counter()
    res = run_training(emulator, {"trigger": "schedule"}, name="nightly-1", timeout=240, progress=lines.append)
    wall = time.perf_counter() - t0
    print(f"\nstate machine run: {wall:.1f}s wall, {len(emulator.lambdas.invocations)} lambda invocations")

    assert res["status"] == "SUCCEEDED", (res["error"], res["cause"])
    out = res["output"]
    record = repos["registry"].get_run("nightly-1")
    for r in (out, record):
        assert (r["trained"], r["skipped"], r["failed"], r["rejected"], r["conflict"]) == (1, 1, 1, 0, 0), r
        assert r["planned"] == 3 and r["not_needed"] == 1
    assert record["failures"][0]["user_id"] == "cid" and record["failures"][0]["stage"] == "train"
    assert record["user_ms_max"] >= record["user_ms_p50"] > 0

    # the trained user's model is active, stored, and points at an existing object
    active = repos["registry"].active("ana")
    assert active is not None and active["labels"] == ["home", "kids", "work"]
    assert repos["models"].get(active["s3_key"], active["sha256"])
    assert repos["registry"].active("ben") is None and repos["registry"].active("cid") is None
    assert repos["registry"].get_version("ana", active["version"])["run_id"] == "nightly-1"

    # the real handlers ran, through moto's Lambda invoke
    calls = [c["function"] for c in emulator.lambdas.invocations]
    assert calls.count("PlanFunction") == 1 and calls.count("TrainUserFunction") == 3
    assert calls.count("ValidateFunction") == 1 and calls.count("PromoteFunction") == 1
    assert calls.count("SummarizeFunction") == 1
    assert [c for c in emulator.lambdas.invocations if c["error"]] == [
        {"function": "TrainUserFunction", "seconds": pytest.approx(0, abs=60), "error": "Unhandled"}]
    assert lines and "SUCCEEDED" in lines[-1]


def test_one_user_api_run_and_a_failing_summarize_fails_the_run(emulator, monkeypatch):
    cfg = settings()
    repos = resources_from(cfg)
    res = run_training(emulator, {"trigger": "api", "user_ids": ["nobody"], "run_id": "r-api-1"}, timeout=60)
    assert res["status"] == "SUCCEEDED"
    assert (res["output"]["skipped"], res["output"]["planned"]) == (1, 1)
    assert repos["models"].get_json("runs/r-api-1/users.json")[0]["user_id"] == "nobody"

    # Summarize is not caught: a broken run record write is a failed run (an operator must look)
    from calroute.services import training_run

    def boom(*a, **k):
        raise RuntimeError("registry unavailable")

    monkeypatch.setattr(training_run, "summarize", boom)
    res = run_training(emulator, {"trigger": "api", "user_ids": ["nobody"], "run_id": "r-api-2"}, timeout=60)
    assert res["status"] == "FAILED"


def test_emulator_persists_tables_and_objects(tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    em = start_emulator(free_port(), persist_dir=str(tmp_path), stack_name="calroute-persist-test")
    try:
        repos = resources_from(settings())
        repos["users"].bump("ana", events=3)
        repos["models"].put("ana", "v20260101000000-abcdef", b"bytes")
    finally:
        em.stop()
    assert "AWS_ENDPOINT_URL" not in __import__("os").environ  # the environment is restored
    # the next emulator starts from an empty moto (start_emulator resets it): only the snapshot remains
    em = start_emulator(free_port(), persist_dir=str(tmp_path), stack_name="calroute-persist-test")
    try:
        repos = resources_from(settings())
        assert repos["users"].profile("ana")["events_total"] == 3
        key = repos["models"].key("ana", "v20260101000000-abcdef")
        assert repos["models"].get(key) == b"bytes"
    finally:
        em.stop()
