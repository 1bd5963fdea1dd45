"""ValidateFunction: the parity gate in the inference runtime (onnxruntime + numpy, **no sklearn**):
sha256 of the stored bytes and fixtures, the model loads as serving loads it, and its
probabilities reproduce sklearn's on the fixtures (max |Δp| ≤ 1e-4, no argmax flip). Failing →
``rejected``."""

from __future__ import annotations

import io
import time
from typing import Callable, Mapping

from ... import ids
from ...config import Settings
from ...errors import ModelIntegrityError
from ...ports import ModelBlobs, Stores
from .common import _base, _finite, _ms

PARITY_TOL = 1e-4


def check_candidate(record: dict, store: ModelBlobs, tol: float = PARITY_TOL) -> dict:
    """The parity gate, in the inference runtime: returns ``{"passed", "reason", ...parity}``."""
    import numpy as np

    from ...onnx_export import check_parity  # numpy + onnxruntime via runtime.OnnxModel; no sklearn
    from ...runtime import OnnxModel

    train_parity = record.get("train_parity") or {}
    if train_parity and train_parity.get("passed") is False:
        return {"passed": False, "reason": (f"ONNX parity failed at training: max |Δp| "
                                            f"{train_parity.get('max_abs_diff')}, {train_parity.get('argmax_flips')} "
                                            "argmax flips")}
    try:
        data = store.get(record["s3_key"], record["sha256"])
        model = OnnxModel.from_bytes(data, expected_sha256=record["sha256"])
        raw = store.get(record["parity_key"], record["parity_sha256"])
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            X, sk = np.asarray(npz["X"]), np.asarray(npz["sk_proba"])
    except ModelIntegrityError as exc:
        return {"passed": False, "reason": f"integrity: {exc}"}
    except (KeyError, ValueError, OSError) as exc:
        return {"passed": False, "reason": f"parity fixtures unreadable: {type(exc).__name__}"}
    if list(model.labels) != list(record.get("labels") or []):
        return {"passed": False, "reason": "the model's labels differ from the registered labels"}
    if X.ndim != 2 or X.shape[0] == 0:
        return {"passed": False, "reason": "no parity fixtures"}
    parity = check_parity(data, X, sk, tol=tol)
    out = {k: v for k, v in parity.items() if k != "error"}
    if not parity["passed"]:
        out["reason"] = parity.get("error") or (
            f"ONNX parity failed: max |Δp| {parity['max_abs_diff']:.3g} (tol {tol:g}), "
            f"{parity['argmax_flips']} argmax flips over {parity['rows']} rows")
        out["passed"] = False
        return out
    out["reason"] = f"parity ok: max |Δp| {parity['max_abs_diff']:.2g} over {parity['rows']} rows"
    return out


def validate(item: Mapping, stores: Stores, cfg: Settings, *,
             clock: Callable[[], float] = time.perf_counter) -> dict:
    t0 = clock()
    user = ids.user_id(item.get("user_id"), field="user_id")
    version = ids.model_version(item.get("version"))
    out = {**_base(item), "version": version}
    prior = int(item.get("duration_ms") or 0)
    registry = stores.registry
    record = registry.get_version(user, version)
    if record is None:
        raise ModelIntegrityError(f"candidate {version} is not in the registry")
    verdict = check_candidate(record, stores.models)
    parity = _finite({k: v for k, v in verdict.items() if k not in ("reason", "passed")})
    if not verdict["passed"]:
        registry.set_status(user, version, "rejected", verdict["reason"], rejected_stage="validate", parity=parity)
        return {**out, "status": "rejected", "stage": "validate", "reason": verdict["reason"],
                "duration_ms": prior + _ms(t0, clock)}
    registry.set_status(user, version, "validated", verdict["reason"], validated=True, parity=parity)
    return {**out, "status": "valid", "holdout_accuracy": item.get("holdout_accuracy"),
            "duration_ms": prior + _ms(t0, clock)}

