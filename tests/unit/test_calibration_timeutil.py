"""The one ECE (calroute.calibration: the trainer's summary and the report's reliability diagram
agree) and the one lenient timestamp parser (calroute.timeutil.parse_ts)."""

from datetime import datetime, timezone

import numpy as np
import pytest

from calroute.calibration import calibration_summary, expected_calibration_error, reliability_bins
from calroute.timeutil import parse_ts


def test_summary_ece_is_the_ece_of_the_reliability_bins():
    conf = [0.05, 0.15, 0.15, 0.95, 1.0]
    ok = [0.0, 1.0, 0.0, 1.0, 1.0]
    s = calibration_summary(np.array(conf), np.array(ok))
    assert s["ece"] == round(expected_calibration_error(reliability_bins(conf, ok)), 4)
    assert s["ece"] == pytest.approx((0.05 + 0.7 + 0.05) / 5, abs=1e-4)
    assert (s["mean_confidence"], s["accuracy"]) == (round(float(np.mean(conf)), 4), 0.6)
    assert calibration_summary(np.zeros(0), np.zeros(0)) == {"ece": None, "mean_confidence": None, "accuracy": None}


@pytest.mark.parametrize("value, expected", [
    ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=timezone.utc)),
    ("2026-03-01T10:00:00+02:00", datetime(2026, 3, 1, 8, tzinfo=timezone.utc)),
    ("2026-03-01T10:00:00", datetime(2026, 3, 1, 10, tzinfo=timezone.utc)),  # naive: UTC
    (datetime(2026, 3, 1, 10), datetime(2026, 3, 1, 10, tzinfo=timezone.utc)),
    ("", None), (None, None), (17, None), ("yesterday", None),
])
def test_parse_ts(value, expected):
    got = parse_ts(value)
    assert got == expected and (got is None or got.tzinfo is not None)
