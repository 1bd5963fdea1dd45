import subprocess
import sys

import numpy as np

from calroute.features import FEATURE_SPEC, N_DENSE, N_FEATURES, featurize, featurize_dense
from calroute.schema import parse_event

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
                       env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout
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
