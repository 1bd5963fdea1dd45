"""The state-machine definition itself (infra/statemachine/training.asl.json) executed by moto's
Step Functions interpreter in server mode, its Lambda tasks dispatched in-process to the REAL
handlers (functions/*/app.py), with the real trainer.

One scheduled run over four users: one trains, one cannot (one calendar only: skipped by the
gates), one crashes (a corrupt stored event), one is up to date (not planned). The run SUCCEEDS and
its record counts them right.

A second scheduled run puts every per-user failure mode into ONE execution: a TrainUser crash, a
candidate that fails Validate (its stored bytes tampered between TrainUser and Validate), a
Promote that loses the race for ACTIVE on both attempts (``conflict``), next to a normal
promotion.
"""

from __future__ import annotations

import time

import pytest

from calroute import wiring
from calroute.adapters.dynamo.registry import DynamoRegistry
from calroute.config import settings
from calroute_dev.local.moto_server import run_training, start_emulator
from support.models import build_onnx, install_model, make_events, version


@pytest.fixture
def emulator(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    em = start_emulator(0, stack_name="calroute-sfn-test", max_concurrency=2)
    try:
        yield em
    finally:
        em.stop()


def _seed(repos, user, events):
    repos.events.put_events(user, events)
    repos.users.bump(user, events=len(events))


def test_scheduled_run_trains_skips_and_survives_a_crash(emulator):
    cfg = settings()
    repos = wiring.stores(cfg)
    assert cfg.events_table.startswith("calroute-") and emulator.endpoint.startswith("http://127.0.0.1:")
    _seed(repos, "ana", make_events(("home", "kids", "work"), 25))         # trains
    _seed(repos, "ben", make_events(("work",), 60))                        # one calendar: gates fail
    _seed(repos, "cid", make_events(("home", "work"), 30))                 # crashes: a corrupt item
    repos.events.t.table(cfg.events_table).put_item(
        Item={"user_id": "cid", "event_id": "zz-corrupt", "calendar_id": "work", "data": "{not json"})
    _seed(repos, "dot", make_events(("home", "work"), 30))                 # up to date
    install_model("dot", calendars=("home", "work"))
    repos.registry.set_status("dot", repos.registry.active("dot")["version"], "active", "",
                                 events_total_at_training=60, trained_at=time.strftime("%Y-%m-%dT%H:%M:%S+00:00",
                                                                                        time.gmtime()))

    lines: list[str] = []
    t0 = time.perf_counter()
    res = run_training(emulator, {"trigger": "schedule"}, name="nightly-1", timeout=240, progress=lines.append)
    wall = time.perf_counter() - t0
    print(f"\nstate machine run: {wall:.1f}s wall, {len(emulator.lambdas.invocations)} lambda invocations")

    assert res["status"] == "SUCCEEDED", (res["error"], res["cause"])
    out = res["output"]
    record = repos.registry.get_run("nightly-1")
    for r in (out, record):
        assert (r["trained"], r["skipped"], r["failed"], r["rejected"], r["conflict"]) == (1, 1, 1, 0, 0), r
        assert r["planned"] == 3 and r["not_needed"] == 1
    assert record["failures"][0]["user_id"] == "cid" and record["failures"][0]["stage"] == "train"
    assert record["user_ms_max"] >= record["user_ms_p50"] > 0

    # the trained user's model is active, stored, and points at an existing object
    active = repos.registry.active("ana")
    assert active is not None and active["labels"] == ["home", "kids", "work"]
    assert repos.models.get(active["s3_key"], active["sha256"])
    assert repos.registry.active("ben") is None and repos.registry.active("cid") is None
    assert repos.registry.get_version("ana", active["version"])["run_id"] == "nightly-1"

    # the real handlers ran, through moto's Lambda invoke
    calls = [c["function"] for c in emulator.lambdas.invocations]
    assert calls.count("PlanFunction") == 1 and calls.count("TrainUserFunction") == 3
    assert calls.count("ValidateFunction") == 1 and calls.count("PromoteFunction") == 1
    assert calls.count("SummarizeFunction") == 1
    assert [c for c in emulator.lambdas.invocations if c["error"]] == [
        {"function": "TrainUserFunction", "seconds": pytest.approx(0, abs=60), "error": "Unhandled"}]
    assert lines and "SUCCEEDED" in lines[-1]



def test_one_run_with_a_crash_a_validate_rejection_and_a_promote_race(emulator, monkeypatch):
    """ana trains and is promoted; cid crashes in TrainUser (a corrupt stored item); eve's candidate
    bytes are overwritten in S3 after TrainUser registered them, so Validate's sha256 gate rejects
    it; fay's Promote loses the conditional write of ACTIVE to another writer on both attempts, so
    it is retried once and then recorded as ``conflict`` (calroute.services.training.promote). The run SUCCEEDS."""
    from calroute.services.training import validate as validate_step

    cfg = settings()
    repos = wiring.stores(cfg)
    _seed(repos, "ana", make_events(("home", "work"), 30))
    _seed(repos, "cid", make_events(("home", "work"), 30))
    repos.events.t.table(cfg.events_table).put_item(
        Item={"user_id": "cid", "event_id": "zz-corrupt", "calendar_id": "work", "data": "{not json"})
    _seed(repos, "eve", make_events(("home", "work"), 30))
    _seed(repos, "fay", make_events(("home", "work"), 30))

    # Validate: eve's candidate ONNX is tampered with after TrainUser stored and registered it
    real_validate = validate_step.validate
    tampered: list[str] = []

    def validate_after_tamper(item, repos_, cfg_, **kw):
        if item.get("user_id") == "eve":
            rec = repos_.registry.get_version("eve", item["version"])
            repos_.models.t.s3.put_object(Bucket=repos_.models.bucket, Key=rec["s3_key"], Body=b"not onnx")
            tampered.append(item["version"])
        return real_validate(item, repos_, cfg_, **kw)

    monkeypatch.setattr(validate_step, "validate", validate_after_tamper)

    # Promote: another writer activates its own (stored, registered) model for fay just before each
    # of the run's conditional writes. Its models know home/kids, so they lose the champion/challenger
    # comparison on fay's home/work holdout and the second attempt reaches the write too.
    real_activate = DynamoRegistry.activate
    racers = [(n, build_onnx(("home", "kids"), model_version=version(n), user="fay")) for n in (1, 2)]
    raced: list[str] = []

    def activate_after_a_racer(self, user_id, record, **kw):
        if user_id == "fay" and kw.get("actor", "").startswith("training-run") and racers:
            n, data = racers.pop(0)
            racer = install_model("fay", calendars=("home", "kids"), n=n, data=data, activate=False)
            cur = self.active("fay", consistent=True)
            real_activate(self, "fay", racer, expected_version=cur["version"] if cur else None,
                          actor="other-writer", reason="race")
            raced.append(racer["version"])
        return real_activate(self, user_id, record, **kw)

    monkeypatch.setattr(DynamoRegistry, "activate", activate_after_a_racer)

    t0 = time.perf_counter()
    res = run_training(emulator, {"trigger": "schedule"}, name="nightly-2", timeout=240)
    print(f"\nstate machine run: {time.perf_counter() - t0:.1f}s wall, "
          f"{len(emulator.lambdas.invocations)} lambda invocations")

    assert res["status"] == "SUCCEEDED", (res["error"], res["cause"])
    record = repos.registry.get_run("nightly-2")
    for r in (res["output"], record):
        assert (r["trained"], r["skipped"], r["failed"], r["rejected"], r["conflict"]) == (1, 0, 1, 1, 1), r
        assert r["planned"] == 4 and r["not_needed"] == 0
    assert [(f["user_id"], f["stage"]) for f in record["failures"]] == [("cid", "train")]
    rejections = {x["user_id"]: x for x in record["rejections"]}
    assert set(rejections) == {"eve", "fay"}
    assert rejections["eve"]["stage"] == "validate" and "integrity" in rejections["eve"]["reason"]
    assert rejections["fay"]["stage"] == "conflict" and "concurrently" in rejections["fay"]["reason"]

    reg, store = repos.registry, repos.models
    # no ACTIVE pointer of any user points at a missing (or altered) object
    for user in ("ana", "cid", "eve", "fay"):
        active = reg.active(user, consistent=True)
        if active is not None:
            assert store.get(active["s3_key"], active["sha256"])
    assert reg.active("cid") is None

    ana = reg.active("ana")
    assert ana is not None and reg.get_version("ana", ana["version"])["run_id"] == "nightly-2"

    # the rejected candidate is registered as rejected at validate and is not active
    assert len(tampered) == 1
    eve = reg.get_version("eve", tampered[0])
    assert eve["status"] == "rejected" and eve["rejected_stage"] == "validate"
    assert reg.active("eve") is None

    # the race: the other writer's last activation stands (no lost update), the candidate is "conflict"
    assert len(raced) == 2 and not racers
    fay = reg.active("fay")
    assert fay["version"] == raced[1] and fay["previous_version"] == raced[0]
    fay_candidates = [v for v in reg.versions("fay") if v.get("run_id") == "nightly-2"]
    assert [v["status"] for v in fay_candidates] == ["conflict"]
    assert len([a for a in reg.audit_trail("fay") if a["action"] == "promote_conflict"]) == 2

    calls = [c["function"] for c in emulator.lambdas.invocations]
    assert calls.count("TrainUserFunction") == 4 and calls.count("ValidateFunction") == 3
    assert calls.count("PromoteFunction") == 2 and calls.count("SummarizeFunction") == 1
    assert [c["function"] for c in emulator.lambdas.invocations if c["error"]] == ["TrainUserFunction"]


def test_one_user_api_run_and_a_failing_summarize_fails_the_run(emulator, monkeypatch):
    cfg = settings()
    repos = wiring.stores(cfg)
    res = run_training(emulator, {"trigger": "api", "user_ids": ["nobody"], "run_id": "r-api-1"}, timeout=60)
    assert res["status"] == "SUCCEEDED"
    assert (res["output"]["skipped"], res["output"]["planned"]) == (1, 1)
    assert repos.models.get_json("runs/r-api-1/users.json")[0]["user_id"] == "nobody"

    # Summarize is not caught: a broken run record write is a failed run (an operator must look)
    from calroute.services.training import summarize as summarize_step

    def boom(*a, **k):
        raise RuntimeError("registry unavailable")

    monkeypatch.setattr(summarize_step, "summarize", boom)
    res = run_training(emulator, {"trigger": "api", "user_ids": ["nobody"], "run_id": "r-api-2"}, timeout=60)
    assert res["status"] == "FAILED"


def test_emulator_persists_tables_and_objects(tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    em = start_emulator(0, persist_dir=str(tmp_path), stack_name="calroute-persist-test")
    try:
        repos = wiring.stores(settings())
        repos.users.bump("ana", events=3)
        repos.models.put("ana", "v20260101000000-abcdef", b"bytes")
    finally:
        em.stop()
    assert "AWS_ENDPOINT_URL" not in __import__("os").environ  # the environment is restored
    # the next emulator starts from an empty moto (start_emulator resets it): only the snapshot remains
    em = start_emulator(0, persist_dir=str(tmp_path), stack_name="calroute-persist-test")
    try:
        repos = wiring.stores(settings())
        assert repos.users.profile("ana")["events_total"] == 3
        key = repos.models.key("ana", "v20260101000000-abcdef")
        assert repos.models.get(key) == b"bytes"
    finally:
        em.stop()


def test_emulator_restores_the_whole_environment(monkeypatch):
    """Variables the emulator sets after the in-process Lambdas applied the template's common
    environment (STATE_MACHINE_ARN) are restored first; restoring them last used to bring back the
    template's value after stop() (a later test then started executions of a missing machine)."""
    import os

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("STATE_MACHINE_ARN", raising=False)
    before = dict(os.environ)
    em = start_emulator(0, stack_name="calroute-env-test")
    try:
        assert os.environ["STATE_MACHINE_ARN"] == em.state_machine_arn
        # port 0: the server bound a free port and everything points at that one
        assert em.port != 0 and em.server.port == em.port
        assert os.environ["AWS_ENDPOINT_URL"] == em.endpoint == f"http://127.0.0.1:{em.port}"
        assert os.environ["MOTO_PORT"] == str(em.port)
        assert em.client("dynamodb").list_tables()["TableNames"]
    finally:
        em.stop()
    assert dict(os.environ) == before
