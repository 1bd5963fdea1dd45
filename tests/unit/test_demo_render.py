"""The demo's new-events table and the LLM question it prints (calroute_dev.local.demo)."""

from __future__ import annotations

from calroute_dev.local import demo

ROW = {"start": "2026-03-03 15:00", "summary": "Dentist appointment", "predicted": "esug_2011_schedule",
       "confidence": 0.53, "method": "ml_low_confidence", "defer_reason": "novel_event",
       "reason": "novel_event+llm_not_configured",
       "alternatives": [{"calendar_id": "esug_2011_schedule", "probability": 0.53},
                        {"calendar_id": "pyconuk_2015_schedule", "probability": 0.3}],
       "event": {"summary": "Dentist appointment", "start": "2026-03-03T15:00:00"}}


def test_new_events_table_shows_the_deferral_and_the_llm_column():
    llm = {**ROW, "method": "llm", "predicted": "pyconuk_2015_schedule", "reason": "a talk of the conference"}
    text = demo.render_new([ROW, llm])
    assert "novel_event" in text and "choose among: esug_2011_schedule 0.53" in text
    assert "answered: a talk of the conference" in text


def test_llm_question_is_the_fallbacks_data_block():
    data = demo.load_demo(demo.DEMO_DIR, max_seen_per_calendar=20)
    text = demo.llm_question(data, ROW)
    lines = text.splitlines()
    assert [line.split(":", 1)[0] for line in lines[:4]] == ["calendars", "model_candidates",
                                                              "similar_past_events", "event"]
    assert "esug_2011_schedule" in lines[0] and "Dentist appointment" in lines[3]
    assert lines[-1] == 'Which calendar does "event" belong to?'


def test_the_demo_user_has_new_events_to_show():
    events = demo.load_new_events(demo.DEMO_DIR)
    assert len(events) >= 5 and all("summary" in e and "start" in e for e in events)
