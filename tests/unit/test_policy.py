"""Routing policy: decisions, cohorts (stable across calls and processes), the kill-switch providers."""

import os
import subprocess
import sys

import pytest

from calroute.config import Settings
from calroute.policy import (
    CONTROL, TREATMENT, SsmFlagProvider, StaticFlags, cohort_bucket, cohort_for, decide, flag_provider, parse_flag,
    use_model,
)

# the package under test, when it is not the installed one (a worktree run with PYTHONPATH)
_PYTHONPATH = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}


def test_confident_model_answers_alone():
    d = decide(top_prob=0.9, threshold=0.8, llm_available=True)
    assert (d.method, d.call_llm, d.reason) == ("ml", False, "confident")
    assert decide(top_prob=0.8, threshold=0.8, llm_available=True).method == "ml"  # threshold inclusive


def test_unsure_model_asks_llm_and_falls_back_when_it_fails():
    d = decide(top_prob=0.5, threshold=0.8, llm_available=True)
    assert (d.method, d.call_llm) == ("llm", True)
    assert d.after_llm(True).method == "llm"
    failed = d.after_llm(False, "llm_timeout")
    assert (failed.method, failed.reason) == ("ml_low_confidence", "llm_timeout")


def test_unsure_model_without_llm_is_low_confidence():
    d = decide(top_prob=0.5, threshold=0.8, llm_available=False, llm_unavailable_reason="budget")
    # the deferral's cause first (defer_reason is the part before "+"), then why no LLM answered
    assert (d.method, d.call_llm, d.reason) == ("ml_low_confidence", False, "low_confidence+budget")


def test_no_model_paths():
    d = decide(top_prob=None, threshold=None, llm_available=True, no_model_reason="kill_switch")
    assert (d.method, d.call_llm, d.reason) == ("llm_only", True, "kill_switch")
    assert d.after_llm(False).method == "none"
    d = decide(top_prob=None, threshold=None, llm_available=False)
    assert (d.method, d.call_llm) == ("none", False)
    assert "no_model" in d.reason


def test_use_model_needs_switch_and_treatment():
    assert use_model(ml_enabled=True, cohort=TREATMENT)
    assert not use_model(ml_enabled=False, cohort=TREATMENT)
    assert not use_model(ml_enabled=True, cohort=CONTROL)


def test_cohorts_split_and_are_stable():
    users = [f"user{i}" for i in range(4000)]
    first = [cohort_for(u, "exp-a", 30) for u in users]
    assert first == [cohort_for(u, "exp-a", 30) for u in users]
    share = first.count(CONTROL) / len(users)
    assert 0.26 < share < 0.34
    assert cohort_for("anyone", "exp-a", 0) == TREATMENT and cohort_for("anyone", "exp-a", 100) == CONTROL
    # another experiment reshuffles users
    other = [cohort_for(u, "exp-b", 30) for u in users]
    assert other != first
    # raising the control share only moves treatment users to control (monotone buckets)
    wider = [cohort_for(u, "exp-a", 50) for u in users]
    assert all(w == CONTROL for f, w in zip(first, wider) if f == CONTROL)


def test_cohorts_stable_across_processes():
    users = ["alice", "bob", "carol", "dave@example.com", "e-5"]
    code = ("from calroute.policy import cohort_bucket\n"
            f"print([cohort_bucket('exp', u) for u in {users!r}])")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": seed, "PATH": "", **_PYTHONPATH}, check=True).stdout.strip()
            for seed in ("1", "2")}
    assert outs == {str([cohort_bucket("exp", u) for u in users])}


@pytest.mark.parametrize("raw,expected", [("true", True), ("OFF", False), ("0", False), (" yes ", True),
                                          ("banana", True), ({"ml_enabled": "false"}, False)])
def test_parse_flag(raw, expected):
    assert parse_flag(raw, True) is expected


def test_ssm_flag_is_cached_and_survives_outages():
    t = [0.0]
    values = iter(["false", "true"])
    calls = []

    def fetch(name):
        calls.append(name)
        v = next(values, None)
        if v is None:
            raise RuntimeError("ssm down")
        return v

    p = SsmFlagProvider("/calroute/ml-enabled", True, max_age=30, fetch=fetch, clock=lambda: t[0])
    assert p.ml_enabled() is False and p.ml_enabled() is False
    assert len(calls) == 1
    t[0] = 31
    assert p.ml_enabled() is True and len(calls) == 2
    t[0] = 62  # the store fails: the last known value is kept
    assert p.ml_enabled() is True and len(calls) == 3


def test_flag_provider_from_settings(monkeypatch):
    assert isinstance(flag_provider(Settings(ml_enabled=False)), StaticFlags)
    assert flag_provider(Settings(ml_enabled=False)).ml_enabled() is False
    assert isinstance(flag_provider(Settings(ml_enabled_param="/x")), SsmFlagProvider)


def test_ssm_flag_reads_the_real_parameter(aws):
    import boto3

    boto3.client("ssm").put_parameter(Name="/calroute/ml-enabled", Value="false", Type="String")
    p = SsmFlagProvider("/calroute/ml-enabled", True)
    assert p.ml_enabled() is False
    assert SsmFlagProvider("/calroute/absent", True).ml_enabled() is True
