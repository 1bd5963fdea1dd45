"""calroute.runtime.OnnxModel.from_bytes, each integrity check with its exact error, and what a loaded
model carries (metadata, novelty/shape indexes and their defaults, the memory charge, routing
scores). Real ONNX bytes (tests/support/models.py) with their metadata edited through ``onnx``. The
mutation target for runtime.py."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest

from calroute.errors import ModelIntegrityError
from calroute.features import featurize
from calroute.novelty import CalendarShapes, NoveltyIndex, routing_score
from calroute.runtime import NOVELTY_INDEX_BYTES, RSS_PER_ONNX_BYTE, OnnxModel, session_options
from support.models import build_onnx, make_events, version

EVENTS = make_events()


def with_meta(data: bytes, drop=(), **set_) -> bytes:
    m = onnx.load_from_string(data)
    props = {p.key: p.value for p in m.metadata_props if p.key not in drop}
    props.update({k.replace("__", "."): v for k, v in set_.items()})
    del m.metadata_props[:]
    for k, v in props.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    return m.SerializeToString()


BASE = build_onnx(model_version=version(3), user="u1")


def refused(data, message, **kw):
    with pytest.raises(ModelIntegrityError) as exc:
        OnnxModel.from_bytes(data, **kw)
    assert str(exc.value) == message if not message.endswith("…") else str(exc.value).startswith(message[:-1])


def test_a_model_loads_with_its_metadata():
    m = OnnxModel.from_bytes(BASE, expected_sha256=hashlib.sha256(BASE).hexdigest())
    assert m.labels == ["home", "work"] and m.threshold == 0.6 and m.version == version(3)
    assert m.sha256 == hashlib.sha256(BASE).hexdigest() and m.size_bytes == len(BASE)
    assert m.input_name == "X" and m.metadata["calroute.user"] == "u1"
    assert (m.novelty, m.novelty_weight, m.shapes, m.anomaly_veto) == (None, 0.0, None, 2.0)
    X = featurize(EVENTS[:3], spec=m.feature_spec)
    p = m.predict_proba(X.astype(np.float64))
    assert p.dtype == np.float32 and p.shape == (3, 2) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_a_sha256_mismatch_is_refused():
    refused(BASE, "model bytes do not match their sha256", expected_sha256="0" * 64)


def test_bytes_that_are_not_onnx_are_refused():
    with pytest.raises(ModelIntegrityError) as exc:
        OnnxModel.from_bytes(BASE[: len(BASE) // 2])
    head, _, kind = str(exc.value).partition(": ")
    assert head == "model bytes are not a loadable ONNX model" and kind.isidentifier() and kind != "NoneType"
    assert kind == type(exc.value.__cause__).__name__


@pytest.mark.parametrize("drop", ["calroute.labels", "calroute.feature_spec", "calroute.threshold"])
def test_missing_calroute_metadata_is_refused(drop):
    refused(with_meta(BASE, drop=(drop,)), "model metadata is missing calroute labels/spec/threshold")


@pytest.mark.parametrize("key, value", [("calroute__threshold", "high"), ("calroute__feature_spec", "two"),
                                        ("calroute__labels", "[not json")])
def test_unreadable_calroute_metadata_is_refused(key, value):
    refused(with_meta(BASE, **{key: value}), "model metadata is missing calroute labels/spec/threshold")


def test_the_feature_spec_must_be_served():
    data = with_meta(BASE, calroute__feature_spec="7")
    refused(data, "model was built for feature spec 7, serving spec is 2", expected_spec=2)
    refused(data, "model was built for feature spec 7, serving spec is 1/2", expected_spec=(1, 2))
    assert OnnxModel.from_bytes(data, expected_spec=None).feature_spec == 7
    assert OnnxModel.from_bytes(data, expected_spec=7).feature_spec == 7


def test_a_novelty_and_shape_index_are_read_with_their_weights():
    nov, shapes = NoveltyIndex.fit(EVENTS), CalendarShapes.fit(EVENTS)
    data = with_meta(BASE, calroute__novelty_index=nov.to_text(), calroute__novelty_weight="0.25",
                     calroute__shape_index=shapes.to_text(), calroute__anomaly_veto="2.5")
    m = OnnxModel.from_bytes(data)
    assert m.novelty_weight == 0.25 and m.anomaly_veto == 2.5
    assert m.novelty_of(EVENTS[:2]) == [nov.score(e) for e in EVENTS[:2]]
    assert m.anomaly_of(EVENTS[:2], ["work", "home"]) == [shapes.anomaly(EVENTS[0], "work"),
                                                         shapes.anomaly(EVENTS[1], "home")]
    top = np.array([0.75, 0.5], dtype=np.float32)   # exact in float32
    assert m.routing_scores(top, [0.5, 0.0]) == [routing_score(0.75, 0.5, 0.25), routing_score(0.5, 0.0, 0.25)]
    # 1.0 is over the library's default veto (0.75) but under this model's (2.5): not vetoed
    assert m.routing_scores(top, [0.5, 0.0], [1.0, 3.0]) == [0.75 * (1 - 0.25 * 0.5), 0.0]
    assert m.memory_estimate == int(RSS_PER_ONNX_BYTE["logreg"] * len(data)) + NOVELTY_INDEX_BYTES


def test_index_defaults_weight_0_and_veto_2():
    nov, shapes = NoveltyIndex.fit(EVENTS), CalendarShapes.fit(EVENTS)
    m = OnnxModel.from_bytes(with_meta(BASE, calroute__novelty_index=nov.to_text()))
    assert m.novelty is not None and m.novelty_weight == 0.0 and m.shapes is None and m.anomaly_veto == 2.0
    assert m.anomaly_of(EVENTS[:1], ["work"]) is None
    m = OnnxModel.from_bytes(with_meta(BASE, calroute__novelty_index=nov.to_text(),
                                       calroute__shape_index=shapes.to_text()))
    assert m.shapes is not None and m.anomaly_veto == 2.0
    # a shape index without a novelty index is not read
    assert OnnxModel.from_bytes(with_meta(BASE, calroute__shape_index=shapes.to_text())).shapes is None


@pytest.mark.parametrize("meta", [{"calroute__novelty_index": "not an index"},
                                  {"calroute__novelty_index": "x", "calroute__novelty_weight": "heavy"}])
def test_an_unreadable_novelty_index_is_refused(meta):
    nov = NoveltyIndex.fit(EVENTS).to_text()
    if meta.get("calroute__novelty_index") == "x":
        meta = {**meta, "calroute__novelty_index": nov}
    refused(with_meta(BASE, **meta), "model novelty index is unreadable: …")


def test_an_unreadable_shape_index_is_refused():
    nov = NoveltyIndex.fit(EVENTS).to_text()
    refused(with_meta(BASE, calroute__novelty_index=nov, calroute__shape_index="{bad"),
            "model novelty index is unreadable: …")
    shapes = CalendarShapes.fit(EVENTS).to_text()
    refused(with_meta(BASE, calroute__novelty_index=nov, calroute__shape_index=shapes,
                      calroute__anomaly_veto="never"), "model novelty index is unreadable: …")


def test_a_spec_1_model_scores_by_confidence_alone():
    m = OnnxModel.from_bytes(BASE)
    assert m.novelty_of(EVENTS[:2]) is None
    assert m.routing_scores(np.array([0.25, 0.75], dtype=np.float32), None) == [0.25, 0.75]


def test_the_memory_charge_by_family():
    for family, per_byte in RSS_PER_ONNX_BYTE.items():
        data = with_meta(BASE, calroute__family=family)
        assert OnnxModel.from_bytes(data).memory_estimate == int(per_byte * len(data))
    data = with_meta(BASE, calroute__family="mystery")
    assert OnnxModel.from_bytes(data).memory_estimate == int(max(RSS_PER_ONNX_BYTE.values()) * len(data))
    data = with_meta(BASE, drop=("calroute.family",))
    assert OnnxModel.from_bytes(data).memory_estimate == int(max(RSS_PER_ONNX_BYTE.values()) * len(data))


def test_the_version_is_empty_without_metadata():
    assert OnnxModel.from_bytes(with_meta(BASE, drop=("calroute.version",))).version == ""


def test_the_probabilities_output_is_the_one_read():
    m = OnnxModel.from_bytes(BASE)
    outputs = [o.name for o in m.session.get_outputs()]
    assert outputs[m.prob_index] == "probabilities" and m.prob_index != outputs.index("label")


def test_one_thread_per_session_and_no_arena():
    so = session_options()
    assert (so.intra_op_num_threads, so.inter_op_num_threads, so.enable_cpu_mem_arena, so.log_severity_level) == \
        (1, 1, False, 3)
    import onnxruntime as ort

    assert so.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert json.loads(OnnxModel.from_bytes(BASE).metadata["calroute.metrics"]) == {"accuracy": 1.0}


def test_a_loaded_session_runs_with_the_serving_options():
    so = OnnxModel.from_bytes(BASE).session.get_session_options()
    assert (so.intra_op_num_threads, so.inter_op_num_threads, so.enable_cpu_mem_arena) == (1, 1, False)


def test_onnxruntime_is_imported_once_and_quietly(monkeypatch):
    from calroute import runtime

    monkeypatch.setattr(runtime, "_ort", None)
    first = runtime._onnxruntime()
    import onnxruntime

    assert first is onnxruntime and runtime._ort is onnxruntime and runtime._onnxruntime() is first


def test_onnxruntime_logs_errors_but_not_warnings(monkeypatch):
    """Loading onnxruntime sets its default logger to ERROR (3): warnings would flood every cold
    start's log, errors must still reach it (4 is FATAL only)."""
    import onnxruntime

    from calroute import runtime

    seen = []
    monkeypatch.setattr(onnxruntime, "set_default_logger_severity", seen.append)
    monkeypatch.setattr(runtime, "_ort", None)
    assert runtime._onnxruntime() is onnxruntime
    assert seen == [3]
    runtime._onnxruntime()
    assert seen == [3], "set once, when onnxruntime is first loaded"
