"""calroute.retrain at its boundaries, one rule at a time and in their order: never trained, drift,
age, new events, new calendars, a requested retrain, corrections; each threshold is met by exactly
its value and missed by one less, and each reason is exact. The mutation target for retrain.py."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from calroute.retrain import (NEVER_TRAINED, UP_TO_DATE, counter_gate, latest_training, needs_training,
                              trained_at)

CFG = SimpleNamespace(retrain_max_age_days=30, retrain_new_events=50, retrain_corrections=10, min_per_calendar=10,
                      min_events=40)
NOW = datetime(2026, 3, 31, 12, 0, tzinfo=timezone.utc)
T0 = NOW - timedelta(days=5)


def rec(version="v20260326120000-aaaaaa", **kw):
    return {"version": version, "trained_at": T0.isoformat(), "events_total_at_training": 100,
            "corrections_total_at_training": 4, "labels": ["work", "home"], **kw}


def decide(profile=None, active="same", last=None, now=NOW, **kw):
    last = rec() if last is None else last
    if active == "same":
        active = {"version": last["version"]} if last else None
    return needs_training(profile=profile or {"events_total": 100, "corrections_total": 4}, active=active,
                          last=last, cfg=CFG, now=now, **kw)


def test_trained_at_prefers_trained_at_then_created_at():
    assert trained_at({"trained_at": "2026-03-01T00:00:00Z", "created_at": "2026-02-01T00:00:00Z"}) == \
        datetime(2026, 3, 1, tzinfo=timezone.utc)
    assert trained_at({"created_at": "2026-02-01T00:00:00Z"}) == datetime(2026, 2, 1, tzinfo=timezone.utc)
    assert trained_at({}) is None


def test_latest_training_is_the_highest_version():
    assert latest_training([]) is None
    vs = [{"version": "v20260101000000-a"}, {"version": "v20260301000000-b"}, {"version": "v20260201000000-c"}, {}]
    assert latest_training(vs)["version"] == "v20260301000000-b"


def test_never_trained_follows_the_gates():
    p = {"events_total": 3}
    assert needs_training(profile=p, active=None, last=None, cfg=CFG, now=NOW) == (True, NEVER_TRAINED)
    assert needs_training(profile=p, active=None, last=None, cfg=CFG, now=NOW, can_train=(False, "too few")) == \
        (False, "cannot train yet: too few")


def test_up_to_date():
    assert decide() == (False, UP_TO_DATE) == (False, "up to date")


def test_a_naive_now_is_utc():
    assert decide(now=NOW.replace(tzinfo=None)) == (False, UP_TO_DATE)
    assert decide(now=(T0 + timedelta(days=30)).replace(tzinfo=None))[0] is True


def test_drift_on_the_pointer_or_on_the_active_record():
    last = rec()
    assert decide(active={"version": last["version"], "drifted": True}, last=last) == \
        (True, "drift detected on the active model")
    assert decide(active={"version": last["version"]}, last=rec(drifted=True)) == \
        (True, "drift detected on the active model")
    # a flag on a record that is not the active one does not count
    assert decide(active={"version": "v20260101000000-zzzzzz"}, last=rec(drifted=True))[1] != \
        "drift detected on the active model"


def test_a_training_newer_than_the_flag_answers_the_drift():
    newer = rec(version="v20260330120000-bbbbbb")
    assert decide(active={"version": "v20260326120000-aaaaaa", "drifted": True}, last=newer) == (False, UP_TO_DATE)
    same = rec(version="v20260326120000-aaaaaa")
    assert decide(active={"version": "v20260326120000-aaaaaa", "drifted": True}, last=same)[0] is True


def test_drift_with_no_version_record():
    assert needs_training(profile={"events_total": 1}, active={"version": "v1", "drifted": True,
                                                               "promoted_at": T0.isoformat()},
                          last=None, cfg=CFG, now=NOW) == (True, "drift detected on the active model")


def test_age_at_exactly_the_maximum():
    assert decide(now=T0 + timedelta(days=30)) == (True, "last training is 30 days old (max 30)")
    assert decide(now=T0 + timedelta(days=30) - timedelta(seconds=1)) == (False, UP_TO_DATE)


def test_age_from_the_pointers_promotion_when_the_record_has_no_time():
    last = {"version": "v1", "events_total_at_training": 100}
    active = {"version": "v1", "promoted_at": (NOW - timedelta(days=40)).isoformat()}
    assert decide(active=active, last=last) == (True, "last training is 40 days old (max 30)")


def test_new_events_at_exactly_the_threshold():
    assert decide(profile={"events_total": 150}) == (True, "50 new events since training (threshold 50)")
    assert decide(profile={"events_total": 149}) == (False, UP_TO_DATE)
    assert decide(profile={"events_total": 10_000}, last=rec(events_total_at_training=None)) == (False, UP_TO_DATE)
    assert decide(profile={"events_total": None}) == (False, UP_TO_DATE)


def test_a_new_calendar_at_exactly_min_per_calendar():
    p = {"events_total": 100, "calev#gym": 10, "calev#work": 99}
    assert decide(profile=p) == (True, "new calendar gym has 10 events (threshold 10)")
    assert decide(profile={"events_total": 100, "calev#gym": 9}) == (False, UP_TO_DATE)
    assert decide(profile={"events_total": 100, "calev#gym": None, 7: 50}) == (False, UP_TO_DATE)
    assert decide(profile={"events_total": 100, "calev#gym": 10}, last=rec(labels=None)) == (False, UP_TO_DATE)


def test_several_new_calendars():
    p = {"events_total": 100, "calev#gym": 12, "calev#band": 30, "calev#tiny": 2}
    assert decide(profile=p) == (True, "2 new calendars with 10+ events")


def test_a_requested_retrain_after_the_last_training():
    after = (T0 + timedelta(hours=1)).isoformat()
    assert decide(profile={"events_total": 100, "retrain_requested_at": after, "retrain_reason": "x" * 150}) == \
        (True, "retrain requested: " + "x" * 100)
    assert decide(profile={"events_total": 100, "retrain_requested_at": after}) == \
        (True, "retrain requested: data removed")
    assert decide(profile={"events_total": 100, "retrain_requested_at": T0.isoformat()}) == (False, UP_TO_DATE)
    assert decide(profile={"events_total": 100, "retrain_requested_at": (T0 - timedelta(days=1)).isoformat()}) == \
        (False, UP_TO_DATE)


def test_a_requested_retrain_with_no_training_time():
    last = {"version": "v1", "events_total_at_training": 100}
    p = {"events_total": 100, "retrain_requested_at": T0.isoformat(), "retrain_reason": "calendar deleted"}
    assert decide(profile=p, active={"version": "v1"}, last=last) == (True, "retrain requested: calendar deleted")


def test_corrections_at_exactly_the_threshold():
    assert decide(profile={"events_total": 100, "corrections_total": 14}) == \
        (True, "10 corrections since training (threshold 10)")
    assert decide(profile={"events_total": 100, "corrections_total": 13}) == (False, UP_TO_DATE)
    assert decide(profile={"events_total": 100, "corrections_total": 99},
                  last=rec(corrections_total_at_training=None)) == (False, UP_TO_DATE)


def test_rules_apply_in_order():
    p = {"events_total": 500, "corrections_total": 99, "calev#gym": 50}
    assert decide(profile=p, now=T0 + timedelta(days=31))[1].startswith("last training is 31 days old")
    assert decide(profile=p)[1].startswith("400 new events")
    p["events_total"] = 100
    assert decide(profile=p)[1].startswith("new calendar gym")


@pytest.mark.parametrize("n, want", [(40, (True, "")), (39, (False, "only 39 labelled events (need 40)")),
                                     (None, (False, "only 0 labelled events (need 40)"))])
def test_counter_gate_at_exactly_min_events(n, want):
    assert counter_gate({"events_total": n}, CFG) == want


def test_a_version_record_without_an_active_model_is_not_never_trained():
    # the last candidate was rejected and nothing is active: judged on that record, not "never trained"
    assert decide(active=None, last=rec()) == (False, UP_TO_DATE)
    assert decide(active=None, last=rec(), profile={"events_total": 150})[1].startswith("50 new events")


def test_without_a_version_record_the_active_pointer_is_the_reference():
    active = {"version": "v1", "trained_at": T0.isoformat(), "events_total_at_training": 100, "labels": ["work"]}
    assert needs_training(profile={"events_total": 150}, active=active, last=None, cfg=CFG, now=NOW) == \
        (True, "50 new events since training (threshold 50)")
    assert needs_training(profile={"events_total": 120}, active=active, last=None, cfg=CFG, now=NOW) == \
        (False, UP_TO_DATE)


def test_drift_when_neither_record_names_a_version():
    assert needs_training(profile={}, active={"drifted": True}, last={"trained_at": T0.isoformat()}, cfg=CFG,
                          now=NOW) == (True, "drift detected on the active model")
    # a pointer without a version: any versioned training is newer than it
    assert needs_training(profile={}, active={"drifted": True}, last=rec(), cfg=CFG, now=NOW) == (False, UP_TO_DATE)


LOW = SimpleNamespace(retrain_max_age_days=30, retrain_new_events=1, retrain_corrections=1, min_per_calendar=1,
                      min_events=1)


def test_missing_counters_count_as_zero():
    last = rec(events_total_at_training=0, corrections_total_at_training=0)
    p = {"events_total": None, "corrections_total": None, "calev#gym": None, "calev#band": 0}
    assert needs_training(profile=p, active={"version": last["version"]}, last=last, cfg=LOW, now=NOW) == \
        (False, UP_TO_DATE)
    assert needs_training(profile={}, active={"version": last["version"]}, last=last, cfg=LOW, now=NOW) == \
        (False, UP_TO_DATE)
    assert counter_gate({}, LOW) == (False, "only 0 labelled events (need 1)")
