"""Champion/challenger at its tolerance boundary with two really trained models (issue 14 item 5):
the candidate's holdout accuracy comes from its own training, the champion is scored with
onnxruntime on the holdout events written after it was trained; just inside the tolerance the
candidate is promoted, just outside it is rejected, and the basis of the comparison is recorded."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from calroute.config import Settings
from calroute_dev.evaluation import load_ics_dir, split_events
from calroute.services.training.promote import challenge, holdout_accuracy
from calroute.runtime import OnnxModel
from calroute.training import TrainConfig, train_user_model
from support.fakes import FakeModelBlobs

ROOT = Path(__file__).resolve().parents[2]
CHAMPION_TRAINED_AT = "2026-06-01T00:00:00+00:00"
LATER = "2026-07-01T00:00:00+00:00"


@pytest.fixture(scope="module")
def duel():
    events = load_ics_dir(ROOT / "data" / "users" / "d3_developer")
    train, test = split_events(events)
    champion = train_user_model(train, TrainConfig(), user_id="d3", version="v20260601000000-000001")
    # the challenger learnt from labels of which a quarter are wrong: it is really worse
    rng = random.Random(7)
    cals = sorted({e.calendar_id for e in train})
    noisy = [e.model_copy(update={"calendar_id": rng.choice(cals)}) if rng.random() < 0.25 else e for e in train]
    candidate = train_user_model(noisy, TrainConfig(), user_id="d3", version="v20260701000000-000002")
    store = FakeModelBlobs()
    key, sha = store.put("d3", champion.version, champion.onnx_bytes)
    active = {"version": champion.version, "s3_key": key, "sha256": sha}
    champ_record = {"version": champion.version, "trained_at": CHAMPION_TRAINED_AT,
                    "metrics": {"holdout_accuracy": champion.metrics["holdout_accuracy"]}}
    holdout = [(e, LATER) for e in test]  # all written after the champion was trained
    champ_acc = holdout_accuracy(OnnxModel.from_bytes(champion.onnx_bytes), test)
    cand_record = {"version": candidate.version, "metrics": {"holdout_accuracy": candidate.metrics["holdout_accuracy"]}}
    return cand_record, active, holdout, store, champ_record, champ_acc


def _cfg(tolerance: float) -> Settings:
    return Settings(champion_tolerance=tolerance)


def test_the_two_models_really_differ(duel):
    cand, _, _, _, _, champ_acc = duel
    assert cand["metrics"]["holdout_accuracy"] + 0.02 < champ_acc


def test_just_inside_the_tolerance_is_promoted_just_outside_rejected(duel):
    cand, active, holdout, store, champ_record, champ_acc = duel
    gap = champ_acc - cand["metrics"]["holdout_accuracy"]
    inside = challenge(cand, active, holdout, store, _cfg(gap + 1e-6), champ_record)
    outside = challenge(cand, active, holdout, store, _cfg(gap - 1e-6), champ_record)
    assert inside["promote"] is True and outside["promote"] is False
    for d in (inside, outside):
        assert d["basis"] == "holdout events newer than the champion"
        assert d["champion_rows"] == d["holdout_rows"] == len(holdout) >= Settings().champion_min_rows
        assert d["champion_accuracy"] == pytest.approx(champ_acc)
        assert d["candidate_accuracy"] == cand["metrics"]["holdout_accuracy"]
    assert inside["tolerance"] == pytest.approx(gap + 1e-6) and "worse than the active model" in outside["reason"]


def test_the_default_tolerance_rejects_a_clearly_worse_model(duel):
    cand, active, holdout, store, champ_record, _ = duel
    assert challenge(cand, active, holdout, store, Settings(), champ_record)["promote"] is False


def _few_newer(holdout, newer):
    """``newer`` written after the champion, the rest of ``holdout`` before it."""
    ids_ = {e.event_id for e in newer}
    return [(e, LATER) for e in newer] + [(e, "2026-05-01T00:00:00+00:00") for e, _ in holdout if e.event_id not in ids_]


def _champion_right_and_wrong(active, holdout, store):
    model = OnnxModel.from_bytes(store.get(active["s3_key"], active["sha256"]))
    right = [e for e, _ in holdout if holdout_accuracy(model, [e]) == 1.0]
    wrong = [e.model_copy(update={"calendar_id": next(c for c in model.labels if c != e.calendar_id)})
             for e in right[:1]]  # the user corrected the champion's answer to another calendar
    return right, wrong


def test_with_too_few_newer_events_the_recorded_scores_are_compared(duel):
    cand, active, holdout, store, champ_record, _ = duel
    right, _ = _champion_right_and_wrong(active, holdout, store)
    d = challenge(cand, active, _few_newer(holdout, right[:3]), store, _cfg(0.0), champ_record)
    assert d["basis"] == "recorded out-of-sample holdout accuracies" and d["champion_rows"] == 3
    assert d["champion_accuracy"] == champ_record["metrics"]["holdout_accuracy"]


def test_a_champion_wrong_on_a_newer_event_is_capped_by_it(duel):
    """Too few newer events to score the champion on, but it is wrong on one of them (the user
    corrected its answer): its recorded score no longer stands, and the clearly worse candidate,
    rejected on the recorded scores above, is promoted over it."""
    cand, active, holdout, store, champ_record, _ = duel
    right, wrong = _champion_right_and_wrong(active, holdout, store)
    d = challenge(cand, active, _few_newer(holdout, right[1:3] + wrong), store, Settings(), champ_record)
    assert d["champion_rows"] == 3 and d["champion_accuracy"] == pytest.approx(2 / 3)
    assert d["basis"] == ("recorded out-of-sample holdout accuracies, the champion's capped by its accuracy on the "
                          "3 holdout events newer than it")
    assert d["promote"] is True
    assert challenge(cand, active, _few_newer(holdout, right[:3]), store, Settings(), champ_record)["promote"] is False
