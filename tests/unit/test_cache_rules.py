"""calroute.cache.ModelCache with a fake registry, store, loader and clock: the revalidation and
failure intervals at their edges, what a changed or unchanged pointer does, each integrity refusal
and its error, the memory / count budget (LRU order, a model bigger than the budget, negative
entries bounded), the counters and metrics. The mutation target for cache.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from calroute.cache import FAILED, HIT, MISS, NO_MODEL, ModelCache, _threshold
from calroute.errors import ModelIntegrityError


class Registry:
    def __init__(self, **pointers):
        self.pointers, self.reads = dict(pointers), []

    def active(self, user_id):
        self.reads.append(user_id)
        return self.pointers.get(user_id)


class Store:
    def __init__(self, fail=None):
        self.fail, self.gets = fail, []

    def get(self, key, sha):
        self.gets.append((key, sha))
        if self.fail:
            raise self.fail
        return f"bytes:{key}".encode()


class Loader:
    def __init__(self, size=100, threshold=0.5, fail=None):
        self.size, self.threshold, self.fail, self.calls = size, threshold, fail, []

    def __call__(self, data, expected_sha256=None, expected_spec=None):
        self.calls.append((data, expected_sha256, expected_spec))
        if self.fail:
            raise self.fail
        size = self.size(data) if callable(self.size) else self.size
        return SimpleNamespace(memory_estimate=size, threshold=self.threshold, data=data)


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class Sink:
    def __init__(self):
        self.metrics = []

    def add_metric(self, name, unit, value):
        self.metrics.append((name, unit, value))


def ptr(user="u", sha="s1", **kw):
    return {"version": f"v-{user}-{sha}", "sha256": sha, "s3_key": f"models/{user}/{sha}.onnx", **kw}


def make(registry, *, store=None, loader=None, **kw):
    clock, sink = Clock(), Sink()
    opts = dict(max_bytes=1000, max_models=10, revalidate_seconds=60, failure_ttl_seconds=5)
    opts.update(kw)
    cache = ModelCache(registry, store or Store(), clock=clock, metrics=sink, loader=loader or Loader(), **opts)
    return cache, clock, sink


def test_a_first_get_loads_and_reports_the_miss():
    reg, loader, store = Registry(u=ptr(threshold=0.7)), Loader(), Store()
    cache, _, sink = make(reg, store=store, loader=loader, serving_spec=2)
    got = cache.get("u")
    assert got.status == MISS and got.version == "v-u-s1" and got.threshold == 0.7
    assert got.model.data == b"bytes:models/u/s1.onnx" and got.pointer == ptr(threshold=0.7) and got.load_ms >= 0
    assert store.gets == [("models/u/s1.onnx", "s1")]
    assert loader.calls == [(b"bytes:models/u/s1.onnx", "s1", (2,))]
    assert [m[:2] for m in sink.metrics] == [("ModelLoadMs", "Milliseconds")]
    assert (cache.misses, cache.hits, cache.revalidations) == (1, 0, 1)


def test_an_entry_is_trusted_until_exactly_revalidate_seconds():
    reg = Registry(u=ptr())
    cache, clock, _ = make(reg)
    cache.get("u")
    clock.t += 59.99
    assert cache.get("u").status == HIT and reg.reads == ["u"]
    clock.t += 0.01
    assert cache.get("u").status == HIT and reg.reads == ["u", "u"]   # read again, same sha: still a hit
    assert (cache.hits, cache.misses, cache.revalidations) == (2, 1, 2)


def test_an_unchanged_pointer_keeps_the_model_and_takes_the_new_threshold():
    reg, loader = Registry(u=ptr(threshold=0.6)), Loader()
    cache, clock, _ = make(reg, loader=loader)
    cache.get("u")
    reg.pointers["u"] = ptr(threshold=0.9)
    clock.t += 60
    got = cache.get("u")
    assert got.status == HIT and got.threshold == 0.9 and got.pointer["threshold"] == 0.9
    assert len(loader.calls) == 1
    clock.t += 1
    assert cache.get("u").threshold == 0.9   # the refreshed entry is what is cached


def test_a_promotion_is_loaded_at_the_next_revalidation():
    reg, loader = Registry(u=ptr(sha="s1")), Loader()
    cache, clock, _ = make(reg, loader=loader)
    cache.get("u")
    reg.pointers["u"] = ptr(sha="s2")
    clock.t += 30
    assert cache.get("u").version == "v-u-s1"
    clock.t += 30
    got = cache.get("u")
    assert got.status == MISS and got.version == "v-u-s2" and len(loader.calls) == 2
    assert len(cache) == 1 and cache.bytes_used == 100


def test_no_model_is_remembered_for_the_revalidation_interval():
    reg = Registry()
    cache, clock, _ = make(reg)
    assert cache.get("u").status == NO_MODEL
    clock.t += 59
    assert cache.get("u").status == NO_MODEL and reg.reads == ["u"]
    reg.pointers["u"] = ptr()
    clock.t += 1
    assert cache.get("u").status == MISS
    assert len(cache) == 1


def test_a_pointer_removed_drops_the_model():
    reg = Registry(u=ptr())
    cache, clock, _ = make(reg)
    cache.get("u")
    del reg.pointers["u"]
    clock.t += 60
    assert cache.get("u").status == NO_MODEL and len(cache) == 0 and cache.bytes_used == 0


@pytest.mark.parametrize("pointer, error", [
    (ptr(feature_spec=9), "ACTIVE model was built for feature spec 9"),
    (ptr(feature_spec="9"), "ACTIVE model was built for feature spec 9"),
    ({"version": "v1", "sha256": "s1"}, "ACTIVE pointer has no s3_key/sha256"),
    ({"version": "v1", "s3_key": "k", "sha256": ""}, "ACTIVE pointer has no s3_key/sha256"),
])
def test_integrity_refusals(pointer, error):
    reg, store = Registry(u=pointer), Store()
    cache, _, sink = make(reg, store=store, serving_spec=(1, 2))
    got = cache.get("u")
    assert (got.status, got.error, got.version, got.model) == (FAILED, error, "v1" if "v1" == pointer["version"]
                                                              else pointer["version"], None)
    assert store.gets == [] and sink.metrics == [("ModelLoadFailures", "Count", 1)] and cache.load_failures == 1


def test_a_served_spec_loads():
    cache, _, _ = make(Registry(u=ptr(feature_spec=2)), serving_spec=(1, 2))
    assert cache.get("u").status == MISS


def test_storage_and_loader_errors_are_failures_named_by_their_type():
    cache, _, _ = make(Registry(u=ptr()), store=Store(fail=KeyError("gone")))
    assert cache.get("u").error == "KeyError"
    cache, _, _ = make(Registry(u=ptr()), loader=Loader(fail=ModelIntegrityError("sha256 mismatch")))
    got = cache.get("u")
    assert (got.status, got.error) == (FAILED, "sha256 mismatch")


def test_a_failure_is_cached_for_failure_ttl_seconds_only():
    reg, loader = Registry(u=ptr()), Loader(fail=ModelIntegrityError("bad"))
    cache, clock, _ = make(reg, loader=loader)
    cache.get("u")
    clock.t += 4.99
    got = cache.get("u")
    assert (got.status, got.error, got.version) == (FAILED, "bad", "v-u-s1") and len(loader.calls) == 1
    clock.t += 0.01
    loader.fail = None
    got = cache.get("u")          # same sha as the failed entry: loaded again, not trusted
    assert got.status == MISS and len(loader.calls) == 2


def test_a_model_bigger_than_the_budget_is_served_but_not_kept():
    reg = Registry(u=ptr())
    cache, clock, _ = make(reg, loader=Loader(size=1001))
    assert cache.get("u").status == MISS
    assert len(cache) == 0 and cache.bytes_used == 0
    assert cache.get("u").status == MISS


def test_a_model_of_exactly_the_budget_is_kept():
    cache, _, _ = make(Registry(u=ptr()), loader=Loader(size=1000))
    cache.get("u")
    assert len(cache) == 1 and cache.bytes_used == 1000
    assert cache.get("u").status == HIT


def test_the_least_recently_used_model_goes_first_by_count():
    reg = Registry(a=ptr("a"), b=ptr("b"), c=ptr("c"))
    cache, _, _ = make(reg, max_models=2)
    cache.get("a"), cache.get("b"), cache.get("a")
    cache.get("c")
    assert cache.evictions == 1 and len(cache) == 2 and cache.bytes_used == 200
    assert cache.get("a").status == HIT and cache.get("c").status == HIT
    assert cache.get("b").status == MISS


def test_the_least_recently_used_model_goes_first_by_bytes():
    reg = Registry(a=ptr("a"), b=ptr("b"), c=ptr("c"))
    cache, _, _ = make(reg, max_bytes=250)
    cache.get("a"), cache.get("b"), cache.get("b"), cache.get("a")
    cache.get("c")
    assert (cache.evictions, len(cache), cache.bytes_used) == (1, 2, 200)
    assert cache.get("b").status == MISS


def test_eviction_skips_negative_entries():
    reg = Registry(a=ptr("a"), b=ptr("b"))
    cache, _, _ = make(reg, max_models=1)
    cache.get("nobody")                 # the oldest entry, but not a model: not what the count evicts
    cache.get("a"), cache.get("b")
    assert (cache.evictions, len(cache)) == (1, 1)
    reads = len(reg.reads)
    assert cache.get("nobody").status == NO_MODEL and len(reg.reads) == reads
    assert cache.get("a").status == MISS


def test_negative_entries_are_bounded_even_without_a_model_load():
    reg = Registry()
    cache, _, _ = make(reg, max_models=1)
    for i in range(5):                   # at most 4 x max_models entries
        assert cache.get(f"nobody{i}").status == NO_MODEL
    reads = len(reg.reads)
    cache.get("nobody4"), cache.get("nobody1")
    assert len(reg.reads) == reads        # the newest four are remembered
    cache.get("nobody0")
    assert len(reg.reads) == reads + 1    # the oldest was forgotten


def test_failures_are_bounded_too():
    reg = Registry(**{f"bad{i}": ptr(f"bad{i}", feature_spec=99) for i in range(5)})
    cache, _, _ = make(reg, max_models=1)
    for i in range(5):
        assert cache.get(f"bad{i}").status == FAILED
    reads = len(reg.reads)
    cache.get("bad0")
    assert len(reg.reads) == reads + 1


def test_invalidate_forgets_the_user():
    reg = Registry(u=ptr())
    cache, _, _ = make(reg)
    cache.get("u")
    cache.invalidate("u")
    assert len(cache) == 0 and cache.bytes_used == 0
    assert cache.get("u").status == MISS and reg.reads == ["u", "u"]
    cache.invalidate("never-seen")


def test_stats():
    reg = Registry(u=ptr(), bad=ptr("bad", feature_spec=99))
    cache, _, _ = make(reg)
    cache.get("u"), cache.get("u"), cache.get("bad"), cache.get("none")
    assert cache.stats() == {"hits": 1, "misses": 1, "evictions": 0, "load_failures": 1, "revalidations": 3,
                             "models": 1, "bytes": 100, "max_bytes": 1000}


def test_from_settings():
    cfg = SimpleNamespace(model_cache_mb=3, model_cache_max_models=7, model_revalidate_seconds=11,
                          model_failure_ttl_seconds=13)
    c = ModelCache.from_settings(cfg, Registry(), Store())
    assert (c.max_bytes, c.max_models, c.revalidate_seconds, c.failure_ttl_seconds) == (3 * 1024 * 1024, 7, 11.0, 13.0)


def test_threshold_from_the_pointer_else_the_model():
    model = SimpleNamespace(threshold=0.4)
    assert _threshold({"threshold": "0.75"}, model) == 0.75
    assert _threshold({"threshold": "abc"}, model) == 0.4
    assert _threshold({"threshold": [1]}, model) == 0.4
    assert _threshold({}, model) == 0.4
    assert _threshold({}, None) is None and _threshold({"threshold": "x"}, None) is None


def test_default_intervals_are_60_s_and_30_s_for_failures():
    reg = Registry(u=ptr(), bad=ptr("bad", feature_spec=99))
    clock = Clock()
    cache = ModelCache(reg, Store(), max_bytes=1000, max_models=10, clock=clock, loader=Loader())
    cache.get("u"), cache.get("bad")
    clock.t += 29.99
    cache.get("u"), cache.get("bad")
    assert reg.reads == ["u", "bad"]
    clock.t += 0.01
    cache.get("bad")
    assert reg.reads == ["u", "bad", "bad"]
    clock.t += 29.99
    cache.get("u")
    assert reg.reads == ["u", "bad", "bad"]
    clock.t += 0.01
    cache.get("u")
    assert reg.reads == ["u", "bad", "bad", "u"]


def test_a_hit_is_the_loaded_model_with_its_pointer_and_the_models_own_threshold():
    reg, loader = Registry(u=ptr()), Loader(threshold=0.45)
    cache, clock, _ = make(reg, loader=loader)
    miss = cache.get("u")
    hit = cache.get("u")
    assert hit.status == HIT and hit.model is miss.model and hit.pointer == ptr() and hit.threshold == 0.45
    assert miss.threshold == 0.45
    clock.t += 60
    again = cache.get("u")                       # revalidated, pointer without a threshold
    assert again.status == HIT and again.threshold == 0.45
    assert (cache.hits, cache.misses) == (2, 1)


def test_counters_add_up():
    reg = Registry(a=ptr("a"), b=ptr("b"), c=ptr("c"), x=ptr("x", feature_spec=99), y=ptr("y", feature_spec=99))
    cache, _, _ = make(reg, max_models=1)
    for u in "abcxy":
        cache.get(u)
    assert (cache.misses, cache.evictions, cache.load_failures) == (3, 2, 2)


def test_a_failed_promotion_frees_the_old_models_memory():
    reg = Registry(u=ptr(sha="s1"))
    cache, clock, _ = make(reg)
    cache.get("u")
    reg.pointers["u"] = ptr(sha="s2", feature_spec=99)
    clock.t += 60
    assert cache.get("u").status == FAILED
    assert (len(cache), cache.bytes_used) == (0, 0)


def test_a_storage_failure_is_cached_for_the_user():
    reg = Registry(u=ptr())
    cache, clock, _ = make(reg, store=Store(fail=KeyError("gone")))
    assert cache.get("u").error == "KeyError"
    clock.t += 1
    assert cache.get("u").status == FAILED and reg.reads == ["u"]


def test_the_load_time_is_in_milliseconds(monkeypatch):
    import calroute.cache as cache_mod

    ticks = iter([10.0, 10.002])
    monkeypatch.setattr(cache_mod.time, "perf_counter", lambda: next(ticks))
    cache, _, sink = make(Registry(u=ptr()))
    got = cache.get("u")
    monkeypatch.undo()
    assert got.load_ms == pytest.approx(2.0, abs=1e-6)
    assert sink.metrics[0][0] == "ModelLoadMs" and sink.metrics[0][2] == pytest.approx(2.0, abs=1e-6)


def test_from_settings_passes_the_stores_and_options_through():
    cfg = SimpleNamespace(model_cache_mb=1, model_cache_max_models=2, model_revalidate_seconds=60,
                          model_failure_ttl_seconds=5)
    reg, store, loader = Registry(u=ptr()), Store(), Loader()
    c = ModelCache.from_settings(cfg, reg, store, loader=loader, clock=Clock())
    assert c.get("u").status == MISS and reg.reads == ["u"] and store.gets and loader.calls
