from datetime import datetime, timedelta, timezone

import pytest

from calroute.drift import drift_report, psi, reference_profile, summarize_event
from calroute.experiments import arm_stats, compare_arms, percentile, two_proportion_z
from calroute.schema import parse_event


def _events(n, hour, title, cal, start=datetime(2026, 3, 2, tzinfo=timezone.utc)):
    return [parse_event({"event_id": f"{cal}{i}", "summary": f"{title} {i % 3}", "calendar_id": cal,
                         "start": (start + timedelta(days=i, hours=hour)).isoformat(),
                         "end": (start + timedelta(days=i, hours=hour + 1)).isoformat()}) for i in range(n)]


def test_summary_is_text_free():
    s = summarize_event(_events(1, 9, "Secret board meeting", "work")[0])
    assert set(s) == {"h", "w", "b", "f", "t"}
    assert all(isinstance(t, int) and 0 <= t < 256 for t in s["t"])
    assert "Secret" not in repr(s)


def test_psi_zero_for_identical_and_large_for_disjoint():
    assert psi({"a": 10, "b": 10}, {"a": 5, "b": 5}) == pytest.approx(0.0, abs=1e-9)
    assert psi({"a": 10}, {"b": 10}) > 1.0


def test_drift_detected_when_requests_change():
    train = _events(60, 9, "Standup", "work") + _events(60, 19, "Football", "sport")
    ref = reference_profile(train)
    same = [summarize_event(e) for e in _events(40, 9, "Standup", "work") + _events(40, 19, "Football", "sport")]
    stable = drift_report(ref, same, ["work"] * 40 + ["sport"] * 40)
    assert not stable["drifted"], stable
    shifted = [summarize_event(e) for e in _events(80, 14, "Piano lesson", "sport")]
    report = drift_report(ref, shifted, ["sport"] * 80)
    assert report["drifted"] and report["max"] > 0.15
    assert set(report["psi"]) == {"time", "shape", "tokens"}


def test_too_few_requests_conclude_nothing():
    ref = reference_profile(_events(60, 9, "Standup", "work"))
    r = drift_report(ref, [summarize_event(e) for e in _events(5, 20, "x", "y")], ["y"] * 5)
    assert not r["drifted"] and "too few" in r["reason"]


def test_two_proportion_z_test():
    r = two_proportion_z(80, 100, 95, 100)
    assert r["significant"] and r["z"] > 0
    assert two_proportion_z(50, 100, 51, 100)["significant"] is False
    assert two_proportion_z(0, 0, 1, 1)["p_value"] == 1.0


def test_percentile_nearest_rank():
    assert percentile(list(range(1, 101)), 50) == 50
    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile([], 50) == 0.0


def test_arm_stats_and_comparison():
    control = [{"method": "llm_only", "latency_ms": 800, "llm_usd": 0.0002, "was_correct": i % 10 != 0}
               for i in range(100)]
    treatment = [{"method": "ml", "latency_ms": 1, "was_correct": i % 20 != 0} for i in range(90)] + \
                [{"method": "llm", "latency_ms": 800, "llm_usd": 0.0002} for _ in range(10)]
    a, b = arm_stats(control), arm_stats(treatment)
    assert a["requests"] == 100 and a["llm_calls"] == 100 and b["llm_calls"] == 10
    cmp = compare_arms(a, b)
    assert cmp["cost_change"] == pytest.approx(-0.9)
    assert cmp["seed_targets"]["cost_minus_60pct"] is True
    assert cmp["seed_targets"]["ml_accuracy_ge_0_90"] is True
