"""calroute_dev.report: the curve/bin/confusion helpers, and the report writer on a small synthetic result."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calroute_dev import report


def test_coverage_accuracy_curve_sweeps_thresholds_and_keeps_ties_together():
    cov, acc = report.coverage_accuracy_curve([0.9, 0.8, 0.8, 0.5], [True, False, True, False])
    assert cov.tolist() == [0.25, 0.75, 1.0]  # the two 0.8s enter together
    assert acc == pytest.approx([1.0, 2 / 3, 0.5])
    assert [x.size for x in report.coverage_accuracy_curve([], [])] == [0, 0]


def test_reliability_bins_count_everything_and_close_the_last_bin():
    conf = [0.05, 0.15, 0.15, 0.95, 1.0]
    ok = [False, True, False, True, True]
    bins = report.reliability_bins(conf, ok, bins=10)
    assert len(bins) == 10 and sum(b["count"] for b in bins) == 5
    assert bins[1]["count"] == 2 and bins[1]["accuracy"] == 0.5 and bins[1]["confidence"] == pytest.approx(0.15)
    assert bins[9]["count"] == 2 and bins[9]["accuracy"] == 1.0  # 1.0 belongs to the last bin
    assert bins[5]["confidence"] is None
    ece = report.expected_calibration_error(bins)
    # |0-0.05|*1 + |0.5-0.15|*2 + |1-0.975|*2 over 5
    assert ece == pytest.approx((0.05 + 0.7 + 0.05) / 5)
    assert report.expected_calibration_error(report.reliability_bins([], [])) is None


def test_confusion_counts_true_by_predicted():
    m = report.confusion(["a", "a", "b", "c"], ["a", "b", "b", "a"], ["a", "b", "c"])
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def _synthetic(rng=np.random.default_rng(3)):
    users = {}
    for u, labels in (("ana", ["work", "home"]), ("ben", ["school", "hockey", "holidays"])):
        n = 60
        y = list(rng.choice(labels, n))
        pred = [t if rng.random() < 0.85 else rng.choice(labels) for t in y]
        conf = [float(rng.uniform(0.55, 1.0) if p == t else rng.uniform(0.3, 0.8)) for p, t in zip(pred, y)]
        users[u] = {"y": y, "pred": pred, "confidence": conf, "labels": sorted(labels), "threshold": 0.6}
    curve = [{"n": n, "coverage": 0.5 + n / 200, "accuracy_kept": 0.9 + n / 1000, "accuracy_all": 0.8,
              "users": {}} for n in (5, 10, 20, 50)]
    result = {"overall": {"test_events": 120, "coverage": 0.9, "accuracy_kept": 0.97, "accuracy_all": 0.9,
                          "macro_f1": 0.88, "threshold": 0.6},
              "mean_of_users": {"coverage": 0.9, "accuracy_kept": 0.96, "accuracy_all": 0.9, "macro_f1": 0.87,
                                "threshold": 0.6},
              "users": [{"user": "ana", "train_events": 100, "test_events": 60, "coverage": 0.9,
                         "accuracy_kept": 0.97, "accuracy_all": 0.9, "macro_f1": 0.9, "threshold": 0.6,
                         "aurc": 0.0123},
                        {"user": "cid", "skipped": "needs at least 50 labelled events (has 3)"}],
              "settings": {"family": "logreg"}}
    return result, {"users": users, "learning_curve": curve}


def test_write_report_produces_the_pngs_html_and_markdown(tmp_path):
    result, details = _synthetic()
    out = report.write_report(result, tmp_path / "rep", details=details, data_dir="data/users")
    rep = tmp_path / "rep"
    for name in report.PLOTS:
        data = (rep / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, name
    html = (rep / "index.html").read_text()
    assert html.count("data:image/png;base64,") == len(report.PLOTS)  # self-contained
    assert "skipped: needs at least 50" in html and "<table>" in html
    md = (rep / "README.md").read_text()
    for name in report.PLOTS:
        assert f"]({name})" in md
    assert "| overall (pooled) |" in md and "97.0%" in md
    assert "| 0.0123 |" in md and "Risk vs coverage per user" in md
    det = json.loads((rep / "details.json").read_text())
    assert [c["n"] for c in det["learning_curve"]] == [5, 10, 20, 50]
    assert sum(b["count"] for b in det["reliability"]) == 120
    assert out["ece"] is not None and len(out["files"]) == len(report.PLOTS) + 3


def test_collect_details_on_a_tiny_dataset(tmp_path):
    from support.models import make_events

    for user, seed in (("u1", 1), ("u2", 2)):
        evs = make_events(("work", "home", "kids"), 30, seed=seed)
        (tmp_path / f"{user}.jsonl").write_text("\n".join(json.dumps(e.to_flat()) for e in evs) + "\n")
    d = report.collect_details(tmp_path, curve_sizes=(5,))
    assert set(d["users"]) == {"u1", "u2"}
    u = d["users"]["u1"]
    assert len(u["y"]) == len(u["pred"]) == len(u["confidence"]) > 0
    assert all(0.0 <= c <= 1.0 for c in u["confidence"]) and 0 <= u["threshold"] <= 1
    assert [c["n"] for c in d["learning_curve"]] == [5] and d["learning_curve"][0]["coverage"] is not None


def test_plots_mark_the_threshold_on_the_routing_score_not_the_confidence(tmp_path, monkeypatch):
    """The threshold applies to confidence × (1 - w × novelty): the dot of a user whose novelty
    discounts every score below the threshold must be absent, whatever the raw confidence."""
    result, details = _synthetic()
    for d in details["users"].values():
        d["score"] = [c * 0.5 for c in d["confidence"]]  # all below the 0.6 threshold
    dots = []
    import matplotlib.axes
    real = matplotlib.axes.Axes.scatter
    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", lambda self, *a, **k: (dots.append(a), real(self, *a, **k))[1])
    report.plot_risk_coverage(details, tmp_path / "r.png")
    report.plot_coverage_accuracy(details, tmp_path / "c.png")
    assert dots == [] and (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
    for d in details["users"].values():
        d["score"] = d["confidence"]
    report.plot_risk_coverage(details, tmp_path / "r.png")
    assert len(dots) == 2
