"""Forward chaining, rule by rule (calroute.training: ``time_blocks``, ``trusted_time_blocks``,
``out_of_fold``, ``_forward_chained`` and its novelty/anomaly uses; the mutation target
``training (folds)``): which rows a fold model is trained on, with which weights and labels, which
rows it predicts, and where a remembered label joins the blocks. These decide what the threshold
is certified on (docs/trust.md)."""

from __future__ import annotations

import numpy as np

from calroute.schema import parse_event
from calroute.training import (_forward_chained, out_of_fold, out_of_fold_anomaly, time_blocks,
                               trusted_time_blocks)


class Recording:
    """A classifier that records every fit and answers uniformly."""

    fits: list = []

    def fit(self, X, y, sample_weight=None):
        Recording.fits.append({"rows": len(y), "labels": list(y),
                               "weights": None if sample_weight is None else list(sample_weight)})
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))


def fresh():
    Recording.fits = []
    return Recording


def test_time_blocks_are_integer_positions_within_each_calendar():
    b = time_blocks(["a", "a", "b", "a", "b", "a"], 2)
    assert b.dtype == np.int64 and b.tolist() == [0, 0, 0, 1, 1, 1]
    assert time_blocks(["a"] * 5, 3).tolist() == [0, 0, 1, 1, 2]


def test_trusted_blocks_cut_on_trusted_rows_and_remembered_rows_follow_them():
    labels = ["a"] * 7
    # trusted rows 1, 3, 4, 6 make blocks 0, 0, 1, 1; a remembered row joins the block of the latest
    # trusted row before it (row 2: 0, row 5: 1), block 0 before the first (row 0)
    trusted = [False, True, False, True, True, False, True]
    b = trusted_time_blocks(labels, trusted, 2)
    assert b.dtype == np.int64 and b.tolist() == [0, 0, 0, 0, 1, 1, 1]
    labels = ["a"] * 6
    assert trusted_time_blocks(labels, [True] * 6, 3).tolist() == time_blocks(labels, 3).tolist()


def test_each_fold_trains_on_earlier_blocks_with_their_weights_and_predicts_its_own():
    y = np.asarray(["a", "b", "a", "b", "a", "b"])
    X = np.zeros((6, 2))
    blocks = np.asarray([0, 0, 1, 1, 2, 2])
    w = np.asarray([1.0, 0.5, 1.0, 0.25, 1.0, 1.0])
    proba, mask = out_of_fold(X, y, blocks, ["a", "b"], fresh(), sample_weight=w)
    assert [f["rows"] for f in Recording.fits] == [2, 4]
    assert [f["weights"] for f in Recording.fits] == [[1.0, 0.5], [1.0, 0.5, 1.0, 0.25]]
    assert Recording.fits[1]["labels"] == ["a", "b", "a", "b"]  # no fit_labels: the rows' own labels
    assert mask.tolist() == [False, False, True, True, True, True]
    assert proba.dtype == np.float64 and proba[2:].tolist() == [[0.5, 0.5]] * 4 and proba[:2].tolist() == [[0, 0]] * 2
    out_of_fold(X, y, blocks, ["a", "b"], fresh())
    assert [f["weights"] for f in Recording.fits] == [None, None]


def test_a_fold_with_one_calendar_to_learn_or_nothing_to_predict_is_skipped_not_the_end():
    y = np.asarray(["a", "a", "a", "b", "b", "a"])
    X = np.zeros((6, 2))
    blocks = np.asarray([0, 0, 1, 1, 2, 2])
    # fold 1 learns from "a" only: skipped; fold 2 learns a and b: its rows are predicted
    _, mask = out_of_fold(X, y, blocks, ["a", "b"], fresh())
    assert mask.tolist() == [False, False, False, False, True, True] and len(Recording.fits) == 1
    # fold 1 has no row to predict (predict mask): skipped; fold 2 still runs
    y = np.asarray(["a", "b", "a", "b", "a", "b"])
    predict = np.asarray([True, True, False, False, True, True])
    _, mask = out_of_fold(X, y, blocks, ["a", "b"], fresh(), predict=predict)
    assert mask.tolist() == [False, False, False, False, True, True] and len(Recording.fits) == 1


def test_no_rows_no_folds():
    proba, mask = out_of_fold(np.zeros((0, 2)), np.asarray([], dtype=object), np.asarray([], dtype=np.int64),
                              ["a", "b"], fresh())
    assert proba.shape == (0, 2) and mask.shape == (0,) and Recording.fits == []
    assert _forward_chained([], np.asarray([], dtype=np.int64), None, lambda idx, i: 0.0).tolist() == []


def test_forward_chaining_scores_each_block_against_the_earlier_ones_only():
    class Index:
        def __init__(self):
            self.seen = []

        def add(self, ev):
            self.seen.append(ev)

    blocks = np.asarray([0, 1, 0, 2, 1])
    out = _forward_chained(list("abcde"), blocks, Index(), lambda idx, i: float(len(idx.seen)))
    assert out.tolist() == [1.0, 2.0, 1.0, 4.0, 2.0]  # block 0: never out of fold


def test_out_of_fold_anomaly_asks_the_shapes_of_the_predicted_calendar():
    def ev(eid, start, minutes=60):
        return parse_event({"event_id": eid, "summary": "x", "start": start, "calendar_id": "work",
                            "end": start.replace("T09", f"T{9 + minutes // 60:02d}")})

    events = [ev("a", "2026-03-02T09:00:00Z"), ev("b", "2026-03-09T09:00:00Z"), ev("c", "2026-03-09T09:00:00Z")]
    out = out_of_fold_anomaly(events, np.asarray([0, 1, 1]), ["work", "work", "gym"])
    assert out[0] == 1.0 and out[1] == 0.0 and out[2] == 1.0
