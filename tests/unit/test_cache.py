"""ModelCache: hit/miss/eviction under a memory budget, revalidation with a fake clock, integrity."""

import hashlib

import pytest

from calroute.cache import FAILED, HIT, MISS, NO_MODEL, ModelCache
from calroute.errors import ModelIntegrityError
from calroute.runtime import OnnxModel
from support.models import build_onnx, version


class FakeStore:
    def __init__(self):
        self.objects, self.gets = {}, 0

    def put(self, key, data):
        self.objects[key] = data
        return key, hashlib.sha256(data).hexdigest()

    def get(self, key, sha256=None):
        self.gets += 1
        if key not in self.objects:
            raise ModelIntegrityError(f"model object {key} is missing")
        data = self.objects[key]
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise ModelIntegrityError("sha256")
        return data


class FakeRegistry:
    def __init__(self):
        self.pointers, self.reads = {}, 0

    def active(self, user_id, consistent=False):
        self.reads += 1
        return self.pointers.get(user_id)


class Recorder:
    def __init__(self):
        self.metrics = []

    def add_metric(self, name, unit, value):
        self.metrics.append((name, value))

    def count(self, name):
        return sum(1 for n, _ in self.metrics if n == name)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def env():
    store, reg, clock, rec = FakeStore(), FakeRegistry(), Clock(), Recorder()

    def publish(user, n=1, data=None, spec=1, sha=None, threshold=0.6):
        data = data if data is not None else build_onnx(model_version=version(n), user=user)
        key, real_sha = store.put(f"models/{user}/{version(n)}.onnx", data)
        reg.pointers[user] = {"version": version(n), "s3_key": key, "sha256": sha or real_sha,
                              "threshold": threshold, "feature_spec": spec, "labels": ["home", "work"]}
        return reg.pointers[user]

    def make(**kw):
        kw.setdefault("max_bytes", 64 * 1024 * 1024)
        kw.setdefault("max_models", 100)
        return ModelCache(reg, store, revalidate_seconds=60, failure_ttl_seconds=30, clock=clock, metrics=rec, **kw)

    return store, reg, clock, rec, publish, make


def test_miss_then_hit_without_registry_reads(env):
    store, reg, clock, rec, publish, make = env
    publish("alice")
    cache = make()
    first = cache.get("alice")
    assert first.status == MISS and first.model is not None and first.load_ms > 0
    assert first.threshold == 0.6 and first.version == version(1)
    for _ in range(5):
        assert cache.get("alice").status == HIT
    assert (cache.hits, cache.misses, reg.reads, store.gets) == (5, 1, 1, 1)
    assert rec.count("ModelLoadMs") == 1


def test_no_model_is_remembered_for_the_interval(env):
    store, reg, clock, rec, publish, make = env
    cache = make()
    assert cache.get("bob").status == NO_MODEL
    assert cache.get("bob").status == NO_MODEL and reg.reads == 1
    publish("bob")
    clock.t += 59
    assert cache.get("bob").status == NO_MODEL  # not yet revalidated
    clock.t += 2
    assert cache.get("bob").status == MISS


def test_promotion_and_rollback_visible_after_interval(env):
    store, reg, clock, rec, publish, make = env
    publish("alice", n=1)
    cache = make()
    assert cache.get("alice").version == version(1)
    publish("alice", n=2, threshold=0.7)
    clock.t += 30
    assert cache.get("alice").version == version(1)  # still within the interval
    clock.t += 31
    lk = cache.get("alice")
    assert (lk.status, lk.version, lk.threshold) == (MISS, version(2), 0.7)
    # unchanged pointer on the next revalidation: no download
    gets = store.gets
    clock.t += 61
    assert cache.get("alice").status == HIT and store.gets == gets
    # rollback: the pointer goes back to v1
    publish("alice", n=1)
    clock.t += 61
    assert cache.get("alice").version == version(1)


def test_eviction_under_memory_budget(env):
    store, reg, clock, rec, publish, make = env
    for u in ("u1", "u2", "u3"):
        publish(u)
    one = OnnxModel.from_bytes(build_onnx(model_version=version(1), user="u1")).memory_estimate
    cache = make(max_bytes=2 * one + 10)
    cache.get("u1"), cache.get("u2")
    assert cache.get("u1").status == HIT  # u1 is now most recently used
    cache.get("u3")  # over budget: evicts the LRU one (u2)
    assert cache.evictions == 1 and len(cache) == 2 and cache.bytes_used <= cache.max_bytes
    assert cache.get("u1").status == HIT and cache.get("u3").status == HIT
    assert cache.get("u2").status == MISS


def test_eviction_by_count(env):
    store, reg, clock, rec, publish, make = env
    for u in ("u1", "u2", "u3"):
        publish(u)
    cache = make(max_models=2)
    for u in ("u1", "u2", "u3"):
        cache.get(u)
    assert len(cache) == 2 and cache.evictions == 1 and cache.get("u1").status == MISS


def test_model_larger_than_budget_is_served_not_kept(env):
    store, reg, clock, rec, publish, make = env
    publish("big")
    cache = make(max_bytes=1000)
    assert cache.get("big").status == MISS and cache.get("big").status == MISS and len(cache) == 0


@pytest.mark.parametrize("breakage", ["tampered_sha", "truncated", "missing", "other_spec_pointer",
                                      "other_spec_model", "garbage"])
def test_broken_models_are_not_used_and_negative_cached(env, breakage):
    store, reg, clock, rec, publish, make = env
    good = build_onnx(model_version=version(1), user="alice")
    if breakage == "tampered_sha":
        publish("alice", sha="0" * 64)
    elif breakage == "truncated":
        data = good[: len(good) // 2]
        p = publish("alice", data=data)  # sha matches the truncated bytes: onnxruntime must refuse them
    elif breakage == "missing":
        p = publish("alice")
        del store.objects[p["s3_key"]]
    elif breakage == "other_spec_pointer":
        publish("alice", spec=99)
    elif breakage == "other_spec_model":
        publish("alice", data=build_onnx(model_version=version(1), user="alice", spec=3))
    elif breakage == "garbage":
        publish("alice", data=b"\x08\x07not-an-onnx-model")
    cache = make()
    lk = cache.get("alice")
    assert lk.status == FAILED and lk.model is None and lk.error
    assert rec.count("ModelLoadFailures") == 1 and cache.load_failures == 1
    gets = store.gets
    for _ in range(10):
        assert cache.get("alice").status == FAILED
    assert store.gets == gets and rec.count("ModelLoadFailures") == 1  # negative-cached: no S3 GET
    # after the failure TTL a fixed pointer is picked up
    publish("alice", n=2)
    clock.t += 31
    assert cache.get("alice").status == MISS


def test_broken_promotion_does_not_keep_serving_the_old_model(env):
    store, reg, clock, rec, publish, make = env
    publish("alice", n=1)
    cache = make()
    assert cache.get("alice").status == MISS
    publish("alice", n=2, sha="f" * 64)
    clock.t += 61
    assert cache.get("alice").status == FAILED


def test_storage_errors_fail_closed(env):
    store, reg, clock, rec, publish, make = env
    publish("alice")

    def boom(key, sha256=None):
        raise ConnectionError("s3 down")

    store.get = boom
    cache = make()
    assert cache.get("alice").status == FAILED and rec.count("ModelLoadFailures") == 1


def test_the_cache_charges_each_family_at_least_what_the_bench_measured():
    """The memory charge per family against the RSS bench/model_selection.py measured for one
    loaded session (bench/results/model_selection_spec1.json): never under, at most 25% over."""
    import json
    from pathlib import Path

    from calroute.runtime import RSS_PER_ONNX_BYTE

    rows = json.loads((Path(__file__).resolve().parents[2] / "bench" / "results"
                       / "model_selection_spec1.json").read_text())["candidates"]
    measured = {r["name"]: (r["onnx_bytes"], r["rss_per_session_bytes"]) for r in rows if r["name"] in RSS_PER_ONNX_BYTE}
    assert set(measured) == set(RSS_PER_ONNX_BYTE)  # every family has a measurement
    for family, (size, rss) in measured.items():
        charge = RSS_PER_ONNX_BYTE[family] * size
        assert rss <= charge <= 1.25 * rss, (family, size, rss, charge)


def test_a_model_is_charged_by_its_family_and_novelty():
    from calroute.runtime import NOVELTY_INDEX_BYTES, RSS_PER_ONNX_BYTE

    model = OnnxModel.from_bytes(build_onnx(model_version=version(1), user="u1"))
    family = model.metadata["calroute.family"]
    extra = NOVELTY_INDEX_BYTES if model.novelty is not None else 0
    assert model.memory_estimate == int(RSS_PER_ONNX_BYTE[family] * model.size_bytes) + extra
