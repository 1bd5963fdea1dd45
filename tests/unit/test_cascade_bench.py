"""``python -m bench.cascade``: a review-only slice replaces the review figures of the replay slices
it is merged with (re-measuring the review experiment does not need the hour-long replay again)."""

from __future__ import annotations

import pytest

from bench.cascade import merge, review_lines


def _part(review: dict, seconds: float = 1.0) -> dict:
    return {"llm": "noisy:0.9", "max_events": 600, "k_labelled": 20, "correct_rate": 0.5,
            "main": {"arms": {}}, "today": {"arms": {}}, "review": review, "seconds": seconds}


def test_a_review_only_slice_replaces_the_review_figures():
    out = merge([_part({"a": {"v": 1}, "b": {"v": 1}}), {"review_only": True, "llm": "noisy:0.9",
                                                         "review": {"a": {"v": 2}}, "seconds": 5.0}])
    assert out["review"] == {"a": {"v": 2}, "b": {"v": 1}}
    assert out["seconds"] == 6.0


def test_a_review_slice_of_another_llm_is_refused():
    with pytest.raises(ValueError, match="oracle"):
        merge([_part({"a": {}}), {"review_only": True, "llm": "oracle", "review": {"a": {}}, "seconds": 1.0}])


def test_a_review_slice_of_another_stream_length_is_refused():
    with pytest.raises(ValueError, match="first 300 events"):
        merge([_part({"a": {}}), {"review_only": True, "llm": "noisy:0.9", "max_events": 300, "review": {"a": {}},
                                  "seconds": 1.0}])


def _rev(none, queue, margin, rnd):
    return {"at_events": 10, "pending_llm_labels": 5, "rest_events": 10, "rest_in_later_calendars": 0,
            "none": {"coverage": none}, "review": {"coverage": queue, "accuracy": 1.0},
            "margin": {"coverage": margin, "accuracy": 1.0}, "random": {"coverage": rnd, "accuracy": 1.0},
            "reversed": {"coverage": 0.0, "accuracy": None}}


def test_review_figures_report_the_users_designed_on_and_held_out_apart():
    out = merge([_part({"a": {}, "b": {}, "c": None}),
                 {"review_only": True, "llm": "noisy:0.9", "max_events": 600, "tuned_on": ["a"], "seconds": 1.0,
                  "review": {"a": _rev(0.5, 1.0, 0.0, 0.5), "b": _rev(0.0, 0.2, 0.1, 0.4)}}])
    lines = review_lines(out["review"], out["review_tuned_on"])
    assert "60.0% mean over 2 users" in lines[0] and "45.0% (3 seeds)" in lines[0] and "**met**" in lines[0]
    assert lines[1] == "  * designed on (a): queue 100.0%, random 50.0%, none 50.0%, margin order 0.0%."
    assert lines[2] == "  * held out (b): queue 20.0%, random 40.0%, none 0.0%, margin order 10.0%."
    assert "| b | 10 | 5 | 10 (0) | 0.0% | 20.0% (100.0%) | 10.0% (100.0%) | 40.0% (100.0%) | 0.0% (-) |" in lines
    # a queue no better than random is "not met"
    worse = review_lines({"b": _rev(0.0, 0.4, 0.1, 0.4)})
    assert "**not met**" in worse[0] and not any(x.startswith("  * ") for x in worse)
    # ahead of random but below no confirmation: the confirmations did not raise coverage
    below = review_lines({"b": _rev(0.9, 0.5, 0.1, 0.4), "c": None})
    assert "**not met**: ahead of random, but below no confirmation" in below[0]
    assert below[0].endswith("Not measured (no LLM label to review at the cut): c.")
    level = review_lines({"b": _rev(0.5, 0.5, 0.1, 0.4)})
    assert "**not met**: ahead of random" in level[0]


def test_a_review_slice_at_another_cut_is_a_robustness_check_not_the_docs_figures():
    with pytest.raises(ValueError, match="at 0.4"):
        merge([_part({"a": {}}), {"review_only": True, "llm": "noisy:0.9", "at": 0.4, "review": {"a": {}},
                                  "seconds": 1.0}])


def test_the_weeks_are_summed_into_blocks_with_cumulative_calls_per_arm():
    from bench.cascade import BLOCK_WEEKS, LAST_BLOCK_WEEK, week_blocks

    def w(week, n, calls, acc):
        return {"week": week, "classified": n, "llm_calls": calls, "accuracy": acc}

    co = [w(0, 4, 4, 1.0), w(BLOCK_WEEKS - 1, 6, 6, 0.5), w(BLOCK_WEEKS, 0, 0, None), w(2 * BLOCK_WEEKS, 10, 5, 1.0),
          w(LAST_BLOCK_WEEK + 50, 2, 2, 0.0), w(LAST_BLOCK_WEEK + 900, 2, 0, 1.0)]
    la = [w(0, 4, 2, 1.0), w(BLOCK_WEEKS - 1, 6, 3, 1.0), w(BLOCK_WEEKS, 0, 0, None), w(2 * BLOCK_WEEKS, 10, 1, 1.0),
          w(LAST_BLOCK_WEEK + 50, 2, 1, 0.5), w(LAST_BLOCK_WEEK + 900, 2, 1, 1.0)]
    rows = week_blocks(co, la)
    assert [r["weeks"] for r in rows] == [f"0-{BLOCK_WEEKS - 1}", f"{2 * BLOCK_WEEKS}-{3 * BLOCK_WEEKS - 1}",
                                          f"{LAST_BLOCK_WEEK}+"]  # the empty block is left out
    first, _, last = rows
    assert first["classified"] == 10 and first["share"] == [1.0, 0.5] and first["accuracy"] == [0.7, 1.0]
    assert rows[1]["cumulative"] == [15, 6] and last["cumulative"] == [17, 8]
    assert last["classified"] == 4 and last["share"] == [0.5, 0.5] and last["accuracy"] == [0.5, 0.75]


def test_without_sole_reads_sole_labels_as_llm_while_it_replays_and_restores_after(monkeypatch):
    """``python -m bench.without_sole``: during the replay training and the review queue read every
    sole label as the LLM's; afterwards the real rule is back (also when the replay fails)."""
    import calroute.services.review as review
    import calroute.services.training.common as common
    import calroute_dev.replay as rp
    from bench import without_sole

    real = common.resolve_sole_labels, review.resolve_sole_labels
    assert without_sole.read_sole_as_llm([], ["sole", "user", "llm", "confirmed"]) == ["llm", "user", "llm", "confirmed"]
    seen = []

    def fake_replay(data, **kw):
        seen.append((common.resolve_sole_labels, review.resolve_sole_labels, data, kw))
        arm = {"llm_calls": 3, "accuracy": 0.9, "ml_answers": 2, "ml_accuracy": 1.0,
               "users": {"u": {"llm_calls": 3, "accuracy": 0.9, "ml_answers": 2, "ml_accuracy": 1.0, "x": 0}}}
        return {"arms": {"llm_answers": arm}}

    monkeypatch.setattr(rp, "replay", fake_replay)
    out = without_sole.run("D", 600, ["u"])
    assert seen[0][:2] == (without_sole.read_sole_as_llm,) * 2
    assert seen[0][2:] == ("D", {"arms": ["llm_answers"], "max_events": 600, "users": ["u"]})
    assert out == {"llm_calls": 3, "accuracy": 0.9, "ml_answers": 2, "ml_accuracy": 1.0,
                   "users": {"u": {"llm_calls": 3, "accuracy": 0.9, "ml_answers": 2, "ml_accuracy": 1.0}}}
    assert (common.resolve_sole_labels, review.resolve_sole_labels) == real

    def broken(data, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(rp, "replay", broken)
    with pytest.raises(RuntimeError):
        without_sole.run("D")
    assert (common.resolve_sole_labels, review.resolve_sole_labels) == real


def test_the_replay_benches_share_their_arguments_and_write_what_they_print(monkeypatch, tmp_path, capsys):
    from bench import gate_stops, without_sole

    seen = []
    monkeypatch.setattr(without_sole, "run", lambda *a: seen.append(("ws", a)) or {"x": 1})
    monkeypatch.setattr(gate_stops, "run", lambda *a: seen.append(("gs", a)) or {"y": [2]})
    out = tmp_path / "r.json"
    assert without_sole.main(["--data", "D", "--users", "a,b", "--max-events", "600", "--out", str(out)]) == 0
    assert seen[-1] == ("ws", ("D", 600, ["a", "b"])) and out.read_text() == '{"x":1}\n'
    assert capsys.readouterr().out == '{"x":1}\n'
    assert gate_stops.main(["--data", "D", "--labelled", "3"]) == 0
    assert seen[-1] == ("gs", ("D", 3, None, None)) and capsys.readouterr().out == '{"y":[2]}\n'


def test_review_seeds_summarises_each_user_against_its_random_draws():
    from bench import review_seeds

    res = {"review": {"coverage": 0.9, "accuracy": 0.5}, "none": {"coverage": 0.95}, "rest_events": 10,
           "random": {"runs": [{"coverage": c, "accuracy": 1.0} for c in (0.8, 0.9, 1.0, 0.9)]}}
    s = review_seeds.summarize_user(res)
    assert s == {"queue": 0.9, "none": 0.95, "random_mean": 0.9, "random_sd": 0.0707, "random_min": 0.8,
                 "random_max": 1.0, "queue_beats": 0.25, "queue_ties": 0.5, "draws": 4,
                 "rest": 10, "queue_answers": 9.0, "queue_right": 4.5, "random_answers": 9.0, "random_right": 9.0}
    other = {**s, "queue": 0.5, "random_mean": 0.7, "none": 0.4}
    assert review_seeds.pooled({"a": s, "b": other, "c": None}) == {
        "users": 2, "queue": 0.7, "random_mean": 0.8, "none": 0.675, "queue_above_random": 0,
        "queue_below_random": 1, "queue_above_none": 1, "queue_below_none": 1}
    assert review_seeds.pooled({"c": None}) == {"users": 0}


def test_review_seeds_pairs_every_user_and_cut_and_resamples_users():
    from bench import review_seeds

    def row(q, r, none, answers=10.0, right=9.0):
        return {"queue": q, "random_mean": r, "none": none, "queue_answers": answers, "queue_right": right,
                "random_answers": answers, "random_right": answers}

    cuts = {"0.5": {"users": {"a": row(0.9, 0.8, 0.5), "b": row(0.6, 0.8, 0.6), "c": None}},
            "0.6": {"users": {"a": row(1.0, 0.9, 1.0), "b": None, "c": None}}}
    p = review_seeds.paired(cuts, resamples=200)
    assert (p["pairs"], p["users"], p["level"]) == (3, 2, 0.9)
    assert p["queue_minus_random"]["mean"] == round((0.1 - 0.2 + 0.1) / 3, 4)
    assert p["queue_minus_none"]["mean"] == round((0.4 + 0.0 + 0.0) / 3, 4)
    # the interval resamples users: only "a" twice (+0.1), only "b" (-0.2) or both (0.0) are possible
    assert -0.2 <= p["queue_minus_random"]["lo"] <= p["queue_minus_random"]["mean"] <= p["queue_minus_random"]["hi"] <= 0.1
    assert p["queue_minus_random"]["lo"] == -0.2 and p["queue_minus_random"]["hi"] == 0.1
    assert (p["queue_accuracy"], p["random_accuracy"]) == (0.9, 1.0)
    one = review_seeds.paired({"0.5": {"users": {"a": row(0.9, 0.8, 0.5)}}})
    assert one["queue_minus_random"] == {"mean": 0.1, "lo": None, "hi": None}
    assert review_seeds.paired({"0.5": {"users": {"a": None}}})["queue_minus_random"] is None
