"""Per-container model cache: an LRU of :class:`~calroute.runtime.OnnxModel` keyed by user.

* **Bounded** by a memory budget (bytes, each model charged ``OnnxModel.memory_estimate``) and a
  model count; least recently used models are evicted first. A model larger than the whole budget
  is served once and not kept.
* **Revalidated**: an entry is trusted for ``revalidate_seconds``; after that the registry ACTIVE
  pointer is read again (one GetItem) and, if it names another sha256, the new model is loaded —
  a promotion or rollback is seen within that interval without a cold start. Users without a model
  are remembered for the same interval (no GetItem per request for them either).
* **Integrity**: bytes come from ``ModelStore.get`` (sha256 checked) and ``OnnxModel.from_bytes``
  (sha256, loadable graph, feature spec). A model failing any check — object missing, truncated,
  tampered, built for another feature spec, ACTIVE pointing at a deleted version — is never used:
  the lookup reports ``failed``, ``ModelLoadFailures`` is emitted and the failure is cached for
  ``failure_ttl_seconds`` so a broken model does not cost an S3 GET per request.

The clock is injectable (tests advance a fake clock instead of sleeping).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Optional

from .errors import ModelIntegrityError
from .features import SUPPORTED_SPECS
from .ports import NullSink
from .runtime import OnnxModel

HIT, MISS, NO_MODEL, FAILED = "hit", "miss", "none", "failed"


@dataclass
class Lookup:
    """The outcome of :meth:`ModelCache.get`: ``model`` is None unless ``status`` is hit/miss."""

    status: str
    model: Optional[OnnxModel] = None
    version: Optional[str] = None
    threshold: Optional[float] = None
    load_ms: float = 0.0
    error: str = ""
    pointer: Optional[dict] = None


@dataclass
class _Entry:
    model: Optional[OnnxModel]
    version: Optional[str]
    sha256: Optional[str]
    threshold: Optional[float]
    checked_at: float
    status: str  # "model" | NO_MODEL | FAILED
    error: str = ""
    pointer: Optional[dict] = None

    @property
    def charge(self) -> int:
        return self.model.memory_estimate if self.model is not None else 0


class ModelCache:
    """Thread-safe per-container LRU of per-user models (see the module docstring)."""

    def __init__(self, registry, store, *, max_bytes: int, max_models: int, revalidate_seconds: float = 60.0,
                 failure_ttl_seconds: float = 30.0, clock: Callable[[], float] = time.monotonic,
                 metrics=None, loader: Callable[..., OnnxModel] = OnnxModel.from_bytes,
                 serving_spec: int | tuple[int, ...] = SUPPORTED_SPECS):
        self.registry = registry
        self.store = store
        self.max_bytes = int(max_bytes)
        self.max_models = int(max_models)
        self.revalidate_seconds = float(revalidate_seconds)
        self.failure_ttl_seconds = float(failure_ttl_seconds)
        self.clock = clock
        self.metrics = metrics or NullSink()
        self.loader = loader
        # feature specs this container can featurize (spec-1 models keep being served until retrained)
        self.serving_spec = (serving_spec,) if isinstance(serving_spec, int) else tuple(serving_spec)
        self._entries: "OrderedDict[str, _Entry]" = OrderedDict()
        self._bytes = 0
        self._n_models = 0
        self._lock = threading.Lock()
        self.hits = self.misses = self.evictions = self.load_failures = self.revalidations = 0

    @classmethod
    def from_settings(cls, cfg, registry, store, **kw) -> "ModelCache":
        return cls(registry, store, max_bytes=cfg.model_cache_mb * 1024 * 1024,
                   max_models=cfg.model_cache_max_models, revalidate_seconds=cfg.model_revalidate_seconds,
                   failure_ttl_seconds=cfg.model_failure_ttl_seconds, **kw)

    # ------------------------------------------------------------------ public

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return self._n_models

    def stats(self) -> dict:
        return {"hits": self.hits, "misses": self.misses, "evictions": self.evictions,
                "load_failures": self.load_failures, "revalidations": self.revalidations,
                "models": len(self), "bytes": self._bytes, "max_bytes": self.max_bytes}

    def invalidate(self, user_id: str) -> None:
        with self._lock:
            self._drop(user_id)

    def get(self, user_id: str) -> Lookup:
        """The user's ACTIVE model (hit/miss), or no model (``none``) or a broken one (``failed``)."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(user_id)
            if entry is not None and now - entry.checked_at < self._ttl(entry):
                return self._answer_cached(user_id, entry)
        # stale or absent: read the pointer outside the lock (network)
        pointer = self.registry.active(user_id)
        self.revalidations += 1
        with self._lock:
            entry = self._entries.get(user_id)
            if pointer is None:
                self._drop(user_id)
                self._put(user_id, _Entry(None, None, None, None, now, NO_MODEL))
                self._evict()  # negative entries are bounded even when no model is ever loaded
                return Lookup(NO_MODEL)
            if entry is not None and entry.sha256 == pointer.get("sha256") and entry.status != FAILED:
                # unchanged: trust it for another interval (threshold may have been edited)
                entry.checked_at = now
                entry.threshold = _threshold(pointer, entry.model)
                entry.pointer = pointer
                return self._answer_cached(user_id, entry)
        return self._load(user_id, pointer, now)

    # ------------------------------------------------------------------ internals

    def _ttl(self, entry: _Entry) -> float:
        if entry.status == FAILED:
            return self.failure_ttl_seconds
        return self.revalidate_seconds

    def _answer_cached(self, user_id: str, entry: _Entry) -> Lookup:
        if entry.status == NO_MODEL:
            return Lookup(NO_MODEL)
        if entry.status == FAILED:
            return Lookup(FAILED, version=entry.version, error=entry.error)
        self._entries.move_to_end(user_id)
        self.hits += 1
        return Lookup(HIT, entry.model, entry.version, entry.threshold, pointer=entry.pointer)

    def _load(self, user_id: str, pointer: dict, now: float) -> Lookup:
        t0 = time.perf_counter()
        version = pointer.get("version")
        try:
            spec = pointer.get("feature_spec")
            if spec is not None and int(spec) not in self.serving_spec:
                raise ModelIntegrityError(f"ACTIVE model was built for feature spec {spec}")
            sha = pointer.get("sha256")
            key = pointer.get("s3_key")
            if not sha or not key:
                raise ModelIntegrityError("ACTIVE pointer has no s3_key/sha256")
            data = self.store.get(key, sha)
            model = self.loader(data, expected_sha256=sha, expected_spec=self.serving_spec)
        except ModelIntegrityError as exc:
            return self._fail(user_id, pointer, now, str(exc))
        except Exception as exc:  # noqa: BLE001 - storage errors: fall back, do not 5xx
            return self._fail(user_id, pointer, now, f"{type(exc).__name__}")
        load_ms = (time.perf_counter() - t0) * 1000.0
        self.misses += 1
        self.metrics.add_metric(name="ModelLoadMs", unit="Milliseconds", value=load_ms)
        entry = _Entry(model, version, pointer.get("sha256"), _threshold(pointer, model), now, "model",
                       pointer=pointer)
        with self._lock:
            self._drop(user_id)
            if entry.charge <= self.max_bytes:
                self._put(user_id, entry)
                self._evict()
        return Lookup(MISS, model, version, entry.threshold, load_ms=load_ms, pointer=pointer)

    def _fail(self, user_id: str, pointer: dict, now: float, error: str) -> Lookup:
        self.load_failures += 1
        self.metrics.add_metric(name="ModelLoadFailures", unit="Count", value=1)
        with self._lock:
            self._drop(user_id)
            self._put(user_id, _Entry(None, pointer.get("version"), pointer.get("sha256"), None, now, FAILED,
                                      error=error))
            self._evict()
        return Lookup(FAILED, version=pointer.get("version"), error=error)

    def _put(self, user_id: str, entry: _Entry) -> None:
        self._entries[user_id] = entry
        self._bytes += entry.charge
        self._n_models += entry.model is not None

    def _drop(self, user_id: str) -> None:
        old = self._entries.pop(user_id, None)
        if old is not None:
            self._bytes -= old.charge
            self._n_models -= old.model is not None

    def _evict(self) -> None:
        while self._bytes > self.max_bytes or self._n_models > self.max_models:
            victim = next((u for u, e in self._entries.items() if e.model is not None), None)
            if victim is None:
                break
            self._drop(victim)
            self.evictions += 1
        while len(self._entries) > 4 * self.max_models:  # negative entries are tiny but bounded too
            self._drop(next(iter(self._entries)))


def _threshold(pointer: dict, model: Optional[OnnxModel]) -> Optional[float]:
    t = pointer.get("threshold")
    if t is not None:
        try:
            return float(t)
        except (TypeError, ValueError):
            pass
    return model.threshold if model is not None else None
