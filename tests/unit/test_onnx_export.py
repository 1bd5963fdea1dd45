"""The ONNX boundary: conversion, metadata round-trip, parity on every row, and a parity gate that
rejects broken models."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from calroute.features import N_FEATURES, featurize
from calroute.onnx_export import METADATA_KEYS, ExportError, check_parity, read_metadata, to_onnx
from calroute.runtime import OnnxModel
from calroute.schema import parse_event
from calroute.training import CalendarClassifier, ParityFailed, TrainConfig, train_user_model

from test_training import VERSION, synthetic_flat

META = {"threshold": 0.77, "version": VERSION, "user": "u-1", "family": "logreg",
        "trained_at": "2026-01-01T00:00:00+00:00", "metrics": {"cv_accuracy": 0.93, "n_events": 60}}


@pytest.fixture(scope="module")
def data():
    evs = [parse_event(e) for e in synthetic_flat(per_calendar=20)]
    return featurize(evs), np.asarray([e.calendar_id for e in evs])


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    return CalendarClassifier().fit(X, y)


def _bytes(clf):
    return to_onnx(clf.estimator_, N_FEATURES, list(clf.classes_), META)


@pytest.mark.parametrize("family", ["logreg", "gb_dense", "sgd"])
def test_parity_on_every_row(data, family):
    X, y = data
    clf = CalendarClassifier(family=family).fit(X, y)
    blob = _bytes(clf)
    report = check_parity(blob, X, clf.predict_proba(X))
    assert report["passed"], report
    assert report["rows"] == len(X) and report["argmax_flips"] == 0 and report["max_abs_diff"] <= 1e-4


def test_graph_io_and_metadata_round_trip(fitted):
    blob = _bytes(fitted)
    proto = onnx.load_from_string(blob)
    assert [i.name for i in proto.graph.input] == ["X"]
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in proto.graph.output] == ["label", "probabilities"]  # zipmap=False
    keys = {p.key for p in proto.metadata_props}
    assert keys == {f"calroute.{k}" for k in (*META, "labels", "feature_spec")} and keys <= {
        f"calroute.{k}" for k in METADATA_KEYS}
    model = OnnxModel.from_bytes(blob)
    assert model.labels == ["family", "gym", "work"] and model.threshold == pytest.approx(0.77)
    assert model.version == VERSION and model.metadata["calroute.user"] == "u-1"
    assert json.loads(model.metadata["calroute.metrics"]) == META["metrics"]
    assert read_metadata(blob)["labels"] == ["family", "gym", "work"]


def test_wrong_label_order_is_refused(fitted):
    with pytest.raises(ExportError, match="do not match"):
        to_onnx(fitted.estimator_, N_FEATURES, ["work", "gym", "family"], META)
    with pytest.raises(ExportError, match="unknown metadata"):
        to_onnx(fitted.estimator_, N_FEATURES, list(fitted.classes_), {**META, "colour": "red"})


def _tamper(blob: bytes, fn) -> bytes:
    proto = onnx.load_from_string(blob)
    node = next(n for n in proto.graph.node if n.op_type == "LinearClassifier")
    attr = next(a for a in node.attribute if a.name == "coefficients")
    values = np.asarray(attr.floats, dtype=np.float32)
    del attr.floats[:]
    attr.floats.extend(fn(values).tolist())
    return proto.SerializeToString()


def test_parity_gate_rejects_tampered_coefficients(data, fitted):
    X, _ = data
    sk = fitted.predict_proba(X)
    bad = _tamper(_bytes(fitted), lambda w: w * 1.01)  # a 1% drift: loads fine, numbers differ
    report = check_parity(bad, X, sk)
    assert not report["passed"] and report["max_abs_diff"] > 1e-4


def test_parity_gate_rejects_swapped_classes(data, fitted):
    """Coefficient rows of two calendars swapped = probabilities in the wrong label order."""
    X, _ = data
    sk = fitted.predict_proba(X)

    def swap(w):
        rows = w.reshape(3, -1).copy()
        rows[[0, 1]] = rows[[1, 0]]
        return rows.ravel()

    report = check_parity(_tamper(_bytes(fitted), swap), X, sk)
    assert not report["passed"] and report["argmax_flips"] > 0


def test_parity_gate_rejects_unloadable_bytes(data, fitted):
    X, _ = data
    report = check_parity(_bytes(fitted)[:200], X, fitted.predict_proba(X))
    assert not report["passed"] and "error" in report


def test_broken_export_is_never_returned_as_passing(monkeypatch):
    """train_user_model raises ParityFailed (or flags it) when the exported graph is wrong."""
    import calroute.training as training

    real = training.to_onnx
    monkeypatch.setattr(training, "to_onnx", lambda *a, **k: _tamper(real(*a, **k), lambda w: -w))
    evs = [parse_event(e) for e in synthetic_flat(per_calendar=20)]
    with pytest.raises(ParityFailed) as exc:
        train_user_model(evs, TrainConfig(), user_id="u1", version=VERSION)
    assert exc.value.trained.parity["passed"] is False
    flagged = train_user_model(evs, TrainConfig(), user_id="u1", version=VERSION, raise_on_parity_failure=False)
    assert flagged.parity["passed"] is False and flagged.parity["argmax_flips"] > 0
