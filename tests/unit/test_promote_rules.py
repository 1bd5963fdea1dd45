"""Promote, rule by rule (calroute.services.training.promote; the mutation target
``training.promote``): what may become ACTIVE, who is recorded as having made it so, what a race
does, and how the champion is scored against the candidate — against the in-memory stores, with
the models' scores stubbed (tests/unit/test_champion.py runs the same rules on real ONNX models)."""

from __future__ import annotations

import pytest

from calroute.config import Settings
from calroute.errors import Conflict, ModelIntegrityError
from calroute.schema import parse_event
from calroute.services.training import promote as pm
from support.fakes import fake_stores

CFG = Settings(champion_tolerance=0.01, champion_min_rows=3)
V1, V2 = "v20260301000000-aaaaaa", "v20260302000000-bbbbbb"
SERVING = {"threshold": 0.5, "feature_spec": 2, "labels": ["home", "work"]}


def clock(*ticks):
    it = iter(ticks)
    return lambda: next(it)


def seeded(status="validated", active=None, holdout=("h1", "h2")):
    stores = fake_stores()
    key, sha = stores.models.put("alice", V2, b"candidate bytes")
    stores.registry.put_version("alice", V2, {"status": status, "s3_key": key, "sha256": sha, **SERVING,
                                              "holdout_event_ids": list(holdout),
                                              "metrics": {"holdout_accuracy": 0.9}})
    if active:
        k1, s1 = stores.models.put("alice", V1, b"champion bytes")
        stores.registry.put_version("alice", V1, {"status": "validated", "s3_key": k1, "sha256": s1, **SERVING,
                                                  "trained_at": "2026-03-01T00:00:00Z"})
        stores.registry.activate("alice", stores.registry.get_version("alice", V1), expected_version=None,
                                 actor="test", reason="seed")
    return stores


def run(stores, item=None, **kw):
    item = {"user_id": "alice", "version": V2, "run_id": "R1", "duration_ms": 7, **(item or {})}
    return pm.promote(item, stores, CFG, clock=clock(1.0, 1.005), **kw)


@pytest.fixture
def decide(monkeypatch):
    """Stub the champion/challenger decision; records what it was asked."""
    calls = []

    def set_(promote=True, reason="because"):
        def fake(record, active, holdout, store, cfg, champion=None):
            calls.append({"active": None if active is None else active["version"], "holdout": holdout,
                          "champion": None if champion is None else champion["version"]})
            return {"promote": promote, "reason": reason, "candidate_accuracy": 0.9}
        monkeypatch.setattr(pm, "challenge", fake)
        return calls

    return set_


def test_unknown_candidates_and_bad_ids_are_errors():
    stores = fake_stores()
    with pytest.raises(ModelIntegrityError, match=f"candidate {V2} is not in the registry"):
        run(stores)
    with pytest.raises(Exception) as err:
        run(stores, {"user_id": "../x"})
    assert err.value.field == "user_id"


def test_an_active_or_unvalidated_candidate_is_not_challenged(decide):
    calls = decide()
    assert run(seeded(status="active")) == {"user_id": "alice", "run_id": "R1", "version": V2,
                                            "status": "promoted", "reason": "already active", "duration_ms": 12}
    assert run(seeded(status="candidate")) == {
        "user_id": "alice", "run_id": "R1", "version": V2, "status": "rejected", "stage": "promote",
        "reason": "candidate status is 'candidate', not validated", "duration_ms": 12}
    assert calls == []


def test_a_missing_or_tampered_object_is_rejected_before_active_can_point_at_it(decide):
    decide()
    stores = seeded()
    stores.models.objects[stores.registry.get_version("alice", V2)["s3_key"]] = b"tampered"
    out = run(stores)
    assert (out["status"], out["stage"]) == ("rejected", "promote") and out["reason"].startswith("integrity: ")
    rec = stores.registry.get_version("alice", V2)
    assert (rec["status"], rec["status_reason"], rec["rejected_stage"]) == ("rejected", out["reason"], "promote")
    assert stores.registry.active("alice") is None


def test_the_first_model_is_promoted_by_the_run_without_reading_a_holdout(decide):
    calls = decide(reason="first model")
    stores = seeded()
    stores.events.list_events_updated = lambda *a, **kw: pytest.fail("no champion: no holdout to read")
    out = run(stores)
    assert out == {"user_id": "alice", "run_id": "R1", "version": V2, "status": "promoted", "reason": "first model",
                   "previous_version": "", "duration_ms": 12}
    assert calls == [{"active": None, "holdout": [], "champion": None}]
    assert stores.registry.active("alice")["version"] == V2
    trail = [a for a in stores.registry.audit_trail("alice") if a.get("to_version") == V2]
    assert trail[0]["actor"] == "training-run:R1" and trail[0]["reason"] == "first model"
    # without a run id the actor is the training run
    stores = seeded()
    assert pm.promote({"user_id": "alice", "version": V2}, stores, CFG, clock=clock(0.0, 0.0))["duration_ms"] == 0
    assert [a["actor"] for a in stores.registry.audit_trail("alice") if a.get("to_version") == V2] == ["training-run"]


def test_the_champion_is_challenged_on_the_labelled_holdout_events(decide):
    calls = decide(reason="not worse")
    stores = seeded(active=True)
    for e, cal in (("h1", "work"), ("h2", "home"), ("x9", "work")):
        stores.events.put_events("alice", [parse_event({"event_id": e, "summary": "s", "start": "2026-03-02T09:00:00Z",
                                                        "calendar_id": cal})])
    out = run(stores)
    assert (out["status"], out["previous_version"]) == ("promoted", V1)
    assert calls[0]["active"] == V1 and calls[0]["champion"] == V1
    assert [e.event_id for e, _ in calls[0]["holdout"]] == ["h1", "h2"]  # the candidate's holdout ids only
    assert all(isinstance(t, str) and t for _, t in calls[0]["holdout"])
    assert stores.registry.get_version("alice", V1)["status"] == "archived"
    # no holdout ids: nothing is read
    calls.clear()
    stores = seeded(active=True, holdout=())
    stores.events.list_events_updated = lambda *a, **kw: pytest.fail("nothing to read")
    assert run(stores)["status"] == "promoted" and calls[0]["holdout"] == []


def test_a_rejected_challenger_records_the_decision(decide):
    decide(promote=False, reason="worse")
    stores = seeded(active=True)
    out = run(stores)
    assert out == {"user_id": "alice", "run_id": "R1", "version": V2, "status": "rejected", "stage": "champion",
                   "reason": "worse", "duration_ms": 12}
    rec = stores.registry.get_version("alice", V2)
    assert (rec["status"], rec["status_reason"], rec["rejected_stage"]) == ("rejected", "worse", "champion")
    assert rec["challenge"] == {"reason": "worse", "candidate_accuracy": 0.9}
    assert stores.registry.active("alice")["version"] == V1


def racing(stores, times):
    """ACTIVE changes under the run ``times`` times (the conditional write fails)."""
    real = stores.registry.activate
    left = [times]

    def activate(*a, **kw):
        if left[0]:
            left[0] -= 1
            raise Conflict("the active model changed concurrently", code="active_changed")
        return real(*a, **kw)

    stores.registry.activate = activate


def test_one_race_is_audited_and_retried_on_the_active_model_read_again(decide):
    calls = decide()
    stores = seeded(active=True)
    reads = []
    real = stores.events.list_events_updated
    stores.events.list_events_updated = lambda *a, **kw: reads.append(1) or real(*a, **kw)
    racing(stores, 1)
    assert run(stores)["status"] == "promoted"
    assert len(calls) == 2 and len(reads) == 1  # challenged twice, the holdout read once
    conflicts = [a for a in stores.registry.audit_trail("alice") if a.get("action") == "promote_conflict"]
    assert [(c["actor"], c["version"], c["expected_version"], c["attempt"]) for c in conflicts] == [
        ("training-run:R1", V2, V1, 1)]


def test_two_races_leave_the_active_model_and_say_so(decide):
    decide()
    stores = seeded()
    racing(stores, 2)
    out = run(stores)
    reason = "the active model changed concurrently (twice); not promoted"
    assert out == {"user_id": "alice", "run_id": "R1", "version": V2, "status": "conflict", "reason": reason,
                   "duration_ms": 12}
    rec = stores.registry.get_version("alice", V2)
    assert (rec["status"], rec["status_reason"]) == ("conflict", reason)
    conflicts = [a for a in stores.registry.audit_trail("alice") if a.get("action") == "promote_conflict"]
    assert sorted(c["attempt"] for c in conflicts) == [1, 2] and all(c["expected_version"] == "" for c in conflicts)


def test_a_candidate_that_became_active_meanwhile_is_done(decide):
    calls = decide()
    stores = seeded()
    stores.registry.activate("alice", stores.registry.get_version("alice", V2), expected_version=None,
                             actor="operator", reason="by hand")
    stores.registry.set_status("alice", V2, "validated")
    out = run(stores)
    assert (out["status"], out["reason"]) == ("promoted", "already active") and calls == []


# ----------------------------------------------------------------------------- the challenge

class Champion:
    labels = ["home", "work"]
    feature_spec = 2


@pytest.fixture
def scored(monkeypatch):
    """The champion loads (a stub) and scores ``acc[n]`` on any n events."""
    from calroute import runtime

    acc = {"loaded": []}

    def load(cls, data, expected_sha256=None):
        acc["loaded"].append((data, expected_sha256))
        return Champion()

    def score(model, rows):
        assert isinstance(model, Champion)  # the champion is what is scored
        return acc.get(len(rows)) if rows else None

    monkeypatch.setattr(runtime.OnnxModel, "from_bytes", classmethod(load))
    monkeypatch.setattr(pm, "holdout_accuracy", score)
    return acc


def ev(eid):
    return parse_event({"event_id": eid, "summary": "s", "start": "2026-03-02T09:00:00Z", "calendar_id": "work"})


def challenge(holdout, champion, cand=0.9, store=None):
    store = store or seeded(active=True).models
    key = store.key("alice", V1)
    import hashlib
    active = {"version": V1, "s3_key": key, "sha256": hashlib.sha256(store.objects[key]).hexdigest()}
    return pm.challenge({"metrics": {"holdout_accuracy": cand}}, active, holdout, store, CFG, champion)


OLD, NEW = "2026-02-01T00:00:00Z", "2026-03-05T00:00:00Z"


def test_no_active_model_or_an_unusable_one_promotes():
    assert pm.challenge({}, None, [], None, CFG) == {"promote": True, "reason": "first model (no active model)"}
    stores = fake_stores()
    out = pm.challenge({"metrics": {"holdout_accuracy": 0.5}}, {"version": V1, "s3_key": "models/alice/missing"},
                       [], stores.models, CFG)
    assert out == {"promote": True, "reason": f"the active model {V1} is unusable (model object models/alice/missing is missing)"}


def test_a_champion_of_unknown_age_is_scored_on_the_whole_holdout(scored):
    scored[3] = 0.8
    out = challenge([ev("a"), ev("b"), ev("c")], {"metrics": {}})  # bare events, no trained_at
    import hashlib
    assert scored["loaded"] == [(b"champion bytes", hashlib.sha256(b"champion bytes").hexdigest())]  # sha checked
    assert out == {"candidate_accuracy": 0.9, "champion_accuracy": 0.8, "champion_version": V1, "holdout_rows": 3,
                   "champion_rows": 3, "basis": "holdout", "tolerance": 0.01, "promote": True,
                   "reason": "holdout accuracy 0.9000 vs champion 0.8000 on holdout (tolerance 0.01)"}


def test_enough_newer_events_score_the_champion_on_them_only(scored):
    scored[3] = 0.95
    holdout = [(ev("o"), OLD)] + [(ev(f"n{i}"), NEW) for i in range(3)] + [(ev("x"), "")]
    out = challenge(holdout, {"trained_at": "2026-03-01T00:00:00Z"}, cand=0.9)
    assert (out["basis"], out["champion_rows"], out["holdout_rows"]) == ("holdout events newer than the champion", 3, 5)
    assert out["promote"] is False and out["reason"] == (
        f"worse than the active model {V1}: holdout accuracy 0.9000 vs 0.9500 on holdout events newer than the "
        "champion (tolerance 0.01)")
    scored[3] = 0.91  # within the tolerance
    assert challenge(holdout, {"trained_at": "2026-03-01T00:00:00Z"}, cand=0.9)["promote"] is True


def test_too_few_newer_events_compare_recorded_scores_capped_by_the_newer_ones(scored):
    champ = {"trained_at": "2026-03-01T00:00:00Z", "metrics": {"holdout_accuracy": 0.95}}
    holdout = [(ev("o"), OLD), (ev("n1"), NEW), (ev("n2"), "2026-03-01T00:00:00Z")]  # n2 at the cutoff: not newer
    scored[1] = 1.0
    out = challenge(holdout, champ, cand=0.9)
    assert (out["basis"], out["champion_accuracy"], out["champion_rows"]) == (
        "recorded out-of-sample holdout accuracies", 0.95, 1)
    scored[1] = 0.0  # wrong on the newer one: the recorded score is stale
    out = challenge(holdout, champ, cand=0.9)
    assert out["champion_accuracy"] == 0.0 and out["promote"] is True
    assert out["basis"] == ("recorded out-of-sample holdout accuracies, the champion's capped by its accuracy on "
                            "the 1 holdout events newer than it")
    out = challenge(holdout, {"trained_at": "2026-03-01T00:00:00Z", "metrics": {}}, cand=0.9)
    assert out["promote"] is True and out["champion_accuracy"] is None and out["reason"] == (
        "the champion has no out-of-sample score to compare with (only 1 holdout events are newer than it)")


def test_nothing_to_compare_on_or_no_candidate_score_rejects(scored):
    out = challenge([], {"metrics": {}})
    assert (out["promote"], out["reason"]) == (False, "no holdout events left to compare on")
    scored[1] = 0.5
    out = challenge([ev("a")], {"metrics": {}}, cand=None)
    assert (out["promote"], out["reason"]) == (False, "the candidate has no holdout accuracy")


def test_holdout_accuracy_is_top1_against_the_events_labels():
    import numpy as np

    class Model:
        labels = ["home", "work"]
        feature_spec = 2

        def predict_proba(self, X):
            return np.asarray([[0.2, 0.8], [0.7, 0.3], [0.4, 0.6]][: len(X)])

    events = [ev("a"), ev("b"), ev("c")]  # all "work": right, wrong, right
    assert pm.holdout_accuracy(Model(), events) == pytest.approx(2 / 3)
    assert pm.holdout_accuracy(Model(), []) is None


def test_the_champion_is_featurized_with_its_own_feature_spec():
    import numpy as np

    from calroute.features import featurize

    seen = []

    class Model:
        labels = ["home", "work"]

        def predict_proba(self, X):
            seen.append(X)
            return np.asarray([[0.0, 1.0]] * len(X))

    events = [parse_event({"event_id": "a", "summary": "Standup review", "start": "2026-03-02T09:00:00Z",
                           "calendar_id": "work"})]
    assert not np.array_equal(featurize(events, spec=1), featurize(events, spec=2))  # the premise
    pm.holdout_accuracy(Model(), events)  # no feature_spec recorded: spec 2
    spec1 = Model()
    spec1.feature_spec = 1
    pm.holdout_accuracy(spec1, events)
    assert np.array_equal(seen[0], featurize(events, spec=2)) and np.array_equal(seen[1], featurize(events, spec=1))


def test_the_active_model_is_read_consistently_before_it_is_replaced(decide):
    decide()
    stores = seeded(active=True)
    reads = []
    real = stores.registry.active
    stores.registry.active = lambda user, consistent=False: reads.append(consistent) or real(user, consistent)
    assert run(stores)["status"] == "promoted" and reads == [True]
