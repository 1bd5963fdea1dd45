"""A training run the data gates stopped is not repeated on the same labels (calroute.retrain,
docs/training.md "A run the gates stopped..."): TrainUser records the stop, the planner skips the
user until a write that may change the trusted labels bumps the profile's ``labels_total``."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from calroute import wiring
from calroute.adapters.invoke import CallableInvoker
from calroute.config import Settings
from calroute.retrain import gate_memo_holds, gate_skip_record, gates_key
from calroute.schema import CalendarInfo, parse_event
from calroute.services.ingest import correct_event, ingest_events
from calroute.services.lifecycle import LifecycleService
from calroute.services.review import confirm_event
from calroute.services.training.plan import plan
from calroute.services.training.train_user import train_user
from support.fakes import fake_stores
from support.models import FakeTrainer, make_events

CFG = Settings()
NOW = datetime(2026, 6, 1, 3, 0, tzinfo=timezone.utc)


def _ev(**fields):
    return parse_event(fields)


def _planned(stores, now=NOW) -> dict[str, str]:
    out = plan({"trigger": "schedule"}, stores, CFG, now=now)
    planned = {i["user_id"]: i["reason"] for i in stores.models.get_json(out["key"])}
    return planned, {s["user_id"]: s["reason"] for s in out["skipped"]}


def _remembering_user(stores, user="carl", n=30):
    """A user who classifies with ``remember`` and labelled only 3 events: ``events_total`` passes
    the planner's counter gate, the trusted labels never pass the real gates."""
    ingest_events(user, [e.to_flat() for e in make_events(("work",), 3)], stores, CFG)
    answers = [(_ev(event_id=f"r{i}", summary=f"Thing {i}", start=f"2026-05-{1 + i % 28:02d}T10:00:00Z",
                      calendar_id=("work", "home")[i % 2]), "llm", {"method": "llm"}) for i in range(n)]
    new = stores.events.remember(user, answers)
    stores.users.bump(user, events=len(new))


def test_a_run_the_gates_stopped_is_not_repeated_until_a_label_is_written():
    stores = fake_stores()
    _remembering_user(stores)
    planned, _ = _planned(stores)
    assert planned == {"carl": "never trained"}  # 33 events: the counter gate cannot tell
    out = train_user({"user_id": "carl", "run_id": "r1"}, stores, CFG, trainer=FakeTrainer(), now=NOW)
    assert out["status"] == "skipped" and out["gate_skip_recorded"] is True
    memo = stores.registry.gate_skip("carl")
    assert memo["labels_total"] == 3 and memo["gates"] == gates_key(CFG) and memo["reason"] == out["reason"]

    # the next nights: more remembered answers, no label -> not sent again
    stores.events.remember("carl", [(_ev(event_id="r99", summary="More", start="2026-05-30T10:00:00Z",
                                           calendar_id="home"), "llm", {"method": "llm"})])
    stores.users.bump("carl", events=1)
    planned, skipped = _planned(stores, NOW + timedelta(days=1))
    assert planned == {} and skipped["carl"].startswith("cannot train yet: needs at least")
    assert skipped["carl"].endswith("(no new labels since 2026-06-01)")

    # a label arrives: planned again; the gates now pass (2 calendars x 5 user labels)
    ingest_events("carl", [e.to_flat() for e in make_events(("home",), 5)]
                  + [e.to_flat() for e in make_events(("work",), 5)], stores, CFG)
    planned, _ = _planned(stores, NOW + timedelta(days=2))
    assert planned == {"carl": "never trained"}
    assert train_user({"user_id": "carl", "run_id": "r3"}, stores, CFG, trainer=FakeTrainer(),
                      now=NOW + timedelta(days=2))["status"] == "candidate"


def test_the_memo_lapses_with_other_gates_and_with_age():
    profile = {"labels_total": 7}
    memo = gate_skip_record(profile, CFG, reason="needs at least 10 labelled events (has 7)", now=NOW)
    assert gate_memo_holds(memo, profile, CFG, NOW + timedelta(days=29)) == (
        True, "cannot train yet: needs at least 10 labelled events (has 7) (no new labels since 2026-06-01)")
    naive = (NOW + timedelta(days=29, hours=23)).replace(tzinfo=None)  # read as UTC
    assert gate_memo_holds(memo, profile, CFG, naive)[0] is True
    assert gate_memo_holds(memo, profile, CFG, naive + timedelta(hours=1))[0] is False
    assert len(gate_skip_record(profile, CFG, reason="x" * 400, now=NOW)["reason"]) == 300
    assert gate_memo_holds(memo, profile, CFG, NOW + timedelta(days=30)) == (False, "")  # retrain_max_age_days
    assert gate_memo_holds(memo, {"labels_total": 8}, CFG, NOW) == (False, "")
    assert gate_memo_holds(memo, profile, Settings(min_per_calendar=4), NOW) == (False, "")
    assert gate_memo_holds(memo, profile, Settings(max_train_events=500), NOW) == (False, "")
    assert gate_memo_holds(None, profile, CFG, NOW) == (False, "")
    assert gate_memo_holds({**memo, "at": "garbage"}, profile, CFG, NOW) == (False, "")
    # a profile from before the counter existed: 0 on both sides, and the first label bumps it
    old = gate_skip_record({}, CFG, reason="r", now=NOW)
    assert old["labels_total"] == 0 and gate_memo_holds(old, {}, CFG, NOW)[0] is True
    assert gate_memo_holds(old, {"labels_total": 1}, CFG, NOW)[0] is False


def test_a_trained_user_whose_labels_were_deleted_is_not_retried_nightly():
    """A retrain request (a deleted calendar) with too few labels left: one run stops at the
    gates, the planner waits for a label after it."""
    stores = fake_stores()
    events = make_events(("home", "work"), 6)
    ingest_events("dana", [e.to_flat() for e in events], stores, CFG)
    train_user({"user_id": "dana", "run_id": "r0"}, stores, CFG, trainer=FakeTrainer(), now=NOW - timedelta(days=3))
    LifecycleService(stores, CFG, sleep=lambda s: None).delete_calendar("dana", "home")
    planned, _ = _planned(stores)
    assert planned["dana"].startswith("retrain requested")
    out = train_user({"user_id": "dana", "run_id": "r1"}, stores, CFG, trainer=FakeTrainer(), now=NOW)
    assert out["status"] == "skipped"
    planned, skipped = _planned(stores, NOW + timedelta(days=1))
    assert "dana" not in planned and skipped["dana"].startswith("cannot train yet")


def _profile_labels(stores, user):
    return int(stores.users.profile(user).get("labels_total") or 0)


def test_every_write_that_may_change_the_trusted_labels_bumps_labels_total():
    stores = fake_stores()
    evs = [e.to_flat() for e in make_events(("home", "work"), 3)]
    ingest_events("eve", evs, stores, CFG)
    assert _profile_labels(stores, "eve") == 6
    ingest_events("eve", evs[:2], stores, CFG)  # the same ids again (a user's label may replace a remembered one)
    assert _profile_labels(stores, "eve") == 8 and stores.users.profile("eve")["events_total"] == 6

    stores.events.remember("eve", [(_ev(event_id="m1", summary="x", start="2026-05-01T10:00:00Z",
                                          calendar_id="work"), "llm", {"method": "llm"})])
    assert _profile_labels(stores, "eve") == 8  # a remembered LLM answer never certifies
    correct_event("eve", "m1", "work", stores)  # the same calendar: the label is the user's now
    assert _profile_labels(stores, "eve") == 9
    correct_event("eve", "m1", "home", stores)
    assert _profile_labels(stores, "eve") == 10
    correct_event("eve", "m1", "home", stores)  # already the user's label: nothing changed
    assert _profile_labels(stores, "eve") == 10

    stores.events.remember("eve", [(_ev(event_id="m2", summary="y", start="2026-05-02T10:00:00Z",
                                          calendar_id="work"), "llm", {"method": "llm"})])
    assert confirm_event("eve", "m2", stores)["changed"] is True
    assert _profile_labels(stores, "eve") == 11
    assert confirm_event("eve", "m2", stores)["changed"] is False
    assert _profile_labels(stores, "eve") == 11

    life = LifecycleService(stores, CFG, sleep=lambda s: None)
    life.delete_event("eve", evs[0]["event_id"])
    assert _profile_labels(stores, "eve") == 12
    life.delete_calendar("eve", "home", move_to="work")  # moved: each a user's label in work
    assert _profile_labels(stores, "eve") == 12 + 3  # home-1, home-2 and m1


def test_a_sole_answer_remembered_bumps_labels_total_an_llm_answer_does_not():
    stores = fake_stores()
    stores.users.put_calendar("fay", CalendarInfo(calendar_id="work", name="work"))
    svc = wiring.predict_service(Settings(prediction_log_sample_rate=0, prediction_log_lines=False), stores=stores,
                                 invoker=CallableInvoker(lambda p: {"calendar_id": "work", "reason": "r", "usd": 0.0}))
    r = svc.classify("fay", {"event_id": "s1", "summary": "Standup", "start": "2026-03-03T10:00:00Z"}, remember=True)
    assert r["method"] == "only_calendar" and r["remembered"] is True
    assert _profile_labels(stores, "fay") == 1
    for cal in ("work", "home"):
        stores.users.put_calendar("gus", CalendarInfo(calendar_id=cal, name=cal))
    r = svc.classify("gus", {"event_id": "s2", "summary": "Dinner", "start": "2026-03-03T19:00:00Z"}, remember=True)
    assert r["method"] == "llm_only" and r["remembered"] is True
    assert _profile_labels(stores, "gus") == 0 and stores.users.profile("gus")["events_total"] == 1
