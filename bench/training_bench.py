"""Training end to end — :func:`calroute.training.train_user_model`, the TrainUser Lambda's code:
featurize, out-of-fold predictions and threshold, the final fit, ONNX export and the parity gate —
on synthetic users of 1,000 and 5,000 events (bundled real calendars, see bench.users)."""

from __future__ import annotations

from .harness import Stopwatch, percentile, progress
from .users import synthetic_user


def run(quick: bool) -> dict:
    from calroute.training import TrainConfig, train_user_model

    sizes = {1000: 1 if quick else 3, 5000: 1 if quick else 2}
    if quick:
        sizes = {200: 1}
    warm = synthetic_user(120, n_calendars=3, seed=99)
    train_user_model(warm, TrainConfig(), user_id="warmup", version="v20260104000000-000000")  # imports
    out = {}
    for n, repeat in sizes.items():
        events = synthetic_user(n, n_calendars=4, seed=n)
        walls, cpus = [], []
        for r in range(repeat):
            progress(f"training: {n} events, run {r + 1}/{repeat}")
            with Stopwatch() as sw:
                trained = train_user_model(events, TrainConfig(), user_id="bench", version="v20260104000000-000001")
            walls.append(sw.wall)
            cpus.append(sw.cpu)
        out[str(n)] = {"wall_s_p50": round(percentile(walls, 50), 3), "cpu_s_p50": round(percentile(cpus, 50), 3),
                       "runs": repeat, "calendars": len(trained.labels), "onnx_bytes": len(trained.onnx_bytes),
                       "parity_passed": trained.parity["passed"], "threshold": round(trained.threshold, 3),
                       "cv_accuracy": trained.metrics.get("cv_accuracy")}
    return out
