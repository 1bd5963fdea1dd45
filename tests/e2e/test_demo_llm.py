"""The demo of ``make local`` with and without an LLM (issue 16 item 3): with ``OPENAI_BASE_URL``
pointing at an OpenAI-compatible server — here the stand-in ``tests/support/fake_llm.py`` on
127.0.0.1, where a user would run Ollama or vLLM — the deferred events come back with the LLM's
answers and the table shows them; without one, the table shows what the LLM would be asked.

The demo is the real one (``calroute_dev.local.stack.run_demo``: seed through the API, the training
state machine, classify over HTTP), learning from the 20 most recent events of each calendar so it
takes seconds."""

from __future__ import annotations

import io

import pytest

from support.fake_llm import FakeLLM, answer, enum_of

pytestmark = pytest.mark.integration


def _pick(request: dict):
    """The stand-in LLM's choice: the last calendar it may name (rarely the model's first), said so."""
    cal = enum_of(request)[-1]
    return answer(calendar_id=cal, reason=f"fake-llm picked {cal}")


def _run_demo(tmp_path, llm: FakeLLM | None) -> tuple[dict, str]:
    from calroute_dev.local.demo import DEMO_DIR
    from calroute_dev.local.stack import Console, run_demo
    from support.local_stack import running_stack

    out = io.StringIO()
    with running_stack(tmp_path / "data", console=Console(stream=out),
                       llm_base_url=llm.base_url if llm else None) as st:
        report = run_demo(st, DEMO_DIR, max_seen_per_calendar=20)
    return report, out.getvalue()


def _new_table(text: str) -> str:
    """The new-events table: from its header line to the blank line after it."""
    start = text.index("new events (demo_events.json)")
    return text[start:].split("\n\n", 1)[0]


def test_with_an_llm_the_demo_shows_its_answers_for_the_deferred_events(tmp_path, monkeypatch):
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "30")  # as docs/local.md advises for a slow local server
    llm = FakeLLM().behave(_pick)
    try:
        report, text = _run_demo(tmp_path, llm)
    finally:
        llm.close()
    assert report["active"], text
    assert f"LLM fallback: on ({llm.base_url}" in text
    rows = report["rows"] + report["new"]
    deferred = [r for r in report["new"] if r["method"] != "ml"]
    assert deferred, _new_table(text)  # the demo shows deferrals...
    for r in deferred:  # ...each answered by the LLM: its pick, its reason
        assert r["method"] == "llm", r
        assert r["reason"] == f"fake-llm picked {r['predicted']}", r
    asked = [r for r in rows if r["method"] in ("llm", "llm_only")]
    # every LLM answer came from the server (more requests than answers: the SDK's retries when a
    # loaded machine makes the stand-in slower than LLM_TIMEOUT_SECONDS)
    assert len(llm.requests) >= len(asked) > 0
    picks = {r["predicted"] for r in asked}
    assert picks <= {enum_of(q)[-1] for q in llm.requests}
    table = _new_table(text)
    assert "(off here" not in table and "choose among:" not in table
    assert table.count("answered: fake-llm picked ") == len(deferred)
    assert "what the LLM is asked for" in text and "would be asked" not in text


def test_without_an_llm_the_demo_shows_what_it_would_be_asked(tmp_path):
    report, text = _run_demo(tmp_path, None)
    assert "LLM fallback: off" in text
    deferred = [r for r in report["new"] if r["method"] != "ml"]
    assert deferred and all(r["method"] in ("ml_low_confidence", "none") for r in deferred), deferred
    assert all(r["defer_reason"] for r in deferred)
    table = _new_table(text)
    assert "(off here: they come back ml_low_confidence)" in table
    assert table.count("choose among: ") == len(deferred) and "answered:" not in table
    assert "what the LLM would be asked for" in text
    question = text.split("what the LLM would be asked for", 1)[1]
    assert "model_candidates:" in question and "Which calendar does" in question
