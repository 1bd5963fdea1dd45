"""The models API's use cases (calroute.services.models) on the in-memory fakes, rule by rule: the
status answer field by field, versions and the audit trail, a training request, operator promotion
(the champion/challenger override: only validated versions, never a lost update), rollback walking
the history, and the 409 (audited) when another writer moved the ACTIVE pointer first. The handler
decides who is an operator (tests/unit/test_handlers*); these are the rules behind it."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from calroute.config import Settings
from calroute.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from calroute.schema import CalendarInfo
from calroute.services.models import ModelsService, clean_reason
from support.fakes import FakeRegistry, fake_stores
from support.models import make_events, version

pytestmark = pytest.mark.usefixtures("no_network")

U = "alice"
NOW = datetime(2026, 5, 1, tzinfo=timezone.utc)
ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:sm"


def service(stores, cfg: Settings | None = None, **kw) -> ModelsService:
    return ModelsService(stores, cfg or Settings(), now=lambda: NOW, **kw)


def register(stores, n: int, *, status: str = "validated", validated: bool = True, user: str = U, **extra) -> dict:
    """A version whose model object exists (``_check_object`` reads it back by sha256)."""
    ver = version(n)
    key, sha = stores.models.put(user, ver, f"model {n}".encode())
    rec = {"s3_key": key, "sha256": sha, "threshold": 0.5 + n / 100, "feature_spec": 2,
           "labels": ["home", "work"], "status": status, "validated": validated, **extra}
    stores.registry.put_version(user, ver, rec)
    return stores.registry.get_version(user, ver)


def audits(stores, user: str = U, action: str | None = None) -> list[dict]:
    return [a for a in stores.registry.audit_trail(user) if action is None or a["action"] == action]


# ----------------------------------------------------------------------------- status


def test_status_of_an_active_model_reports_every_field():
    stores = fake_stores()
    events = make_events(("work", "home"), 12)
    stores.events.put_events(U, events[:20])
    stores.events.put_events(U, events[20:], provenance="llm")
    stores.users.bump(U, events=30, corrections=3)
    stores.users.bump(U, corrections=1, misses=1)
    for c in ("work", "home", "kids"):
        stores.users.put_calendar(U, CalendarInfo(calendar_id=c, name=c))
    v1 = register(stores, 1, metrics={"acc": 0.9, "risk": {"alpha": 0.1}}, profiles={"work": {"n": 3}},
                  holdout_event_ids=["e1"], trained_at="2026-04-01T00:00:00Z", run_id="run1")
    pointer = stores.registry.activate(U, v1, expected_version=None, actor="a", reason="r")
    register(stores, 2, status="rejected", status_reason="worse", trained_at="2026-04-02T00:00:00Z", run_id="run2")
    out = service(stores).status(U)
    assert out == {
        "user_id": U, "status": "active", "active_version": version(1), "promoted_at": pointer["promoted_at"],
        "previous_version": None, "threshold": 0.51, "labels": ["home", "work"],
        "metrics": {"acc": 0.9, "risk": {"alpha": 0.1}}, "risk": {"alpha": 0.1}, "feature_spec": 2,
        "unmet_calendars": ["kids"], "profiles": {"work": {"n": 3}}, "events_total": 30,
        "labelled_events": 24, "labels_by_provenance": {"llm": 4, "user": 20}, "corrections_total": 4,
        "confident_misses_total": 1, "labels_total": 0, "gates_stopped": None,
        # the gates count the user's own labels only (20 of the 24)
        "can_train": {"ok": True, "reason": "ok: 20 events in 2 calendars"},
        "needs_training": {"needed": False, "reason": "up to date"},
        "last_training": {"version": version(2), "status": "rejected", "status_reason": "worse",
                          "trained_at": "2026-04-02T00:00:00Z", "run_id": "run2"},
    }


def test_status_without_a_model_and_with_too_few_own_labels():
    stores = fake_stores()
    events = make_events(("work", "home"), 6)
    stores.events.put_events(U, events[:8], provenance="llm")
    stores.events.put_events(U, events[8:])
    stores.users.put_calendar(U, CalendarInfo(calendar_id="work", name="work"))
    out = service(stores).status(U)
    assert out == {
        "user_id": U, "status": "no_model", "active_version": None, "promoted_at": None, "previous_version": None,
        "threshold": None, "labels": [], "metrics": {}, "risk": None, "feature_spec": None, "unmet_calendars": [],
        "profiles": {}, "events_total": 0, "labelled_events": 12, "labels_by_provenance": {"llm": 8, "user": 4},
        "corrections_total": 0, "confident_misses_total": 0, "labels_total": 0, "gates_stopped": None,
        "can_train": {"ok": False, "reason": "needs at least 10 labelled events (has 4)"},
        "needs_training": {"needed": False, "reason": "cannot train yet: needs at least 10 labelled events (has 4)"},
        "last_training": None,
    }


def test_status_falls_back_to_the_pointer_and_flags_drift():
    stores = fake_stores()
    v1 = register(stores, 1, metrics={"acc": 0.8})
    v2 = register(stores, 2, feature_spec=1)
    stores.registry.activate(U, v1, expected_version=None, actor="a", reason="r")
    stores.registry.activate(U, v2, expected_version=version(1), actor="a", reason="r")
    out = service(stores).status(U)
    # v2's record has no metrics: none of v1's show; the previous version is the pointer's
    assert out["metrics"] == {} and out["risk"] is None and out["previous_version"] == version(1)
    assert out["feature_spec"] == 1 and "drifted" not in out
    assert stores.registry.mark_drift(U, version(2), {"drifted": True}, at="2026-05-01T00:00:00Z")
    out = service(stores).status(U)
    assert out["drifted"] is True
    # the retraining policy sees the active pointer's drift flag
    assert out["needs_training"] == {"needed": True, "reason": "drift detected on the active model"}
    # the version record gone (only the pointer left): the pointer's feature spec
    del stores.registry.items[(U, f"MODEL#{version(2)}")]
    out = service(stores).status(U)
    assert out["feature_spec"] == 1 and out["metrics"] == {} and out["profiles"] == {}
    assert out["last_training"]["version"] == version(1)


def test_status_a_newer_training_attempt_answers_a_drift_flag():
    stores = fake_stores()
    stores.registry.activate(U, register(stores, 1), expected_version=None, actor="a", reason="r")
    assert stores.registry.mark_drift(U, version(1), {"drifted": True}, at="2026-05-01T00:00:00Z")
    register(stores, 2, status="rejected", trained_at="2026-04-30T00:00:00Z")
    out = service(stores).status(U)
    assert out["drifted"] is True and out["last_training"]["version"] == version(2)
    assert out["needs_training"] == {"needed": False, "reason": "up to date"}


def test_status_reports_drift_only_when_drifted():
    stores = fake_stores()
    stores.registry.activate(U, register(stores, 1), expected_version=None, actor="a", reason="r")
    assert stores.registry.mark_drift(U, version(1), {"drifted": False}, at="2026-05-01T00:00:00Z")
    assert "drifted" not in service(stores).status(U)


# ----------------------------------------------------------------------------- versions


def test_versions_are_newest_first_without_internal_fields_and_the_audit_newest_first():
    stores = fake_stores()
    register(stores, 1, holdout_event_ids=["e1"], profiles={"x": 1})
    register(stores, 3)
    register(stores, 2)
    reg = stores.registry
    for sk in ("AUDIT#2026-01-02", "AUDIT#2026-01-03", "AUDIT#2026-01-01"):
        reg.items[(U, sk)] = {"user_id": U, "sk": sk, "action": sk[-2:]}
    reg.items[(U, "AUDIT#2026-01-04")] = {"user_id": U, "action": "no-sk"}
    out = service(stores).versions(U)
    assert out["user_id"] == U and out["active_version"] is None
    assert [v["version"] for v in out["versions"]] == [version(3), version(2), version(1)]
    assert all(not {"holdout_event_ids", "user_id", "sk", "profiles"} & set(v) for v in out["versions"])
    assert out["versions"][2]["s3_key"] == stores.models.key(U, version(1))
    # sorted by sort key, newest first; an item without one sorts as the oldest
    assert out["audit"] == [{"action": "03"}, {"action": "02"}, {"action": "01"}, {"action": "no-sk"}]
    reg.activate(U, reg.get_version(U, version(2)), expected_version=None, actor="a", reason="r")
    assert service(stores).versions(U)["active_version"] == version(2)


# ----------------------------------------------------------------------------- training


class Sfn:
    def __init__(self, error: str | None = None):
        self.calls, self.error = [], error

    def start_execution(self, **kw):
        self.calls.append(kw)
        if self.error is not None:
            raise ClientError({"Error": {"Code": self.error, "Message": "no"}} if self.error else {},
                              "StartExecution")
        return {"executionArn": f"arn:aws:states:us-east-1:123456789012:execution:sm:{kw['name']}"}


def test_the_step_functions_client_comes_from_the_factory_once_on_the_first_training_request():
    made = []

    def factory():
        made.append(Sfn())
        return made[-1]

    svc = service(fake_stores(), Settings(state_machine_arn=ARN), sfn_factory=factory)
    assert made == []  # nothing built before a training request
    svc.start_training(U)
    svc.start_training(U)
    assert len(made) == 1 and len(made[0].calls) == 2


def test_start_training_without_a_step_functions_client_is_unavailable():
    with pytest.raises(ServiceUnavailable) as exc:
        service(fake_stores(), Settings(state_machine_arn=ARN)).start_training(U)
    assert exc.value.retry_after == 60
    assert exc.value.message == "training is not configured (no Step Functions client)"


def test_start_training_without_a_state_machine_is_unavailable():
    with pytest.raises(ServiceUnavailable) as exc:
        service(fake_stores(), Settings(state_machine_arn=""), sfn=Sfn()).start_training(U)
    assert exc.value.retry_after == 60
    assert exc.value.message == "training is not configured (STATE_MACHINE_ARN is empty)"


def test_start_training_starts_a_one_user_execution_and_audits_it():
    stores, sfn = fake_stores(), Sfn()
    out = service(stores, Settings(state_machine_arn=ARN), sfn=sfn).start_training(U, actor="dev:bob")
    (call,) = sfn.calls
    assert call["stateMachineArn"] == ARN and call["name"] == out["run_id"]
    assert json.loads(call["input"]) == {"trigger": "api", "user_ids": [U], "run_id": out["run_id"]}
    assert re.fullmatch(r"r20260501000000-[0-9a-f]{6}", out["run_id"])  # the service's clock
    assert out == {"execution_arn": f"arn:aws:states:us-east-1:123456789012:execution:sm:{out['run_id']}",
                   "run_id": out["run_id"]}
    (audit,) = audits(stores)
    assert {k: audit[k] for k in ("action", "actor", "run_id", "execution_arn")} == {
        "action": "train_requested", "actor": "dev:bob", "run_id": out["run_id"],
        "execution_arn": out["execution_arn"]}
    service(stores, Settings(state_machine_arn=ARN), sfn=Sfn()).start_training(U)
    assert sorted(a["actor"] for a in audits(stores)) == ["anonymous", "dev:bob"]


@pytest.mark.parametrize("code", ["ExecutionLimitExceeded", "ThrottlingException"])
def test_start_training_when_step_functions_is_busy_says_retry_later(code):
    stores = fake_stores()
    with pytest.raises(ServiceUnavailable) as exc:
        service(stores, Settings(state_machine_arn=ARN), sfn=Sfn(code)).start_training(U, actor="x")
    assert exc.value.retry_after == 30
    assert exc.value.message == "too many training runs right now; retry later"
    assert audits(stores) == []


def test_start_training_reraises_other_step_functions_errors():
    stores = fake_stores()
    with pytest.raises(ClientError):
        service(stores, Settings(state_machine_arn=ARN), sfn=Sfn("AccessDeniedException")).start_training(U)
    with pytest.raises(ClientError):
        service(stores, Settings(state_machine_arn=ARN), sfn=Sfn("")).start_training(U)
    assert audits(stores) == []


# ----------------------------------------------------------------------------- promote


def test_promote_an_unknown_version_is_not_found():
    with pytest.raises(NotFound) as exc:
        service(fake_stores()).promote(U, version(9), reason="", actor="op")
    assert exc.value.field == "version" and version(9) in exc.value.message


@pytest.mark.parametrize("status, validated", [("candidate", True), ("training", True), ("failed", True),
                                               ("validated", False), ("rejected", None)])
def test_only_a_validated_version_can_be_promoted(status, validated):
    stores = fake_stores()
    extra = {} if validated is None else {"validated": validated}
    ver = version(1)
    key, sha = stores.models.put(U, ver, b"m")
    stores.registry.put_version(U, ver, {"s3_key": key, "sha256": sha, "threshold": 0.5, "feature_spec": 2,
                                         "status": status, **extra})
    with pytest.raises(Conflict) as exc:
        service(stores).promote(U, ver, reason="", actor="op")
    assert exc.value.code == "not_validated" and exc.value.field == "version"
    assert repr(status) in exc.value.message and ver in exc.value.message
    assert stores.registry.active(U) is None


@pytest.mark.parametrize("status", ["validated", "archived", "rejected", "conflict", "rolled_back", "active"])
def test_an_operator_may_override_champion_challenger_for_any_validated_version(status):
    stores = fake_stores()
    v1 = register(stores, 1)
    stores.registry.activate(U, v1, expected_version=None, actor="train", reason="r")
    register(stores, 2, status=status)
    out = service(stores).promote(U, version(2), reason="", actor="op")
    assert out == {"user_id": U, "active_version": version(2), "previous_version": version(1), "changed": True}
    (audit,) = audits(stores, action="manual_promote")
    assert {k: audit[k] for k in ("actor", "reason", "from_version", "to_version")} == {
        "actor": "op", "reason": "manual promote", "from_version": version(1), "to_version": version(2)}
    assert stores.registry.get_version(U, version(1))["status"] == "archived"


def test_promote_the_first_model_and_again_changes_nothing():
    stores = fake_stores()
    register(stores, 1)
    out = service(stores).promote(U, version(1), reason="first", actor="op")
    assert out == {"user_id": U, "active_version": version(1), "previous_version": None, "changed": True}
    assert audits(stores, action="manual_promote")[0]["reason"] == "first"
    again = service(stores).promote(U, version(1), reason="", actor="op")
    assert again == {"user_id": U, "active_version": version(1), "previous_version": "", "changed": False}
    assert len(audits(stores, action="manual_promote")) == 1


def test_promote_refuses_a_version_whose_object_is_missing_or_tampered():
    stores = fake_stores()
    register(stores, 1)
    stores.models.objects[stores.models.key(U, version(1))] = b"tampered"
    with pytest.raises(Conflict) as exc:
        service(stores).promote(U, version(1), reason="", actor="op")
    assert exc.value.code == "model_unavailable" and exc.value.field == "version"
    assert exc.value.message.startswith(f"version {version(1)} cannot be activated: ") and "sha256" in exc.value.message
    assert stores.registry.active(U) is None and audits(stores) == []


def test_promote_checks_the_object_without_a_recorded_sha():
    stores = fake_stores()
    rec = register(stores, 1)
    del stores.registry.items[(U, f"MODEL#{version(1)}")]["sha256"]
    stores.registry.items[(U, f"MODEL#{version(1)}")]["sha256"] = None
    del stores.models.objects[rec["s3_key"]]
    with pytest.raises(Conflict) as exc:
        service(stores).promote(U, version(1), reason="", actor="op")
    assert exc.value.code == "model_unavailable" and "missing" in exc.value.message


class Stale(FakeRegistry):
    """Answers the ACTIVE read with an older version (another writer moved it meanwhile), and
    records whether the read was strongly consistent."""

    stale: str | None = None

    def __init__(self):
        super().__init__()
        self.consistent: list[bool] = []

    def active(self, user_id, consistent=False):
        self.consistent.append(consistent)
        item = super().active(user_id, consistent)
        if item is None or self.stale is None:
            return item
        return {**item, "version": self.stale}


def test_a_promotion_that_lost_a_race_is_a_409_audited_with_who_and_why():
    reg = Stale()
    stores = fake_stores(registry=reg)
    for n in (1, 2, 3):
        register(stores, n)
    reg.activate(U, reg.get_version(U, version(1)), expected_version=None, actor="t", reason="r")
    reg.activate(U, reg.get_version(U, version(3)), expected_version=version(1), actor="t", reason="r")
    reg.stale = version(1)
    reg.consistent.clear()
    with pytest.raises(Conflict) as exc:
        service(stores).promote(U, version(2), reason="better", actor="op")
    assert exc.value.code == "active_changed" and reg.consistent == [True]
    (lost,) = audits(stores, action="manual_promote_conflict")
    assert {k: lost[k] for k in ("actor", "reason", "version", "expected_version")} == {
        "actor": "op", "reason": "better", "version": version(2), "expected_version": version(1)}
    assert FakeRegistry.active(reg, U)["version"] == version(3)


def test_a_first_promotion_racing_another_is_audited_with_an_empty_expected_version():
    class Empty(FakeRegistry):
        def active(self, user_id, consistent=False):
            return None

    stores = fake_stores(registry=Empty())
    register(stores, 1)
    register(stores, 2)
    FakeRegistry.activate(stores.registry, U, stores.registry.get_version(U, version(1)), expected_version=None,
                          actor="t", reason="r")
    with pytest.raises(Conflict):
        service(stores).promote(U, version(2), reason="", actor="op")
    (lost,) = audits(stores, action="manual_promote_conflict")
    assert lost["expected_version"] == "" and lost["reason"] == "manual promote" and lost["actor"] == "op"


# ----------------------------------------------------------------------------- rollback


def test_rollback_without_an_active_model_is_not_found():
    with pytest.raises(NotFound) as exc:
        service(fake_stores()).rollback(U, reason="", actor="op")
    assert exc.value.field == "userId" and exc.value.message == "the user has no active model"


def test_rollback_walks_the_history_and_refuses_at_its_start():
    stores = fake_stores()
    reg = stores.registry
    prev = None
    for n in (1, 2, 3):
        reg.activate(U, register(stores, n), expected_version=prev, actor="t", reason="r")
        prev = version(n)
    register(stores, 4)  # validated, never active: not a rollback target
    svc = service(stores)
    assert svc.rollback(U, reason="bad", actor="op") == {
        "user_id": U, "active_version": version(2), "rolled_back_from": version(3)}
    v3 = reg.get_version(U, version(3))
    assert v3["status"] == "rolled_back" and v3["status_reason"] == "rolled back by op: bad"
    (audit,) = audits(stores, action="rollback")
    assert {k: audit[k] for k in ("actor", "reason", "from_version", "to_version")} == {
        "actor": "op", "reason": "bad", "from_version": version(3), "to_version": version(2)}
    # a second rollback goes one further back, never back to the rolled-back v3
    assert svc.rollback(U, reason="", actor="op")["active_version"] == version(1)
    assert reg.get_version(U, version(2))["status"] == "rolled_back"
    assert sorted(a["reason"] for a in audits(stores, action="rollback")) == ["bad", "rollback"]  # the default
    with pytest.raises(Conflict) as exc:
        svc.rollback(U, reason="", actor="op")
    assert exc.value.code == "no_previous_version" and exc.value.message == (
        "there is no earlier version to roll back to (none was active before this one, or every one was "
        "rolled back)")
    assert reg.active(U)["version"] == version(1)


def test_rollback_picks_the_most_recently_promoted_and_breaks_ties_by_version():
    stores = fake_stores()
    reg = stores.registry
    for n, at in ((1, "2026-03-01"), (2, "2026-01-01"), (3, "2026-02-01"), (4, "2026-02-01")):
        register(stores, n, promoted_at=at)
    register(stores, 5, promoted_at="2026-04-01", status="rolled_back")
    reg.activate(U, reg.get_version(U, version(1)), expected_version=None, actor="t", reason="r")
    assert service(stores).rollback(U, reason="", actor="op")["active_version"] == version(4)
    assert service(stores).rollback(U, reason="", actor="op")["active_version"] == version(3)
    assert service(stores).rollback(U, reason="", actor="op")["active_version"] == version(2)


def test_rollback_goes_to_the_most_recently_promoted_not_the_highest_version():
    stores = fake_stores()
    reg = stores.registry
    register(stores, 1, promoted_at="2026-02-01")  # an operator went back to v1 after v2
    register(stores, 2, promoted_at="2026-01-01")
    reg.activate(U, register(stores, 3), expected_version=None, actor="t", reason="r")
    assert service(stores).rollback(U, reason="", actor="op")["active_version"] == version(1)


def test_rollback_refuses_a_target_whose_object_is_gone():
    stores = fake_stores()
    reg = stores.registry
    v1 = register(stores, 1)
    reg.activate(U, v1, expected_version=None, actor="t", reason="r")
    reg.activate(U, register(stores, 2), expected_version=version(1), actor="t", reason="r")
    del stores.models.objects[v1["s3_key"]]
    with pytest.raises(Conflict) as exc:
        service(stores).rollback(U, reason="", actor="op")
    assert exc.value.code == "model_unavailable"
    assert reg.active(U)["version"] == version(2)


def test_a_rollback_racing_another_writer_is_refused_and_audited():
    reg = Stale()
    stores = fake_stores(registry=reg)
    prev = None
    for n in (1, 2, 3):
        reg.activate(U, register(stores, n), expected_version=prev, actor="t", reason="r")
        prev = version(n)
    reg.stale = version(2)  # the reader saw v2 active; v3 has been promoted since
    reg.consistent.clear()
    with pytest.raises(Conflict) as exc:
        service(stores).rollback(U, reason="", actor="op")
    assert exc.value.code == "active_changed" and reg.consistent == [True]
    (lost,) = audits(stores, action="rollback_conflict")
    assert {k: lost[k] for k in ("actor", "reason", "version", "expected_version")} == {
        "actor": "op", "reason": "rollback", "version": version(3), "expected_version": version(2)}
    assert FakeRegistry.active(reg, U)["version"] == version(3)
    assert reg.get_version(U, version(2))["status"] == "archived"  # not marked rolled back


def test_rollback_still_answers_when_marking_the_old_version_fails():
    class NoStatus(FakeRegistry):
        def set_status(self, user_id, version, status, reason="", **extra):
            if status == "rolled_back":
                raise RuntimeError("throttled")
            return super().set_status(user_id, version, status, reason, **extra)

    stores = fake_stores(registry=NoStatus())
    reg = stores.registry
    reg.activate(U, register(stores, 1), expected_version=None, actor="t", reason="r")
    reg.activate(U, register(stores, 2), expected_version=version(1), actor="t", reason="r")
    out = service(stores).rollback(U, reason="", actor="op")
    assert out == {"user_id": U, "active_version": version(1), "rolled_back_from": version(2)}


# ----------------------------------------------------------------------------- reason


def test_clean_reason():
    assert clean_reason(None) == ""
    assert clean_reason("  a \n b\t c ") == "a b c"
    assert clean_reason("x" * 500) == "x" * 500
    assert clean_reason(" " * 3 + "y" * 500 + " ") == "y" * 500
    for bad, msg in ((5, "reason must be a string"), ("x" * 501, "reason is at most 500 characters")):
        with pytest.raises(InvalidInput) as exc:
            clean_reason(bad)
        assert exc.value.field == "reason" and exc.value.message == msg


def test_status_says_what_the_planner_decides_after_a_run_the_gates_stopped():
    """A trained user whose retrain request meets too few labels: once TrainUser recorded the stop,
    the status says the run waits for a label, as the planner does; a label lifts it."""
    from calroute.retrain import gate_skip_record

    stores = fake_stores()
    trained = (NOW - timedelta(days=3)).isoformat()
    stores.registry.activate(U, register(stores, 1, trained_at=trained), expected_version=None, actor="a", reason="r")
    stores.users.request_retrain(U, at=(NOW - timedelta(days=2)).isoformat(), reason="calendar kids deleted")
    stores.users.bump(U, labels=4)
    svc = service(stores)
    assert svc.status(U)["needs_training"]["reason"].startswith("retrain requested")
    stores.registry.put_gate_skip(U, gate_skip_record(stores.users.profile(U), svc.cfg, reason="needs more",
                                                      now=svc.now()))
    out = svc.status(U)
    assert out["needs_training"]["needed"] is False and out["needs_training"]["reason"].startswith(
        "cannot train yet: needs more (no new labels since")
    assert out["labels_total"] == 4
    assert out["gates_stopped"] == {"reason": "needs more", "at": NOW.isoformat(), "labels_total": 4}
    stores.users.bump(U, labels=1)
    assert service(stores).status(U)["needs_training"]["needed"] is True
