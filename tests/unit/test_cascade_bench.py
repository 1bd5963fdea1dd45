"""``python -m bench.cascade``: a review-only slice replaces the review figures of the replay slices
it is merged with (re-measuring the review experiment does not need the hour-long replay again)."""

from __future__ import annotations

import pytest

from bench.cascade import merge


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
