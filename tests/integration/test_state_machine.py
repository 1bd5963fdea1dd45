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

The definition as deployed has EXPRESS child workflows and an ``ItemBatcher``, which moto 5 cannot
parse: the emulator runs it through :mod:`calroute_dev.local.asl_compat` (tested here too), and a
run with two users per child checks the batches the Map made, one user's crash inside a batch next
to the others' success, and the exact run record.
"""

from __future__ import annotations

import json
import time

import pytest

from calroute import wiring
from calroute.adapters.dynamo.registry import DynamoRegistry
from calroute.config import settings
from calroute_dev.local import asl_compat
from calroute_dev.local.moto_server import run_training, start_emulator, state_machine_definition
from calroute_dev.local.lambdas import function_specs
from calroute_dev.local.template import Resolver, load_template
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
        {"function": "TrainUserFunction", "seconds": pytest.approx(0, abs=60),
         "cpu_seconds": pytest.approx(0, abs=60), "error": "Unhandled"}]
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


# ----------------------------------------------------------------------------- the definition's shape


def _deployed_definition(**subs) -> dict:
    resolver = Resolver(load_template(), stack_name="calroute-shape")
    return json.loads(state_machine_definition(resolver, function_specs(resolver), **subs))


def _map_states(states: dict):
    for name, st in states.items():
        if st.get("Type") == "Map":
            yield name, st
            yield from _map_states(st["ItemProcessor"]["States"])


def test_the_map_runs_express_children_over_batches_and_tolerates_every_failure():
    d = _deployed_definition(users_per_batch="7")
    m = d["States"]["TrainUsers"]
    assert m["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"}
    assert m["ItemBatcher"] == {"MaxItemsPerBatch": 7}
    assert m["ToleratedFailurePercentage"] == 100 and m["ResultPath"] == "$.results"
    assert m["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
    # the results go to S3, never inline into the execution's 256 KiB state: the Map's output is only
    # the manifest's reference, under the run's own prefix in the model bucket (Plan's results_prefix)
    bucket = m["ItemReader"]["Parameters"]["Bucket"]
    assert m["ResultWriter"] == {"Resource": "arn:aws:states:::s3:putObject",
                                 "Parameters": {"Bucket": bucket, "Prefix.$": "$.results_prefix"}}
    from calroute.services.training.common import results_prefix

    assert results_prefix("r1") == "runs/r1/results"
    # a child: its batch's users one after the other (Lambda concurrency = MaxConcurrency)
    child = m["ItemProcessor"]
    batch = child["States"][child["StartAt"]]
    assert batch["Type"] == "Map" and batch["ItemsPath"] == "$.Items" and batch["MaxConcurrency"] == 1
    assert batch["ItemProcessor"]["ProcessorConfig"] == {"Mode": "INLINE"}
    per_user = batch["ItemProcessor"]["States"]
    tasks = {k: v for k, v in per_user.items() if v["Type"] == "Task"}
    assert set(tasks) == {"TrainUser", "Validate", "Promote"}
    for name, task in tasks.items():
        # every crash of a user's step is that user's result (a Pass naming the user), never the batch's
        assert [c["ErrorEquals"] for c in task["Catch"]] == [["States.ALL"]], name
        target = per_user[task["Catch"][0]["Next"]]
        assert target["Type"] == "Pass" and target["Parameters"]["status"] == "failed"
        assert target["Parameters"]["user_id.$"] == "$.user_id"
    # one user alone can never hold an Express child (≤ 300 s) to its limit
    assert sum(t["TimeoutSeconds"] for t in tasks.values()) <= 150
    # the batch size is a bounded parameter (docs/training.md sizes it against the 5-minute limit)
    params = load_template()["Parameters"]
    assert params["UsersPerBatch"]["Default"] == 10 and params["UsersPerBatch"]["MaxValue"] <= 25
    # only the Distributed Map is batched
    assert [n for n, st in _map_states(d["States"]) if "ItemBatcher" in st] == ["TrainUsers"]


def test_asl_compat_rewrites_what_moto_cannot_parse_and_refuses_what_it_would_not_emulate():
    text = json.dumps(_deployed_definition(users_per_batch="3"))
    moto_text, batchers, writers = asl_compat.for_moto(text)
    assert batchers == {"TrainUsers": 3}
    assert writers == {"TrainUsers": {"Bucket": json.loads(text)["States"]["TrainUsers"]["ResultWriter"]
                                      ["Parameters"]["Bucket"], "Prefix.$": "$.results_prefix"}}
    moto_def = json.loads(moto_text)
    m = moto_def["States"]["TrainUsers"]
    assert "ItemBatcher" not in m and m["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "STANDARD"
    assert "ResultWriter" not in m
    # the rest is untouched
    original = json.loads(text)
    original["States"]["TrainUsers"].pop("ItemBatcher")
    original["States"]["TrainUsers"].pop("ResultWriter")
    original["States"]["TrainUsers"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = "STANDARD"
    assert moto_def == original
    # moto parses the rewrite
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    AmazonStateLanguageParser.parse(moto_text)
    with pytest.raises(Exception):
        AmazonStateLanguageParser.parse(text)  # ... and not the original (why the rewrite exists)

    # a batcher belongs to its state machine: another machine's Map of the same name is not batched
    from types import SimpleNamespace

    def eval_input(machine):
        arn = f"arn:aws:states:us-east-1:123456789012:execution:{machine}:run-1"
        return SimpleNamespace(state_name="TrainUsers", map_run_record=SimpleNamespace(execution_arn=arn))

    assert asl_compat._state_machine_of(eval_input("m1")) == "arn:aws:states:us-east-1:123456789012:stateMachine:m1"
    saved = dict(asl_compat._BATCHERS)
    try:
        asl_compat.register("arn:aws:states:us-east-1:123456789012:stateMachine:m1", {"TrainUsers": 3})
        asl_compat.register("arn:aws:states:us-east-1:123456789012:stateMachine:m2", {})
        keys = {(asl_compat._state_machine_of(eval_input(m)), "TrainUsers") for m in ("m1", "m2")}
        assert [asl_compat._BATCHERS.get(k) for k in sorted(keys)] == [3, None]
    finally:
        asl_compat._BATCHERS.clear()
        asl_compat._BATCHERS.update(saved)

    for bad in ({"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "b", "Prefix.$": "$[0]"}},
                {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": "b", "Prefix": "p"},
                 "WriterConfig": {"Transformation": "FLATTEN"}},
                {"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket.$": "$.b", "Prefix": "p"}}):
        d = json.loads(text)
        d["States"]["TrainUsers"]["ResultWriter"] = bad
        with pytest.raises(asl_compat.UnsupportedAsl):
            asl_compat.for_moto(json.dumps(d))
    from datetime import datetime, timezone

    t = datetime(2026, 6, 1, tzinfo=timezone.utc)
    map_run = "arn:aws:states:us-east-1:123456789012:mapRun:m1/TrainUsers:4f2a"
    bucket, bodies, result = asl_compat.result_files(
        {"Bucket": "b", "Prefix.$": "$.results_prefix"}, {"results_prefix": "runs/r1/results"},
        map_run_arn=map_run, state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:m1",
        child_inputs=[{"Items": [1]}, {"Items": [2]}], child_outputs=[[{"ok": 1}], None], started=t, stopped=t)
    assert bucket == "b" and list(bodies) == ["runs/r1/results/4f2a/FAILED_0.json",
                                              "runs/r1/results/4f2a/SUCCEEDED_0.json",
                                              "runs/r1/results/4f2a/manifest.json"]
    assert result == {"MapRunArn": map_run,
                      "ResultWriterDetails": {"Bucket": "b", "Key": "runs/r1/results/4f2a/manifest.json"}}
    manifest = json.loads(bodies["runs/r1/results/4f2a/manifest.json"])
    assert manifest == {"DestinationBucket": "b", "MapRunArn": map_run, "ResultFiles": {
        "FAILED": [{"Key": "runs/r1/results/4f2a/FAILED_0.json", "Size": len(bodies["runs/r1/results/4f2a/FAILED_0.json"])}],
        "PENDING": [],
        "SUCCEEDED": [{"Key": "runs/r1/results/4f2a/SUCCEEDED_0.json",
                       "Size": len(bodies["runs/r1/results/4f2a/SUCCEEDED_0.json"])}]}}
    [ok] = json.loads(bodies["runs/r1/results/4f2a/SUCCEEDED_0.json"])
    [failed] = json.loads(bodies["runs/r1/results/4f2a/FAILED_0.json"])
    assert (ok["Status"], json.loads(ok["Input"]), json.loads(ok["Output"])) == ("SUCCEEDED", {"Items": [1]}, [{"ok": 1}])
    assert failed["Status"] == "FAILED" and "Output" not in failed and failed["Error"] and failed["Cause"]
    assert json.loads(failed["Input"]) == {"Items": [2]}

    # batches: consecutive, in order, at most N, the documented {"Items": [...]} shape
    assert asl_compat.batches([1, 2, 3, 4, 5], 2) == [{"Items": [1, 2]}, {"Items": [3, 4]}, {"Items": [5]}]
    assert asl_compat.batches([], 2) == []
    for bad in ({"MaxItemsPerBatch": 2, "BatchInput": {"a": 1}}, {"MaxInputBytesPerBatch": 10},
                {"MaxItemsPerBatch": 0}):
        d = json.loads(text)
        d["States"]["TrainUsers"]["ItemBatcher"] = bad
        with pytest.raises(asl_compat.UnsupportedAsl):
            asl_compat.for_moto(json.dumps(d))


# ----------------------------------------------------------------------------- a batched run


@pytest.fixture
def batched_emulator(monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    em = start_emulator(0, stack_name="calroute-sfn-batch", max_concurrency=1, users_per_batch=2)
    try:
        yield em
    finally:
        em.stop()


def test_a_batched_run_keeps_one_users_crash_from_its_batch_and_the_record_exact(batched_emulator):
    """Five planned users, two per child: [ana, cid] [eve, gus] [hal]. cid crashes (a corrupt stored
    event) inside the first batch, next to ana who is trained and promoted; gus cannot train (one
    calendar). Every user has exactly one result, in its batch, and the run record counts them."""
    em = batched_emulator
    cfg = settings()
    repos = wiring.stores(cfg)
    _seed(repos, "ana", make_events(("home", "work"), 30))
    _seed(repos, "cid", make_events(("home", "work"), 30))
    repos.events.t.table(cfg.events_table).put_item(
        Item={"user_id": "cid", "event_id": "zz-corrupt", "calendar_id": "work", "data": "{not json"})
    _seed(repos, "eve", make_events(("home", "kids"), 30))
    _seed(repos, "gus", make_events(("work",), 60))
    _seed(repos, "hal", make_events(("home", "work"), 30))

    res = run_training(em, {"trigger": "schedule"}, name="nightly-batched", timeout=300)
    assert res["status"] == "SUCCEEDED", (res["error"], res["cause"])

    # the Map made three children of at most two users, in the manifest's order
    planned = [u["user_id"] for u in repos.models.get_json("runs/nightly-batched/users.json")]
    assert sorted(planned) == ["ana", "cid", "eve", "gus", "hal"]
    history = em.client("stepfunctions").get_execution_history(executionArn=res["execution_arn"],
                                                               maxResults=1000)["events"]
    exits = [json.loads(e["stateExitedEventDetails"]["output"]) for e in history
             if (e.get("stateExitedEventDetails") or {}).get("name") == "TrainUsers"]
    assert len(exits) == 1
    # the Map's output is only the ResultWriter's reference (AWS's documented shape), not the results
    ref = exits[0]["results"]
    assert set(ref) == {"MapRunArn", "ResultWriterDetails"}
    details = ref["ResultWriterDetails"]
    run_uuid = ref["MapRunArn"].rsplit(":", 1)[-1]
    assert details == {"Bucket": repos.models.bucket,
                       "Key": f"runs/nightly-batched/results/{run_uuid}/manifest.json"}
    manifest = repos.models.get_json(details["Key"])
    assert manifest["DestinationBucket"] == repos.models.bucket and manifest["MapRunArn"] == ref["MapRunArn"]
    assert manifest["ResultFiles"]["FAILED"] == [] and manifest["ResultFiles"]["PENDING"] == []
    [succeeded] = manifest["ResultFiles"]["SUCCEEDED"]
    assert succeeded["Key"] == f"runs/nightly-batched/results/{run_uuid}/SUCCEEDED_0.json"
    body = repos.models.t.s3.get_object(Bucket=repos.models.bucket, Key=succeeded["Key"])["Body"].read()
    assert succeeded["Size"] == len(body)
    entries = json.loads(body)
    assert {e["Status"] for e in entries} == {"SUCCEEDED"}
    # one entry per child, its Input the batch and its Output the batch's results, both JSON strings
    assert [[u["user_id"] for u in json.loads(e["Input"])["Items"]] for e in entries] == \
        [planned[0:2], planned[2:4], planned[4:]]
    children = [json.loads(e["Output"]) for e in entries]
    assert [[r["user_id"] for r in child] for child in children] == [planned[0:2], planned[2:4], planned[4:]]
    by_user = {r["user_id"]: r for child in children for r in child}
    assert by_user["cid"]["status"] == "failed" and by_user["cid"]["stage"] == "train"
    assert by_user["gus"]["status"] == "skipped"
    assert {by_user[u]["status"] for u in ("ana", "eve", "hal")} == {"promoted"}

    record = repos.registry.get_run("nightly-batched")
    for r in (res["output"], record):
        assert (r["planned"], r["trained"], r["skipped"], r["failed"], r["rejected"], r["conflict"]) == \
            (5, 3, 1, 1, 0, 0), r
        assert (r["recovered"], r["lost_batches"]) == (0, 0)
    assert [(f["user_id"], f["stage"]) for f in record["failures"]] == [("cid", "train")]
    for u in ("ana", "eve", "hal"):
        active = repos.registry.active(u)
        assert active is not None and repos.registry.get_version(u, active["version"])["run_id"] == "nightly-batched"
    assert repos.registry.active("cid") is None and repos.registry.active("gus") is None

    calls = [c["function"] for c in em.lambdas.invocations]
    assert calls.count("TrainUserFunction") == 5 and calls.count("ValidateFunction") == 3
    assert calls.count("PromoteFunction") == 3 and calls.count("SummarizeFunction") == 1
