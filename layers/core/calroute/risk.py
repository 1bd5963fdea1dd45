"""A threshold with a guarantee: Learn-then-Test over out-of-fold rows (training side, imports scipy).

The model keeps (answers on its own) the events whose routing score (:func:`calroute.novelty.
routing_score`) is at least the user's threshold ``t``. For each candidate ``t`` the null hypothesis
is *"the error rate of the kept predictions is at least α = 1 - TARGET_PRECISION"*; its p-value
over the ``n`` kept out-of-fold rows with ``k`` errors is the exact binomial tail
``P[Binomial(n, α) ≤ k]`` (the Clopper-Pearson test: it is ≤ δ exactly when the one-sided
Clopper-Pearson upper bound on the error at level 1-δ is ≤ α). By Hoeffding's theorem (1956) the
binomial tail bounds the tail of any sum of independent Bernoulli errors with the same mean, so the
test is valid whatever the per-row error probabilities are.

Candidates are tested as a **fixed sequence** (Bates, Angelopoulos et al., *Learn then Test*,
2021): from the most conservative threshold down, stopping at the first that is not rejected; the
chosen threshold is the last rejected one. Fixed-sequence testing controls the family-wise error at
δ = ``RISK_DELTA`` with no multiplicity penalty, so with probability at least 1-δ the chosen
threshold's kept error is below α. The order of the sequence (and where it starts) depends only on
the scores, never on which rows were right: the sequence starts at the highest threshold that keeps
``n_min`` rows, the fewest that could ever reject (``(1-α)^n_min ≤ δ``: 45 rows at α = 0.05,
δ = 0.1). What is tested after that (``sequence`` in :func:`choose_threshold_ltt`): from 2·n_min rows,
bands that must each be certified on their own; below it, the top rows at every size from n_min up,
so that a trusted row the model gets right never raises the threshold. With fewer out-of-fold rows
than n_min, or when the first test fails, **no threshold is certified** and the model answers
nothing on its own (threshold 1.0: every event goes to the LLM) — few rows mean a higher threshold,
never the floor.

What the guarantee is about: out-of-fold rows are predictions of a model trained only on each
calendar's older events (forward chaining, :func:`calroute.training.out_of_fold`), the situation
the live model is in; it is a statement about events like those, not about every future event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Threshold meaning "the model never answers on its own" (no threshold could be certified).
UNCERTIFIED = 1.0


@dataclass(frozen=True)
class RiskBound:
    """What a chosen threshold rests on (recorded with the model, shown by ``GET .../model``)."""

    threshold: float
    certified: bool
    method: str
    alpha: float
    delta: float
    rows: int  # out-of-fold rows the procedure saw
    kept: int  # rows kept at the threshold
    errors: int  # errors among them
    upper_bound: float | None  # Clopper-Pearson upper bound (level 1-δ) on the kept error
    why: str

    def to_dict(self) -> dict:
        return {"threshold": round(self.threshold, 6), "certified": self.certified, "method": self.method,
                "alpha": self.alpha, "delta": self.delta, "rows": self.rows, "kept": self.kept,
                "errors": self.errors,
                "upper_bound": None if self.upper_bound is None else round(self.upper_bound, 4),
                "why": self.why}


def min_rows(alpha: float, delta: float) -> int:
    """The fewest kept rows that can certify an error below ``alpha`` at level ``delta`` (all right)."""
    return int(math.ceil(math.log(delta) / math.log1p(-alpha)))


def clopper_pearson_upper(errors: int, n: int, delta: float) -> float:
    """One-sided Clopper-Pearson upper bound (level 1-δ) on an error rate seen as ``errors``/``n``."""
    from scipy.stats import beta

    if n <= 0:
        return 1.0
    if errors >= n:
        return 1.0
    return float(beta.ppf(1.0 - delta, errors + 1, n - errors))


def binomial_pvalue(errors: int, n: int, alpha: float) -> float:
    """``P[Binomial(n, α) ≤ errors]``: small when ``errors``/``n`` is credibly below ``alpha``."""
    from scipy.stats import binom

    return float(binom.cdf(errors, n, alpha))


def choose_threshold_ltt(score: np.ndarray, correct: np.ndarray, *, alpha: float, delta: float,
                         floor: float = 0.0) -> RiskBound:
    """The lowest threshold on ``score`` certified by fixed-sequence Learn-then-Test (module
    docstring), never below ``floor``. ``correct[i]`` says whether out-of-fold row ``i`` was right."""
    s = np.asarray(score, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    n = len(s)
    n_min = min_rows(alpha, delta)
    method = "ltt-fixed-sequence-binomial"

    def uncertified(why: str, kept: int = 0, errors: int = 0) -> RiskBound:
        return RiskBound(UNCERTIFIED, False, method, alpha, delta, n, kept, errors,
                         clopper_pearson_upper(errors, kept, delta) if kept else None, why)

    if n < n_min:
        return uncertified(f"uncertified: {n} out-of-fold rows, at least {n_min} are needed to bound the "
                           f"error below {alpha:.0%} at δ={delta:g}")
    order = np.argsort(-s, kind="stable")
    s_sorted, err_sorted = s[order], ~ok[order]
    cum_err = np.concatenate([[0], np.cumsum(err_sorted)])
    last_of_value = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])

    def sequence():
        """The ``(lo, hi)`` row ranges (in score order) tested one after the other. They depend on the
        scores only, never on which rows were right, and each closes at the end of a tie group.

        From 2·n_min rows: **bands**, the first holding the n_min most confident rows, each next one
        as many rows as all bands before it (n_min, n_min, 2·n_min, 4·n_min, ...; a short remainder
        joins the last). Each band is certified on its own: the rows a lower threshold adds at the
        margin need their own evidence, not the credit of the confident majority.

        Below 2·n_min rows no second band can exist (fewer than n_min rows never certify), so a band
        fixed at n_min rows would keep the threshold at the n_min-th best score whatever else is
        known, and every confident row added would raise it. There the one band is tested at **every
        size** from n_min rows to all of them instead (nested top rows, in score order): a trusted row
        that the model gets right never raises the threshold."""
        if n < 2 * n_min:
            for end in last_of_value[last_of_value >= n_min - 1].tolist():
                yield 0, end + 1
            return
        lo, size = 0, n_min
        while lo < n:
            j = int(np.searchsorted(last_of_value, lo + size - 1))
            if j >= len(last_of_value):
                return  # too few rows left for a full band: stop (never certify on a short band)
            hi = int(last_of_value[j]) + 1
            yield lo, hi
            # the next band is as large as everything kept so far; a remainder too small to be a
            # band of its own (< n_min rows) joins it
            lo, size = hi, max(n_min, hi)
            if n - (lo + size) < n_min:
                size = n - lo

    best = None
    for lo, hi in sequence():
        if s_sorted[hi - 1] < floor:
            break
        rows, errors = hi - lo, int(cum_err[hi] - cum_err[lo])
        if binomial_pvalue(errors, rows, alpha) > delta:
            if best is None:
                return uncertified(f"uncertified: the {rows} most confident out-of-fold rows have {errors} "
                                   f"errors, too many to bound the error below {alpha:.0%} at δ={delta:g}",
                                   rows, errors)
            break
        best = (float(s_sorted[hi - 1]), hi, int(cum_err[hi]))
    if best is None:
        return uncertified(f"uncertified: no band of {n_min}+ out-of-fold rows scores above the floor {floor:g}")
    t, kept, errors = best
    ub = clopper_pearson_upper(errors, kept, delta)
    return RiskBound(t, True, method, alpha, delta, n, kept, errors, ub,
                     f"certified: {kept}/{n} out-of-fold rows kept at score ≥ {t:.4f} with {errors} errors; "
                     f"error ≤ {ub:.1%} with probability ≥ {1 - delta:.0%}")


def risk_coverage_curve(score, correct) -> tuple[np.ndarray, np.ndarray]:
    """``(coverage, risk)`` as the threshold sweeps every distinct score from the highest down:
    the share of events kept and the error rate among them (ties kept together)."""
    s = np.asarray(score, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    n = len(s)
    if n == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    errors = np.cumsum(~ok[order])
    ends = np.flatnonzero(np.r_[s_sorted[1:] != s_sorted[:-1], True])
    kept = ends + 1
    return kept / n, errors[ends] / kept


def aurc(score, correct) -> float | None:
    """Area under the risk-coverage curve (Geifman & El-Yaniv): the selective risk averaged over
    every coverage 1/n, 2/n, ..., 1 (ties broken pessimistically: within a tie group the risk of
    the whole group). Lower is better; a perfect ranking of errors last gives the minimum."""
    s = np.asarray(score, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    n = len(s)
    if n == 0:
        return None
    cov, risk = risk_coverage_curve(s, ok)
    kept = np.rint(cov * n).astype(np.int64)
    widths = np.diff(np.r_[0, kept])
    return float(np.sum(widths * risk) / n)
