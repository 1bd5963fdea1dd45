import os
import subprocess
import sys

import numpy as np

from calroute.features import FEATURE_SPEC, N_DENSE, N_FEATURES, featurize, featurize_dense
from calroute.schema import parse_event

# the package under test, when it is not the installed one (a worktree run with PYTHONPATH)
_PYTHONPATH = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}

EV = {"summary": "Rugby training at Morley", "location": "Scatcherd Lane", "description": "Bring boots",
      "start": "2026-03-07T14:00:00Z", "end": "2026-03-07T19:30:00Z", "attendees": ["coach@morleyrfc.example"]}


def test_shape_dtype_and_dense_subset():
    X = featurize([parse_event(EV)])
    assert X.shape == (1, N_FEATURES) and X.dtype == np.float32
    assert np.array_equal(X[:, :N_DENSE], featurize_dense([parse_event(EV)]))
    assert X[0, 4] == 1.0  # Saturday → weekend
    assert FEATURE_SPEC["hash"] == "crc32"


def test_featurizer_identical_across_processes():
    """Built-in hash() is salted per process; crc32 must give the same vector everywhere."""
    code = (
        "import json,sys;from calroute.features import featurize;from calroute.schema import parse_event;"
        f"x=featurize([parse_event({EV!r})])[0];print(json.dumps([float(v) for v in x]))"
    )
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={"PYTHONHASHSEED": str(seed), "PATH": "", **_PYTHONPATH}).stdout
        for seed in (1, 2)
    }
    assert len(outs) == 1
    import json

    assert np.allclose(np.array(json.loads(outs.pop()), dtype=np.float32), featurize([parse_event(EV)])[0])


def test_different_titles_differ_and_empty_event_is_finite():
    a = featurize([parse_event({**EV, "summary": "Board meeting"})])
    b = featurize([parse_event(EV)])
    assert not np.array_equal(a, b)
    empty = featurize([parse_event({"start": "2026-01-01"})])
    assert np.isfinite(empty).all()


def _reference_row(ev) -> np.ndarray:
    """The featurizer's definition written out plainly (no memo, one column at a time)."""
    import math

    from calroute import features as F

    row = np.zeros(N_FEATURES, dtype=np.float64)
    row[:N_DENSE] = F.dense_features(ev)
    for group, toks in F.spec_tokens(ev).items():
        acc: dict[int, float] = {}
        for tok in toks:
            idx, sign = F._hash(group, tok)
            acc[idx] = acc.get(idx, 0.0) + sign
        norm = math.sqrt(sum(v * v for v in acc.values()))
        for idx, v in acc.items():
            if norm:
                row[idx] += v * F.GROUP_WEIGHTS[group] / norm
    return row.astype(np.float32)


def test_hash_memo_is_bounded_and_never_changes_a_vector(monkeypatch):
    from calroute import features as F

    monkeypatch.setattr(F, "_HASH_MEMO_MAX", 25)
    monkeypatch.setattr(F, "_HASH_MEMO", {g: {} for g in F.GROUP_WEIGHTS})
    events = [parse_event({**EV, "summary": f"word{i} other{i} Board meeting {i}",
                           "description": " ".join(f"d{i}x{j}" for j in range(30)),
                           "location": f"Room {i}", "attendees": [f"a@dom{i}.example", "b@shared.example"]})
              for i in range(40)]
    first = featurize(events)  # fills the memo up to its bound
    again = featurize(events)  # served partly from the memo, partly hashed afresh
    assert all(len(m) <= 25 for m in F._HASH_MEMO.values()) and len(F._HASH_MEMO["d"]) == 25
    assert np.array_equal(first, again)
    assert np.allclose(first, np.stack([_reference_row(e) for e in events]), atol=1e-7)
