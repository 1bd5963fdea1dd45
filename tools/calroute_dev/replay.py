"""``calroute replay --data DIR``: the cascade over time, measured offline (docs/learning.md "Replay").

Each user's events are streamed in start order through the real services on in-memory stores
(:mod:`calroute_dev.memory`): the first ``K`` events of each calendar arrive labelled (an import:
:func:`calroute.services.ingest.ingest_events`), every later one is classified
(:class:`calroute.services.predict.PredictService`, built by :func:`calroute.wiring.predict_service`)
with ``remember`` in the arms that learn from answers; a wrong answer is corrected by the simulated
user with probability ``--correct-rate`` (decided per event id, so every arm sees the same user),
and models are retrained on the template's schedule (``cron(0 3 * * ? *)``: at each 03:00 UTC the
stream crosses, the training run's steps ``plan`` → ``train_user`` → ``validate`` → ``promote`` run
with the retraining policy). The stores' clock is the stream's (``calroute_dev.memory.set_clock``).

The LLM is simulated (no real LLM here): ``oracle`` (always right: an upper bound), ``noisy:P``
(right with probability P, else another of the user's calendars; decided per event id), or a JSONL
file of recorded answers (``{"event_id", "calendar_id"[, "user_id"]}`` per line; an event without a
recorded answer is a failed call). The cost of a call is the price table's (``LLM_PRICES``,
``LLM_MODEL``) for the tokens of the prompt the fallback would build (calendars, the model's
candidates; without the similar past events the real fallback adds) and 40 output tokens.

Arms: ``corrections_only`` (today: answers are thrown away; a correction is the user filing the event
in the right calendar, an ingest), ``llm_answers`` (remember; the model's own answers weigh 0:
``LABEL_WEIGHT_ML=0``), ``all_answers`` (remember; the model's own answers too, ``LABEL_WEIGHT_ML``).
Every output names the LLM mode.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, time as dtime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from calroute.config import Settings
from calroute.ports import Stores
from calroute.schema import Event

ARMS = ("corrections_only", "llm_answers", "all_answers")
TODAY_GATES = (50, 2, 10)
DEFAULT_GATES = (10, 2, 5)
QUICK_MAX_EVENTS = 300
SCHEDULE_HOUR_UTC = 3  # template.yaml ScheduleExpression cron(0 3 * * ? *)
OUTPUT_TOKENS = 40
BATCH = 100


# ----------------------------------------------------------------------------- the simulated LLM


def _unit(*parts: Any) -> float:
    """A deterministic number in [0, 1) from ``parts`` (the same in every arm and run). blake2b, not
    crc32: crc32 is linear, so the draws for "llm" and "correct" of one event would be correlated."""
    digest = hashlib.blake2b(":".join(str(p) for p in parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class SimulatedLlm:
    """``oracle`` | ``noisy:P`` | a JSONL file of recorded answers. ``name`` is what outputs print."""

    def __init__(self, spec: str, seed: int = 0):
        self.seed = seed
        self.recorded: Optional[dict] = None
        self.p = 1.0
        if spec == "oracle":
            self.name = "oracle"
        elif spec.startswith("noisy:"):
            try:
                self.p = float(spec.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"--llm {spec!r}: noisy:P needs a probability, e.g. noisy:0.9") from None
            if not 0.0 <= self.p <= 1.0:
                raise ValueError(f"--llm {spec!r}: P must be within 0..1")
            self.name = f"noisy:{self.p:g}"
        elif spec.endswith(".jsonl") or Path(spec).is_file():
            path = Path(spec)
            if not path.is_file():
                raise ValueError(f"--llm {spec!r}: no such file")
            self.recorded = {}
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    row = json.loads(line)
                    if not isinstance(row, dict) or "event_id" not in row or "calendar_id" not in row:
                        raise ValueError(f"{path.name}:{n}: needs event_id and calendar_id")
                    self.recorded[(row.get("user_id"), str(row["event_id"]))] = str(row["calendar_id"])
            self.name = f"recorded:{path.name}"
        else:
            raise ValueError(f"--llm {spec!r}: use oracle, noisy:P or a .jsonl file of recorded answers")

    def answer(self, user: str, event_id: str, truth: str, calendars: Sequence[str]) -> Optional[str]:
        if self.recorded is not None:
            return self.recorded.get((user, event_id), self.recorded.get((None, event_id)))
        if _unit(self.seed, "llm", user, event_id) < self.p:
            return truth
        others = sorted(c for c in calendars if c != truth)
        if not others:
            return truth
        return others[int(_unit(self.seed, "wrong", user, event_id) * len(others))]


# ----------------------------------------------------------------------------- one user, one arm


@dataclass
class ArmConfig:
    name: str
    remember: bool
    label_weight_ml: Optional[float]  # None: the settings' default


def arm_config(name: str) -> ArmConfig:
    if name == "corrections_only":
        return ArmConfig(name, False, 0.0)
    if name == "llm_answers":
        return ArmConfig(name, True, 0.0)
    if name == "all_answers":
        return ArmConfig(name, True, None)
    raise ValueError(f"unknown arm {name!r}; known: {', '.join(ARMS)}")


def replay_settings(gates: Sequence[int], arm: ArmConfig, **overrides: Any) -> Settings:
    min_events, min_calendars, min_per_calendar = gates
    values: dict[str, Any] = dict(
        min_events=min_events, min_calendars=min_calendars, min_per_calendar=min_per_calendar,
        prediction_log_sample_rate=0.0, prediction_log_lines=False, model_revalidate_seconds=0,
        llm_daily_budget_usd=1e9, llm_user_daily_budget_usd=1e9, auth_mode="none")
    if arm.label_weight_ml is not None:
        values["label_weight_ml"] = arm.label_weight_ml
    values.update(overrides)
    return Settings(**values)


def _tick_after(t: datetime) -> datetime:
    """The first schedule time strictly after ``t``."""
    day = datetime.combine(t.date(), dtime(SCHEDULE_HOUR_UTC), tzinfo=timezone.utc)
    return day if day > t else day + timedelta(days=1)


class UserReplay:
    """The stream of one user's events through the services, for one arm."""

    def __init__(self, user: str, events: Sequence[Event], *, arm: ArmConfig, llm: SimulatedLlm, k_labelled: int,
                 correct_rate: float, gates: Sequence[int], seed: int = 0, stores: Optional[Stores] = None,
                 settings: Optional[dict] = None, confirm_per_week: int = 0):
        from calroute import wiring
        from calroute.adapters.invoke import CallableInvoker

        from .memory import fake_stores

        self.user, self.arm, self.llm = user, arm, llm
        self.k, self.correct_rate, self.seed = k_labelled, correct_rate, seed
        self.events = sorted(events, key=lambda e: (e.start_utc, e.event_id or ""))
        self.truth = {e.event_id: e.calendar_id for e in self.events}
        self.stores = stores or fake_stores()
        self.cfg = replay_settings(gates, arm, **(settings or {}))
        self.now = self.events[0].start_utc if self.events else datetime.now(timezone.utc)
        self.service = wiring.predict_service(self.cfg, stores=self.stores, invoker=CallableInvoker(self._llm),
                                              lines=None)
        self.seen: Counter = Counter()
        self.streamed = 0
        self.calls = 0
        self.usd = 0.0
        self.first_model: Optional[int] = None
        self.first_answering: Optional[int] = None
        self.trainings = 0
        self.promotions = 0
        self.gate_stops = 0  # TrainUser runs the data gates stopped
        self.weeks: dict[int, Counter] = {}
        self.totals: Counter = Counter()
        self.t0 = self.events[0].start_utc if self.events else self.now
        #: stop the stream once the first model is active (measuring only when it arrives)
        self.stop_at_first_model = False
        #: the simulated user answers the review queue's top N once a week (the arms that remember)
        self.confirm_per_week = confirm_per_week if arm.remember else 0
        self._reviewed_week: Optional[int] = None

    # -- the simulated fallback (what LlmFallbackFunction would answer, at its price)
    def _llm(self, payload: dict) -> dict:
        from calroute.llm.cost import cost_usd
        from calroute.llm.prompt import build_messages
        from calroute.schema import parse_event

        eid = str(payload["event"].get("event_id"))
        calendars = self.stores.users.calendars(self.user)
        self.calls += 1
        cal = self.llm.answer(self.user, eid, self.truth[eid], [c.calendar_id for c in calendars])
        messages = build_messages(event=parse_event(payload["event"]), calendars=calendars,
                                  candidates=payload.get("candidates") or (), nonce="replay")
        tokens_in = sum(len(m["content"]) for m in messages) // 4
        usd = cost_usd(self.cfg.llm_model, tokens_in, OUTPUT_TOKENS, self.cfg.llm_prices)
        self.usd += usd
        if cal is None:
            return {"error": "upstream_error", "message": "no recorded answer"}
        return {"calendar_id": cal, "reason": f"replay {self.llm.name}", "usd": usd, "input_tokens": tokens_in,
                "output_tokens": OUTPUT_TOKENS}

    def _clock(self) -> datetime:
        return self.now

    # -- the training run on the schedule
    def training_run(self, at: datetime) -> None:
        from calroute.services.training.plan import plan
        from calroute.services.training.promote import promote
        from calroute.services.training.train_user import train_user
        from calroute.services.training.validate import validate

        self.now = at
        self.answer_review(at)
        out = plan({"trigger": "schedule"}, self.stores, self.cfg, now=at)
        for item in self.stores.models.get_json(out["key"]):
            res = train_user(item, self.stores, self.cfg, now=at)
            self.gate_stops += res.get("status") == "skipped"
            if res.get("status") != "candidate":
                continue
            self.trainings += 1
            res = validate({**item, **res}, self.stores, self.cfg)
            if res.get("status") == "valid" and promote({**item, **res}, self.stores, self.cfg).get("status") == "promoted":
                self.promotions += 1
        active = self.stores.registry.active(self.user)
        if active is not None and self.first_model is None:
            self.first_model = self.streamed

    def answer_review(self, at: datetime) -> None:
        """Once per week of the stream (at its first training run), the simulated user answers the
        review queue's top ``confirm_per_week`` ("is this right?", docs/learning.md "Review queue"):
        confirms a right label, corrects a wrong one (the user knows where the event belongs)."""
        if not self.confirm_per_week:
            return
        week = (at - self.t0).days // 7
        if week == self._reviewed_week:
            return
        self._reviewed_week = week
        from calroute.services.review import review_queue

        w = self.weeks.setdefault(week, Counter())
        for row in review_queue(self.user, self.stores, limit=self.confirm_per_week)["events"]:
            confirmed = answer_as_user(self.user, row["event_id"], self.truth[row["event_id"]], self.stores)
            for c in (w, self.totals):
                c["confirmations" if confirmed else "review_corrections"] += 1

    # -- the stream
    def run(self, until: Optional[int] = None, on_event: Optional[Callable[["UserReplay"], None]] = None) -> "UserReplay":
        from . import memory

        memory.set_clock(self._clock)
        try:
            self._run(until)
        finally:
            memory.set_clock(None)
        return self

    def _run(self, until: Optional[int]) -> None:
        from calroute.services.ingest import correct_event, ingest_events

        events = self.events[self.streamed:until]
        next_tick = _tick_after(events[0].start_utc) if events else None
        i = 0
        while i < len(events):
            # the events before the next schedule tick form one batch of the day
            j = i
            while j < len(events) and events[j].start_utc < next_tick:
                j += 1
            day = events[i:j]
            if day:
                self.now = day[0].start_utc
                self._day(day, ingest_events, correct_event)
                i = j
            if i < len(events):
                tick = next_tick
                # later ticks with no event in between change nothing: run the one just before the next event
                while _tick_after(tick) <= events[i].start_utc:
                    tick = _tick_after(tick)
                self.training_run(tick)
                next_tick = _tick_after(tick)
                if self.stop_at_first_model and self.first_model is not None:
                    return

    def _day(self, day: list[Event], ingest_events, correct_event) -> None:
        labelled, unlabelled = [], []
        for e in day:
            if self.seen[e.calendar_id] < self.k:
                labelled.append(e)
            else:
                unlabelled.append(e)
            self.seen[e.calendar_id] += 1
        if labelled:
            ingest_events(self.user, [e.to_flat() for e in labelled], self.stores, self.cfg)
            for e in labelled:
                self._week(e)["labelled"] += 1
        for b in range(0, len(unlabelled), BATCH):
            chunk = unlabelled[b:b + BATCH]
            flats = [{k: v for k, v in e.to_flat().items() if k != "calendar_id"} for e in chunk]
            results = self.service.classify_batch(self.user, flats, remember=self.arm.remember)
            for e, r in zip(chunk, results):
                self._answer(e, r, ingest_events, correct_event)
        self.streamed += len(day)

    def _week(self, e: Event) -> Counter:
        return self.weeks.setdefault((e.start_utc - self.t0).days // 7, Counter())

    def _answer(self, e: Event, r: dict, ingest_events, correct_event) -> None:
        w = self._week(e)
        truth = self.truth[e.event_id]
        right = r["calendar_id"] == truth
        called = r["method"] in ("llm", "llm_only") or (r["method"] == "ml_low_confidence"
                                                        and str(r.get("reason", "")).startswith("llm_"))
        for c in (w, self.totals):
            c["classified"] += 1
            c["answered"] += r["calendar_id"] is not None
            c["correct"] += right
            c["llm"] += called
            c["ml"] += r["method"] == "ml"
            c["ml_correct"] += r["method"] == "ml" and right
        if r["method"] == "ml" and self.first_answering is None:
            self.first_answering = self.streamed
        if not right and _unit(self.seed, "correct", self.user, e.event_id) < self.correct_rate:
            for c in (w, self.totals):
                c["corrections"] += 1
            if self.arm.remember and self.stores.events.get_event(self.user, e.event_id) is not None:
                correct_event(self.user, e.event_id, truth, self.stores)
            else:  # not kept: the user files the event in its calendar themselves
                ingest_events(self.user, [e.to_flat()], self.stores, self.cfg)

    # -- figures
    def summary(self) -> dict:
        t = self.totals
        return {
            "events": len(self.events), "streamed": self.streamed, "classified": t["classified"],
            "labelled": sum(w["labelled"] for w in self.weeks.values()),
            "llm_calls": t["llm"], "llm_share": _ratio(t["llm"], t["classified"]), "cost_usd": round(self.usd, 6),
            "accuracy": _ratio(t["correct"], t["classified"]), "ml_answers": t["ml"],
            "ml_accuracy": _ratio(t["ml_correct"], t["ml"]), "corrections": t["corrections"],
            "confirmations": t["confirmations"], "review_corrections": t["review_corrections"],
            "first_model_after_events": self.first_model, "first_answering_model_after_events": self.first_answering,
            "trainings": self.trainings, "promotions": self.promotions, "gate_stops": self.gate_stops,
        }


def answer_as_user(user: str, event_id: str, truth: str, stores: Stores) -> bool:
    """The simulated user answers "is this right?" for a stored event: confirms its label when it
    is ``truth`` (returns True), else corrects it to ``truth`` (False)."""
    from calroute.services.ingest import correct_event
    from calroute.services.review import confirm_event

    if stores.events.get_event(user, event_id).calendar_id == truth:
        confirm_event(user, event_id, stores)
        return True
    correct_event(user, event_id, truth, stores)
    return False


def _ratio(a: float, b: float) -> Optional[float]:
    return round(a / b, 4) if b else None


# ----------------------------------------------------------------------------- the review experiment


def review_experiment(user: str, events: Sequence[Event], *, llm: SimulatedLlm, k_labelled: int, correct_rate: float,
                      gates: Sequence[int], n: int = 10, seeds: Sequence[int] = (1, 2, 3), at: float = 0.5,
                      seed: int = 0) -> Optional[dict]:
    """Stream the ``llm_answers`` arm to ``at`` of the user's events, then answer ``n`` LLM-labelled
    events (confirm when right, correct when wrong): the review queue's top ``n``
    (:func:`calroute.services.review.review_queue`) vs ``n`` random ones (each of ``seeds``), the
    margin order the queue had before (``margin``) and that order reversed (``reversed``); retrain
    and activate the next model, and measure its coverage (the share of the rest of the stream, in
    the calendars the user had at the cut, it answers on its own) and the accuracy of those answers.
    None when there is no LLM label to review."""
    from calroute.services.review import review_queue

    from .memory import clone_stores

    arm = arm_config("llm_answers")
    base = UserReplay(user, events, arm=arm, llm=llm, k_labelled=k_labelled, correct_rate=correct_rate, gates=gates,
                      seed=seed)
    cut = int(len(base.events) * at)
    base.run(until=cut)
    # the rest of the stream the next model is measured on: the events of calendars the user had at
    # the cut. A calendar created later is not among the model's (or the LLM's) candidates, so its
    # events say nothing about the confirmations; the live replay imports its first K events instead.
    known = {e.calendar_id for e in base.events[:cut]}
    later = base.events[cut:]
    rest = [e for e in later if e.calendar_id in known]
    pending = [s for s in base.stores.events.list_stored(user) if s.provenance == "llm"]
    if not pending or not rest:
        return None

    def variant(pick: Callable[[Stores], list[str]]) -> dict:
        from . import memory

        stores = clone_stores(base.stores)
        memory.set_clock(lambda: base.now)
        try:
            chosen = pick(stores)
            for eid in chosen:
                answer_as_user(user, eid, base.truth[eid], stores)
            return {"answered": len(chosen), **_next_model(user, stores, base, rest)}
        finally:
            memory.set_clock(None)

    out = {"user": user, "at_events": cut, "pending_llm_labels": len(pending), "n": n, "rest_events": len(rest),
           "rest_in_later_calendars": len(later) - len(rest),
           "review": variant(lambda s: [e["event_id"] for e in review_queue(user, s, limit=n)["events"]])}
    # the margin order the queue had before 2026-12-01 (lowest margin × (1 − 0.5 × novelty) first,
    # newest first on ties), and that order reversed (the answers the model was surest of first: what
    # a queue ranked for certification rather than for learning would ask); measured beside the
    # queue, not what the API serves
    out["margin"] = variant(lambda s: [r.event.event_id for r in _margin_order(s, user)][:n])
    out["reversed"] = variant(lambda s: [r.event.event_id for r in reversed(_margin_order(s, user))][:n])
    rnd = []
    for sd in seeds:
        def pick(s: Stores, sd: int = sd) -> list[str]:
            ids_ = sorted(x.event.event_id for x in s.events.list_stored(user) if x.provenance == "llm")
            return random.Random(sd).sample(ids_, min(n, len(ids_)))
        rnd.append(variant(pick))
    out["random"] = {"coverage": _mean([r["coverage"] for r in rnd]), "accuracy": _mean([r["accuracy"] for r in rnd]),
                     "certified": sum(bool(r["certified"]) for r in rnd), "runs": rnd}
    out["none"] = variant(lambda s: [])
    return out


def _margin_order(stores: Stores, user: str) -> list:
    """The LLM-labelled rows, lowest :func:`calroute.services.review.priority` first (ties: newest)."""
    from calroute.services.review import priority

    pending = [r for r in stores.events.list_stored(user) if r.provenance == "llm"]
    pending.sort(key=lambda r: -r.event.start_utc.timestamp())
    pending.sort(key=priority)  # stable: ties stay newest first
    return pending


def _mean(xs: list) -> Optional[float]:
    xs = [x for x in xs if x is not None]
    return round(sum(xs) / len(xs), 4) if xs else None


def _next_model(user: str, stores: Stores, base: UserReplay, rest: Sequence[Event]) -> dict:
    """Train the next model on ``stores`` (the real step), activate it, and classify ``rest`` with it
    (no LLM): its coverage and the accuracy of its own answers."""
    from calroute import wiring
    from calroute.services.training.train_user import train_user
    from calroute.services.training.validate import validate

    res = train_user({"user_id": user, "run_id": "review"}, stores, base.cfg, now=base.now)
    if res.get("status") != "candidate":
        return {"coverage": 0.0, "accuracy": None, "certified": False, "threshold": None, "reason": res.get("reason")}
    validate({"user_id": user, **res}, stores, base.cfg)
    record = stores.registry.get_version(user, res["version"])
    active = stores.registry.active(user)
    stores.registry.activate(user, {**record, "version": res["version"]},
                             expected_version=active["version"] if active else None,
                             actor="replay", reason="review experiment")
    svc = wiring.predict_service(base.cfg, stores=stores, invoker=None, lines=None)
    ml = right = 0
    for b in range(0, len(rest), BATCH):
        chunk = rest[b:b + BATCH]
        flats = [{k: v for k, v in e.to_flat().items() if k != "calendar_id"} for e in chunk]
        for e, r in zip(chunk, svc.classify_batch(user, flats)):
            if r["method"] == "ml":
                ml += 1
                right += r["calendar_id"] == e.calendar_id
    thr = float(record.get("threshold") or 1.0)
    return {"coverage": round(ml / len(rest), 4), "accuracy": _ratio(right, ml), "certified": thr < 1.0,
            "threshold": round(thr, 4), "trusted_oof_rows": (record.get("metrics") or {}).get("oof_rows")}


# ----------------------------------------------------------------------------- many users


def replay(data_dir: str | Path, *, llm: str = "noisy:0.9", correct_rate: float = 0.5, k_labelled: int = 20,
           arms: Sequence[str] = ARMS, gates: Sequence[int] = DEFAULT_GATES, users: Optional[Sequence[str]] = None,
           max_events: Optional[int] = None, seed: int = 0, progress: Optional[Callable[[str], None]] = None,
           settings: Optional[dict] = None, stop_at_first_model: bool = False, confirm_per_week: int = 0) -> dict:
    """Replay every user (or ``users``) in every arm. Returns the ``--json`` object:
    ``{"llm", "correct_rate", "k_labelled", "gates", "arms": {arm: {pooled figures, "weeks": [...],
    "users": {user: {...}}}}}``."""
    from .evaluation import load_users

    if not isinstance(confirm_per_week, int) or confirm_per_week < 0:
        raise ValueError(f"--confirm-per-week {confirm_per_week!r}: needs a whole number ≥ 0")
    sim = SimulatedLlm(llm, seed=seed)
    loaded = load_users(data_dir)
    if users:
        missing = sorted(set(users) - set(loaded))
        if missing:
            raise ValueError(f"no such user in {data_dir}: {', '.join(missing)}")
        loaded = {u: loaded[u] for u in users}
    out: dict[str, Any] = {"llm": sim.name, "correct_rate": correct_rate, "k_labelled": k_labelled,
                           "gates": {"min_events": gates[0], "min_calendars": gates[1], "min_per_calendar": gates[2]},
                           "max_events": max_events, "confirm_per_week": confirm_per_week, "arms": {}}
    for arm_name in arms:
        arm = arm_config(arm_name)
        per_user, weeks = {}, {}
        for user, evs in loaded.items():
            evs = sorted(evs, key=lambda e: (e.start_utc, e.event_id or ""))[:max_events]
            if progress:
                progress(f"replay [{sim.name}] {arm_name}: {user} ({len(evs)} events)")
            r = UserReplay(user, evs, arm=arm, llm=sim, k_labelled=k_labelled, correct_rate=correct_rate, gates=gates,
                           seed=seed, settings=settings, confirm_per_week=confirm_per_week)
            r.stop_at_first_model = stop_at_first_model
            r.run()
            per_user[user] = r.summary()
            for wk, c in r.weeks.items():
                weeks.setdefault(wk, Counter()).update(c)
        out["arms"][arm_name] = {**_pool(per_user), "weeks": _weeks(weeks), "users": per_user}
    return out


def _pool(per_user: dict) -> dict:
    s = Counter()
    for u in per_user.values():
        for k in ("events", "classified", "llm_calls", "corrections", "ml_answers", "trainings", "promotions",
                  "gate_stops", "confirmations", "review_corrections"):
            s[k] += u.get(k) or 0
        s["correct"] += round((u["accuracy"] or 0) * u["classified"])
        s["ml_correct"] += round((u["ml_accuracy"] or 0) * u["ml_answers"])
        s["usd"] += u["cost_usd"]
    firsts = [u["first_model_after_events"] for u in per_user.values()]
    got = [f for f in firsts if f is not None]
    answering = [u["first_answering_model_after_events"] for u in per_user.values()]
    return {
        "events": s["events"], "classified": s["classified"], "llm_calls": s["llm_calls"],
        "llm_share": _ratio(s["llm_calls"], s["classified"]), "cost_usd": round(s["usd"], 6),
        "accuracy": _ratio(s["correct"], s["classified"]), "ml_answers": s["ml_answers"],
        "ml_accuracy": _ratio(s["ml_correct"], s["ml_answers"]), "corrections": s["corrections"],
        "confirmations": s["confirmations"], "review_corrections": s["review_corrections"],
        "trainings": s["trainings"], "promotions": s["promotions"], "gate_stops": s["gate_stops"],
        # pooled: the mean over the users that got a model (and how many did not)
        "first_model_after_events": _mean(got), "users_without_model": len(firsts) - len(got),
        "first_answering_model_after_events": _mean([a for a in answering if a is not None]),
        "users_without_answering_model": sum(a is None for a in answering),
    }


def _weeks(weeks: dict[int, Counter]) -> list[dict]:
    out, cum_calls = [], 0
    for wk in sorted(weeks):
        c = weeks[wk]
        cum_calls += c["llm"]
        out.append({"week": wk, "classified": c["classified"], "llm_calls": c["llm"],
                    "llm_share": _ratio(c["llm"], c["classified"]), "cumulative_llm_calls": cum_calls,
                    "accuracy": _ratio(c["correct"], c["classified"]), "labelled": c["labelled"]})
    return out


# ----------------------------------------------------------------------------- output


def format_result(result: dict, *, max_weeks: int = 20) -> str:
    from .text import table

    lines = [f"calroute replay — LLM: {result['llm']} (simulated; no real LLM), correction rate "
             f"{result['correct_rate']}, first {result['k_labelled']} events per calendar labelled, gates "
             f"{result['gates']['min_events']}/{result['gates']['min_calendars']}/{result['gates']['min_per_calendar']}"
             + (f", at most {result['max_events']} events per user" if result.get("max_events") else ""), ""]
    rows = []
    for arm, a in result["arms"].items():
        rows.append([arm, a["classified"], a["llm_calls"], _pct(a["llm_share"]), f"${a['cost_usd']:.4f}",
                     _pct(a["accuracy"]), _pct(a["ml_accuracy"]), a["corrections"],
                     "-" if a["first_model_after_events"] is None else f"{a['first_model_after_events']:.0f}",
                     "-" if a["first_answering_model_after_events"] is None
                     else f"{a['first_answering_model_after_events']:.0f}"])
    lines.append(table(rows, ["arm", "classified", "LLM calls", "LLM share", "cost", "accuracy", "model acc.",
                              "corrections", "1st model (events)", "1st answer (events)"]))
    for arm, a in result["arms"].items():
        lines += ["", f"{arm} per week [{result['llm']}] (weeks with events; first {max_weeks})"]
        lines.append(table([[w["week"], w["classified"], _pct(w["llm_share"]), w["cumulative_llm_calls"],
                             _pct(w["accuracy"])] for w in a["weeks"] if w["classified"]][:max_weeks],
                           ["week", "classified", "LLM share", "cum. LLM calls", "accuracy"]))
    return "\n".join(lines)


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1%}"


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for arm, a in result["arms"].items():
        wk = [w for w in a["weeks"] if w["classified"]]
        x = [w["week"] for w in wk]
        axes[0].plot(x, [w["llm_share"] for w in wk], label=arm)
        axes[1].plot(x, [w["cumulative_llm_calls"] for w in wk], label=arm)
        axes[2].plot(x, [w["accuracy"] for w in wk], label=arm)
    for ax, title in zip(axes, ("LLM share per week", "cumulative LLM calls", "accuracy of answers per week")):
        ax.set_title(f"{title} [{result['llm']}]")
        ax.set_xlabel("week since the user's first event")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(args: Any) -> int:
    import sys

    gates = tuple(int(x) for x in str(args.gates).split(","))
    if len(gates) != 3:
        print("replay: --gates needs MIN_EVENTS,MIN_CALENDARS,MIN_PER_CALENDAR", file=sys.stderr)
        return 2
    arms = [a.strip() for a in str(args.arms).split(",") if a.strip()]
    max_events = args.max_events or (QUICK_MAX_EVENTS if args.quick else None)
    try:
        result = replay(args.data, llm=args.llm, correct_rate=args.correct_rate, k_labelled=args.labelled, arms=arms,
                        gates=gates, users=args.users.split(",") if args.users else None, max_events=max_events,
                        seed=args.seed, progress=lambda m: print(m, file=sys.stderr),
                        confirm_per_week=getattr(args, "confirm_per_week", 0))
    except ValueError as exc:
        print(f"replay: {exc}", file=sys.stderr)
        return 2
    if args.plot:
        plot(result, args.plot)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(format_result(result))
    return 0
