"""calroute.risk (the threshold rule) and training.choose_threshold*, exactly: the smallest certifiable
band, the binomial test and the Clopper-Pearson bound against scipy, the band sequence (sizes, a
remainder joining the last band, tie groups kept whole, the floor, the first failing band), every
reason string, the risk-coverage curve and AURC on hand-computed cases. The mutation target for
risk.py and the threshold part of training.py."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import beta, binom

from calroute.risk import (UNCERTIFIED, RiskBound, aurc, binomial_pvalue, choose_threshold_ltt,
                           clopper_pearson_upper, min_rows, risk_coverage_curve)
from calroute.training import choose_threshold, choose_threshold_bound

A, D = 0.05, 0.1
METHOD = "ltt-fixed-sequence-binomial"


def scores(n):
    """n distinct scores from 0.99 down."""
    return np.linspace(0.99, 0.5, n)


def test_min_rows():
    assert min_rows(0.05, 0.1) == 45 and 0.95 ** 45 <= 0.1 < 0.95 ** 44
    assert min_rows(0.1, 0.1) == 22 and min_rows(0.1, 0.05) == 29


def test_the_bound_and_the_pvalue_are_scipys():
    assert clopper_pearson_upper(0, 45, D) == pytest.approx(1 - D ** (1 / 45))
    assert clopper_pearson_upper(3, 100, D) == pytest.approx(beta.ppf(1 - D, 4, 97))
    assert clopper_pearson_upper(0, 0, D) == 1.0 and clopper_pearson_upper(5, 5, D) == 1.0
    assert clopper_pearson_upper(6, 5, D) == 1.0 and clopper_pearson_upper(0, -1, D) == 1.0
    assert binomial_pvalue(0, 45, A) == pytest.approx(0.95 ** 45)
    assert binomial_pvalue(2, 100, A) == pytest.approx(binom.cdf(2, 100, A))


def test_too_few_rows_certify_nothing():
    b = choose_threshold_ltt(scores(44), np.ones(44, bool), alpha=A, delta=D)
    assert b == RiskBound(UNCERTIFIED, False, METHOD, A, D, 44, 0, 0, None,
                          "uncertified: 44 out-of-fold rows, at least 45 are needed to bound the error below 5% "
                          "at δ=0.1")
    assert UNCERTIFIED == 1.0


def test_exactly_n_min_right_rows_certify_their_lowest_score():
    s = scores(45)
    b = choose_threshold_ltt(s, np.ones(45, bool), alpha=A, delta=D)
    ub = clopper_pearson_upper(0, 45, D)
    assert (b.threshold, b.certified, b.rows, b.kept, b.errors) == (s[-1], True, 45, 45, 0)
    assert b.upper_bound == ub and (b.method, b.alpha, b.delta) == (METHOD, A, D)
    assert b.why == (f"certified: 45/45 out-of-fold rows kept at score ≥ {s[-1]:.4f} with 0 errors; "
                     f"error ≤ {ub:.1%} with probability ≥ 90%")


def test_a_failing_first_band_is_uncertified_with_its_counts():
    ok = np.ones(60, bool)
    ok[:3] = False                      # 3 errors among the 45 most confident
    b = choose_threshold_ltt(scores(60), ok, alpha=A, delta=D)
    assert (b.threshold, b.certified, b.kept, b.errors, b.rows) == (1.0, False, 45, 3, 60)
    assert b.upper_bound == clopper_pearson_upper(3, 45, D)
    assert b.why == ("uncertified: the 45 most confident out-of-fold rows have 3 errors, too many to bound the "
                     "error below 5% at δ=0.1")


def test_bands_double_and_a_short_remainder_joins_the_last():
    s = scores(180)
    b = choose_threshold_ltt(s, np.ones(180, bool), alpha=A, delta=D)   # bands 45, 45, 90
    assert (b.kept, b.threshold) == (180, s[-1])
    s = scores(100)
    b = choose_threshold_ltt(s, np.ones(100, bool), alpha=A, delta=D)   # 45, then 55 (10 join)
    assert (b.kept, b.threshold) == (100, s[-1])
    s = scores(135)
    b = choose_threshold_ltt(s, np.ones(135, bool), alpha=A, delta=D)   # 45, 45, then 45 (not joined)
    assert (b.kept, b.threshold) == (135, s[-1])


def test_each_band_needs_its_own_evidence():
    s = scores(180)
    ok = np.ones(180, bool)
    ok[50:53] = False                    # 3 errors in the second band (rows 45..89)
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D)
    assert (b.kept, b.errors, b.threshold) == (45, 0, s[44])
    ok = np.ones(180, bool)
    ok[100] = False                      # 1 error in the third band (90 rows): still certifiable
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D)
    assert binomial_pvalue(1, 90, A) <= D and (b.kept, b.errors, b.threshold) == (180, 1, s[-1])
    ok = np.ones(180, bool)
    ok[100:102] = False                  # 2 errors in 90: that band fails, the first two stand
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D)
    assert binomial_pvalue(2, 90, A) > D and (b.kept, b.errors, b.threshold) == (90, 0, s[89])


def test_a_band_closes_at_the_end_of_its_tie_group():
    s = np.r_[np.linspace(0.99, 0.9, 40), np.full(10, 0.8), np.linspace(0.7, 0.6, 45)]
    ok = np.ones(95, bool)
    ok[60] = False                       # 1 error in the second band: it fails, the first stands
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D)
    # the 45th row sits in the tie at 0.8: the first band takes all 10 tied rows
    assert (b.kept, b.threshold) == (50, 0.8)


def test_below_two_bands_the_one_band_is_tested_at_every_size():
    for n in (45, 60, 89):               # all right: every size certifies, the threshold is the lowest score
        s = scores(n)
        b = choose_threshold_ltt(s, np.ones(n, bool), alpha=A, delta=D)
        assert (b.kept, b.errors, b.threshold, b.certified) == (n, 0, s[-1], True)
    s = scores(80)
    ok = np.ones(80, bool)
    ok[60] = False                       # the 61st row is wrong: 1 error in 61 is not rejected, stop at 60
    assert binomial_pvalue(1, 61, A) > D
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D)
    assert (b.kept, b.errors, b.threshold) == (60, 0, s[59])
    # 1 error certifies from 77 rows on: the 77th row wrong is kept (with everything), the 76th is not
    assert binomial_pvalue(1, 77, A) <= D < binomial_pvalue(1, 76, A)
    ok = np.ones(80, bool)
    ok[76] = False
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D)
    assert (b.kept, b.errors, b.threshold) == (80, 1, s[-1])
    assert b.upper_bound == clopper_pearson_upper(1, 80, D)
    ok = np.ones(80, bool)
    ok[75] = False
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D)
    assert (b.kept, b.errors, b.threshold) == (75, 0, s[74])


def test_below_two_bands_sizes_end_at_tie_groups():
    s = np.r_[np.linspace(0.99, 0.9, 40), np.full(10, 0.8), np.linspace(0.7, 0.6, 5)]
    ok = np.ones(55, bool)
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D)
    assert (b.kept, b.threshold) == (55, 0.6)
    ok[52] = False                       # the 53rd row wrong: sizes 50 (the tie), 51, 52 certify
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D)
    assert (b.kept, b.threshold) == (52, s[51])
    ok = np.ones(55, bool)
    ok[50] = False                       # the first row after the tie wrong: the tie group's 50 stand
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D)
    assert (b.kept, b.threshold) == (50, 0.8)
    ok = np.ones(55, bool)
    ok[47] = False                       # an error inside the tie: the smallest size (50) fails
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D)
    assert (b.certified, b.kept, b.errors) == (False, 50, 1)
    assert b.why.startswith("uncertified: the 50 most confident out-of-fold rows have 1 errors")


def test_a_right_row_never_raises_the_threshold_below_two_bands():
    """The property the nested sizes exist for: with fewer than 2·n_min rows, one more trusted row
    the model got right (any score) keeps the threshold where it was or lowers it. With a band
    fixed at n_min rows a confident one raised it (the n_min-th best score moved up)."""
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(45, 89))
        s = rng.random(n)
        ok = rng.random(n) > rng.choice([0.0, 0.01, 0.03])
        before = choose_threshold_ltt(s, ok, alpha=A, delta=D)
        after = choose_threshold_ltt(np.r_[s, rng.random()], np.r_[ok, True], alpha=A, delta=D)
        if before.certified:
            checked += 1
            assert after.certified and after.threshold <= before.threshold and after.kept >= before.kept
    assert checked > 100
    s = scores(60)
    b = choose_threshold_ltt(np.r_[1.0, s], np.ones(61, bool), alpha=A, delta=D)
    assert (b.kept, b.threshold) == (61, s[-1])


def test_from_two_bands_on_the_margin_needs_its_own_evidence():
    s = scores(90)
    ok = np.ones(90, bool)
    ok[80] = False                       # with 89 rows this error is kept (1 in 81+ certifies) ...
    b = choose_threshold_ltt(s[:89], ok[:89], alpha=A, delta=D)
    assert (b.kept, b.errors) == (89, 1)
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D)   # ... with 90 the second band holds it alone
    assert (b.kept, b.errors, b.threshold) == (45, 0, s[44])


def test_the_order_of_the_rows_does_not_matter():
    rng = np.random.default_rng(3)
    s, ok = scores(120), np.ones(120, bool)
    ok[80] = False
    perm = rng.permutation(120)
    assert choose_threshold_ltt(s[perm], ok[perm], alpha=A, delta=D) == choose_threshold_ltt(s, ok, alpha=A, delta=D)


def test_the_floor():
    s = scores(180)
    ok = np.ones(180, bool)
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D, floor=s[89])       # second band ends exactly at the floor
    assert b.kept == 90
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D, floor=s[89] + 1e-9)
    assert b.kept == 45
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D, floor=0.999)
    assert (b.threshold, b.certified, b.kept) == (1.0, False, 0)
    assert b.why == "uncertified: no band of 45+ out-of-fold rows scores above the floor 0.999"


def test_to_dict_rounds():
    b = RiskBound(0.123456789, True, METHOD, A, D, 100, 50, 1, 0.0812345, "w")
    assert b.to_dict() == {"threshold": 0.123457, "certified": True, "method": METHOD, "alpha": A, "delta": D,
                           "rows": 100, "kept": 50, "errors": 1, "upper_bound": 0.0812, "why": "w"}
    assert RiskBound(1.0, False, METHOD, A, D, 3, 0, 0, None, "x").to_dict()["upper_bound"] is None


def test_risk_coverage_curve_and_aurc_by_hand():
    cov, risk = risk_coverage_curve([0.9, 0.8, 0.7], [True, True, False])
    assert cov.tolist() == pytest.approx([1 / 3, 2 / 3, 1]) and risk.tolist() == pytest.approx([0, 0, 1 / 3])
    assert aurc([0.9, 0.8, 0.7], [True, True, False]) == pytest.approx(1 / 9)
    # a tie is one step, charged the whole group's risk
    cov, risk = risk_coverage_curve([0.9, 0.9, 0.7], [True, False, True])
    assert cov.tolist() == pytest.approx([2 / 3, 1]) and risk.tolist() == pytest.approx([0.5, 1 / 3])
    assert aurc([0.9, 0.9, 0.7], [True, False, True]) == pytest.approx((2 * 0.5 + 1 / 3) / 3)
    # errors ranked last is the best ranking, first the worst
    assert aurc([0.9, 0.8, 0.1], [True, True, False]) < aurc([0.1, 0.8, 0.9], [True, True, False])
    assert aurc([], []) is None
    c, r = risk_coverage_curve([], [])
    assert c.size == 0 and r.size == 0


CFG = SimpleNamespace(target_precision=0.95, risk_delta=0.1, threshold_min=0.6)


def test_choose_threshold_is_ltt_at_one_minus_the_target_precision():
    s = scores(180)
    ok = np.ones(180, bool)
    b = choose_threshold_bound(s, ok, CFG)
    assert b == choose_threshold_ltt(s, ok, alpha=0.05, delta=0.1, floor=0.6)
    assert b.alpha == 0.05 and b.kept == 90         # the third band ends below the 0.6 floor
    assert choose_threshold(s, ok, CFG) == (b.threshold, b.why)
    loose = SimpleNamespace(target_precision=0.9, risk_delta=0.2, threshold_min=0.0)
    b = choose_threshold_bound(s, ok, loose)
    assert (b.alpha, b.delta, b.kept) == (0.1, 0.2, 180) and b.threshold == s[-1]
    assert min_rows(0.1, 0.2) == math.ceil(math.log(0.2) / math.log(0.9))


def test_one_row_has_a_real_bound():
    assert clopper_pearson_upper(0, 1, 0.1) == pytest.approx(0.9)


def test_ties_at_the_end_of_the_curve_are_one_step():
    cov, risk = risk_coverage_curve([0.9, 0.8, 0.8], [True, True, False])
    assert cov.tolist() == pytest.approx([1 / 3, 1]) and risk.tolist() == pytest.approx([0, 1 / 3])


def test_correctness_given_as_0_and_1_is_read_as_booleans():
    assert aurc([0.9, 0.8, 0.7], [1, 1, 0]) == pytest.approx(1 / 9)
    cov, risk = risk_coverage_curve([0.9, 0.8, 0.7], [1, 1, 0])
    assert risk.tolist() == pytest.approx([0, 0, 1 / 3])
    s = scores(45)
    assert choose_threshold_ltt(s, [1] * 45, alpha=A, delta=D) == choose_threshold_ltt(s, np.ones(45, bool),
                                                                                     alpha=A, delta=D)


def test_a_remainder_of_exactly_n_min_rows_is_a_band_of_its_own():
    s = scores(135)
    ok = np.ones(135, bool)
    ok[[100, 101]] = False              # 2 errors in the last 45 rows: that band fails alone
    b = choose_threshold_ltt(s, ok, alpha=A, delta=D)
    assert (b.kept, b.errors, b.threshold) == (90, 0, s[89])


def test_a_later_band_counts_only_its_own_errors():
    """360 rows: bands 45, 45, 90, 180. Band 3 has 1 error (p = 0.057), band 4 has 4 (p = 0.051):
    every band passes at α = 5%, δ = 0.1, so all 360 rows are kept. Counting band 3's error again in
    band 4 (6 errors: p = 0.20) would stop the threshold after 180 rows."""
    n = 360
    s = np.linspace(0.99, 0.40, n)
    ok = np.ones(n, dtype=bool)
    ok[[150]] = False                    # band 3 (rows 90-179)
    ok[[200, 250, 300, 350]] = False     # band 4 (rows 180-359)
    b = choose_threshold_ltt(s, ok, alpha=0.05, delta=0.1)
    assert b.certified and b.kept == 360 and b.errors == 5
    assert b.threshold == pytest.approx(s[-1])


def test_a_band_whose_pvalue_equals_delta_is_certified():
    """The test rejects "error ≥ α" at p ≤ δ (a level-δ test): with α = δ = 0.5 one right row has
    p = (1 − α)¹ = 0.5 exactly, and certifies."""
    b = choose_threshold_ltt(np.array([0.9]), np.array([True]), alpha=0.5, delta=0.5)
    assert binomial_pvalue(0, 1, 0.5) == 0.5
    assert b.certified and b.kept == 1 and b.threshold == pytest.approx(0.9)
