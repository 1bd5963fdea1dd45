"""``python -m bench.anomaly [--quick]``: which time/shape anomaly score, if any, improves routing.

Issue 10 asks for "an anomaly score of time/shape features against the user's calendars
(IsolationForest exported with skl2onnx, or whatever measures better)" in the routing rule. This
bench measures the candidates the same way the design is measured (:mod:`bench.trust`): per user,
the ``calroute evaluate`` split; the threshold is certified (banded Learn-then-Test) on the
time-ordered out-of-fold rows, whose novelty and anomaly are measured against each fold's own
training events; the figures are the test split's coverage and accuracy of kept answers, judged
by the worst user. The model is sklearn's (ONNX reproduces it to < 1e-5: the parity gate).

Candidates (``anomaly`` in [0, 1]; the routing score is
``confidence × (1 - 0.5 × text novelty) × (1 - w × anomaly)``):

* ``none``: the design of docs/trust.md (w = 0);
* ``calendar``: share of the event's shape tokens (hour or all-day, weekday, duration bucket,
  multi-day) that no training event *of the predicted calendar* had (pure Python);
* ``time_global``: share of its weekday×hour / start / duration / all-day tokens no training
  event of the user had (:meth:`calroute.novelty.NoveltyIndex.time_novelty`);
* ``iforest``: IsolationForest (50 trees) on the 8 time/shape dense features of the user's
  training events; anomaly = share of training events less anomalous than this one;
* ``iforest_cal``: the same, one forest per calendar, scored against the predicted calendar's.

Writes ``bench/results/anomaly.json`` (a run with ``--only`` replaces those candidates' rows and
keeps the others) and the generated table of docs/trust.md.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from bench import on_path  # noqa: E402 - before the calroute imports below

ROOT = on_path("layers/core", ".")

from bench.trust import _load  # noqa: E402

WEIGHTS = (0.25, 0.5, 1.0)
#: ``veto``: the routing score is 0 when the anomaly reaches this (instead of a discount).
VETOES = (0.75, 1.0)


def _shape_tokens(ev) -> list[str]:
    """When and how long: hour (or all-day), weekday, duration bucket, multi-day."""
    import re

    from calroute.features import time_tokens

    return [t for t in time_tokens(ev) if re.fullmatch(r"h\d+|allday|w\d|dur\w+|multiday", t)]


class CalendarShape:
    """Per calendar, the set of shape tokens its training events had."""

    def __init__(self):
        self.seen: dict[str, set] = {}

    def add(self, ev) -> None:
        self.seen.setdefault(ev.calendar_id, set()).update(_shape_tokens(ev))

    def score(self, ev, cal: str) -> float:
        toks = _shape_tokens(ev)
        seen = self.seen.get(cal, set())
        return sum(t not in seen for t in toks) / len(toks) if toks else 0.0


class TimeGlobal:
    def __init__(self):
        from calroute.novelty import NoveltyIndex

        self.idx = NoveltyIndex()

    def add(self, ev) -> None:
        self.idx.add(ev)

    def score(self, ev, cal: str) -> float:
        return self.idx.time_novelty(ev)


class Forest:
    """IsolationForest on the time/shape dense features; refit lazily when events were added."""

    def __init__(self, per_calendar: bool = False):
        self.per_calendar = per_calendar
        self.rows: dict[str, list] = {}
        self.fitted: dict[str, tuple] = {}

    def add(self, ev) -> None:
        from calroute.features import dense_features

        key = ev.calendar_id if self.per_calendar else "*"
        self.rows.setdefault(key, []).append(dense_features(ev)[:8])
        self.fitted.pop(key, None)

    def _model(self, key: str):
        if key not in self.fitted:
            from sklearn.ensemble import IsolationForest

            X = np.asarray(self.rows.get(key) or [[0.0] * 8], dtype=np.float64)
            f = IsolationForest(n_estimators=50, max_samples=min(256, len(X)), random_state=0).fit(X)
            self.fitted[key] = (f, np.sort(f.score_samples(X)))
        return self.fitted[key]

    def score(self, ev, cal: str) -> float:
        from calroute.features import dense_features

        f, train = self._model(cal if self.per_calendar else "*")
        s = f.score_samples(np.asarray([dense_features(ev)[:8]]))[0]  # higher = more normal
        return 1.0 - float(np.searchsorted(train, s, side="right") / len(train))


SCORERS = {"calendar": CalendarShape, "time_global": TimeGlobal, "iforest": Forest,
           "iforest_cal": lambda: Forest(per_calendar=True)}


def _user(events, n, names):
    """Per candidate and weight: test coverage and accuracy of kept answers for one user."""
    from calroute_dev.evaluation import _relaxed, split_events
    from calroute.features import featurize
    from calroute.novelty import NoveltyIndex, routing_score
    from calroute.schema import sort_by_start
    from calroute.training import (CalendarClassifier, GateFailed, TrainConfig, check_gates,
                                   choose_threshold_bound, out_of_fold, out_of_fold_novelty, time_blocks)

    cfg = TrainConfig()
    train, test = split_events(events, n)
    if n is not None:
        cfg, _ = _relaxed(train, cfg, n)
    labelled = sort_by_start([e for e in train if e.calendar_id is not None])
    ok, _ = check_gates(labelled, cfg)
    if not ok or not test:
        return None
    y = np.asarray([e.calendar_id for e in labelled])
    labels = sorted(set(y.tolist()))
    lab = np.asarray(labels)
    X = featurize(labelled)

    def make():
        return CalendarClassifier(family=cfg.family, C=cfg.C, class_weight=cfg.class_weight,
                                  dense_scale=cfg.dense_scale, random_state=cfg.random_state)

    blocks = time_blocks(y.tolist(), cfg.n_blocks)
    oof, mask = out_of_fold(X, y, blocks, labels, make)
    oof_pred = lab[np.argmax(oof, axis=1)]
    oof_conf = oof.max(axis=1)
    oof_nov = out_of_fold_novelty(labelled, blocks)
    model = make().fit(X, y)
    proba = model.predict_proba(featurize(test))
    pred = np.asarray(model.classes_)[np.argmax(proba, axis=1)]
    conf = proba.max(axis=1)
    ty = np.asarray([e.calendar_id for e in test])
    full_idx = NoveltyIndex.fit(labelled)
    t_nov = np.asarray([full_idx.score(e) for e in test])
    base_oof = np.asarray([routing_score(c, v, cfg.novelty_weight) for c, v in zip(oof_conf, oof_nov)])
    base_test = np.asarray([routing_score(c, v, cfg.novelty_weight) for c, v in zip(conf, t_nov)])
    out = {}

    def judge(s_oof, s_test):
        b = choose_threshold_bound(s_oof[mask], (oof_pred == y)[mask], cfg)
        kept = s_test >= b.threshold
        return {"coverage": float(kept.mean()), "accuracy_kept": float((pred == ty)[kept].mean()) if kept.any() else None}

    out["none"] = judge(base_oof, base_test)
    for name in names:
        # out-of-fold anomaly: block k against blocks < k, like the fold's model
        a_oof = np.zeros(len(labelled))
        sc = SCORERS[name]()
        for b in range(int(blocks.max()) + 1):
            members = np.flatnonzero(blocks == b)
            if b > 0:
                for i in members:
                    a_oof[i] = sc.score(labelled[i], oof_pred[i])
            for i in members:
                sc.add(labelled[i])
        full = SCORERS[name]()
        for e in labelled:
            full.add(e)
        a_test = np.asarray([full.score(e, c) for e, c in zip(test, pred)])
        for w in WEIGHTS:
            out[f"{name} w={w}"] = judge(base_oof * (1 - w * a_oof), base_test * (1 - w * a_test))
        for v in VETOES:
            out[f"{name} veto>={v}"] = judge(base_oof * (a_oof < v), base_test * (a_test < v))
    return out


def run(quick: bool = False, only=None) -> dict:
    groups = _load(ROOT / "data")
    if quick:
        groups = {g: dict(list(us.items())[:1]) for g, us in groups.items()}
    names = list(only or SCORERS)
    res: dict = {}
    for setting, n in (("all", None), ("n20", 20)):
        for g, users in groups.items():
            print(f"anomaly: {setting} / {g}", file=sys.stderr)
            for u, evs in users.items():
                r = _user(evs, n, names)
                if r is not None:
                    res.setdefault(f"{setting}/{g}", {})[u] = r
    return res


def table(res: dict) -> str:
    variants = list(next(iter(next(iter(res.values())).values())))
    lines = ["| candidate | " + " | ".join(f"{k}: worst / mean cov." for k in res) + " |",
             "|---|" + "---|" * len(res)]
    for v in variants:
        cells = []
        for k, users in res.items():
            accs = [r[v]["accuracy_kept"] for r in users.values() if r[v]["accuracy_kept"] is not None]
            covs = [r[v]["coverage"] for r in users.values()]
            cells.append(f"{min(accs):.1%} / {np.mean(covs):.1%}" if accs else "-")
        lines.append(f"| `{v}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


BEGIN, END = "<!-- anomaly:begin (generated by python -m bench.anomaly) -->", "<!-- anomaly:end -->"


def _merge(old: dict, new: dict) -> dict:
    out = {k: {u: dict(r) for u, r in users.items()} for k, users in old.items()}
    for k, users in new.items():
        for u, r in users.items():
            out.setdefault(k, {}).setdefault(u, {}).update(r)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.anomaly")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", choices=list(SCORERS), help="candidates to run (default: all)")
    args = ap.parse_args(argv)
    res = run(args.quick, args.only)
    if not args.quick:
        path = ROOT / "bench" / "results" / "anomaly.json"
        if args.only and path.exists():
            res = _merge(json.loads(path.read_text()), res)
        path.write_text(json.dumps(res, indent=1) + "\n")
        doc = ROOT / "docs" / "trust.md"
        text = doc.read_text(encoding="utf-8")
        if BEGIN in text:
            a, b = text.index(BEGIN), text.index(END) + len(END)
            doc.write_text(text[:a] + BEGIN + "\n\n" + table(res) + "\n\n" + END + text[b:], encoding="utf-8")
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
