"""The retraining policy (calroute.retrain): pure, clock injected."""

from datetime import datetime, timedelta, timezone

import pytest

from calroute.config import Settings
from calroute.retrain import NEVER_TRAINED, UP_TO_DATE, counter_gate, latest_training, needs_training

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
CFG = Settings()


def _ver(days_ago: float, events: int = 100, corrections: int = 0, version: str = "v20260101000000-aaaaaa",
         **kw) -> dict:
    return {"version": version, "trained_at": (NOW - timedelta(days=days_ago)).isoformat(),
            "events_total_at_training": events, "corrections_total_at_training": corrections, **kw}


def _active(version: str = "v20260101000000-aaaaaa", **kw) -> dict:
    return {"version": version, "promoted_at": NOW.isoformat(), **kw}


def decide(profile, active, last, can_train=(True, "")):
    return needs_training(profile=profile, active=active, last=last, cfg=CFG, now=NOW, can_train=can_train)


def test_never_trained_but_can_train():
    assert decide({"events_total": 80}, None, None) == (True, NEVER_TRAINED)


def test_never_trained_and_cannot_train_says_why():
    needs, reason = decide({"events_total": 7}, None, None, can_train=counter_gate({"events_total": 7}, CFG))
    assert not needs and "cannot train yet" in reason and "only 7 labelled events (need 10)" in reason


def test_up_to_date():
    assert decide({"events_total": 120, "corrections_total": 3}, _active(), _ver(3, events=100)) == (False, UP_TO_DATE)


@pytest.mark.parametrize("days,needed", [(29.9, False), (30, True), (45, True)])
def test_age(days, needed):
    needs, reason = decide({"events_total": 100}, _active(), _ver(days))
    assert needs is needed
    if needed:
        assert "days old" in reason


@pytest.mark.parametrize("new,needed", [(49, False), (50, True), (400, True)])
def test_new_events_since_training(new, needed):
    needs, reason = decide({"events_total": 100 + new}, _active(), _ver(1, events=100))
    assert needs is needed
    if needed:
        assert f"{new} new events" in reason


@pytest.mark.parametrize("corr,needed", [(9, False), (10, True)])
def test_corrections_since_training(corr, needed):
    needs, reason = decide({"events_total": 100, "corrections_total": 5 + corr}, _active(),
                           _ver(1, events=100, corrections=5))
    assert needs is needed
    if needed:
        assert "corrections" in reason


@pytest.mark.parametrize("misses,at,needed", [(0, 0, False), (1, 0, True), (4, 3, True), (3, 3, False), (1, None, False)])
def test_a_corrected_confident_answer_retrains_at_the_next_run(misses, at, needed):
    """One correction of the model's own answer retrains (the model was sure and wrong), not ten;
    a version trained before the counter existed (no ``confident_misses_total_at_training``) is left
    to the other rules."""
    last = _ver(1, events=100) if at is None else _ver(1, events=100, confident_misses_total_at_training=at)
    needs, reason = decide({"events_total": 100, "corrections_total": 1, "confident_misses_total": misses},
                           _active(), last)
    assert needs is needed
    if needed:
        assert f"{misses - at} of the model's own answers corrected" in reason
    two = needs_training(profile={"events_total": 100, "confident_misses_total": 1}, active=_active(),
                         last=_ver(1, events=100, confident_misses_total_at_training=0),
                         cfg=Settings(retrain_confident_misses=2), now=NOW)
    assert two == (False, UP_TO_DATE)


def test_a_rejected_newer_attempt_is_the_reference():
    # the champion is 40 days old, but a challenger trained 2 days ago lost: no nightly retraining
    champion = _ver(40, version="v20260101000000-aaaaaa", status="active")
    loser = _ver(2, version="v20260530000000-bbbbbb", status="rejected")
    last = latest_training([champion, loser])
    assert last is loser
    assert decide({"events_total": 100}, _active(), last) == (False, UP_TO_DATE)


def test_drift_flag_on_active_until_a_newer_training():
    active = _active(drifted=True)
    last = _ver(1, events=100)
    needs, reason = decide({"events_total": 100}, active, last)
    assert needs and "drift" in reason
    newer = _ver(0.5, events=100, version="v20260601000000-cccccc")
    assert decide({"events_total": 100}, active, newer) == (False, UP_TO_DATE)


def test_drift_flag_on_version_record():
    needs, reason = decide({"events_total": 100}, _active(), _ver(1, drifted=True))
    assert needs and "drift" in reason


def test_naive_now_is_utc_and_created_at_fallback():
    last = {"version": "v20260101000000-aaaaaa", "created_at": (NOW - timedelta(days=31)).isoformat(),
            "events_total_at_training": 10}
    needs, _ = needs_training(profile={"events_total": 10}, active=_active(), last=last, cfg=CFG,
                              now=NOW.replace(tzinfo=None))
    assert needs


def test_a_new_calendar_with_enough_events_is_a_reason_to_retrain():
    last = _ver(3, events=100, labels=["work", "home"])
    profile = {"events_total": 109, "calev#work": 80, "calev#home": 20, "calev#gym": CFG.min_per_calendar - 1}
    assert decide(profile, _active(), last) == (False, UP_TO_DATE)  # 9 gym events: not yet
    profile["calev#gym"] = CFG.min_per_calendar
    needs, reason = decide(profile, _active(), last)
    assert needs and reason == f"new calendar gym has {CFG.min_per_calendar} events (threshold {CFG.min_per_calendar})"
    # a model trained before labels were recorded is not retrained for it
    assert decide(profile, _active(), _ver(3, events=100)) == (False, UP_TO_DATE)
