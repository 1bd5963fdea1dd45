"""``calroute replay`` (issue 12 item 5) on a tiny dataset: the stream through the real services on
in-memory stores, the arms, the pluggable LLM, the JSON shape the issue specifies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calroute_dev import cli
from calroute_dev.replay import SimulatedLlm, UserReplay, arm_config, replay, review_experiment
from calroute.schema import parse_event
from test_training import synthetic_flat


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("users")
    flats = synthetic_flat(per_calendar=24, calendars=("work", "gym"))
    (root / "alice.jsonl").write_text("\n".join(json.dumps(f) for f in flats) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def result(data) -> dict:
    return replay(data, llm="noisy:0.8", k_labelled=6, correct_rate=1.0)


def test_json_names_the_llm_and_has_every_arm_with_the_issues_fields(result):
    assert result["llm"] == "noisy:0.8"
    assert set(result["arms"]) == {"corrections_only", "llm_answers", "all_answers"}
    for arm in result["arms"].values():
        for key in ("llm_calls", "accuracy", "first_model_after_events", "cost_usd", "weeks", "users"):
            assert key in arm
        alice = arm["users"]["alice"]
        assert alice["events"] == 48 and alice["labelled"] == 12 and alice["classified"] == 36
        assert alice["first_model_after_events"] is not None and alice["first_model_after_events"] >= 10
        assert arm["weeks"][-1]["cumulative_llm_calls"] == arm["llm_calls"]
        assert 0 < arm["cost_usd"]


def test_the_same_simulated_user_and_llm_in_every_arm(result):
    # with every wrong answer corrected, the corrections are exactly the wrong answers
    for arm in result["arms"].values():
        a = arm["users"]["alice"]
        assert a["corrections"] == round((1 - a["accuracy"]) * a["classified"])
    noisy = SimulatedLlm("noisy:0.8")
    answers = [noisy.answer("alice", f"e{i}", "work", ["work", "gym"]) for i in range(200)]
    assert answers == [noisy.answer("alice", f"e{i}", "work", ["gym", "work"]) for i in range(200)]
    assert 0.7 < answers.count("work") / 200 < 0.9 and set(answers) == {"work", "gym"}
    assert SimulatedLlm("oracle").answer("alice", "e1", "gym", ["work", "gym"]) == "gym"


def test_only_the_learning_arms_remember_answers(data):
    events = [parse_event(f) for f in synthetic_flat(per_calendar=24, calendars=("work", "gym"))]
    kept = {}
    for name in ("corrections_only", "llm_answers"):
        r = UserReplay("alice", events, arm=arm_config(name), llm=SimulatedLlm("oracle"), k_labelled=6,
                       correct_rate=0.5, gates=(10, 2, 5)).run()
        kept[name] = {s.provenance for s in r.stores.events.list_stored("alice")}
    assert kept["corrections_only"] == {"user"}
    assert "llm" in kept["llm_answers"]


def test_a_weekly_review_confirms_right_labels_and_corrects_wrong_ones():
    """``confirm_per_week``: once per week of the stream the simulated user answers the review
    queue's top N — a right LLM label becomes ``confirmed``, a wrong one the user's own; the arm
    that keeps no answers has nothing to review."""
    events = [parse_event(f) for f in synthetic_flat(per_calendar=40, calendars=("work", "gym"))]
    weeks = {(e.start_utc - min(x.start_utc for x in events)).days // 7 for e in events}
    for name in ("llm_answers", "corrections_only"):
        r = UserReplay("alice", events, arm=arm_config(name), llm=SimulatedLlm("noisy:0.7"), k_labelled=6,
                       correct_rate=0.0, gates=(10, 2, 5), confirm_per_week=2).run()
        rows = r.stores.events.list_stored("alice")
        s = r.summary()
        if name == "corrections_only":
            assert s["confirmations"] == s["review_corrections"] == 0
            assert {x.provenance for x in rows} == {"user"}
            continue
        answered = s["confirmations"] + s["review_corrections"]
        assert 0 < answered <= 2 * len(weeks)
        assert s["confirmations"] == sum(x.provenance == "confirmed" for x in rows)
        assert s["review_corrections"] > 0  # noisy:0.7 gets some wrong, and review corrects them
        # every confirmed label is right: the user confirms only what belongs there
        assert all(x.event.calendar_id == r.truth[x.event.event_id] for x in rows if x.provenance == "confirmed")
        assert sum(w.get("confirmations", 0) for w in r.weeks.values()) == s["confirmations"]
    with pytest.raises(ValueError, match="confirm-per-week"):
        replay(Path("."), confirm_per_week=-1)


def test_todays_gates_bring_the_first_model_later(data):
    new = replay(data, llm="oracle", k_labelled=6, arms=["corrections_only"])
    today = replay(data, llm="oracle", k_labelled=6, arms=["corrections_only"], gates=(50, 2, 10),
                   stop_at_first_model=True)
    first_new = new["arms"]["corrections_only"]["first_model_after_events"]
    first_today = today["arms"]["corrections_only"]["first_model_after_events"]
    assert first_new is not None and (first_today is None or first_today > first_new)


def test_recorded_answers_and_bad_modes(tmp_path):
    f = tmp_path / "answers.jsonl"
    f.write_text('{"event_id": "e1", "calendar_id": "gym"}\n', encoding="utf-8")
    rec = SimulatedLlm(str(f))
    assert rec.name == "recorded:answers.jsonl"
    assert rec.answer("alice", "e1", "work", ["work", "gym"]) == "gym" and rec.answer("alice", "e2", "work", []) is None
    for bad in ("noisy:x", "noisy:2", "gpt-5"):
        with pytest.raises(ValueError):
            SimulatedLlm(bad)


def test_review_experiment_compares_the_queue_with_random_confirmations():
    events = [parse_event(f) for f in synthetic_flat(per_calendar=24, calendars=("work", "gym"))]
    out = review_experiment("alice", events, llm=SimulatedLlm("noisy:0.8"), k_labelled=6, correct_rate=0.5,
                            gates=(10, 2, 5), n=3, seeds=(1,))
    assert out["pending_llm_labels"] > 0 and out["review"]["answered"] == 3
    assert out["margin"]["answered"] == out["reversed"]["answered"] == 3
    for key in ("review", "random", "none", "margin", "reversed"):
        assert 0.0 <= out[key]["coverage"] <= 1.0


def test_review_experiment_measures_the_next_model_on_calendars_the_user_had_at_the_cut():
    """A calendar created after the cut (family, here) is in no model's (or LLM's) candidates: its events are left
    out of the coverage and counted apart, so they cannot pass for confident mistakes."""
    from datetime import datetime, timedelta

    old_flat = synthetic_flat(per_calendar=24, calendars=("work", "gym"))
    old = [parse_event(f) for f in old_flat]
    later = timedelta(days=400)  # every "family" event after the last work/gym one

    def moved(f: dict, i: int) -> dict:
        out = {**f, "event_id": f"late-{i}"}
        for k in ("start", "end"):
            if isinstance(f.get(k), str):
                out[k] = (datetime.fromisoformat(f[k]) + later).isoformat()
        return out

    new = [parse_event(moved(f, i)) for i, f in enumerate(synthetic_flat(per_calendar=20, calendars=("family",)))]
    assert min(e.start_utc for e in new) > max(e.start_utc for e in old)
    out = review_experiment("alice", old + new, llm=SimulatedLlm("oracle"), k_labelled=6, correct_rate=0.5,
                            gates=(10, 2, 5), n=3, seeds=(1,))
    assert out["rest_in_later_calendars"] == 20
    assert out["rest_events"] == len(old + new) - out["at_events"] - 20


def test_cli_replay_json_and_unknown_user(data, capsys):
    assert cli.main(["replay", "--data", str(data), "--llm", "oracle", "--labelled", "6", "--arms", "llm_answers",
                     "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["llm"] == "oracle" and list(doc["arms"]) == ["llm_answers"]
    assert cli.main(["replay", "--data", str(data), "--users", "nobody"]) == 2
    assert "nobody" in capsys.readouterr().err
    assert cli.main(["replay", "--data", str(data), "--llm", "oracle", "--labelled", "6", "--arms",
                     "corrections_only"]) == 0
    assert "LLM: oracle" in capsys.readouterr().out


def test_cli_review_confirms_then_lists(monkeypatch, capsys):
    calls = []

    class Stub:
        def confirm(self, user, event_id):
            calls.append(("confirm", user, event_id))
            return {"event_id": event_id, "calendar_id": "work", "provenance": "confirmed", "changed": True}

        def review(self, user, limit):
            calls.append(("review", user, limit))
            return {"user_id": user, "pending": 2, "events": [
                {"event_id": "e5", "calendar_id": "home", "summary": "Dentist", "start": "2026-03-03T15:00:00",
                 "margin": None, "novelty": 1.0, "represents": 7}]}

    monkeypatch.setattr(cli, "_client", lambda args: Stub())
    assert cli.main(["review", "--user", "alice", "--limit", "5", "--confirm", "e7"]) == 0
    assert calls == [("confirm", "alice", "e7"), ("review", "alice", 5)]
    out = capsys.readouterr().out
    assert "e7 → work (confirmed)" in out and "2 LLM answers not confirmed yet" in out and "Dentist" in out
    assert "stands for" in out and " 7" in out.split("Dentist", 1)[1].splitlines()[0]


def test_gate_stops_the_memo_skips_only_runs_the_gates_would_stop(data):
    """``python -m bench.gate_stops``: with 2 labelled events per calendar the gates stop TrainUser
    nightly without the memo; with it far fewer runs, the same answers and models."""
    from bench import gate_stops
    from calroute import retrain as plan_module

    real = plan_module.gate_memo_holds
    out = gate_stops.run(str(data), labelled=2)
    assert plan_module.gate_memo_holds is real  # restored
    before, after = out["without_memo"]["users"]["alice"], out["with_memo"]["users"]["alice"]
    assert out["same_answers_and_models"] is True
    assert before["gate_stops"] > after["gate_stops"] >= 1
    assert before["llm_calls"] == after["llm_calls"] and before["trainings"] == after["trainings"]
