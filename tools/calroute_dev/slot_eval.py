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
    spans: dict[str, str] = field(default_factory=dict)  # slot -> the words the user said


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
            spans = {"summary" if k == "event_name" else k.replace("event_", ""): v for k, v in slots.items()}
            items.append(Item(r["id"], _turns(r["text"], r.get("system_prompt")), gold, spans))
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
                                          {"date": spans[0]["canonical"]}, {"date": spans[0]["value"]}))
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


def score(items: Iterable[Item], parse: Callable[[list[dict]], dict], oracle: Optional["OracleLlm"] = None
          ) -> list[Outcome]:
    """Run ``parse(turns) -> {slot: Slot-like dict}`` on every item and score each scored slot."""
    out: list[Outcome] = []
    for it in items:
        if oracle is not None:
            oracle.set_item(it)
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


class _Usage:
    """An in-memory usage ledger (the budgets of the stand-in run)."""

    def __init__(self):
        self.usd: dict[str, float] = {}

    def spent(self, user_id: str) -> float:
        return self.usd.get(user_id, 0.0)

    def add(self, user_id: str, *, usd: float, input_tokens: int, output_tokens: int) -> None:
        from calroute.ports import GLOBAL_PK

        for k in (user_id, GLOBAL_PK):
            self.usd[k] = self.usd.get(k, 0.0) + usd


class OracleLlm:
    """The stand-in LLM of ``evaluate-slots --llm oracle``: an :class:`~calroute.llm.types.LlmClient`
    that answers each asked slot with the benchmark's gold value and the words the user said
    (``set_item`` before each parse), null where the row carries none. It is **not an LLM**: its
    figures are the upper bound of what the LLM step can add once its answers pass the route's
    re-validation, never a measurement of a model."""

    def __init__(self):
        self.item: Optional[Item] = None
        self.calls = 0

    def set_item(self, item: Item) -> None:
        self.item = item

    def complete(self, *, model: str, messages: list[dict], response_format: dict):
        from calroute.llm.types import LlmReply

        self.calls += 1
        asked = list(response_format["json_schema"]["schema"]["properties"])
        body = {}
        for slot in asked:
            gold = (self.item.gold.get(slot) if self.item else None)
            span = (self.item.spans.get(slot) if self.item else None)
            body[slot] = {"value": gold, "span": span} if gold and span else {"value": None, "span": None}
        content = json.dumps(body)
        prompt = sum(len(str(m.get("content", ""))) for m in messages)
        return LlmReply(content=content, input_tokens=prompt // 4 + 10, output_tokens=len(content) // 4 + 3)


def service_parser(llm: Optional[Any] = None, now: dt.datetime = REFERENCE_NOW):
    """The parse route's use case (:class:`calroute.services.parse.ParseService`) as the route runs
    it, without the routing step; ``llm``: an ``LlmClient`` behind the real fallback service's slot
    task (budgets, prompt, schema, validation), or None (rules only, "llm_not_configured").
    Returns ``parse(turns) -> {slot: dict}`` (``parse.item(item)`` tells an oracle the item)."""
    from calroute.adapters.invoke import CallableInvoker
    from calroute.config import Settings
    from calroute.services.llm_fallback import FallbackService
    from calroute.services.parse import ParseService

    invoker = None
    if llm is not None:
        cfg = Settings(openai_base_url="http://stand-in.invalid/v1", llm_user_daily_budget_usd=1e9,
                       llm_daily_budget_usd=1e9)
        fallback = FallbackService(cfg, client_factory=lambda: llm, users=None, events=None, registry=None,
                                   usage=_Usage())
        invoker = CallableInvoker(fallback.handle)
    else:
        cfg = Settings()
    svc = ParseService(cfg, classify=lambda user, events: [{"calendar_id": None}], invoker=invoker)

    def parse(turns: list[dict]) -> dict:
        return svc.parse("evaluate", turns=turns, now=now.isoformat(), timezone="UTC")["slots"]
    return parse


def confirm(table: dict, dev_items: list[Item]) -> dict:
    """The dev split's check of a table fitted on train: a slot whose values marked confident on
    dev are less than ``1 - ALPHA`` right loses its threshold (it asks again), with the reason kept
    under ``confirmation``. Returns the table (changed in place)."""
    from calroute.slots import confidence

    saved = confidence.fitted
    try:
        confidence.fitted = lambda: table  # score dev with the new table, not the shipped one
        t = summarize(score(dev_items, rules_parser()))
    finally:
        confidence.fitted = saved
    table["confirmation"] = {}
    for name in list(table["confident_at"]):
        row = t.get(name) or {}
        acc, n = row.get("confident_accuracy"), row.get("confident", 0)
        if table["confident_at"][name] is None:
            continue
        ok = acc is None or acc >= 1 - ALPHA
        table["confirmation"][name] = {"dev_confident": n, "dev_confident_accuracy": acc, "confirmed": ok}
        if not ok:
            table["confirmation"][name]["train_threshold"] = table["confident_at"][name]
            table["confident_at"][name] = None
    return table


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


# ----------------------------------------------------------------------------- the report

EVAL_BEGIN = "<!-- evaluate-slots:begin (generated by calroute evaluate-slots; do not edit by hand) -->"
EVAL_END = "<!-- evaluate-slots:end -->"


def evaluate(paths: list[str], *, llm: str = "none") -> dict:
    """Per file: the table of :func:`summarize` for the rules only, and with the stand-in LLM
    (``llm="oracle"``: :class:`OracleLlm`); plus per-rule counts of the rules run."""
    from calroute.slots import confidence, when

    when.warm()
    out: dict = {"now": REFERENCE_NOW.isoformat(), "fitted_on": confidence.fitted().get("fitted_on"),
                 "confident_at": confidence.fitted().get("confident_at"), "files": {}}
    for path in paths:
        items = load_items(path)
        rules = score(items, service_parser())
        entry = {"items": len(items), "rules_only": summarize(rules), "per_rule": per_rule(rules)}
        if llm == "oracle":
            oracle = OracleLlm()
            entry["with_llm"] = summarize(score(items, service_parser(oracle), oracle))
            entry["llm_calls"] = oracle.calls
        out["files"][os.path.basename(path)] = entry
    return out


def _f(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.3f}"


def render(res: dict) -> str:
    lines = [f"now = {res['now']}; confidences fitted on: {res.get('fitted_on')}; certified thresholds "
             f"(needs_confirmation false at or above): "
             + ", ".join(f"{k} {('%.4f' % v) if v is not None else 'none'}" for k, v in (res.get("confident_at") or {}).items()),
             ""]
    for name, e in res["files"].items():
        lines += [f"**{name}** ({e['items']} items)", "",
                  "| run | slot | turns carrying it | accuracy | found | false positives | confident | coverage of confident | accuracy among confident | error upper bound (CP, δ=0.1) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for run in ("rules_only", "with_llm"):
            if run not in e:
                continue
            label = "rules only" if run == "rules_only" else "rules + stand-in LLM (oracle)"
            for slot, t in e[run].items():
                lines.append(f"| {label} | {slot} | {t['carried']} | {_f(t['accuracy'])} | {t['found']} | "
                             f"{t['false_positives']} | {t['confident']} | {_f(t['coverage'])} | "
                             f"{_f(t['confident_accuracy'])} | {_f(t['confident_error_upper'])} |")
        lines += ["", "Per rule (values given / right): " + ", ".join(
            f"`{r}` {ok}/{n}" for r, (n, ok) in e["per_rule"].items()), ""]
    return "\n".join(lines)


def write_report(res: dict, doc: str) -> str:
    text = open(doc, encoding="utf-8").read() if os.path.exists(doc) else f"# Slots\n\n{EVAL_BEGIN}\n{EVAL_END}\n"
    if EVAL_BEGIN not in text:
        text = text.rstrip() + f"\n\n{EVAL_BEGIN}\n{EVAL_END}\n"
    a, b = text.index(EVAL_BEGIN), text.index(EVAL_END) + len(EVAL_END)
    with open(doc, "w", encoding="utf-8") as fh:
        fh.write(text[:a] + EVAL_BEGIN + "\n\n" + render(res) + "\n" + EVAL_END + text[b:])
    return doc
