"""bench/hpo.py's decision rule: a pooled gain turns the search on only if no regime loses pooled
accuracy of kept answers and no user's confident answers fall below the precision target with it
where they did not without (docs/hpo.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _hpo():
    spec = importlib.util.spec_from_file_location("bench_hpo", ROOT / "bench" / "hpo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _regime(acc_gain, cov_gain, users):
    return {"searched": {"accuracy_kept_gain_points": acc_gain, "coverage_gain_points": cov_gain},
            "users": [{"user": u, "default": {"accuracy_kept": d, "coverage": 0.9},
                       "searched": {"accuracy_kept": s, "coverage": 0.8}} for u, d, s in users]}


def test_a_gain_turns_it_on_only_without_harm():
    hpo = _hpo()
    ok = {"all": _regime(0.0, 1.5, [("a", 1.0, 1.0)]), "20/cal": _regime(0.0, 0.1, [("a", 0.99, 0.97)])}
    assert hpo.decide(ok)["turn_on"] is True and hpo.decide(ok)["harms"] == []
    pooled_loss = {**ok, "20/cal": _regime(-0.5, 0.1, [("a", 0.99, 0.97)])}
    d = hpo.decide(pooled_loss)
    assert d["turn_on"] is False and d["gain"] is True
    assert d["harms"] == [{"regime": "20/cal", "pooled_accuracy_kept_points": -0.5}]
    one_user = {**ok, "20/cal": _regime(0.0, 0.1, [("a", 0.99, 0.97), ("b", 0.99, 0.5426)])}
    assert hpo.decide(one_user)["harms"] == [
        {"regime": "20/cal", "below_target": {"user": "b", "accuracy_kept": 0.5426, "coverage": 0.8}}]
    # a user already below the target without the search is not the search's harm; nothing kept is none
    already = {**ok, "20/cal": _regime(0.0, 0.1, [("a", 0.90, 0.93), ("c", None, None)])}
    assert hpo.decide(already)["turn_on"] is True
    assert hpo.decide({"all": _regime(0.0, 0.9, [("a", 1.0, 1.0)])})["turn_on"] is False  # no gain
