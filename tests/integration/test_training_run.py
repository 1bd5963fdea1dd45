"""The training-run states (calroute.services.training) against moto with resources from
template.yaml: plan, train_user, validate (parity gate), promote (champion/challenger, conditional
write under a race), summarize, and S3 failures."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import types
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from calroute import ids, wiring
from calroute.adapters.dynamo.registry import DynamoRegistry
from calroute.adapters.s3_models import S3ModelBlobs
from calroute.config import settings
from calroute.errors import InvalidInput
from calroute.runtime import OnnxModel
from calroute.services.training.plan import plan
from calroute.services.training.promote import promote, unseen_by
from calroute.services.training.summarize import summarize
from calroute.services.training.train_user import train_user
from calroute.services.training.validate import validate
from support.models import FakeTrainer, build_onnx, install_model, make_events
from support.models import version as model_version

CALS = ("home", "kids", "work")


@pytest.fixture
def repos(aws):
    return wiring.stores(settings())


def seed(repos, user, calendars=CALS, per_calendar=25):
    events = make_events(calendars, per_calendar)
    repos.events.put_events(user, events)
    repos.users.bump(user, events=len(events))
    return events


def run_user(repos, user, trainer, run_id="r-test"):
    cfg = settings()
    out = train_user({"user_id": user, "run_id": run_id, "reason": "test"}, repos, cfg, trainer=trainer)
    if out["status"] != "candidate":
        return out
    out = validate(out, repos, cfg)
    if out["status"] != "valid":
        return out
    return promote(out, repos, cfg)


# ----------------------------------------------------------------------------- plan


def test_plan_scheduled_uses_the_policy_and_writes_users_json(repos):
    seed(repos, "alice")
    seed(repos, "bob", calendars=("work",), per_calendar=5)  # 5 events: cannot train yet
    seed(repos, "carol")
    install_model("carol", calendars=CALS)  # trained just now: up to date
    repos.registry.set_status("carol", model_version(1), "active", "",
                                 events_total_at_training=75, corrections_total_at_training=0,
                                 trained_at=datetime.now(timezone.utc).isoformat())
    out = plan({"trigger": "schedule"}, repos, settings(), execution_name="exec-1")
    assert out["run_id"] == "exec-1" and out["key"] == "runs/exec-1/users.json"
    items = repos.models.get_json(out["key"])
    assert items == [{"user_id": "alice", "run_id": "exec-1", "reason": "never trained"}]
    assert out["count"] == 1 and out["skipped_total"] == 2
    reasons = {s["user_id"]: s["reason"] for s in out["skipped"]}
    assert "cannot train yet" in reasons["bob"] and reasons["carol"] == "up to date"

    later = datetime.now(timezone.utc) + timedelta(days=31)
    out = plan({}, repos, settings(), now=later)
    assert {i["user_id"] for i in repos.models.get_json(out["key"])} == {"alice", "carol"}
    assert out["run_id"].startswith("r") and out["trigger"] == "schedule"


def test_plan_explicit_users_always_go_through_s3(repos):
    out = plan({"trigger": "api", "user_ids": ["dave", "dave", "erin"], "run_id": "r-api-1"}, repos, settings())
    assert repos.models.get_json("runs/r-api-1/users.json") == [
        {"user_id": "dave", "run_id": "r-api-1", "reason": "requested (api)"},
        {"user_id": "erin", "run_id": "r-api-1", "reason": "requested (api)"}]
    assert out["count"] == 2
    with pytest.raises(InvalidInput):
        plan({"user_ids": ["../etc"]}, repos, settings())
    with pytest.raises(InvalidInput):
        plan({"run_id": "a/b"}, repos, settings())


# ----------------------------------------------------------------------------- train → validate → promote


def test_happy_path_with_the_real_trainer(repos):
    seed(repos, "alice")
    out = train_user({"user_id": "alice", "run_id": "r1"}, repos, settings())
    assert out["status"] == "candidate" and ids.VERSION_RE.fullmatch(out["version"])
    rec = repos.registry.get_version("alice", out["version"])
    assert rec["status"] == "candidate" and rec["events_total_at_training"] == 75
    assert rec["labels"] == list(CALS) and rec["holdout_event_ids"] and rec["profiles"]
    # the stored bytes and fixtures are what the registry says
    data = repos.models.get(rec["s3_key"], rec["sha256"])
    with np.load(io.BytesIO(repos.models.get(rec["parity_key"], rec["parity_sha256"])), allow_pickle=False) as z:
        assert z["X"].shape[0] == z["sk_proba"].shape[0] > 0
    assert OnnxModel.from_bytes(data).labels == list(CALS)

    out = validate(out, repos, settings())
    assert out["status"] == "valid", out
    out = promote(out, repos, settings())
    assert out["status"] == "promoted" and out["previous_version"] == ""
    active = repos.registry.active("alice")
    assert active["version"] == rec["version"]
    # a Lambda retry of Promote after success is harmless
    assert promote({**out, "status": "valid"}, repos, settings())["status"] == "promoted"


def test_gates_skip_a_user_with_too_few_events(repos):
    seed(repos, "bob", calendars=("work", "home"), per_calendar=4)
    out = train_user({"user_id": "bob", "run_id": "r1"}, repos, settings(), trainer=FakeTrainer())
    assert out["status"] == "skipped" and "needs at least 10" in out["reason"]
    assert repos.registry.versions("bob") == []


def test_parity_gate_rejects_a_broken_candidate(repos):
    seed(repos, "alice")
    out = train_user({"user_id": "alice", "run_id": "r1"}, repos, settings(),
                        trainer=FakeTrainer(perturb=0.01))  # sklearn "said" other probabilities
    out = validate(out, repos, settings())
    assert out["status"] == "rejected" and "parity failed" in out["reason"]
    rec = repos.registry.get_version("alice", out["version"])
    assert rec["status"] == "rejected" and rec["rejected_stage"] == "validate"
    assert rec["parity"]["max_abs_diff"] > 1e-4
    assert repos.registry.active("alice") is None


def test_validate_rejects_tampered_model_bytes(repos):
    seed(repos, "alice")
    out = train_user({"user_id": "alice", "run_id": "r1"}, repos, settings(), trainer=FakeTrainer())
    rec = repos.registry.get_version("alice", out["version"])
    repos.models.t.s3.put_object(Bucket=repos.models.bucket, Key=rec["s3_key"], Body=b"not onnx")
    out = validate(out, repos, settings())
    assert out["status"] == "rejected" and "sha256" in out["reason"]


def test_champion_challenger_rejects_a_worse_model(repos):
    seed(repos, "alice")
    champion = install_model("alice", calendars=CALS)
    out = run_user(repos, "alice", FakeTrainer(holdout_accuracy=0.40))
    assert out["status"] == "rejected" and out["stage"] == "champion"
    assert "worse than the active model" in out["reason"]
    rec = repos.registry.get_version("alice", out["version"])
    assert rec["status"] == "rejected" and rec["challenge"]["champion_accuracy"] > 0.9
    assert repos.registry.active("alice")["version"] == champion["version"]

    out = run_user(repos, "alice", FakeTrainer(holdout_accuracy=1.0))
    assert out["status"] == "promoted", out
    assert repos.registry.active("alice")["previous_version"] == champion["version"]


def _champion(repos, user, *, trained_at: str, holdout_accuracy=None):
    """An ACTIVE model that classifies CALS well, with the training time and metrics TrainUser records."""
    rec = install_model(user, calendars=CALS)
    repos.registry.set_status(user, rec["version"], "active", "test", trained_at=trained_at,
                                 metrics={"holdout_accuracy": holdout_accuracy})
    return rec


def test_champion_is_not_scored_on_events_it_trained_on(repos):
    """Every holdout event existed when the champion was trained: scoring it on them would flatter it
    (~0.9+ here, as in the test above) and reject a good candidate. With fewer than CHAMPION_MIN_ROWS
    newer events, the two recorded out-of-sample holdout accuracies are compared instead."""
    seed(repos, "alice")
    later = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat()
    champion = _champion(repos, "alice", trained_at=later, holdout_accuracy=0.80)
    out = run_user(repos, "alice", FakeTrainer(holdout_accuracy=0.85))
    assert out["status"] == "promoted", out
    assert repos.registry.active("alice")["previous_version"] == champion["version"]
    assert "recorded out-of-sample" in out["reason"]

    seed(repos, "bob")
    _champion(repos, "bob", trained_at=later, holdout_accuracy=0.97)
    out = run_user(repos, "bob", FakeTrainer(holdout_accuracy=0.90))
    assert out["status"] == "rejected" and out["stage"] == "champion", out
    rec = repos.registry.get_version("bob", out["version"])
    assert rec["challenge"]["basis"] == "recorded out-of-sample holdout accuracies"
    assert rec["challenge"]["champion_rows"] == 0 and rec["challenge"]["champion_accuracy"] == 0.97


def test_champion_is_scored_on_the_holdout_events_newer_than_it(repos):
    seed(repos, "alice")
    earlier = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
    _champion(repos, "alice", trained_at=earlier, holdout_accuracy=0.5)  # its record does not matter here
    out = run_user(repos, "alice", FakeTrainer(holdout_accuracy=0.40))
    assert out["status"] == "rejected" and out["stage"] == "champion", out
    challenge = repos.registry.get_version("alice", out["version"])["challenge"]
    assert challenge["basis"] == "holdout events newer than the champion"
    assert challenge["champion_rows"] == challenge["holdout_rows"] >= settings().champion_min_rows
    assert challenge["champion_accuracy"] > 0.9


def test_unseen_by_compares_times_not_strings():
    ev = types.SimpleNamespace
    champ = {"trained_at": "2026-06-01T12:00:00+02:00"}  # 10:00 UTC
    pairs = [(ev(event_id="a"), "2026-06-01T10:00:00.500+00:00"),  # after, though "1" < "2" as text
             (ev(event_id="b"), "2026-06-01T09:59:59+00:00"),
             (ev(event_id="c"), ""), (ev(event_id="d"), "garbage"),
             (ev(event_id="e"), "2026-06-02T00:00:00")]  # naive: UTC
    assert [e.event_id for e in unseen_by(champ, pairs)] == ["a", "e"]
    assert unseen_by({}, pairs) is None and unseen_by(None, pairs) is None


def _validated(repos, user, trainer):
    cfg = settings()
    out = train_user({"user_id": user, "run_id": "r1"}, repos, cfg, trainer=trainer)
    return validate(out, repos, cfg)


def test_racing_promotions_one_wins_no_lost_update(repos):
    seed(repos, "alice")
    a, b = _validated(repos, "alice", FakeTrainer()), _validated(repos, "alice", FakeTrainer())
    barrier = threading.Barrier(2)
    first_call: set = set()

    class RacingRegistry(DynamoRegistry):
        def activate(self, user_id, record, **kw):
            me = threading.get_ident()
            if me not in first_call:  # both threads read "no active model", then write together
                first_call.add(me)
                barrier.wait(timeout=10)
            return super().activate(user_id, record, **kw)

    racing = dataclasses.replace(repos, registry=RacingRegistry(settings().registry_table))
    results = {}

    def go(item):
        results[item["version"]] = promote(item, racing, settings())

    threads = [threading.Thread(target=go, args=(x,)) for x in (a, b)]
    [t.start() for t in threads]
    [t.join(timeout=30) for t in threads]
    assert {r["status"] for r in results.values()} == {"promoted"}  # the loser re-read and won on retry
    audit = repos.registry.audit_trail("alice")
    conflicts = [x for x in audit if x["action"] == "promote_conflict"]
    promotes = [x for x in audit if x["action"] == "promote"]
    assert len(conflicts) == 1 and len(promotes) == 2
    # no lost update: the second promotion replaced the first one, knowingly
    active = repos.registry.active("alice")
    loser = conflicts[0]["version"]
    assert active["version"] == loser and active["previous_version"] in (a["version"], b["version"])
    assert active["previous_version"] != loser
    statuses = sorted(v["status"] for v in repos.registry.versions("alice"))
    assert statuses == ["active", "archived"]


def test_a_promotion_that_keeps_losing_the_race_is_a_conflict(repos):
    seed(repos, "alice")
    mine = _validated(repos, "alice", FakeTrainer())
    racers = [install_model("alice", calendars=CALS, n=i, activate=False) for i in (1, 2)]

    class AlwaysRaced(DynamoRegistry):
        """Another run activates its model just before each of our conditional writes."""

        def activate(self, user_id, record, **kw):
            if record["version"] == mine["version"]:
                racer = racers.pop(0)
                cur = super().active(user_id, consistent=True)
                super().activate(user_id, racer, expected_version=cur["version"] if cur else None,
                                 actor="other-run", reason="race")
            return super().activate(user_id, record, **kw)

    out = promote(mine, dataclasses.replace(repos, registry=AlwaysRaced(settings().registry_table)), settings())
    assert out["status"] == "conflict"
    reg = repos.registry
    assert reg.get_version("alice", mine["version"])["status"] == "conflict"
    active = reg.active("alice")
    assert active["version"] != mine["version"]  # the racer's write was not overwritten
    assert len([x for x in reg.audit_trail("alice") if x["action"] == "promote_conflict"]) == 2


# ----------------------------------------------------------------------------- S3 failures


def test_s3_failure_mid_training_leaves_no_record_and_no_orphan(repos, monkeypatch):
    seed(repos, "alice")
    champion = install_model("alice", calendars=CALS)
    real_put = S3ModelBlobs.put

    def failing_put(self, user_id, version, data, suffix=".onnx"):
        if suffix == ".parity.npz":
            raise OSError("S3 is down")
        return real_put(self, user_id, version, data, suffix)

    monkeypatch.setattr(S3ModelBlobs, "put", failing_put)
    with pytest.raises(OSError):
        train_user({"user_id": "alice", "run_id": "r1"}, repos, settings(), trainer=FakeTrainer())
    assert [v["version"] for v in repos.registry.versions("alice")] == [champion["version"]]
    keys = [o["Key"] for o in repos.models.t.s3.list_objects_v2(Bucket=repos.models.bucket,
                                                                    Prefix="models/alice/").get("Contents", [])]
    assert keys == [champion["s3_key"]]
    assert repos.registry.active("alice")["version"] == champion["version"]


def test_promote_never_points_active_at_a_missing_object(repos):
    seed(repos, "alice")
    out = _validated(repos, "alice", FakeTrainer())
    rec = repos.registry.get_version("alice", out["version"])
    repos.models.delete(rec["s3_key"])  # lost after validation
    out = promote(out, repos, settings())
    assert out["status"] == "rejected" and "missing" in out["reason"]
    assert repos.registry.active("alice") is None


# ----------------------------------------------------------------------------- summarize


def test_summarize_counts_and_records_the_run(repos):
    run = {"run_id": "r-sum", "count": 5, "skipped_total": 7, "trigger": "schedule",
           "started_at": "2026-06-01T00:00:00+00:00",
           "results": [
               {"user_id": "a", "status": "promoted", "duration_ms": 100},
               {"user_id": "b", "status": "promoted", "duration_ms": 300},
               {"user_id": "c", "status": "skipped", "reason": "few", "duration_ms": 5},
               {"user_id": "d", "status": "rejected", "stage": "champion", "reason": "worse", "duration_ms": 200},
               {"user_id": "e", "status": "failed", "stage": "train", "error": "ValueError", "cause": "{}"},
               {"user_id": "f", "status": "conflict", "reason": "raced", "duration_ms": 50},
           ]}
    recorded = []

    class Metrics:
        def add_metric(self, name, unit, value):
            recorded.append((name, value))

    now = datetime(2026, 6, 1, 0, 2, tzinfo=timezone.utc)
    out = summarize(run, repos, settings(), now=now, metrics=Metrics())
    stored = repos.registry.get_run("r-sum")
    for rec in (out, stored):
        assert (rec["trained"], rec["skipped"], rec["rejected"], rec["failed"], rec["conflict"]) == (2, 1, 1, 1, 1)
        assert rec["not_needed"] == 7 and rec["seconds"] == 120.0
        assert rec["user_ms_p50"] == 100 and rec["user_ms_max"] == 300
    assert stored["failures"] == [{"user_id": "e", "stage": "train", "error": "ValueError"}]
    assert ("TrainingUsersTrained", 2) in recorded and ("TrainingUsersFailed", 1) in recorded
    json.dumps(out)


def test_the_record_is_dated_by_the_runs_clock(repos):
    """``trained_at`` (what the max-age rule and the champion's holdout cut read) is the run's
    ``now``, not the wall clock: a replay or a backfill with its own clock gets its own dates."""
    from calroute.retrain import trained_at

    seed(repos, "alice")
    at = datetime(2021, 3, 4, 3, 0, tzinfo=timezone.utc)
    out = train_user({"user_id": "alice", "run_id": "r1"}, repos, settings(), now=at)
    rec = repos.registry.get_version("alice", out["version"])
    assert trained_at(rec) == at
    import onnxruntime as ort

    sess = ort.InferenceSession(repos.models.get(rec["s3_key"], rec["sha256"]), providers=["CPUExecutionProvider"])
    assert sess.get_modelmeta().custom_metadata_map["calroute.trained_at"] == at.isoformat()
