"""The use cases on the in-memory fakes of the storage ports (support/fakes.py): ingest, predict,
models and the training-run steps, built by calroute.wiring as the handlers build them. No moto,
no network (sockets refuse to connect); the fakes are held to the adapters' behaviour by the
contract tests in tests/integration/test_adapters.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from calroute.schema import CalendarInfo

from calroute import wiring
from calroute.config import Settings
from calroute.errors import Conflict, InvalidInput, NotFound, ServiceUnavailable
from calroute.features import FEATURE_SPEC_VERSION
from calroute.ports import GLOBAL_PK
from calroute.services.training.common import load_training_events
from calroute.services.training.plan import plan
from calroute.services.training.promote import promote
from calroute.services.training.summarize import summarize
from calroute.services.training.train_user import train_user
from calroute.services.training.validate import check_candidate, validate
from support.fakes import FakeEventStore, FakeRegistry, Recorder, fake_stores
from support.models import FakeTrainer, build_onnx, make_events, version

pytestmark = pytest.mark.usefixtures("no_network")

U = "alice"
# every answer in the prediction log (the production default keeps a sample of the confident ones;
# the sampling tests below set their rates)
CFG = Settings(prediction_log_confident_sample_rate=1.0)


def ev(i: int, cal: str = "work", **kw) -> dict:
    return {"event_id": f"e{i}", "summary": f"Meeting {i}", "start": f"2026-03-{1 + i % 28:02d}T10:00:00Z",
            "calendar_id": cal, **kw}


def install(stores, user: str = U, n: int = 1, calendars=("work", "home"), data: bytes | None = None) -> dict:
    """Store + register + activate a small real model (what Promote leaves behind)."""
    ver = version(n)
    data = data if data is not None else build_onnx(calendars, model_version=ver, user=user)
    key, sha = stores.models.put(user, ver, data)
    record = {"version": ver, "s3_key": key, "sha256": sha, "threshold": 0.6, "feature_spec": FEATURE_SPEC_VERSION,
              "labels": sorted(calendars)}
    stores.registry.put_version(user, ver, record)
    for cal in calendars:  # ingest registers every calendar a user's events name
        stores.users.put_calendar(user, CalendarInfo(calendar_id=cal, name=cal))
    cur = stores.registry.active(user)
    stores.registry.activate(user, record, expected_version=cur["version"] if cur else None, actor="test",
                             reason="test")
    return record


# ----------------------------------------------------------------------------- ingest


def test_ingest_is_idempotent_and_counts_new_events_once():
    stores = fake_stores()
    ingest = wiring.ingest_service(CFG, stores=stores)
    batch = [ev(i) for i in range(30)] + [ev(100, "home")]
    assert ingest.ingest_events(U, batch) == {"upserted": 31, "new": 31, "calendars_added": ["home", "work"]}
    assert ingest.ingest_events(U, batch) == {"upserted": 31, "new": 0, "calendars_added": []}
    assert stores.events.count_events(U) == 31 and stores.users.profile(U)["events_total"] == 31
    assert [c.calendar_id for c in stores.users.calendars(U)] == ["home", "work"]


def test_one_bad_event_and_nothing_is_written():
    stores = fake_stores()
    ingest = wiring.ingest_service(CFG, stores=stores)
    with pytest.raises(InvalidInput) as exc:
        ingest.ingest_events(U, [ev(1), {"event_id": "e2", "summary": "no label", "start": "2026-03-02T10:00:00Z"}])
    assert exc.value.field == "events[1].calendar_id"
    assert stores.events.count_events(U) == 0 and stores.users.profile(U) == {} and stores.users.calendars(U) == []


def test_storage_giving_up_mid_batch_keeps_the_counter_exact_on_resend():
    class GivesUp(FakeEventStore):
        """Stores the first half of a batch, then reports throttling (as BatchWriteItem may)."""

        def __init__(self):
            super().__init__()
            self.fail = True

        def put_events(self, user_id, events, *, source="api"):
            if self.fail:
                self.fail = False
                super().put_events(user_id, events[: len(events) // 2], source=source)
                raise ServiceUnavailable("storage is throttling writes; retry the request", retry_after=2)
            return super().put_events(user_id, events, source=source)

    stores = fake_stores(events=GivesUp())
    ingest = wiring.ingest_service(CFG, stores=stores)
    batch = [ev(i) for i in range(10)]
    with pytest.raises(ServiceUnavailable):
        ingest.ingest_events(U, batch)
    assert stores.users.profile(U)["events_total"] == 5  # what landed is counted ...
    assert ingest.ingest_events(U, batch)["new"] == 5  # ... and the resend counts only the rest
    assert stores.users.profile(U)["events_total"] == 10 == stores.events.count_events(U)


def test_correction_relabels_records_the_prediction_and_marks_the_log():
    stores = fake_stores()
    ingest = wiring.ingest_service(CFG, stores=stores)
    ingest.ingest_events(U, [ev(1), ev(2)])
    stores.predictions.put_many(U, [{"event_id": "e1", "calendar_id": "work", "method": "ml",
                                     "model_version": version(1)}])
    out = ingest.correct_event(U, "e1", "home")
    assert out["changed"] is True and out["was_correct"] is False
    assert (out["from_calendar"], out["to_calendar"], out["predicted_method"]) == ("work", "home", "ml")
    assert stores.events.get_event(U, "e1").calendar_id == "home"
    assert stores.predictions.get(U, "e1")["corrected_to"] == "home"
    assert stores.users.profile(U)["corrections_total"] == 1
    assert "home" in {c.calendar_id for c in stores.users.calendars(U)}
    same = ingest.correct_event(U, "e2", "work")  # already labelled so: recorded, not counted
    assert same["changed"] is False and "was_correct" not in same
    assert stores.users.profile(U)["corrections_total"] == 1
    with pytest.raises(NotFound):
        ingest.correct_event(U, "nope", "home")


def test_calendars_are_cleaned_and_an_import_registers_its_calendar():
    stores = fake_stores()
    ingest = wiring.ingest_service(CFG, stores=stores)
    assert ingest.put_calendar(U, "work", " Work\u0007 ", None) == {"calendar_id": "work", "name": "Work",
                                                                   "description": ""}
    with pytest.raises(InvalidInput) as exc:
        ingest.put_calendar(U, "work", "n" * 201, "")
    assert exc.value.field == "name"
    ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nX-WR-CALNAME:Gym\r\nBEGIN:VEVENT\r\nUID:g1@test\r\n"
           "DTSTART:20260302T070000Z\r\nDTEND:20260302T080000Z\r\nSUMMARY:Spin class\r\nEND:VEVENT\r\n"
           "END:VCALENDAR\r\n")
    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    out = ingest.import_ics(U, "gym", ics, now=now)
    assert out["calendar_registered"] is True and out["events"] == 1 and out["new"] == 1
    assert {c.calendar_id: c.name for c in stores.users.calendars(U)}["gym"] == "Gym"
    assert ingest.import_ics(U, "gym", ics, now=now)["new"] == 0  # idempotent


# ----------------------------------------------------------------------------- predict


CONFIDENT = {"event_id": "e-conf", "summary": "sprint standup review", "start": "2026-03-03T10:00:00Z"}
UNSURE = {"event_id": "e-unsure", "summary": "zzz", "start": "2026-03-03T10:00:00Z"}


class Invoker:
    """The LLM fallback as predict sees it (an Invoker): answers ``answer`` and records payloads."""

    def __init__(self, answer: dict):
        self.answer, self.payloads = answer, []

    def invoke(self, payload: dict) -> dict:
        self.payloads.append(payload)
        return dict(self.answer)


def test_a_confident_model_answers_alone_and_is_logged():
    stores, sink = fake_stores(), Recorder()
    install(stores)
    svc = wiring.predict_service(CFG, stores=stores, sink=sink, invoker=None)
    out = svc.classify(U, CONFIDENT)
    assert out["method"] == "ml" and out["calendar_id"] == "work" and out["model_version"] == version(1)
    assert out["confidence"] >= out["threshold"] == 0.6
    logged = stores.predictions.get(U, "e-conf")
    assert logged["method"] == "ml" and logged["calendar_id"] == "work" and logged["drift"]
    assert sink.total("ModelCacheMiss") == 1 and sink.total("Predictions") == 1
    svc.classify(U, CONFIDENT)
    assert sink.total("ModelCacheHit") == 1  # cached: no second load


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_the_prediction_log_keeps_a_deterministic_share_by_event_id(rate):
    """PREDICTION_LOG_SAMPLE_RATE: 0 logs nothing, 1 everything, in between a share decided by the
    event id (crc32), the same on every container and every retry of the same event."""
    import zlib

    stores = fake_stores()
    install(stores)
    cfg = Settings(prediction_log_sample_rate=rate, prediction_log_confident_sample_rate=1.0)
    svc = wiring.predict_service(cfg, stores=stores, sink=Recorder(), invoker=None)
    ids = [f"ev-{i}" for i in range(400)]
    from calroute.schema import parse_event

    svc.classify_events(U, [parse_event({**CONFIDENT, "event_id": i}) for i in ids])
    kept = {eid for (_, eid) in stores.predictions.items}
    assert kept == {i for i in ids if zlib.crc32(i.encode()) % 10_000 < int(rate * 10_000)}
    if 0 < rate < 1:
        assert abs(len(kept) / len(ids) - rate) < 0.07
        again = fake_stores()
        install(again)
        wiring.predict_service(cfg, stores=again, sink=Recorder(), invoker=None).classify_events(
            U, [parse_event({**CONFIDENT, "event_id": i}) for i in reversed(ids)])
        assert {eid for (_, eid) in again.predictions.items} == kept  # same ids, whatever the order or batch
    else:
        assert len(kept) == int(rate * len(ids))


def test_no_model_and_no_llm_is_none():
    svc = wiring.predict_service(CFG, stores=fake_stores(), invoker=None)
    out = svc.classify(U, CONFIDENT)
    assert out["method"] == "none" and out["calendar_id"] is None
    assert out["reason"] == "no_model+llm_not_configured"


def test_a_user_with_one_calendar_and_no_model_gets_it_without_an_llm_call():
    """The fallback's candidates are the user's registered calendars: with exactly one, it could
    answer nothing else, so predict answers it (``only_calendar``) and never asks; a second calendar
    (after the directory's TTL) brings the LLM back; a batch answers each event the same way."""
    from calroute.schema import parse_event

    stores, sink = fake_stores(), Recorder()
    stores.users.put_calendar(U, CalendarInfo(calendar_id="work", name="Work"))
    llm = Invoker({"calendar_id": "work", "reason": "r", "usd": 0.001})
    clock = [0.0]
    svc = wiring.predict_service(CFG, stores=stores, sink=sink, invoker=llm)
    svc.calendars.clock = lambda: clock[0]
    out = svc.classify(U, dict(CONFIDENT, event_id="s-1"), remember=True)
    assert (out["method"], out["calendar_id"], out["reason"], out["defer_reason"]) == (
        "only_calendar", "work", "only_calendar", None)
    assert out["confidence"] is None and out["model_version"] is None and out["alternatives"] == []
    assert llm.payloads == [] and sink.total("LlmFallbacks") == 0
    assert out["remembered"] is True
    kept = stores.events.get_stored(U, "s-1")
    assert kept.event.calendar_id == "work" and kept.meta["method"] == "only_calendar"
    # the one answer there was: provenance sole (it certifies unless the user's other labels contradict it)
    assert kept.provenance == "sole"
    batch = svc.classify_events(U, [parse_event(dict(CONFIDENT, event_id=f"b-{i}")) for i in range(3)])
    assert [r["method"] for r in batch] == ["only_calendar"] * 3 and llm.payloads == []
    logged = stores.predictions.get(U, "s-1")
    assert logged["method"] == "only_calendar" and logged["sample_rate"] == 1.0
    # a second calendar: once the directory reads it again, the LLM is asked
    stores.users.put_calendar(U, CalendarInfo(calendar_id="home", name="Home"))
    assert svc.classify(U, dict(CONFIDENT, event_id="s-2"))["method"] == "only_calendar"  # cached list
    clock[0] += CFG.model_revalidate_seconds + 1
    out = svc.classify(U, dict(CONFIDENT, event_id="s-3"))
    assert out["method"] == "llm_only" and len(llm.payloads) == 1


def test_a_sole_calendars_answers_are_sampled_like_confident_ones():
    """Nothing to review in them: the DynamoDB log keeps them at the confident rate (0 here: none),
    while every unsure or LLM answer is kept."""
    stores = fake_stores()
    stores.users.put_calendar(U, CalendarInfo(calendar_id="work", name="Work"))
    cfg = Settings(prediction_log_confident_sample_rate=0.0)
    svc = wiring.predict_service(cfg, stores=stores, invoker=Invoker({"calendar_id": "work", "reason": "r"}))
    assert svc.classify(U, dict(CONFIDENT, event_id="o-1"))["method"] == "only_calendar"
    assert stores.predictions.get(U, "o-1") is None
    stores.users.put_calendar(U, CalendarInfo(calendar_id="home", name="Home"))
    svc.calendars.forget(U)
    assert svc.classify(U, dict(CONFIDENT, event_id="o-2"))["method"] == "llm_only"
    assert stores.predictions.get(U, "o-2")["sample_rate"] == 1.0


def test_no_registered_calendar_still_asks_the_llm_and_a_model_is_never_bypassed():
    """No calendar registered (the fallback then offers the labels it finds): the LLM is asked. A
    user with a model keeps the model's routing, even if one calendar is left registered."""
    stores = fake_stores()
    llm = Invoker({"calendar_id": "work", "reason": "r"})
    svc = wiring.predict_service(CFG, stores=stores, invoker=llm)
    assert svc.classify(U, CONFIDENT)["method"] != "only_calendar" and len(llm.payloads) == 1
    other = fake_stores()
    install(other, calendars=("work", "home"))
    other.users.delete_calendar(U, "home")
    out = wiring.predict_service(CFG, stores=other, invoker=llm).classify(U, CONFIDENT)
    assert out["method"] == "ml" and out["model_version"] == version(1)


def test_an_unsure_model_asks_the_llm_within_budget():
    stores = fake_stores()
    install(stores)
    llm = Invoker({"calendar_id": "home", "reason": "looks personal", "usd": 0.001})
    svc = wiring.predict_service(CFG, stores=stores, invoker=llm)
    out = svc.classify(U, UNSURE)
    assert out["method"] == "llm" and out["calendar_id"] == "home" and out["reason"] == "looks personal"
    (payload,) = llm.payloads
    assert payload["user_id"] == U and payload["model_version"] == version(1) and payload["candidates"]
    stores.usage.add(U, usd=CFG.llm_user_daily_budget_usd, input_tokens=1, output_tokens=1)
    out = svc.classify(U, dict(UNSURE, event_id="e-2"))
    assert out["method"] == "ml_low_confidence" and out["reason"] == "budget" and len(llm.payloads) == 1


def test_the_kill_switch_and_a_broken_model_never_use_the_model():
    stores, sink = fake_stores(), Recorder()
    rec = install(stores)
    llm = Invoker({"calendar_id": "work", "reason": "r"})
    off = wiring.predict_service(Settings(ml_enabled=False), stores=stores, invoker=llm)
    out = off.classify(U, CONFIDENT)
    assert out["method"] == "llm_only" and out["model_version"] is None and out["alternatives"] == []
    stores.models.objects[rec["s3_key"]] = b"tampered"  # fails its sha256 check
    broken = wiring.predict_service(CFG, stores=stores, sink=sink, invoker=None)
    for _ in range(2):
        out = broken.classify(U, CONFIDENT)
        assert out["method"] == "none" and out["reason"] == "model_unavailable+llm_not_configured"
    assert sink.total("ModelLoadFailures") == 1  # negative-cached


# ----------------------------------------------------------------------------- models API


def _validated(stores, user: str, n: int) -> dict:
    ver = version(n)
    data = build_onnx(("work", "home"), model_version=ver, user=user)
    key, sha = stores.models.put(user, ver, data)
    rec = {"version": ver, "s3_key": key, "sha256": sha, "threshold": 0.6, "feature_spec": FEATURE_SPEC_VERSION,
           "labels": ["home", "work"], "status": "validated", "validated": True}
    stores.registry.put_version(user, ver, rec)
    return rec


def test_model_status_reports_gates_and_the_active_model():
    stores = fake_stores()
    models = wiring.models_service(CFG, stores=stores)
    out = models.status(U)
    assert out["status"] == "no_model" and out["can_train"]["ok"] is False and out["active_version"] is None
    install(stores)
    out = models.status(U)
    assert out["status"] == "active" and out["active_version"] == version(1) and out["threshold"] == 0.6
    assert models.versions(U)["versions"][0]["version"] == version(1)


def test_promote_and_rollback_are_conditional_and_audited():
    stores = fake_stores()
    models = wiring.models_service(CFG, stores=stores)
    v1 = install(stores, n=1)
    v2 = _validated(stores, U, 2)
    with pytest.raises(NotFound):
        models.promote(U, version(9), reason="", actor="dev:alice")
    out = models.promote(U, v2["version"], reason="better", actor="dev:alice")
    assert out == {"user_id": U, "active_version": v2["version"], "previous_version": v1["version"], "changed": True}
    assert models.promote(U, v2["version"], reason="", actor="dev:alice")["changed"] is False
    back = models.rollback(U, reason="oops", actor="dev:alice")
    assert back == {"user_id": U, "active_version": v1["version"], "rolled_back_from": v2["version"]}
    assert stores.registry.get_version(U, v2["version"])["status"] == "rolled_back"
    actions = [a["action"] for a in stores.registry.audit_trail(U)]
    assert actions.count("manual_promote") == 1 and actions.count("rollback") == 1


def test_a_promotion_racing_another_writer_is_refused_and_audited():
    class Stale(FakeRegistry):
        """Answers the ACTIVE read with an older version (a training run moved it meanwhile)."""

        def active(self, user_id, consistent=False):
            item = super().active(user_id, consistent)
            return {**item, "version": version(1)} if item else item

    stores = fake_stores(registry=Stale())
    install(stores, n=1)
    install(stores, n=3)  # the writer that won
    v2 = _validated(stores, U, 2)
    with pytest.raises(Conflict) as exc:
        wiring.models_service(CFG, stores=stores).promote(U, v2["version"], reason="try", actor="dev:alice")
    assert exc.value.code == "active_changed"
    lost = [a for a in stores.registry.audit_trail(U) if a["action"] == "manual_promote_conflict"]
    assert lost and lost[0]["expected_version"] == version(1)
    assert FakeRegistry.active(stores.registry, U)["version"] == version(3)  # no lost update


def test_start_training_needs_a_state_machine_and_audits_the_request():
    class Sfn:
        def __init__(self):
            self.calls = []

        def start_execution(self, **kw):
            self.calls.append(kw)
            return {"executionArn": f"arn:aws:states:us-east-1:123456789012:execution:sm:{kw['name']}"}

    stores = fake_stores()
    with pytest.raises(ServiceUnavailable):
        wiring.models_service(CFG, stores=stores).start_training(U, actor="dev:alice")
    sfn = Sfn()
    models = wiring.models_service(Settings(state_machine_arn="arn:aws:states:us-east-1:123456789012:stateMachine:sm"),
                                   stores=stores, sfn=sfn)
    out = models.start_training(U, actor="dev:alice")
    assert sfn.calls[0]["name"] == out["run_id"] and out["execution_arn"].endswith(out["run_id"])
    (audit,) = stores.registry.audit_trail(U)
    assert audit["action"] == "train_requested" and audit["run_id"] == out["run_id"]


# ----------------------------------------------------------------------------- training run steps


def seed(stores, user: str, calendars=("home", "kids", "work"), per_calendar: int = 25):
    events = make_events(calendars, per_calendar)
    stores.events.put_events(user, events)
    stores.users.bump(user, events=len(events))
    return events


def test_plan_writes_the_users_to_train():
    stores = fake_stores()
    seed(stores, "alice")
    seed(stores, "bob", calendars=("work",), per_calendar=5)  # cannot train yet
    out = plan({"trigger": "schedule"}, stores, CFG, execution_name="exec-1")
    assert out["key"] == "runs/exec-1/users.json" and out["bucket"] == stores.models.bucket
    assert stores.models.get_json(out["key"]) == [{"user_id": "alice", "run_id": "exec-1", "reason": "never trained"}]
    assert out["skipped_total"] == 1 and out["drift"]["checked"] == 0
    asked = plan({"trigger": "api", "user_ids": ["bob", "bob"], "run_id": "r-api"}, stores, CFG)
    assert [i["user_id"] for i in stores.models.get_json(asked["key"])] == ["bob"]
    with pytest.raises(InvalidInput):
        plan({"user_ids": ["../x"]}, stores, CFG)


def test_train_validate_promote_then_a_worse_candidate_is_rejected():
    stores = fake_stores()
    seed(stores, "alice")
    item = {"user_id": "alice", "run_id": "r1", "reason": "test"}
    out = train_user(item, stores, CFG, trainer=FakeTrainer())
    assert out["status"] == "candidate"
    rec = stores.registry.get_version("alice", out["version"])
    assert stores.models.get(rec["s3_key"], rec["sha256"]) and rec["drift_reference"]
    out = validate(out, stores, CFG)
    assert out["status"] == "valid", out
    reads: list[str] = []
    real_list = stores.events.list_events_updated
    stores.events.list_events_updated = lambda u, *a, **kw: reads.append(u) or real_list(u, *a, **kw)
    out = promote(out, stores, CFG)
    assert out["status"] == "promoted" and stores.registry.active("alice")["version"] == rec["version"]
    assert reads == []  # a first model has no champion to score: the holdout events are not read

    worse = validate(train_user(item, stores, CFG, now=datetime.now(timezone.utc) + timedelta(seconds=2),
                                      trainer=FakeTrainer(holdout_accuracy=0.4)), stores, CFG)
    reads.clear()
    out = promote(worse, stores, CFG)
    assert out["status"] == "rejected" and out["stage"] == "champion"
    assert stores.registry.active("alice")["version"] == rec["version"]
    assert reads == ["alice"]  # a champion: its challenger's holdout is read, once


def test_gates_skip_and_a_tampered_candidate_is_rejected():
    stores = fake_stores()
    seed(stores, "bob", calendars=("work",), per_calendar=5)
    skipped = train_user({"user_id": "bob", "run_id": "r1"}, stores, CFG, trainer=FakeTrainer())
    assert skipped["status"] == "skipped" and stores.registry.versions("bob") == []
    seed(stores, "alice")
    out = train_user({"user_id": "alice", "run_id": "r1"}, stores, CFG, trainer=FakeTrainer())
    rec = stores.registry.get_version("alice", out["version"])
    stores.models.objects[rec["s3_key"]] = b"not onnx"
    out = validate(out, stores, CFG)
    assert out["status"] == "rejected" and "sha256" in out["reason"]
    assert stores.registry.get_version("alice", out["version"])["rejected_stage"] == "validate"


def test_validate_rejects_a_model_whose_labels_differ_from_its_registration():
    """The registry's labels are what predict trusts for column order: a model object whose own
    labels differ (a swapped or re-ordered export) never becomes valid."""
    stores = fake_stores()
    seed(stores, "alice")
    out = train_user({"user_id": "alice", "run_id": "r1"}, stores, CFG, trainer=FakeTrainer())
    rec = stores.registry.get_version("alice", out["version"])
    assert check_candidate(rec, stores.models)["passed"] is True
    swapped = {**rec, "labels": list(reversed(rec["labels"]))}
    res = check_candidate(swapped, stores.models)
    assert res["passed"] is False and res["reason"] == "the model's labels differ from the registered labels"


def test_training_reads_only_the_most_recent_max_train_events():
    """MAX_TRAIN_EVENTS bounds what TrainUser loads (the newest, in time order)."""
    stores = fake_stores()
    events = seed(stores, "alice", per_calendar=50)  # 150 events
    cfg = Settings(max_train_events=100)
    got = load_training_events("alice", stores, cfg)
    kept = {e.event_id for e in got}
    assert len(got) == 100 == len(kept) and [e.start for e in got] == sorted(e.start for e in got)
    assert all(e.start <= got[0].start for e in events if e.event_id not in kept)  # the oldest are dropped
    assert len(load_training_events("alice", stores, CFG)) == 150


def test_a_failed_registration_leaves_no_object_behind():
    class Refuses(FakeRegistry):
        def put_version(self, user_id, version, record):
            raise ServiceUnavailable("storage is throttling; retry the request", retry_after=2)

    stores = fake_stores(registry=Refuses())
    seed(stores, "alice")
    with pytest.raises(ServiceUnavailable):
        train_user({"user_id": "alice", "run_id": "r1"}, stores, CFG, trainer=FakeTrainer())
    assert stores.models.objects == {}


def test_summarize_records_the_run():
    stores, recorded = fake_stores(), []

    class Metrics:
        def add_metric(self, name, unit, value):
            recorded.append((name, value))

    run = {"run_id": "r-sum", "count": 2, "skipped_total": 3, "trigger": "schedule",
           "started_at": "2026-06-01T00:00:00+00:00",
           "results": [{"user_id": "a", "status": "promoted", "duration_ms": 100},
                       {"user_id": "b", "status": "failed", "stage": "train", "error": "ValueError"}]}
    out = summarize(run, stores, CFG, now=datetime(2026, 6, 1, 0, 1, tzinfo=timezone.utc), metrics=Metrics())
    stored = stores.registry.get_run("r-sum")
    assert (stored["trained"], stored["failed"], stored["not_needed"], stored["seconds"]) == (1, 1, 3, 60.0)
    assert out["failures"] == [{"user_id": "b", "stage": "train", "error": "ValueError"}]
    assert ("TrainingUsersTrained", 1) in recorded and stores.registry.runs()[0]["run_id"] == "r-sum"



def test_summarize_counts_batched_results_and_recovers_the_users_of_a_failed_child():
    """Results come one list per child workflow (ItemBatcher). A child that failed as a whole (an
    Express child past 5 minutes) leaves no per-user result: its users come from users.json and
    their outcome from the registry — promoted (ACTIVE is this run's version), rejected, or failed."""
    from calroute.services.training.common import run_key

    stores = fake_stores()
    run_id = "r-batch"
    planned = ["a", "b", "c", "d", "e", "f"]
    stores.models.put_json(run_key(run_id), [{"user_id": u, "run_id": run_id, "reason": "x"} for u in planned])
    # the failed child held c, d, e: c was promoted before it died, d rejected, e never got a version
    rec = {"status": "candidate", "run_id": run_id, "s3_key": "models/c/k.onnx", "sha256": "0" * 64,
           "threshold": 0.5, "feature_spec": 2, "labels": ["home", "work"]}
    stores.registry.put_version("c", "v20260601000000-aaaaaa", dict(rec))
    stores.registry.activate("c", {**rec, "version": "v20260601000000-aaaaaa"}, expected_version=None,
                             actor="training-run", reason="first")
    stores.registry.put_version("d", "v20260601000000-bbbbbb", {**rec, "s3_key": "models/d/k.onnx"})
    stores.registry.set_status("d", "v20260601000000-bbbbbb", "rejected", "parity", rejected_stage="validate")
    # e has an older version from another run only: not this run's outcome
    stores.registry.put_version("e", "v20250101000000-cccccc", {**rec, "run_id": "r-old"})
    run = {"run_id": run_id, "count": 6, "skipped_total": 0, "started_at": "2026-06-01T00:00:00+00:00",
           "results": [[{"user_id": "a", "status": "promoted", "duration_ms": 10},
                        {"user_id": "b", "status": "skipped", "duration_ms": 5}],
                       None,
                       [{"user_id": "f", "status": "failed", "stage": "train", "error": "ValueError"}]]}
    out = summarize(run, stores, CFG, now=datetime(2026, 6, 1, 0, 1, tzinfo=timezone.utc))
    assert (out["planned"], out["trained"], out["skipped"], out["rejected"], out["failed"]) == (6, 2, 1, 1, 2)
    assert (out["recovered"], out["lost_batches"]) == (3, 1)
    assert sorted((f["user_id"], f["stage"]) for f in out["failures"]) == [("e", "batch"), ("f", "train")]
    assert [(r["user_id"], r["stage"]) for r in out["rejections"]] == [("d", "validate")]
    assert stores.registry.get_run(run_id)["trained"] == 2

    # all results there: users.json is not even read
    stores.models.delete(run_key(run_id))
    full = {**run, "count": 2, "results": [[{"user_id": "a", "status": "promoted", "duration_ms": 10},
                                            {"user_id": "b", "status": "skipped", "duration_ms": 5}]]}
    out = summarize(full, stores, CFG)
    assert (out["trained"], out["skipped"], out["failed"], out["recovered"]) == (1, 1, 0, 0)
    # a lost child and no manifest: its users still count, as failed (never silently dropped)
    out = summarize({**full, "count": 3, "results": [full["results"][0], {"Error": "States.Timeout"}]}, stores, CFG)
    assert (out["planned"], out["trained"], out["failed"], out["lost_batches"]) == (3, 1, 1, 1)
    assert out["failures"][0]["error"].startswith("States.Timeout")



def _result_entry(status: str, items: list, output=None, error: str = "", cause: str = "") -> dict:
    """One child's entry of a ResultWriter result file, as Step Functions documents it (Transformation
    NONE): Input and Output are JSON *strings*; a failed child has Error/Cause and no Output."""
    import json

    e = {"ExecutionArn": "arn:aws:states:us-east-1:123456789012:execution:sm/TrainUsers:x", "Name": "x",
         "Input": json.dumps({"Items": items}), "InputDetails": {"Included": True}, "Status": status,
         "StartDate": "2026-06-01T00:00:00Z", "StopDate": "2026-06-01T00:00:09Z", "RedriveCount": 0,
         "StateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:sm/TrainUsers"}
    if status == "SUCCEEDED":
        e.update(Output=json.dumps(output), OutputDetails={"Included": True})
    else:
        e.update(Error=error, Cause=cause)
    return e


def test_summarize_reads_the_result_writer_manifest_and_its_succeeded_and_failed_files():
    """The Map's output is only the ResultWriter's reference: Summarize reads the manifest, then every
    SUCCEEDED/FAILED file it lists; a FAILED child's users are recovered from users.json + the
    registry as before, and the record is exactly what the inline results gave."""
    from calroute.services.training.common import results_prefix, run_key

    stores = fake_stores()
    run_id = "r-writer"
    base = f"{results_prefix(run_id)}/0b1c2d3e"
    stores.models.put_json(run_key(run_id), [{"user_id": u, "run_id": run_id, "reason": "x"}
                                             for u in ("a", "b", "c", "d", "f")])
    # c was promoted before its child died (its registry trace), d has no trace
    rec = {"status": "candidate", "run_id": run_id, "s3_key": "models/c/k.onnx", "sha256": "0" * 64,
           "threshold": 0.5, "feature_spec": 2, "labels": ["home", "work"]}
    stores.registry.put_version("c", "v20260601000000-aaaaaa", dict(rec))
    stores.registry.activate("c", {**rec, "version": "v20260601000000-aaaaaa"}, expected_version=None,
                             actor="training-run", reason="first")
    child_1 = [{"user_id": "a", "status": "promoted", "duration_ms": 10},
               {"user_id": "b", "status": "rejected", "stage": "champion", "reason": "worse", "duration_ms": 30}]
    child_3 = [{"user_id": "f", "status": "failed", "stage": "train", "error": "ValueError", "duration_ms": 20}]
    stores.models.put_json(f"{base}/SUCCEEDED_0.json", [
        _result_entry("SUCCEEDED", [{"user_id": "a"}, {"user_id": "b"}], child_1),
        _result_entry("SUCCEEDED", [{"user_id": "f"}], child_3)])
    stores.models.put_json(f"{base}/FAILED_0.json", [
        _result_entry("FAILED", [{"user_id": "c"}, {"user_id": "d"}], error="States.Timeout", cause="300 s")])
    stores.models.put_json(f"{base}/manifest.json", {
        "DestinationBucket": stores.models.bucket,
        "MapRunArn": "arn:aws:states:us-east-1:123456789012:mapRun:sm/TrainUsers:0b1c2d3e",
        "ResultFiles": {"FAILED": [{"Key": f"{base}/FAILED_0.json", "Size": 1}], "PENDING": [],
                        "SUCCEEDED": [{"Key": f"{base}/SUCCEEDED_0.json", "Size": 1}]}})
    ref = {"MapRunArn": "arn:aws:states:us-east-1:123456789012:mapRun:sm/TrainUsers:0b1c2d3e",
           "ResultWriterDetails": {"Bucket": stores.models.bucket, "Key": f"{base}/manifest.json"}}
    now = datetime(2026, 6, 1, 0, 1, tzinfo=timezone.utc)
    run = {"run_id": run_id, "count": 5, "skipped_total": 2, "started_at": "2026-06-01T00:00:00+00:00",
           "results": ref}
    out = summarize(run, stores, CFG, now=now)
    assert (out["planned"], out["not_needed"], out["trained"], out["skipped"], out["rejected"], out["failed"],
            out["conflict"]) == (5, 2, 2, 0, 1, 2, 0)
    assert (out["recovered"], out["lost_batches"]) == (2, 1)
    assert sorted((f["user_id"], f["stage"]) for f in out["failures"]) == [("d", "batch"), ("f", "train")]
    assert [f["error"] for f in out["failures"] if f["user_id"] == "d"] == ["States.Timeout: 300 s"]
    assert [(r["user_id"], r["stage"]) for r in out["rejections"]] == [("b", "champion")]
    assert (out["user_ms_p50"], out["user_ms_max"]) == (20, 30)
    assert stores.registry.get_run(run_id)["failed"] == 2

    # the same run with its results inline gives the same record (same counts, same lists)
    inline = summarize({**run, "results": [child_1, {"Error": "States.Timeout", "Cause": "300 s"}, child_3]},
                       stores, CFG, now=now)
    assert {k: v for k, v in inline.items()} == out

    # a reference outside this run's results prefix, or to another bucket, is refused; a missing
    # manifest fails the run (a storage fault must be visible, never a silently empty run)
    for bad in ({"Bucket": stores.models.bucket, "Key": "runs/other-run/results/x/manifest.json"},
                {"Bucket": stores.models.bucket, "Key": f"{base}/../../../models/a/manifest.json"},
                {"Bucket": "someone-elses-bucket", "Key": f"{base}/manifest.json"}):
        with pytest.raises(InvalidInput):
            summarize({**run, "results": {**ref, "ResultWriterDetails": bad}}, stores, CFG, now=now)
    stores.models.delete(f"{base}/manifest.json")
    with pytest.raises(NotFound):
        summarize(run, stores, CFG, now=now)


def test_stats_read_the_log_and_the_global_ledger():
    stores = fake_stores()
    stores.predictions.put_many(U, [{"event_id": "e1", "calendar_id": "work", "method": "ml", "latency_ms": 2.0},
                                    {"event_id": "e2", "calendar_id": "home", "method": "llm", "latency_ms": 600.0,
                                     "llm_usd": 0.002}])
    stores.predictions.mark(U, "e1", "work")
    stores.usage.add(U, usd=0.002, input_tokens=900, output_tokens=20)
    stats = wiring.stats_service(CFG, stores=stores)
    mine = stats.user_stats(U)
    assert mine["predictions"] == 2 and mine["by_method"]["ml"]["accuracy"] == 1.0 and mine["llm"]["calls"] == 1
    glob = stats.global_stats(1)
    assert glob["requests"] == 2 and glob["llm"]["calls"] == 1 and glob["llm_calls"] == 1
    assert stores.usage.days(GLOBAL_PK, "2000-01-01")[0]["calls"] == 1


# ----------------------------------------------------------------------------- prediction log off the hot path


def test_the_production_default_keeps_every_unsure_answer_and_a_weighted_sample_of_confident_ones():
    """PREDICTION_LOG_CONFIDENT_SAMPLE_RATE samples only the confident model answers (crc32 of the
    event id); every answer the model did not give confidently is kept at PREDICTION_LOG_SAMPLE_RATE;
    each item carries the rate it was kept with."""
    from calroute.config import PREDICTION_LOG_CONFIDENT_DEFAULT
    from calroute.sampling import cut, kept

    from calroute.schema import parse_event

    assert Settings().prediction_log_confident_sample_rate == PREDICTION_LOG_CONFIDENT_DEFAULT < 0.01
    stores = fake_stores()
    install(stores)
    cfg = Settings(prediction_log_confident_sample_rate=0.25)
    svc = wiring.predict_service(cfg, stores=stores, sink=Recorder(), invoker=None)
    conf = [f"c-{i}" for i in range(400)]
    unsure = [f"u-{i}" for i in range(40)]
    out = svc.classify_events(U, [parse_event({**CONFIDENT, "event_id": i}) for i in conf]
                              + [parse_event({**UNSURE, "event_id": i}) for i in unsure])
    assert {r["method"] for r in out[:400]} == {"ml"} and {r["method"] for r in out[400:]} == {"ml_low_confidence"}
    items = {eid: it for (_, eid), it in stores.predictions.items.items()}
    assert set(unsure) <= set(items) and all(items[i]["sample_rate"] == 1.0 for i in unsure)
    kept_conf = {i for i in conf if i in items}
    assert kept_conf == {i for i in conf if kept(i, cut(0.25))} and 0.18 < len(kept_conf) / 400 < 0.32
    assert all(items[i]["sample_rate"] == 0.25 for i in kept_conf)
    # the base rate scales both
    half = fake_stores()
    install(half)
    wiring.predict_service(Settings(prediction_log_sample_rate=0.5, prediction_log_confident_sample_rate=0.25),
                           stores=half, sink=Recorder(), invoker=None).classify_events(
        U, [parse_event({**UNSURE, "event_id": i}) for i in unsure])
    rates = {it["sample_rate"] for it in half.predictions.items.values()}
    assert rates == {0.5} and {e for (_, e) in half.predictions.items} == {i for i in unsure if kept(i, cut(0.5))}


def test_every_answer_gets_a_privacy_safe_json_record_line():
    """One ``{"record": "prediction"}`` line per answer (logged in DynamoDB or not): hashed user and
    event id, no title, no calendar id."""
    import json as _json

    from calroute.ids import hashed_user

    stores, lines = fake_stores(), []
    install(stores)
    cfg = Settings(prediction_log_confident_sample_rate=0.0)
    svc = wiring.predict_service(cfg, stores=stores, sink=Recorder(), invoker=None, lines=lines.append)
    svc.classify_batch(U, [CONFIDENT, UNSURE])
    recs = [_json.loads(x) for chunk in lines for x in chunk.splitlines()]
    assert [r["method"] for r in recs] == ["ml", "ml_low_confidence"]
    assert [r["logged"] for r in recs] == [False, True]  # the confident one sampled out (rate 0)
    assert all(r["record"] == "prediction" and r["user"] == hashed_user(U) for r in recs)
    assert recs[0]["event"] == hashed_user("e-conf") and recs[0]["defer_reason"] is None and recs[1]["defer_reason"]
    text = "".join(lines)
    for secret in (U, "e-conf", "sprint", "standup", "zzz", '"work"', '"home"'):
        assert secret not in text
    off = wiring.predict_service(Settings(prediction_log_lines=False), stores=stores, invoker=None,
                                 lines=lines.append)
    lines.clear()
    off.classify(U, CONFIDENT)
    assert lines == []


def _sampled_log(stores):
    """A user's log as the production default leaves it: 2 of 200 confident answers (rate 0.01) and
    every one of 20 LLM answers."""
    stores.predictions.put_many(U, [
        {"event_id": "m1", "calendar_id": "work", "method": "ml", "latency_ms": 1.0, "confidence": 0.97,
         "sample_rate": 0.01, "cohort": "treatment"},
        {"event_id": "m2", "calendar_id": "work", "method": "ml", "latency_ms": 1.0, "confidence": 0.97,
         "sample_rate": 0.01, "cohort": "treatment"},
        *({"event_id": f"l{i}", "calendar_id": "home", "method": "llm", "latency_ms": 600.0, "confidence": 0.5,
           "llm_usd": 0.001, "sample_rate": 1.0, "cohort": "treatment"} for i in range(20)),
    ])
    stores.predictions.mark(U, "m1", "work")          # right
    for i in range(10):
        stores.predictions.mark(U, f"l{i}", "home" if i < 5 else "work")  # 5 right, 5 wrong


def test_stats_weight_the_sampled_log_by_one_over_its_rate():
    stores = fake_stores()
    _sampled_log(stores)
    mine = wiring.stats_service(CFG, stores=stores).user_stats(U)
    assert mine["predictions"] == 220 and mine["logged"] == 22
    assert mine["by_method"]["ml"] == {"count": 200, "logged": 2, "judged": 1, "correct": 1, "accuracy": 1.0}
    assert mine["by_method"]["llm"]["count"] == 20 and mine["by_method"]["llm"]["accuracy"] == 0.5
    # overall: the one judged ml item stands for 100 answers, the ten llm ones for one each
    assert mine["judged"] == 11 and mine["accuracy"] == pytest.approx((100 + 5) / (100 + 10), abs=1e-4)
    assert mine["latency_p50_ms"] == 1.0  # 200 of the 220 answers took 1 ms (unweighted: 600)

    glob = wiring.stats_service(CFG, stores=stores).global_stats(1)
    assert glob["requests"] == 220 and glob["logged"] == 22 and glob["ml_share"] == pytest.approx(200 / 220, abs=1e-4)
    assert glob["by_method"]["ml"]["count"] == 200 and glob["by_method"]["ml"]["share"] == pytest.approx(0.9091)
    assert glob["llm_calls"] == 20 and glob["spent_usd"] == pytest.approx(0.02)
    assert glob["saved"]["ml_answered"] == 200 and glob["latency_p50_ms"] == 1.0
    assert {b["count"] for b in glob["confidence_histogram"] if b["to"] == 1.0} == {200}
    assert glob["saved"]["only_calendar"] == 0 and glob["saved"]["usd"] == pytest.approx(200 * 0.001)
    # a sole calendar's answers (sampled like confident ones) also saved an LLM call each
    stores.predictions.put_many("carol", [{"event_id": "o1", "calendar_id": "work", "method": "only_calendar",
                                           "latency_ms": 1.0, "sample_rate": 0.02, "cohort": "treatment"}])
    glob = wiring.stats_service(CFG, stores=stores).global_stats(1)
    assert glob["by_method"]["only_calendar"]["count"] == 50 and glob["llm_calls"] == 20
    assert glob["saved"]["only_calendar"] == 50 and glob["saved"]["usd"] == pytest.approx(250 * 0.001)
    assert glob["saved"]["time_seconds"] == pytest.approx(250 * (600.0 - 1.0) / 1000, abs=1e-3)


def test_experiment_arms_weight_the_sampled_log():
    from calroute.experiments import arm_stats

    stores = fake_stores()
    _sampled_log(stores)
    arm = arm_stats(stores.predictions.since(U, "2000-01-01"))
    assert arm["requests"] == 220 and arm["logged"] == 22 and arm["by_method"] == {"ml": 200, "llm": 20}
    assert arm["judged"] == 11 and arm["accuracy"] == pytest.approx(105 / 110)
    assert arm["correct"] == round(105 / 110 * 11) and arm["ml_accuracy"] == 1.0
    assert arm["llm_calls"] == 20 and arm["cost_usd"] == pytest.approx(0.02) and arm["latency_p50_ms"] == 1.0
    # unsampled items (no sample_rate) weigh 1: the former figures
    plain = arm_stats([{"method": "ml", "latency_ms": 2.0}, {"method": "llm", "latency_ms": 4.0}])
    assert plain["requests"] == 2 and plain["latency_p50_ms"] == 2.0 and plain["latency_p99_ms"] == 4.0


def test_drift_weights_sampled_summaries_and_gates_on_the_effective_sample_size():
    from calroute.drift import drift_report

    ref = {"n": 100, "groups": {"time": {"h10": 50, "h20": 50, "w1": 100}, "shape": {"b1": 100, "f0": 100},
                                "tokens": {"1": 100}}, "labels": {"work": 50, "home": 50}}
    at10 = {"h": 10, "w": 1, "b": 1, "f": 0, "t": [1]}
    at20 = {"h": 20, "w": 1, "b": 1, "f": 0, "t": [1]}
    # 100 unsure requests at 20h (kept at rate 1), and 10 confident ones at 10h each standing for 10
    summaries = [at20] * 100 + [at10] * 10
    weights = [1.0] * 100 + [10.0] * 10
    labels = ["home"] * 100 + ["work"] * 10
    weighted = drift_report(ref, summaries, labels, min_samples=30, weights=weights, label_weights=weights)
    naive = drift_report(ref, summaries, labels, min_samples=30)
    assert weighted["psi"]["time"] == pytest.approx(0.0, abs=1e-3) and weighted["label_shift"] == pytest.approx(0.0, abs=1e-3)
    assert naive["drifted"] and not weighted["drifted"]  # unweighted, the always-kept unsure ones look like drift
    assert 0 < weighted["effective_n"] < 110
    # a handful of heavy items is not enough to conclude anything
    few = drift_report(ref, [at10] * 40, ["work"] * 40, min_samples=30, weights=[200.0] * 2 + [1.0] * 38)
    assert few["psi"] == {} and not few["drifted"] and "effective" in few["reason"]


def test_correcting_the_models_own_answer_counts_a_confident_miss():
    """``confident_misses_total`` (the retraining policy's "the model was sure and wrong") counts a
    changed label whose answer was the model's own: from the log, the client's echo or the
    remembered row; not an LLM answer, not an unchanged label."""
    from calroute.schema import parse_event

    stores = fake_stores()
    ingest = wiring.ingest_service(CFG, stores=stores)
    ingest.ingest_events(U, [ev(1), ev(2), ev(3)])
    stores.predictions.put_many(U, [{"event_id": "e1", "calendar_id": "work", "method": "ml",
                                     "model_version": version(1)}])
    ingest.correct_event(U, "e1", "home")  # the log says ml
    assert stores.users.profile(U)["confident_misses_total"] == 1
    ingest.correct_event(U, "e2", "home", predicted={"calendar_id": "work", "method": "llm"})
    ingest.correct_event(U, "e3", "work", predicted={"calendar_id": "work", "method": "ml"})  # unchanged
    p = stores.users.profile(U)
    assert (p["corrections_total"], p["confident_misses_total"]) == (2, 1)
    ingest.correct_event(U, "e2", "work", predicted={"calendar_id": "home", "method": "ml"})  # the echo says ml
    stores.events.remember(U, [(parse_event(ev(4)), "ml", {"method": "ml"}),
                               (parse_event(ev(5)), "llm", {"method": "llm"})])
    ingest.correct_event(U, "e4", "home")  # a remembered answer of the model
    ingest.correct_event(U, "e5", "home")  # a remembered answer of the LLM
    p = stores.users.profile(U)
    assert (p["corrections_total"], p["confident_misses_total"]) == (5, 3)


def test_a_correction_records_the_clients_echo_when_the_log_has_no_item():
    stores = fake_stores()
    ingest = wiring.ingest_service(CFG, stores=stores)
    ingest.ingest_events(U, [ev(1), ev(2), ev(3)])
    echo = {"calendar_id": "work", "method": "ml", "model_version": version(1)}
    out = ingest.correct_event(U, "e1", "home", predicted=echo)
    assert (out["predicted_calendar"], out["predicted_method"], out["predicted_model_version"]) == (
        "work", "ml", version(1))
    assert out["predicted_source"] == "client" and out["was_correct"] is False and out["changed"] is True
    assert stores.users.corrections(U)[-1]["predicted_source"] == "client"
    assert stores.predictions.get(U, "e1") is None  # an echo never creates a log item
    # the log wins over the echo when it has the event
    stores.predictions.put_many(U, [{"event_id": "e2", "calendar_id": "home", "method": "llm",
                                     "model_version": version(1), "sample_rate": 1.0}])
    logged = ingest.correct_event(U, "e2", "home", predicted=echo)
    assert logged["predicted_source"] == "log" and logged["predicted_method"] == "llm" and logged["was_correct"] is True
    # every method classify answers is echoed back, only_calendar included
    only = ingest.correct_event(U, "e2", "work", predicted={"calendar_id": "home", "method": "only_calendar"})
    assert only["predicted_method"] == "llm" and only["predicted_source"] == "log"  # the log still wins
    from calroute.services.ingest import echoed_prediction

    assert echoed_prediction({"calendar_id": "home", "method": "only_calendar"})["method"] == "only_calendar"
    # none answered: no calendar
    none = ingest.correct_event(U, "e3", "home", predicted={"calendar_id": None, "method": "none"})
    assert none["predicted_method"] == "none" and none["predicted_calendar"] == "" and none["was_correct"] is False
    for bad in ({"method": "guess", "calendar_id": "work"}, {"method": "ml"}, {"method": "ml", "calendar_id": "../x"},
                {"method": "ml", "calendar_id": "work", "model_version": "latest"},
                {"method": "ml", "calendar_id": "work", "user_id": "bob"}, ["work"]):
        with pytest.raises(InvalidInput):
            ingest.correct_event(U, "e1", "home", predicted=bad)


def test_the_template_deploys_the_production_logging_default():
    """PredictionLogConfidentSampleRate's default is calroute.config's, and reaches the predict function."""
    import re
    from pathlib import Path

    from calroute.config import PREDICTION_LOG_CONFIDENT_DEFAULT

    text = (Path(__file__).resolve().parents[2] / "template.yaml").read_text(encoding="utf-8")
    block = re.search(r"\n  PredictionLogConfidentSampleRate:\n((?:    .*\n)+)", text)
    assert block and float(re.search(r"Default: ([0-9.]+)", block.group(1)).group(1)) == PREDICTION_LOG_CONFIDENT_DEFAULT
    assert "PREDICTION_LOG_CONFIDENT_SAMPLE_RATE: !Ref PredictionLogConfidentSampleRate" in text
