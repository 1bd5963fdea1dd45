"""calroute.llm.prompt, exactly: the structured-output schema, the data block the model is shown
(field names, cuts, which candidates and past events get in, the escaping that keeps the nonce tag
unforgeable) and every rejection of an answer with its message. The mutation target for prompt.py
(tools/calroute_dev/mutation/targets.toml)."""

from __future__ import annotations

import json

import pytest

from calroute.llm.prompt import (MAX_REASON, SCHEMA_NAME, SYSTEM_PROMPT, build_messages, parse_answer,
                                 response_format)
from calroute.llm.types import LlmError
from calroute.schema import CalendarInfo, parse_event

NONCE = "0123abcd"
TAG = f"data-{NONCE}"


def test_the_response_format_is_the_strict_schema_over_the_callers_ids():
    assert response_format(("work", "home")) == {
        "type": "json_schema",
        "json_schema": {
            "name": SCHEMA_NAME,
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {
                    "calendar_id": {"type": "string", "enum": ["work", "home"]},
                    "reason": {"type": "string", "maxLength": MAX_REASON},
                },
                "required": ["calendar_id", "reason"],
                "additionalProperties": False,
            },
        },
    }


def _event():
    attendees = [f"p{i}@D{i:02d}.example" for i in range(11)] + ["Boss@Corp.COM", "odd@aaa@B.org", "no-at-sign"]
    return parse_event({
        "event_id": "e1", "summary": "Review <b>&</b> plan ü", "description": "d" * 600, "location": "Room 1",
        "start": "2026-03-02T09:00:00+00:00", "end": "2026-03-02T10:00:00+00:00", "attendees": attendees})


def _messages():
    cals = [CalendarInfo(calendar_id="work", name="Work", description="the job"),
            CalendarInfo(calendar_id="home", name="Home"),
            CalendarInfo(calendar_id="misc", name="Misc")]
    candidates = [{"calendar_id": "work", "probability": 0.123456}, {"calendar_id": "ghost", "probability": 0.9},
                  {"calendar_id": "home"}]
    similar = [parse_event({"event_id": "s1", "summary": "s" * 250, "location": "l" * 150,
                            "start": "2026-02-02T09:00:00Z", "calendar_id": "work"}),
               parse_event({"event_id": "s2", "summary": "other", "start": "2026-02-03T09:00:00Z",
                            "calendar_id": "ghost"})]
    return build_messages(event=_event(), calendars=cals, descriptions={"home": "family things", "work": "unused"},
                          candidates=candidates, similar=similar, nonce=NONCE)


def test_the_system_message_names_the_nonce_tag():
    system, _ = _messages()
    assert system == {"role": "system", "content": SYSTEM_PROMPT.format(tag=TAG)}
    assert f"<{TAG}>" in system["content"] and f"</{TAG}>" in system["content"]


def test_the_user_message_is_the_data_block_then_the_question():
    _, user = _messages()
    assert user["role"] == "user" and set(user) == {"role", "content"}
    content = user["content"]
    head = f"<{TAG}>\n"
    tail = f"\n</{TAG}>\nWhich calendar does \"event\" belong to?"
    assert content.startswith(head) and content.endswith(tail)
    block = content[len(head):-len(tail)]
    # the untrusted text cannot close the tag: < > & are JSON escapes (lower-case hex, like HTML-safe
    # JSON); other text stays as it is (ensure_ascii=False), one-space indentation
    assert "<" not in block and ">" not in block and "&" not in block
    assert "\\u003cb\\u003e\\u0026\\u003c/b\\u003e" in block and "plan ü" in block
    assert block.splitlines()[1] == ' "calendars": ['
    data = json.loads(block)
    assert data["calendars"] == [
        {"id": "work", "name": "Work", "description": "the job"},          # its own description wins
        {"id": "home", "name": "Home", "description": "family things"},    # else the learned one
        {"id": "misc", "name": "Misc", "description": ""},
    ]
    # only the caller's calendars; probabilities rounded to 3 places, a missing one is 0
    assert data["model_candidates"] == [{"calendar_id": "work", "probability": 0.123},
                                        {"calendar_id": "home", "probability": 0.0}]
    assert data["similar_past_events"] == [{"title": "s" * 200, "location": "l" * 100, "calendar_id": "work"}]
    ev = data["event"]
    assert ev == {
        "title": "Review <b>&</b> plan ü", "description": "d" * 500, "location": "Room 1",
        "start": "2026-03-02T09:00:00+00:00", "end": "2026-03-02T10:00:00+00:00", "all_day": False,
        "recurring": False, "attendees": 14,
        # the domain after the LAST @, lower-cased, de-duplicated, sorted, at most 10
        "attendee_domains": ["b.org", "corp.com"] + [f"d{i:02d}.example" for i in range(8)],
    }


def test_at_most_five_candidates_are_shown():
    cals = [CalendarInfo(calendar_id=f"c{i}") for i in range(7)]
    cands = [{"calendar_id": f"c{i}", "probability": 0.1} for i in range(7)]
    _, user = build_messages(event=_event(), calendars=cals, candidates=cands, nonce=NONCE)
    data = json.loads(user["content"].split("\n", 1)[1].rsplit(f"\n</{TAG}>", 1)[0])
    assert [c["calendar_id"] for c in data["model_candidates"]] == ["c0", "c1", "c2", "c3", "c4"]


def test_without_a_nonce_each_prompt_gets_a_fresh_tag():
    a = build_messages(event=_event(), calendars=[CalendarInfo(calendar_id="w")])[1]["content"]
    b = build_messages(event=_event(), calendars=[CalendarInfo(calendar_id="w")])[1]["content"]
    assert a.split(">", 1)[0] != b.split(">", 1)[0] and a.startswith("<data-")


def _answer(reason_len: int) -> str:
    return json.dumps({"calendar_id": "work", "reason": "r" * reason_len})


def test_an_answer_of_4000_characters_is_read_and_one_more_is_refused():
    base = len(_answer(0))
    assert parse_answer(_answer(4000 - base), ["work"]) == ("work", "r" * MAX_REASON)
    with pytest.raises(LlmError) as exc:
        parse_answer(_answer(4001 - base), ["work"])
    assert (exc.value.code, exc.value.message) == ("invalid_answer", "the answer is not a JSON object")


def test_a_missing_reason_is_empty_and_unprintable_characters_are_dropped():
    assert parse_answer('{"calendar_id": "home"}', ["home"]) == ("home", "")
    assert parse_answer('{"calendar_id": "home", "reason": "a\\u0000b\\nc"}', ["home"]) == ("home", "abc")


@pytest.mark.parametrize("content, message", [
    (None, "the answer is not a JSON object"),
    ("not json", "the answer is not JSON"),
    ("[1, 2]", "the answer is not a JSON object"),
    ('{"calendar_id": "ghost", "reason": ""}', "the answer names a calendar the user does not have"),
    ('{"calendar_id": 7, "reason": ""}', "the answer names a calendar the user does not have"),
    ('{"calendar_id": "home", "reason": 5}', "the answer's reason is not a string"),
])
def test_every_rejection_is_invalid_answer_with_its_message(content, message):
    with pytest.raises(LlmError) as exc:
        parse_answer(content, ["home", "work"])
    assert (exc.value.code, exc.value.message) == ("invalid_answer", message)
