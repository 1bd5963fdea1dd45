"""calroute.policy at its boundaries: the cohort split (bucket formula, the percent edge), the lenient
kill-switch flag, the SSM flag's cache age and outage rule, and every branch of ``decide`` /
``Decision.after_llm`` with its exact reason. The mutation target for policy.py."""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import pytest

from calroute import policy
from calroute.policy import (CONTROL, TREATMENT, Decision, SsmFlagProvider, StaticFlags, cohort_bucket,
                             cohort_for, decide, flag_provider, parse_flag, use_model)


def test_the_bucket_is_blake2b_64_of_experiment_unit_separator_user_mod_10000():
    for exp, user in [("exp1", "alice"), ("hybrid-2026", "bob@example.org"), ("", "ü")]:
        digest = hashlib.blake2b(f"{exp}\x1f{user}".encode("utf-8"), digest_size=8).digest()
        assert cohort_bucket(exp, user) == int.from_bytes(digest, "big") % 10_000
    assert cohort_bucket("ab", "c") != cohort_bucket("a", "bc")


def _user_with_bucket_at_least(lo: int) -> tuple[str, int]:
    for i in range(100_000):
        b = cohort_bucket("exp", f"u{i}")
        if lo <= b < 9_900:
            return f"u{i}", b
    raise AssertionError("no user found")


def test_control_is_the_buckets_below_the_percent():
    user, b = _user_with_bucket_at_least(100)
    assert cohort_for(user, "exp", b / 100) == TREATMENT       # bucket == cut: not below it
    assert cohort_for(user, "exp", (b + 1) / 100) == CONTROL
    assert cohort_for(user, "exp", 0) == TREATMENT and cohort_for(user, "exp", -5) == TREATMENT
    assert cohort_for(user, "exp", 100) == CONTROL and cohort_for(user, "exp", 150) == CONTROL
    users = [f"x{i}" for i in range(2000)]
    share = sum(cohort_for(u, "exp", 30) == CONTROL for u in users) / len(users)
    assert 0.25 < share < 0.35


def test_a_tiny_percent_still_means_some_control_buckets():
    # 0.5 % = buckets 0..49: a user in bucket 0..49 is control
    for i in range(200_000):
        if cohort_bucket("exp", f"t{i}") < 50:
            assert cohort_for(f"t{i}", "exp", 0.5) == CONTROL
            break
    else:
        raise AssertionError("no user in the first 50 buckets")


def test_static_flags_are_booleans():
    assert StaticFlags(1).ml_enabled() is True and StaticFlags(0).ml_enabled() is False


@pytest.mark.parametrize("text", ["1", "true", "on", "yes", "enabled", " TRUE ", "Yes"])
def test_true_words(text):
    assert parse_flag(text, False) is True


@pytest.mark.parametrize("text", ["0", "false", "off", "no", "disabled", " Off\n", "NO"])
def test_false_words(text):
    assert parse_flag(text, True) is False


def test_anything_else_is_the_default_and_json_objects_are_read():
    for default in (True, False):
        assert parse_flag("maybe", default) is default and parse_flag("", default) is default
        assert parse_flag({"other": 1}, default) is default
    assert parse_flag(True, False) is True and parse_flag(False, True) is False
    assert parse_flag({"ml_enabled": "off"}, True) is False and parse_flag({"ml_enabled": True}, False) is True


class Fetch:
    def __init__(self, *values):
        self.values, self.names = list(values), []

    def __call__(self, name):
        self.names.append(name)
        v = self.values.pop(0)
        if isinstance(v, Exception):
            raise v
        return v


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_the_ssm_flag_is_cached_for_max_age_seconds_then_read_again():
    fetch, clock = Fetch("false", "true"), Clock()
    p = SsmFlagProvider("/calroute/ml-enabled", True, max_age=30.0, fetch=fetch, clock=clock)
    assert p.ml_enabled() is False and fetch.names == ["/calroute/ml-enabled"]
    clock.t += 29.9
    assert p.ml_enabled() is False and len(fetch.names) == 1
    clock.t += 0.1                      # exactly max_age after the read: read again
    assert p.ml_enabled() is True and len(fetch.names) == 2


def test_an_ssm_outage_keeps_the_last_value_or_the_default():
    clock = Clock()
    p = SsmFlagProvider("n", False, max_age=10, fetch=Fetch(RuntimeError("down")), clock=clock)
    assert p.ml_enabled() is False
    p = SsmFlagProvider("n", True, max_age=10, fetch=Fetch(RuntimeError("down")), clock=clock)
    assert p.ml_enabled() is True
    fetch = Fetch("off", RuntimeError("down"), "on")
    p = SsmFlagProvider("n", True, max_age=10, fetch=fetch, clock=clock)
    assert p.ml_enabled() is False
    clock.t += 10
    assert p.ml_enabled() is False      # outage: the last known value, not the default
    clock.t += 5
    assert p.ml_enabled() is False and len(fetch.names) == 2   # the failed read counts as a read
    clock.t += 5
    assert p.ml_enabled() is True


def test_flag_provider_is_ssm_when_a_parameter_is_named():
    p = flag_provider(SimpleNamespace(ml_enabled_param="/p", ml_enabled=False, flag_max_age_seconds=7.0))
    assert isinstance(p, SsmFlagProvider) and (p.name, p.default, p.max_age) == ("/p", False, 7.0)
    p = flag_provider(SimpleNamespace(ml_enabled_param="/p", ml_enabled=True))
    assert p.max_age == 30.0 and p.default is True
    s = flag_provider(SimpleNamespace(ml_enabled_param="", ml_enabled=False))
    assert isinstance(s, StaticFlags) and s.ml_enabled() is False
    on = flag_provider(SimpleNamespace(ml_enabled=True))
    assert isinstance(on, StaticFlags) and on.ml_enabled() is True


def test_use_model_needs_the_switch_on_and_the_treatment_cohort():
    assert use_model(ml_enabled=True, cohort=TREATMENT) is True
    assert not use_model(ml_enabled=False, cohort=TREATMENT)
    assert not use_model(ml_enabled=True, cohort=CONTROL)


def test_after_llm():
    plain = Decision("ml", False, "confident")
    assert plain.after_llm(False) is plain
    assert Decision("llm", True, "novel_event").after_llm(True) == Decision("llm", False, "novel_event")
    assert Decision("llm", True, "novel_event").after_llm(False) == Decision("ml_low_confidence", False, "llm_failed")
    assert Decision("llm", True, "x").after_llm(False, "llm_timeout") == Decision("ml_low_confidence", False,
                                                                                   "llm_timeout")
    assert Decision("llm_only", True, "no_model").after_llm(False) == Decision("none", False, "llm_failed")
    assert Decision("llm_only", True, "no_model").after_llm(True) == Decision("llm_only", False, "no_model")


def d(**kw):
    base = dict(top_prob=0.9, threshold=0.8, llm_available=True)
    return decide(**{**base, **kw})


def test_no_model():
    assert d(top_prob=None) == Decision("llm_only", True, "no_model")
    assert d(top_prob=None, no_model_reason="kill_switch") == Decision("llm_only", True, "kill_switch")
    assert d(top_prob=None, llm_available=False) == Decision("none", False, "no_model+llm_unavailable")
    assert d(top_prob=None, llm_available=False, no_model_reason="control_cohort",
             llm_unavailable_reason="budget") == Decision("none", False, "control_cohort+budget")


def test_confident_at_exactly_the_threshold():
    assert d(top_prob=0.8) == Decision("ml", False, "confident")
    assert d(top_prob=0.7999) == Decision("llm", True, "low_confidence")


@pytest.mark.parametrize("threshold", [None, 1.0, 1.5])
def test_an_uncertified_model_never_answers_alone(threshold):
    assert d(top_prob=0.999, threshold=threshold) == Decision("llm", True, "uncertified_model")
    assert d(top_prob=0.999, threshold=threshold, llm_available=False) == Decision(
        "ml_low_confidence", False, "uncertified_model+llm_unavailable")


def test_a_just_certified_threshold_answers():
    assert d(top_prob=0.9999, threshold=0.9999) == Decision("ml", False, "confident")


def test_deferral_reasons_in_order():
    assert d(unmet=True) == Decision("llm", True, "unmet_calendar")
    assert d(top_prob=0.5, confidence=0.8, anomalous=True) == Decision("llm", True, "unusual_time")
    assert d(top_prob=0.5, confidence=0.8) == Decision("llm", True, "novel_event")
    assert d(top_prob=0.5, confidence=0.7999, anomalous=True) == Decision("llm", True, "low_confidence")
    assert d(top_prob=0.5, confidence=None, anomalous=True) == Decision("llm", True, "low_confidence")
    assert d(top_prob=0.5) == Decision("llm", True, "low_confidence")
    assert d(top_prob=0.5, confidence=0.9, unmet=True, anomalous=True) == Decision("llm", True, "unmet_calendar")
    assert d(top_prob=0.9, threshold=1.0, unmet=True) == Decision("llm", True, "uncertified_model")


def test_without_the_llm_the_deferral_cause_comes_first():
    assert d(top_prob=0.5, confidence=0.85, llm_available=False, llm_unavailable_reason="llm_budget") == \
        Decision("ml_low_confidence", False, "novel_event+llm_budget")
    assert d(top_prob=0.5, llm_available=False) == Decision("ml_low_confidence", False,
                                                            "low_confidence+llm_unavailable")


def test_constants():
    assert (policy.CONTROL, policy.TREATMENT) == ("control", "treatment")


def test_the_ssm_flags_defaults_and_garbage():
    clock = Clock()
    fetch = Fetch("maybe", "on")
    p = SsmFlagProvider("n", True, fetch=fetch, clock=clock)       # max_age defaults to 30 s
    assert p.ml_enabled() is True                                  # unreadable value: the default
    clock.t += 29.99
    assert p.ml_enabled() is True and len(fetch.names) == 1
    clock.t += 0.01
    assert p.ml_enabled() is True and len(fetch.names) == 2
    assert parse_flag({"ml_enabled": "maybe"}, True) is True and parse_flag({"ml_enabled": "maybe"}, False) is False


def test_the_ssm_fetch_bypasses_the_powertools_cache(monkeypatch):
    calls = []

    class FakeSSM:
        def get(self, name, **kw):
            calls.append((name, kw))
            return "false"

    import aws_lambda_powertools.utilities.parameters as params

    monkeypatch.setattr(params, "SSMProvider", FakeSSM)
    p = SsmFlagProvider("/calroute/ml-enabled", True, clock=Clock())
    assert p.ml_enabled() is False
    assert calls == [("/calroute/ml-enabled", {"force_fetch": True})]
