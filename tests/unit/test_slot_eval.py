"""calroute evaluate-slots and its units (calroute_dev.slot_eval), on a tiny file written here and,
where the shared benchmark is present, on the nl_events train/dev splits: the issue's bars.

The three rows below quote utterances of the Schema-Guided Dialogue dataset (Rastogi et al., AAAI
2020, arXiv:1909.05855), CC BY-SA 4.0, via /work/shared/datasets/nl_events (see its SOURCES.md)."""

from __future__ import annotations

import json
import os

import pytest

from calroute_dev import cli, slot_eval as se

ROWS = [
    {"id": "t/1/0", "text": "The event time is half past 1 in the afternoon.", "slots": {"event_time": "half past 1 in the afternoon"},
     "canonical": {"event_time": "13:30"}, "system_prompt": "What time is the event?"},
    {"id": "t/2/0", "text": "Call it Hair Salon.", "slots": {"event_name": "Hair Salon"},
     "canonical": {"event_name": "Hair salon"}, "system_prompt": "What name should I use for this event?"},
    {"id": "t/3/0", "text": "It's located at 1375 Montecito Avenue.", "slots": {"event_location": "1375 Montecito Avenue"},
     "canonical": {"event_location": "1375 Montecito Avenue"}, "system_prompt": "Where is it?"},
]
EVENTS = [{"id": "t/9", "user_turns": [{"turn_idx": 0, "text": "Please check for Monday next week.", "system_prompt": None,
                                        "frames": [{"spans": [{"slot": "event_date", "value": "Monday next week",
                                                               "canonical": "2019-03-04"}]}]}]}]


@pytest.fixture
def data(tmp_path):
    p = tmp_path / "sgd_calendar_mini.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "sgd_calendar_mini_events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    return p


def test_units(data):
    items = se.load_items(str(data))
    assert len(items) == 4
    assert items[0].gold == {"summary": None, "location": None, "date": None, "time": "13:30"}
    assert items[0].turns[0] == {"role": "assistant", "text": "What time is the event?"}
    assert items[3].gold == {"date": "2019-03-04"} and items[3].spans == {"date": "Monday next week"}


def test_scores_rules_and_oracle(data):
    items = se.load_items(str(data))
    rules = se.summarize(se.score(items, se.service_parser()))
    assert rules["time"] == {**rules["time"], "carried": 1, "correct": 1, "accuracy": 1.0}
    assert rules["date"]["correct"] == 1 and rules["location"]["correct"] == 1
    assert rules["summary"]["accuracy"] == 1.0  # "Hair Salon" == "Hair salon" once normalised
    oracle = se.OracleLlm()
    with_llm = se.summarize(se.score(items, se.service_parser(oracle), oracle))
    assert oracle.calls > 0
    assert with_llm["summary"]["accuracy"] == 1.0


def test_a_wrong_value_counts_against_the_confident(data):
    """A confident value on a row that does not carry the slot is a false positive."""
    items = [se.Item("x", [{"role": "user", "text": "hello"}], {"time": None})]
    fake = lambda turns: {"time": {"value": "09:00", "source": "rules", "needs_confirmation": False, "confidence": 1}}
    t = se.summarize(se.score(items, fake))["time"]
    assert t["false_positives"] == 1 and t["confident"] == 1 and t["confident_accuracy"] == 0.0


def test_cli_writes_the_report(data, tmp_path, capsys):
    doc = tmp_path / "slots.md"
    doc.write_text("# Slots\n\nkept text\n")
    assert cli.main(["evaluate-slots", "--data", str(data), "--llm", "oracle", "--docs", str(doc), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    entry = res["files"]["sgd_calendar_mini.jsonl"]
    assert entry["rules_only"]["time"]["accuracy"] == 1.0 and "with_llm" in entry
    text = doc.read_text()
    assert "kept text" in text and se.EVAL_BEGIN in text and "rules + stand-in LLM (oracle)" in text
    assert cli.main(["evaluate-slots", "--data", str(data), "--fit"]) == 2  # --fit needs a train file


SHARED = se.DEFAULT_DATA
needs_data = pytest.mark.skipif(not os.path.exists(f"{SHARED}/sgd_calendar_train.jsonl"),
                                reason="the shared nl_events benchmark is not on this machine")


@needs_data
@pytest.mark.parametrize("split", ["train", "dev"])
def test_the_issues_bars_on_the_benchmark(split):
    """Rules-only date and time accuracy >= 0.95 on the turns carrying them; >= 97 % right among the
    values marked confident, every slot (false positives included)."""
    t = se.summarize(se.score(se.load_items(f"{SHARED}/sgd_calendar_{split}.jsonl"), se.service_parser()))
    assert t["date"]["accuracy"] >= 0.95 and t["time"]["accuracy"] >= 0.95, t
    for slot, row in t.items():
        if row["confident"]:
            assert row["confident_accuracy"] >= 0.97, (slot, row)
    assert t["time"]["coverage"] >= 0.9  # the certified threshold is not vacuous


@needs_data
def test_the_shipped_fitted_table_is_what_fit_writes():
    from calroute.slots import confidence

    refit = se.fit(se.score(se.load_items(f"{SHARED}/sgd_calendar_train.jsonl"), se.rules_parser()),
                   source="nl_events train")
    se.confirm(refit, se.load_items(f"{SHARED}/sgd_calendar_dev.jsonl"))
    shipped = confidence.fitted()
    assert refit["rules"] == shipped["rules"] and refit["confident_at"] == shipped["confident_at"], \
        "calroute/slots/fitted.py is stale: run calroute evaluate-slots --fit"


def test_confirm_drops_a_threshold_dev_does_not_confirm():
    items = [se.Item(f"x{i}", [{"role": "user", "text": "Call it Gym at 7 pm"}], {"time": "19:00" if i else "08:00"})
             for i in range(10)]  # one of ten wrong: 90 % < 97 %
    table = {"rules": {"time:ampm": 0.99}, "confident_at": {"time": 0.9, "date": None}}
    se.confirm(table, items)
    assert table["confident_at"]["time"] is None
    assert table["confirmation"]["time"] == {"dev_confident": 10, "dev_confident_accuracy": 0.9, "confirmed": False,
                                             "train_threshold": 0.9}
    ok = {"rules": {"time:ampm": 0.99}, "confident_at": {"time": 0.9}}
    se.confirm(ok, items[1:])
    assert ok["confident_at"]["time"] == 0.9 and ok["confirmation"]["time"]["confirmed"] is True
