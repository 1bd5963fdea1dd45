"""TrainUser, rule by rule (calroute.services.training.train_user; the mutation target
``training.train_user``): the gates count the user's own labels, a stop is recorded, the candidate's
objects are stored before its registry record (which says exactly what it rests on), and a failed
registration leaves no object behind — with a stand-in trainer and the in-memory stores."""

from __future__ import annotations

import io
from datetime import datetime, timezone
from types import SimpleNamespace

import numpy as np
import pytest

from calroute.config import Settings
from calroute.schema import parse_event
from calroute.services.training import train_user as tu
from support.fakes import fake_stores

CFG = Settings()
DROP = object()  # a model attribute the stand-in leaves out
NOW = datetime(2026, 3, 5, 3, 0, tzinfo=timezone.utc)


def clock(*ticks):
    it = iter(ticks)
    return lambda: next(it)


class Trainer:
    """The calroute.training surface TrainUser uses; records what it was given."""

    def __init__(self, gates=(True, ""), **model):
        self.gates, self.model, self.seen = gates, model, {}

    class TrainConfig:
        @staticmethod
        def from_settings(cfg):
            return SimpleNamespace(cfg=cfg)

    def check_gates(self, events, tcfg):
        self.seen["gated"] = [e.event_id for e in events]
        self.seen["tcfg"] = tcfg
        return self.gates

    def train_user_model(self, events, tcfg, *, user_id, version, raise_on_parity_failure=True, provenance=None,
                         now=None):
        self.seen.update(events=[e.event_id for e in events], user_id=user_id, version=version,
                         raise_on_parity_failure=raise_on_parity_failure, provenance=provenance, now=now)
        base = dict(onnx_bytes=b"onnx!", parity_X=[[1.0, 2.0]], parity_proba=[[0.25, 0.75]],
                    metrics={"holdout_accuracy": 0.9, "oof_rows": 50}, parity={"max_abs": 1e-7, "error": "x",
                                                                                  "bad": float("nan")},
                    threshold=0.625, labels=("home", "work"), profiles={"p": 1}, holdout_event_ids=["e2"],
                    trained_at="2026-03-05T03:00:01+00:00", family="logreg")
        return SimpleNamespace(**{k: v for k, v in {**base, **self.model}.items() if v is not DROP})


def seeded(provenances=("user", "llm", "confirmed")):
    stores = fake_stores()
    for i, p in enumerate(provenances):
        e = parse_event({"event_id": f"e{i}", "summary": "s", "start": f"2026-03-0{i + 1}T09:00:00Z",
                         "calendar_id": "work"})
        if p == "user":
            stores.events.put_events("alice", [e])
        else:
            stores.events.remember("alice", [(e, p, {})])
    stores.users.bump("alice", events=7, corrections=2, misses=1, labels=4)
    return stores


def test_a_gate_stop_is_recorded_with_the_profile_read_before_the_events():
    stores = seeded()
    t = Trainer(gates=(False, "too few labels"))
    out = tu.train_user({"user_id": "alice", "run_id": "R1"}, stores, CFG, now=NOW, clock=clock(0.0, 0.004), trainer=t)
    assert out == {"user_id": "alice", "run_id": "R1", "status": "skipped", "reason": "too few labels",
                   "gate_skip_recorded": True, "duration_ms": 4}
    assert t.seen["gated"] == ["e0", "e2"]  # the user's own labels only (user, confirmed)
    memo = stores.registry.gate_skip("alice")
    assert (memo["reason"], memo["at"], memo["labels_total"]) == ("too few labels", NOW.isoformat(), 4)
    # a memo that cannot be written does not fail the run
    stores.registry.put_gate_skip = lambda *a: (_ for _ in ()).throw(RuntimeError("down"))
    out = tu.train_user({"user_id": "alice"}, stores, CFG, now=NOW, clock=clock(0.0, 0.0), trainer=t)
    assert (out["status"], out["gate_skip_recorded"]) == ("skipped", False)


def test_the_candidate_record_says_exactly_what_it_rests_on():
    stores = seeded()
    t = Trainer()
    out = tu.train_user({"user_id": "alice", "run_id": "R1"}, stores, CFG, now=NOW, clock=clock(0.0, 0.012), trainer=t)
    version = out["version"]
    assert version.startswith("v20260305030000-")
    assert out == {"user_id": "alice", "run_id": "R1", "version": version, "status": "candidate",
                   "holdout_accuracy": 0.9, "n_events": 3, "duration_ms": 12}
    assert (t.seen["user_id"], t.seen["version"], t.seen["now"], t.seen["raise_on_parity_failure"]) == (
        "alice", version, NOW, False)
    assert t.seen["events"] == ["e0", "e1", "e2"] and t.seen["provenance"] == ["user", "llm", "confirmed"]
    rec = stores.registry.get_version("alice", version)
    key, pkey = f"models/alice/{version}.onnx", f"models/alice/{version}.parity.npz"
    assert stores.models.objects[key] == b"onnx!"
    parity = np.load(io.BytesIO(stores.models.objects[pkey]))
    assert parity["X"].dtype == np.float32 and parity["X"].tolist() == [[1.0, 2.0]]
    assert parity["sk_proba"].dtype == np.float32 and parity["sk_proba"].tolist() == [[0.25, 0.75]]
    import hashlib
    want = {
        "status": "candidate", "run_id": "R1", "metrics": {"holdout_accuracy": 0.9, "oof_rows": 50},
        "s3_key": key, "sha256": hashlib.sha256(b"onnx!").hexdigest(), "size_bytes": 5,
        "parity_key": pkey, "parity_sha256": hashlib.sha256(stores.models.objects[pkey]).hexdigest(),
        "train_parity": {"max_abs": 1e-7, "bad": "nan"}, "feature_spec": 2, "threshold": 0.625,
        "labels": ["home", "work"], "profiles": {"p": 1}, "holdout_event_ids": ["e2"], "holdout_total": 1,
        "events_total_at_training": 7, "corrections_total_at_training": 2, "confident_misses_total_at_training": 1,
        "n_events": 3, "trained_at": "2026-03-05T03:00:01+00:00", "family": "logreg"}
    assert {k: rec[k] for k in want} == want
    assert set(rec) == set(want) | {"drift_reference", "user_id", "sk", "version", "created_at"}
    assert t.seen["tcfg"].cfg is CFG
    assert rec["drift_reference"]


def test_without_a_profile_or_a_trainer_clock_the_record_falls_back():
    stores = fake_stores()
    stores.events.put_events("alice", [parse_event({"event_id": "e0", "summary": "s", "start": "2026-03-01T09:00:00Z",
                                                     "calendar_id": "work"})])
    t = Trainer(trained_at=DROP, family=DROP)
    out = tu.train_user({"user_id": "alice"}, stores, CFG, now=NOW, clock=clock(0.0, 0.0), trainer=t)
    rec = stores.registry.get_version("alice", out["version"])
    assert (rec["run_id"], rec["trained_at"], rec["events_total_at_training"], rec["corrections_total_at_training"],
            rec["confident_misses_total_at_training"]) == ("", NOW.isoformat(), 1, 0, 0)
    assert rec["family"] == ""
    t = Trainer(trained_at="")  # recorded but empty: this run's clock
    out = tu.train_user({"user_id": "alice"}, stores, CFG, now=NOW, clock=clock(0.0, 0.0), trainer=t)
    assert stores.registry.get_version("alice", out["version"])["trained_at"] == NOW.isoformat()
    with pytest.raises(Exception) as err:
        tu.train_user({"user_id": "../x"}, stores, CFG, now=NOW, clock=clock(0.0, 0.0), trainer=t)
    assert err.value.field == "user_id"


def test_a_trainer_without_the_newer_arguments_still_trains():
    class Old(Trainer):
        def train_user_model(self, events, tcfg, *, user_id, version):
            self.seen["called"] = True
            return Trainer.train_user_model(self, events, tcfg, user_id=user_id, version=version)

    t = Old()
    assert tu.train_user({"user_id": "alice"}, seeded(), CFG, now=NOW, clock=clock(0.0, 0.0), trainer=t)["status"] == "candidate"
    assert t.seen["called"] and t.seen["provenance"] is None and t.seen["now"] is None
    assert t.seen["raise_on_parity_failure"] is True


def test_a_failed_registration_removes_both_objects_and_fails():
    stores = seeded()
    stores.registry.put_version = lambda *a: (_ for _ in ()).throw(RuntimeError("registry down"))
    with pytest.raises(RuntimeError, match="registry down"):
        tu.train_user({"user_id": "alice"}, stores, CFG, now=NOW, clock=clock(0.0, 0.0), trainer=Trainer())
    assert stores.models.objects == {}
    # a delete that fails too: the registration's error is still the one raised
    stores = seeded()
    stores.registry.put_version = lambda *a: (_ for _ in ()).throw(RuntimeError("registry down"))
    stores.models.delete = lambda key: (_ for _ in ()).throw(OSError("s3 down"))
    with pytest.raises(RuntimeError, match="registry down"):
        tu.train_user({"user_id": "alice"}, stores, CFG, now=NOW, clock=clock(0.0, 0.0), trainer=Trainer())


def test_holdout_ids_are_thinned_evenly_to_the_item_limit():
    ids_ = [f"e{i}" for i in range(10)]
    assert tu._thin(ids_, 10) == ids_ and tu._thin(ids_, 20) == ids_
    assert tu._thin(ids_, 4) == ["e0", "e3", "e6", "e9"]
    assert tu._thin(ids_, 1) == ["e0"]
    assert len(tu._thin([f"e{i}" for i in range(5000)])) == tu.MAX_HOLDOUT_IDS == 2000


def test_accepts_reads_the_signature():
    assert tu._accepts(lambda a, now=None: 0, "now") and not tu._accepts(lambda a: 0, "now")
