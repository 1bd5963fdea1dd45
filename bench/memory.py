"""RAM per cached user model: for each model family, a fresh process loads the same ONNX model N
times as separate :class:`calroute.runtime.OnnxModel` sessions (what the per-container cache holds,
one per user), runs one prediction on each, and reports the RSS growth over the process's state
after importing onnxruntime and loading one warm-up model. Families: those docs/model-selection.md
compares (``calroute.training.FAMILIES``), trained on one bundled real user.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

from .harness import ROOT, progress

CHILD = r"""
import gc, json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from calroute.runtime import OnnxModel
from calroute.features import N_FEATURES
def rss():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096
data = open(sys.argv[2], "rb").read()
counts = [int(c) for c in sys.argv[3].split(",")]
x = np.zeros((1, N_FEATURES), np.float32)
warm = OnnxModel.from_bytes(data); warm.predict_proba(x)
gc.collect()
base = rss()
models, out = [], {}
for target in counts:
    while len(models) < target:
        m = OnnxModel.from_bytes(data); m.predict_proba(x); models.append(m)
    gc.collect()
    out[str(target)] = rss() - base
lat = []
for _ in range(200):
    t = time.perf_counter(); warm.predict_proba(x); lat.append(time.perf_counter() - t)
print(json.dumps({"growth": out, "estimate": warm.memory_estimate, "latency_ms": float(np.median(lat)) * 1000}))
"""


def measure(onnx_bytes: bytes, counts: list[int]) -> dict:
    """In a fresh process: RSS growth after loading ``counts`` sessions of the model (cumulative),
    the cache's charge for one (``estimate``) and the warm one-row latency (``latency_ms``, median)."""
    with tempfile.NamedTemporaryFile(suffix=".onnx", delete=False) as fh:
        fh.write(onnx_bytes)
        path = fh.name
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(ROOT / "layers" / "core"), path,
                               ",".join(map(str, counts))], capture_output=True, text=True, timeout=900)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool, *, families=None, user: str = "d3_developer") -> dict:
    from calroute_dev.evaluation import split_events
    from calroute.training import FAMILIES, TrainConfig, train_user_model

    from .users import real_users

    counts = [1, 10, 20] if quick else [1, 100, 1000]
    families = families or (("logreg", "gb_dense") if quick else FAMILIES)
    events = real_users()[user]
    train, _ = split_events(events)
    out: dict = {"user": user, "train_events": len(train), "counts": counts, "families": {}}
    for fam in families:
        progress(f"memory: {fam} — training, then {counts[-1]} sessions in a fresh process")
        try:
            trained = train_user_model(train, TrainConfig(family=fam), user_id=user, version="v20260103000000-000000")
        except Exception as exc:  # noqa: BLE001 - a family that cannot train/export is reported, not fatal
            out["families"][fam] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
            continue
        m = measure(trained.onnx_bytes, counts)
        growth = {k: v for k, v in m["growth"].items()}
        last = counts[-1]
        per_model = growth[str(last)] / last
        out["families"][fam] = {
            "onnx_bytes": len(trained.onnx_bytes),
            "rss_growth_mb": {k: round(v / 2**20, 2) for k, v in growth.items()},
            "per_model_kb": round(per_model / 1024, 1),
            "models_per_gb": int(2**30 // per_model) if per_model > 0 else None,
            "cache_charge_kb": round(m["estimate"] / 1024, 1),
        }
    return out
