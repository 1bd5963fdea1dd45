"""The CLI's progress bar (calroute_dev.text.progress): drawn only on a terminal, items unchanged."""

from __future__ import annotations

import io

from calroute_dev.text import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_on_a_terminal_and_yields_every_item():
    out = _Tty()
    assert list(progress(["alice", "bob"], label="evaluate", stream=out)) == ["alice", "bob"]
    text = out.getvalue()
    assert "evaluate [" in text and "1/2" in text and "2/2" in text and "bob" in text and text.endswith("\n")


def test_progress_is_silent_when_not_a_terminal():
    out = io.StringIO()
    assert list(progress(range(3), 3, "import", stream=out)) == [0, 1, 2]
    assert out.getvalue() == ""
