"""The evaluation report: PNG plots (matplotlib, Agg backend) and a self-contained HTML page plus a
Markdown page, written by ``calroute evaluate --data DIR --report OUTDIR``.

* ``coverage_accuracy.png`` — per user, accuracy of the kept events vs coverage as the confidence
  threshold sweeps, the user's chosen threshold marked;
* ``reliability.png`` — calibration: accuracy vs mean confidence per confidence bin (all users
  pooled), with the count of events per bin;
* ``learning_curve.png`` — ``accuracy_kept`` and ``coverage`` (pooled) vs training events per
  calendar (5, 10, 20, 50; the full split as a dashed reference);
* ``confusion.png`` — one row-normalised confusion matrix per user (calendars differ per user).

:func:`collect_details` produces what the plots need beyond ``evaluate_dir``'s JSON (per-event
confidences, the learning curve) by calling :func:`calroute_dev.evaluation.evaluate_user` /
:func:`calroute_dev.evaluation.evaluate_dir`; :func:`write_report` draws and writes. Developer tooling:
matplotlib is imported only here, never by a Lambda.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from calroute.calibration import expected_calibration_error, reliability_bins

CURVE_SIZES = (5, 10, 20, 50)
PLOTS = ("coverage_accuracy.png", "reliability.png", "learning_curve.png", "confusion.png", "risk_coverage.png")


# ----------------------------------------------------------------------------- data


def collect_details(data_dir: str | Path, *, users: Optional[Sequence[str]] = None, family: Optional[str] = None,
                    curve_sizes: Sequence[int] = CURVE_SIZES, cfg: Any = None) -> dict:
    """Per-event outcomes of every user and the learning curve.

    Returns ``{"users": {user: {"y", "pred", "confidence", "score", "labels", "threshold"}},
    "learning_curve": [{"n", "coverage", "accuracy_kept", "accuracy_all", "users": {...}}]}``
    (lists, JSON-serialisable)."""
    from dataclasses import replace

    from .evaluation import evaluate_dir, evaluate_user, load_users
    from calroute.training import TrainConfig

    cfg = cfg or TrainConfig()
    if family:
        cfg = replace(cfg, family=family)
    loaded = load_users(data_dir)
    if users:
        loaded = {u: loaded[u] for u in users if u in loaded}
    per_user: dict[str, dict] = {}
    for u, evs in loaded.items():
        r = evaluate_user(u, evs, cfg)
        if "skipped" in r:
            continue
        per_user[u] = {"y": [str(v) for v in r["y"]], "pred": [str(v) for v in r["pred"]],
                       "confidence": [float(c) for c in r.get("confidence", [])],
                       # the routing score the threshold applies to (confidence discounted by novelty)
                       "score": [float(c) for c in r.get("score", r.get("confidence", []))],
                       "labels": list(r["labels"]), "threshold": float(r["threshold"])}
    curve = []
    for n in curve_sizes:
        res = evaluate_dir(data_dir, n, cfg=cfg, users=list(loaded))
        o = res["overall"]
        curve.append({"n": int(n), "coverage": o.get("coverage"), "accuracy_kept": o.get("accuracy_kept"),
                      "accuracy_all": o.get("accuracy_all"),
                      "users": {x["user"]: {"coverage": x.get("coverage"), "accuracy_kept": x.get("accuracy_kept")}
                                for x in res["users"] if "skipped" not in x}})
    return {"users": per_user, "learning_curve": curve}


def coverage_accuracy_curve(confidence: Sequence[float], correct: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """(coverage, accuracy of the kept events) as the threshold sweeps every distinct confidence,
    from the most confident event only (lowest coverage) to every event (coverage 1): one minus the
    risk of :func:`calroute.risk.risk_coverage_curve` (the same sweep, ties kept together)."""
    from calroute.risk import risk_coverage_curve

    cov, risk = risk_coverage_curve(confidence, correct)
    return cov, 1.0 - risk


# ----------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _short(label: str, n: int = 22) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def plot_coverage_accuracy(details: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    lows, x_lo = [], 1.0
    for i, (u, d) in enumerate(sorted(details["users"].items())):
        correct = np.asarray(d["y"]) == np.asarray(d["pred"])
        score = d.get("score", d["confidence"])
        cov, acc = coverage_accuracy_curve(score, correct)
        color = f"C{i}"
        conf = np.asarray(score)
        kept = conf >= d["threshold"]
        mark = ""
        if kept.any():
            c, a = kept.mean(), correct[kept].mean()
            ax.scatter([c], [a], color=color, s=70, zorder=5, edgecolor="black")
            mark = f"; t={d['threshold']:.2f} → coverage {c:.1%}, accuracy {a:.1%}"
        ax.plot(cov, acc, color=color, lw=1.8, label=f"{u} ({len(d['y'])} test events{mark})")
        if acc.size:
            lows.append(float(acc.min()))
            below = np.nonzero(acc < acc.max())[0]
            x_lo = min(x_lo, float(cov[below[0]]) if below.size else 1.0)
    ax.axhline(0.97, color="grey", ls=":", lw=1, label="97% accuracy")
    ax.set_xlabel("coverage (share of test events the model answers)")
    ax.set_ylabel("accuracy on the answered events")
    ax.set_title("Coverage vs accuracy as the confidence threshold moves\n(dot = the threshold each user's model chose)")
    # zoom on where the curves move (they are flat at their best accuracy before that)
    ax.set_xlim(max(0.0, min(0.5, x_lo - 0.1)), 1.005)
    ax.set_ylim(max(0.0, min(lows + [0.95]) - 0.02), 1.005)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_risk_coverage(details: dict, path: Path, *, alpha: float = 0.05) -> None:
    """Risk (error rate of the answered events) vs coverage per user as the threshold on the routing
    score moves, the area under each curve (AURC) in the legend, the error the threshold bounds
    (``alpha = 1 - TARGET_PRECISION``) as a line and each model's chosen threshold as a dot."""
    from calroute.risk import aurc, risk_coverage_curve

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    top = alpha * 2
    users = sorted(details["users"].items(),
                   key=lambda kv: -aurc(kv[1].get("score", kv[1]["confidence"]),
                                        np.asarray(kv[1]["y"]) == np.asarray(kv[1]["pred"])) if kv[1]["y"] else 0.0)
    for i, (u, d) in enumerate(users):
        correct = np.asarray(d["y"]) == np.asarray(d["pred"])
        score = np.asarray(d.get("score", d["confidence"]), dtype=np.float64)
        cov, risk = risk_coverage_curve(score, correct)
        if not cov.size:
            continue
        color = f"C{i % 10}"
        kept = score >= d["threshold"]
        mark = ""
        if kept.any():
            c, r = kept.mean(), 1.0 - correct[kept].mean()
            ax.scatter([c], [r], color=color, s=60, zorder=5, edgecolor="black")
            mark = f"; kept {c:.0%} at risk {r:.1%}"
        ax.step(cov, risk, where="post", color=color, lw=1.6,
                label=f"{u}: AURC {aurc(score, correct):.4f}{mark}")
        top = max(top, float(np.max(risk)))
    ax.axhline(alpha, color="grey", ls=":", lw=1, label=f"bounded error {alpha:.0%} (1 - target precision)")
    ax.set_xlabel("coverage (share of test events the model answers)")
    ax.set_ylabel("risk (error rate of the answered events)")
    ax.set_title("Risk vs coverage per user, worst AURC first\n(dot = the threshold each user's model certified)")
    ax.set_xlim(0.0, 1.005)
    ax.set_ylim(-0.002, min(1.0, top * 1.05))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_reliability(details: dict, path: Path) -> list[dict]:
    plt = _plt()
    conf = np.concatenate([np.asarray(d["confidence"], float) for d in details["users"].values()] or [np.zeros(0)])
    ok = np.concatenate([np.asarray(d["y"]) == np.asarray(d["pred"]) for d in details["users"].values()]
                        or [np.zeros(0, bool)])
    bins = reliability_bins(conf, ok)
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(6.5, 6.5), dpi=110, gridspec_kw={"height_ratios": [3, 1]},
                                  sharex=True)
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    pts = [(b["confidence"], b["accuracy"], b["count"]) for b in bins if b["count"]]
    if pts:
        xs, ys, ns = zip(*pts)
        ax.plot(xs, ys, marker="o", color="C0", lw=1.8, label="model (pooled test events)")
        for x, y, n in pts:
            ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -12), fontsize=7, color="C0")
    ece = expected_calibration_error(bins)
    ax.set_ylabel("accuracy in the bin")
    ax.set_title(f"Reliability diagram (10 confidence bins; ECE = {ece:.3f})" if ece is not None
                 else "Reliability diagram")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=9)
    axh.bar([(b["lo"] + b["hi"]) / 2 for b in bins], [b["count"] for b in bins], width=0.09, color="C0", alpha=0.7)
    axh.set_yscale("symlog")
    axh.set_xlabel("model confidence (top probability)")
    axh.set_ylabel("events")
    axh.set_xlim(0, 1)
    axh.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return bins


def plot_learning_curve(details: dict, result: dict, path: Path) -> None:
    from matplotlib.ticker import NullFormatter

    plt = _plt()
    curve = details.get("learning_curve") or []
    fig, ax = plt.subplots(figsize=(7, 4.6), dpi=110)
    ns = [c["n"] for c in curve]
    for key, color in (("accuracy_kept", "C0"), ("coverage", "C1")):
        ys = [c.get(key) if c.get(key) is not None else np.nan for c in curve]
        ax.plot(ns, ys, marker="o", color=color, lw=2, label=f"{key} (pooled)")
        for x, y in zip(ns, ys):
            if not np.isnan(y):
                ax.annotate(f"{y:.1%}", (x, y), textcoords="offset points",
                            xytext=(4, 6 if key == "coverage" else -13), fontsize=8, color=color)
        full = (result.get("overall") or {}).get(key)
        if full is not None:
            ax.axhline(full, color=color, ls="--", lw=1, alpha=0.7, label=f"{key}, full 70% split: {full:.1%}")
    ax.axhline(0.85, color="grey", ls=":", lw=1, label="targets: 85% coverage, 97% accuracy")
    ax.axhline(0.97, color="grey", ls=":", lw=1)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(ns or [1])
    ax.set_xticklabels([str(n) for n in ns] or ["1"])
    ax.set_xlabel("training events per calendar (first N of each calendar's 70% train split)")
    ax.set_ylabel("share of test events")
    ax.set_ylim(0, 1.1)
    ax.set_title("Learning curve")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def confusion(y: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts ``[true, predicted]`` over ``labels``."""
    index = {lab: i for i, lab in enumerate(labels)}
    m = np.zeros((len(labels), len(labels)), dtype=int)
    for t, p in zip(y, pred):
        if t in index and p in index:
            m[index[t], index[p]] += 1
    return m


def plot_confusion(details: dict, path: Path) -> None:
    plt = _plt()
    users = sorted(details["users"].items())
    n = max(1, len(users))
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 5.4), dpi=110, squeeze=False)
    for ax, (u, d) in zip(axes[0], users):
        labels = d["labels"]
        m = confusion(d["y"], d["pred"], labels)
        rows = m.sum(axis=1, keepdims=True)
        norm = np.divide(m, rows, out=np.zeros_like(m, dtype=float), where=rows > 0)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(labels)):
            for j in range(len(labels)):
                if m[i, j]:
                    ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if norm[i, j] > 0.6 else "black")
        short = [_short(lab) for lab in labels]
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(short, rotation=40, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(short, fontsize=7)
        ax.set_xlabel("predicted (argmax)")
        ax.set_ylabel("true calendar")
        acc = float(np.trace(m) / m.sum()) if m.sum() else 0.0
        ax.set_title(f"{u}: accuracy {acc:.1%}", fontsize=10)
    axes[0][0].figure.suptitle("Confusion matrices on the test split (counts; colour = row share)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----------------------------------------------------------------------------- pages


def _pct(v: Any) -> str:
    return "-" if v is None else f"{float(v):.1%}"


def _tables(result: dict, details: dict, bins: list[dict]) -> list[tuple[str, list[str], list[list[str]]]]:
    head = ["user", "train", "test", "coverage", "accuracy_kept", "accuracy_all", "macro-F1", "threshold", "AURC"]
    rows = []
    for u in result.get("users", []):
        if "skipped" in u:
            rows.append([u["user"], "", "", f"skipped: {u['skipped']}", "", "", "", "", ""])
            continue
        rows.append([u["user"], str(u.get("train_events", "")), str(u.get("test_events", "")), _pct(u.get("coverage")),
                     _pct(u.get("accuracy_kept")), _pct(u.get("accuracy_all")), _pct(u.get("macro_f1")),
                     f"{u.get('threshold', 0):.2f}", "-" if u.get("aurc") is None else f"{u['aurc']:.4f}"])
    for name, key in (("overall (pooled)", "overall"), ("mean of users", "mean_of_users")):
        r = result.get(key) or {}
        rows.append([name, "", str(r.get("test_events", "")), _pct(r.get("coverage")), _pct(r.get("accuracy_kept")),
                     _pct(r.get("accuracy_all")), _pct(r.get("macro_f1")),
                     "-" if r.get("threshold") is None else f"{r['threshold']:.2f}",
                     "-" if r.get("aurc") is None else f"{r['aurc']:.4f}"])
    curve = [[str(c["n"]), _pct(c.get("coverage")), _pct(c.get("accuracy_kept")), _pct(c.get("accuracy_all"))]
             for c in details.get("learning_curve") or []]
    rel = [[f"{b['lo']:.1f}-{b['hi']:.1f}", str(b["count"]), _pct(b["confidence"]), _pct(b["accuracy"])]
           for b in bins if b["count"]]
    return [("Results (time-ordered 70/30 split per calendar)", head, rows),
            ("Learning curve (pooled)", ["train events per calendar", "coverage", "accuracy_kept", "accuracy_all"], curve),
            ("Reliability bins (pooled)", ["confidence", "events", "mean confidence", "accuracy"], rel)]


def _markdown(result: dict, tables, plots: dict[str, str], settings: dict) -> str:
    lines = ["# Evaluation report", "",
             f"Generated by `calroute evaluate --data {settings.get('data', 'DIR')} --report {settings.get('out')}` "
             f"(family `{result.get('settings', {}).get('family')}`). The full JSON is `evaluation.json`.", ""]
    for title, head, rows in tables:
        lines += [f"## {title}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines.append("")
    for name, caption in plots.items():
        lines += [f"## {caption}", "", f"![{caption}]({name})", ""]
    return "\n".join(lines)


def _html(result: dict, tables, plots: dict[str, str], outdir: Path, settings: dict) -> str:
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>calroute evaluation report</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}</style>",
             "</head><body><h1>calroute evaluation report</h1>",
             f"<p>Generated by <code>calroute evaluate --data {esc(str(settings.get('data', 'DIR')))} --report</code>, "
             f"family <code>{esc(str(result.get('settings', {}).get('family')))}</code>. "
             "Full figures: <code>evaluation.json</code>.</p>"]
    for title, head, rows in tables:
        parts.append(f"<h2>{esc(title)}</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    for name, caption in plots.items():
        data = base64.b64encode((outdir / name).read_bytes()).decode("ascii")
        parts.append(f"<h2>{esc(caption)}</h2><img alt='{esc(caption)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(result: dict, outdir: str | Path, *, details: dict, data_dir: Optional[str] = None) -> dict:
    """Write the four PNGs, ``index.html`` (PNGs embedded: one self-contained file), ``README.md``
    (PNGs linked) and ``details.json`` into ``outdir``. ``result`` is :func:`evaluate_dir`'s output,
    ``details`` :func:`collect_details`'. Returns ``{"files": [...], "ece": float|None}``."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    plot_coverage_accuracy(details, out / PLOTS[0])
    bins = plot_reliability(details, out / PLOTS[1])
    plot_learning_curve(details, result, out / PLOTS[2])
    plot_confusion(details, out / PLOTS[3])
    target = (result.get("settings") or {}).get("target_precision")
    plot_risk_coverage(details, out / PLOTS[4], alpha=round(1.0 - float(target), 6) if target else 0.05)
    captions = {PLOTS[0]: "Coverage vs accuracy per user (chosen threshold marked)",
                PLOTS[1]: "Reliability diagram (calibration)",
                PLOTS[2]: "Learning curve: accuracy_kept and coverage vs training events per calendar",
                PLOTS[3]: "Confusion matrices",
                PLOTS[4]: "Risk vs coverage per user (AURC; the bounded error; the certified threshold marked)"}
    settings = {"data": data_dir or "DIR", "out": str(outdir)}
    tables = _tables(result, details, bins)
    (out / "README.md").write_text(_markdown(result, tables, captions, settings), encoding="utf-8")
    (out / "index.html").write_text(_html(result, tables, captions, out, settings), encoding="utf-8")
    (out / "details.json").write_text(json.dumps({"learning_curve": details.get("learning_curve"),
                                                  "reliability": bins}, indent=2) + "\n", encoding="utf-8")
    files = [*PLOTS, "index.html", "README.md", "details.json"]
    return {"files": [str(out / f) for f in files], "ece": expected_calibration_error(bins)}
