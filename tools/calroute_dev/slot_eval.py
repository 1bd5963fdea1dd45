"""Offline evaluation of slot extraction on the nl_events benchmark (Schema-Guided Dialogue,
calendar domain, CC BY-SA 4.0; ``/work/shared/datasets/nl_events``, see its SOURCES.md).

Units (what "accuracy on the turns that carry them" means here):

* **time / summary / location** — the turn rows (``sgd_calendar_<split>.jsonl``): the user's turn,
  with the system turn before it as an assistant turn. Gold: the turn's ``event_time`` canonical
  (``HH:MM``, rows with user acts only), ``event_name`` and ``event_location`` spans (compared
  case- and punctuation-insensitively).
* **date** — every user turn of the event rows (``..._events.jsonl``) that carries a span on a
  slot whose name contains ``date`` with its canonical ``YYYY-MM-DD`` (AddEvent turns never say
  the date: SOURCES.md).
* A value the rules give on a row that does not carry the slot is a **false positive** (the turn
  rows carry every span SGD annotated; they carry no date). It counts against "accuracy among the
  confident" when marked confident.

``now`` is the data's reference day, Friday 2019-03-01 (09:00, UTC).

``fit(items)`` turns the train split's outcomes into ``calroute/slots/fitted.json``: per rule its
add-one smoothed accuracy (the confidence), per slot the lowest confidence certified ≥ 97 % right
by Learn-then-Test (:func:`calroute.risk.choose_threshold_ltt`, α = 0.03, δ = 0.1).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

REFERENCE_NOW = dt.datetime(2019, 3, 1, 9, 0, tzinfo=dt.timezone.utc)
DEFAULT_DATA = "/work/shared/datasets/nl_events"
SLOTS = ("summary", "date", "time", "location")
ALPHA = 0.03
DELTA = 0.1

_PUNCT = re.compile(r"[^\w\s]")


def norm(value: Any) -> str:
    return " ".join(_PUNCT.sub(" ", str(value or "")).lower().split())


@dataclass
class Item:
    """One evaluation row: the turns, and per slot the gold (None = the row does not carry it;
    absent = not scored for that slot)."""

    id: str
    turns: list[dict]
    gold: dict[str, Optional[str]] = field(default_factory=dict)


def _turns(text: str, system_prompt: Optional[str]) -> list[dict]:
    out = []
    if system_prompt:
        out.append({"role": "assistant", "text": system_prompt})
    out.append({"role": "user", "text": text})
    return out


def load_items(path: str) -> list[Item]:
    """The items of a turn-row file (``sgd_calendar_<split>.jsonl``) and, beside it, its events file."""
    items: list[Item] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            r = json.loads(line)
            slots = r.get("slots") or {}
            gold: dict[str, Optional[str]] = {
                "summary": slots.get("event_name"),
                "location": slots.get("event_location"),
                "date": None,
            }
            if "event_time" in slots:
                if r.get("canonical") and r["canonical"].get("event_time"):
                    gold["time"] = r["canonical"]["event_time"]
                # else: no canonical value (file 066): not scored for time
            else:
                gold["time"] = None
            items.append(Item(r["id"], _turns(r["text"], r.get("system_prompt")), gold))
    events = path.replace(".jsonl", "_events.jsonl")
    if os.path.exists(events):
        with open(events, encoding="utf-8") as fh:
            for line in fh:
                e = json.loads(line)
                for u in e["user_turns"]:
                    spans = [s for f in u["frames"] for s in f["spans"]
                             if "date" in s["slot"] and s.get("canonical")]
                    if spans:
                        items.append(Item(f"{e['id']}/{u['turn_idx']}/date",
                                          _turns(u["text"], u.get("system_prompt")),
                                          {"date": spans[0]["canonical"]}))
    return items


@dataclass
class Outcome:
    slot: str
    carried: bool
    predicted: bool
    correct: bool
    confidence: float
    confident: bool
    rule: Optional[str]
    source: str


def score(items: Iterable[Item], parse: Callable[[list[dict]], dict]) -> list[Outcome]:
    """Run ``parse(turns) -> {slot: Slot-like dict}`` on every item and score each scored slot."""
    out: list[Outcome] = []
    for it in items:
        slots = parse(it.turns)
        for name, gold in it.gold.items():
            s = slots.get(name) or {}
            value = s.get("value")
            predicted = value is not None and s.get("source") != "default"
            if name in ("summary", "location"):
                correct = predicted and gold is not None and norm(value) == norm(gold)
            else:
                correct = predicted and gold is not None and str(value) == str(gold)
            out.append(Outcome(name, gold is not None, predicted, bool(correct), float(s.get("confidence") or 0.0),
                               predicted and not s.get("needs_confirmation", True), s.get("rule"),
                               s.get("source", "default")))
    return out


def summarize(outcomes: list[Outcome]) -> dict[str, dict]:
    """Per slot: rows carrying it, accuracy on them, confident coverage, accuracy among the confident
    (false positives included), with the Clopper-Pearson upper bound on that error."""
    from calroute.risk import clopper_pearson_upper

    table = {}
    for name in SLOTS:
        rows = [o for o in outcomes if o.slot == name]
        carried = [o for o in rows if o.carried]
        conf = [o for o in rows if o.confident]
        conf_ok = sum(o.correct for o in conf)
        fp = sum(1 for o in rows if o.predicted and not o.carried)
        table[name] = {
            "carried": len(carried),
            "correct": sum(o.correct for o in carried),
            "accuracy": (sum(o.correct for o in carried) / len(carried)) if carried else None,
            "found": sum(o.predicted for o in carried),
            "false_positives": fp,
            "confident": len(conf),
            "coverage": (sum(o.confident for o in carried) / len(carried)) if carried else None,
            "confident_accuracy": (conf_ok / len(conf)) if conf else None,
            "confident_error_upper": clopper_pearson_upper(len(conf) - conf_ok, len(conf), DELTA) if conf else None,
        }
    return table


def per_rule(outcomes: list[Outcome]) -> dict[str, tuple[int, int]]:
    """rule → (values given, right)."""
    acc: dict[str, list[int]] = {}
    for o in outcomes:
        if o.predicted and o.rule:
            a = acc.setdefault(o.rule, [0, 0])
            a[0] += 1
            a[1] += int(o.correct)
    return {k: (v[0], v[1]) for k, v in sorted(acc.items())}


def fit(outcomes_by_rule: list[Outcome], *, source: str) -> dict:
    """The fitted table (module docstring) from the rules' outcomes on the train split. Two passes:
    confidences per rule, then per slot the certified threshold over those confidences."""
    import numpy as np

    from calroute.risk import choose_threshold_ltt

    rules = {rule: round((ok + 1) / (n + 2), 4) for rule, (n, ok) in per_rule(outcomes_by_rule).items()}
    confident_at: dict[str, Optional[float]] = {}
    certificates: dict[str, dict] = {}
    for name in SLOTS + ("attendees",):
        rows = [o for o in outcomes_by_rule if o.slot == name and o.predicted and o.rule in rules]
        if not rows:
            confident_at[name] = None
            certificates[name] = {"why": "no values on the train split"}
            continue
        score_ = np.array([rules[o.rule] for o in rows])
        ok = np.array([o.correct for o in rows])
        bound = choose_threshold_ltt(score_, ok, alpha=ALPHA, delta=DELTA)
        confident_at[name] = bound.threshold if bound.certified else None
        certificates[name] = bound.to_dict()
    return {"fitted_on": source, "reference_now": REFERENCE_NOW.isoformat(), "alpha": ALPHA, "delta": DELTA,
            "rules": rules, "confident_at": confident_at, "certificates": certificates}


def rules_parser(now: dt.datetime = REFERENCE_NOW) -> Callable[[list[dict]], dict]:
    """The rules only (no LLM), as the parse route runs them: ``turns → {slot: dict}``."""
    from calroute.slots.extract import extract

    def parse(turns: list[dict]) -> dict:
        ex = extract(turns, now)
        return {k: v.to_dict() for k, v in ex.slots.items()}
    return parse


def latency_ms(items: list[Item], parse: Callable[[list[dict]], dict], repeat: int = 1) -> list[float]:
    out = []
    for _ in range(repeat):
        for it in items:
            t0 = time.perf_counter()
            parse(it.turns)
            out.append((time.perf_counter() - t0) * 1000.0)
    return out


def write_fitted(table: dict, path: Optional[str] = None) -> str:
    """Write the fitted table to ``calroute/slots/fitted.py`` (or ``path``): one JSON document in a
    Python string (shipped by the CoreLayer like any module; read with ``json.loads``)."""
    if path is None:
        from calroute.slots import confidence

        path = confidence.FITTED_PATH
    doc = json.dumps(table, indent=1, sort_keys=True, ensure_ascii=False)
    assert "\'\'\'" not in doc
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('"""The fitted slot confidences (calroute.slots.confidence). Generated by\n'
                 '``calroute evaluate-slots --fit`` on the nl_events train split: do not edit by hand."""\n\n'
                 f"FITTED_JSON = r\'\'\'{doc}\'\'\'\n")
    return path
