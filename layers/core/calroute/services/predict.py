"""Classification use case: cohort → kill switch → cached model → routing policy → LLM fallback →
prediction log and metrics.

``PredictService.classify_events(user, events)`` featurizes every event and runs the model ONCE on
the whole matrix; the events the policy routes to the LLM are sent to the fallback function
concurrently (at most ``llm_max_concurrency`` at a time). Each answer is::

    {"event_id", "calendar_id", "confidence", "method", "model_version", "threshold",
     "alternatives": [{"calendar_id", "probability"}] (top 3), "reason", "novelty", "anomaly",
     "defer_reason", "cohort", "latency_ms"}

``defer_reason`` is null when the model answered on its own, else why it deferred
(``low_confidence``, ``novel_event``, ``unusual_time``, ``unmet_calendar``, ``uncertified_model``, ``no_model``,
``kill_switch``, ``control_cohort``, ``model_unavailable``); ``reason`` is then the LLM's reason or
why no one answered.

``novelty`` (feature spec 2 models) is the share of the event's title the user's training events
never had, ``anomaly`` the share of its when/how-long tokens the predicted calendar's training
events never had; the threshold applies to ``confidence × (1 - w × novelty)``, which is 0 when the
anomaly reaches the model's veto (docs/learning.md, docs/trust.md). With a
:class:`~calroute.calendars.CalendarDirectory`, events that may belong to a calendar the model has
not met go to the LLM (``reason: unmet_calendar``), and an LLM answer naming a calendar the user does
not have is refused at this boundary (``llm_invalid_answer``).

Never imports sklearn or openai (the LLM runs in its own function, reached through an
:class:`~calroute.adapters.invoke.Invoker`).
"""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..cache import FAILED, HIT, MISS, ModelCache
from ..calendars import CalendarDirectory, may_belong_to_unmet, unmet_calendars
from ..features import featurize, spec_tokens
from ..ids import hashed_user
from ..llm.cost import budget_exceeded
from ..policy import CONTROL, Decision, FlagProvider, cohort_for, decide
from ..ports import AfterResponse, Immediately, NullSink
from ..sampling import CONFIDENT_METHODS, RESOLUTION, cut, kept
from ..removed import serving_view
from ..schema import Event, parse_event, parse_events

TOP_K = 3

#: After the fallback answers ``not_configured``, predict skips it for this long (seconds).
LLM_NOT_CONFIGURED_BACKOFF_S = 60.0


class PredictService:
    def __init__(self, cfg, *, cache: ModelCache, invoker=None, predictions=None, usage=None,
                 flags: FlagProvider, sink=None, logger=None, clock: Callable[[], float] = time.perf_counter,
                 new_id: Callable[[], str] | None = None, calendars: Optional[CalendarDirectory] = None,
                 lines: Optional[Callable[[str], Any]] = None, events=None, users=None,
                 after: Optional[AfterResponse] = None, settings: Optional[CalendarDirectory] = None):
        self.cfg = cfg
        # the prediction log's DynamoDB write runs after the response (calroute.ports.AfterResponse:
        # in Lambda the opt-in internal extension); None or Immediately: inside the request, where a
        # failed write is this request's metric
        self.after = None if isinstance(after, Immediately) else after
        self._late_failures = 0
        self._late_lock = threading.Lock()
        # "classify and remember" (docs/learning.md): answered events are stored with their answer as a
        # remembered label (EventStore.remember) and counted on the profile (UserStore.bump)
        self.events, self.users = events, users
        self.calendars = calendars
        # the user's settings (remember), a per-user TTL view like the calendars: [settings dict]
        self.settings = settings
        self.cache = cache
        self.invoker = invoker
        self.predictions = predictions
        self.usage = usage
        self.flags = flags
        self.sink = sink or NullSink()
        self.logger = logger
        self.clock = clock
        self.new_id = new_id or (lambda: f"p-{uuid.uuid4().hex}")
        self._pool: Optional[ThreadPoolExecutor] = None
        self._llm_off_until = float("-inf")
        # the prediction log's sampling (calroute.sampling): bucket bounds out of RESOLUTION for the
        # answers the model did not give confidently, and for the confident ones
        self._cut_unsure = cut(cfg.prediction_log_sample_rate)
        self._cut_confident = cut(cfg.prediction_log_sample_rate * cfg.prediction_log_confident_sample_rate)
        # one JSON line per answer (``lines``: a writer such as sys.stdout.write; CloudWatch Logs in Lambda)
        self.lines = lines if getattr(cfg, "prediction_log_lines", True) else None

    # ------------------------------------------------------------------ entry points

    def classify(self, user_id: str, raw_event: Any, *, remember: Optional[bool] = False) -> dict:
        """``remember``: True/False as the request says; None (not said): the user's setting."""
        t0 = self.clock()
        return self.classify_events(user_id, [parse_event(raw_event, field="event")], t0=t0, remember=remember)[0]

    def classify_batch(self, user_id: str, raw_events: Sequence[Any], *,
                       remember: Optional[bool] = False) -> list[dict]:
        from ..errors import PayloadTooLarge

        t0 = self.clock()
        if len(raw_events) > self.cfg.batch_max_events:
            raise PayloadTooLarge(f"at most {self.cfg.batch_max_events} events per batch, got {len(raw_events)}",
                                  field="events")
        return self.classify_events(user_id, parse_events(list(raw_events), field="events"), t0=t0,
                                    remember=remember)

    # ------------------------------------------------------------------ core

    def classify_events(self, user_id: str, events: list[Event], *, t0: Optional[float] = None,
                        remember: Optional[bool] = False) -> list[dict]:
        """``user_id`` must already be validated (``calroute.ids.user_id``). With ``remember`` every
        event needs an ``event_id`` (the store is idempotent by it) and each answer says whether it
        was ``remembered`` (:meth:`_remember`). ``remember=None``: the user's setting
        (:meth:`remember_setting`), under which an event without an id is answered and not kept."""
        t0 = self.clock() if t0 is None else t0
        if remember is None:
            remember = self.remember_setting(user_id)
        elif remember:
            self._check_rememberable(events)
        cfg = self.cfg
        n = len(events)
        cohort = cohort_for(user_id, cfg.experiment_name, cfg.experiment_control_percent)

        # 1. the model, if this request may use one
        lookup = None
        if not self.flags.ml_enabled():
            no_model_reason = "kill_switch"
        elif cohort == CONTROL:
            no_model_reason = "control_cohort"
        else:
            lookup = self.cache.get(user_id)
            if lookup.status == HIT:
                self.sink.add_metric("ModelCacheHit", "Count", 1)
            elif lookup.status == MISS:
                self.sink.add_metric("ModelCacheMiss", "Count", 1)  # ModelLoadMs comes from the cache
            elif lookup.status == FAILED:
                self.sink.add_metric("ModelCacheMiss", "Count", 1)
                if self.logger:
                    self.logger.warning("model unavailable, falling back",
                                        extra={"user": hashed_user(user_id), "model_version": lookup.version,
                                               "error": lookup.error})
            no_model_reason = "no_model" if lookup.model is None and lookup.status != FAILED else "model_unavailable"
        model = lookup.model if lookup is not None else None
        model = serving_view(model, lookup.version if lookup else None, self.calendars, user_id)  # deleted calendars
        version = lookup.version if model is not None else None
        threshold = lookup.threshold if model is not None else None

        probs = top = novelty = anomaly = scores = None
        labels: list[str] = []
        unmet: dict = {}
        if model is not None:
            # tokenise once: the featurizer and the novelty score read the same title tokens
            tokens = [spec_tokens(ev, model.feature_spec) for ev in events]
            probs = model.predict_proba(featurize(events, spec=model.feature_spec, tokens=tokens))
            labels = model.labels
            k = min(TOP_K, probs.shape[1])
            top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
            novelty = model.novelty_of(events, tokens)
            anomaly = model.anomaly_of(events, [labels[j] for j in top[:, 0]], tokens)
            scores = model.routing_scores(probs[np.arange(n), top[:, 0]], novelty, anomaly)
            if self.calendars is not None:
                unmet = unmet_calendars(self.calendars.get(user_id), labels)

        # 2. routing
        llm_ok = self.invoker is not None and self.clock() >= self._llm_off_until
        llm_reason = "llm_not_configured"
        # no model and a single calendar: the fallback could answer nothing else (its candidates are
        # the same registered calendars), so it is not asked
        sole = self._sole_calendar(user_id) if model is None else None
        decisions: list[Decision] = []
        for i in range(n):
            if model is None:
                decisions.append(decide(top_prob=None, threshold=None, llm_available=llm_ok,
                                        llm_unavailable_reason=llm_reason, no_model_reason=no_model_reason,
                                        sole_calendar=sole is not None))
                continue
            nv = novelty[i] if novelty is not None else None
            decisions.append(decide(top_prob=scores[i], threshold=threshold, llm_available=llm_ok,
                                    llm_unavailable_reason=llm_reason, no_model_reason=no_model_reason,
                                    confidence=float(probs[i, top[i, 0]]),
                                    anomalous=anomaly is not None and anomaly[i] >= model.anomaly_veto,
                                    unmet=may_belong_to_unmet(events[i], unmet, nv) is not None))
        # why each deferred event was deferred, before a budget or an LLM failure rewrites the reason
        deferred_why = [d.reason.split("+")[0] for d in decisions]
        need = [i for i, d in enumerate(decisions) if d.call_llm]
        if need and self.usage is not None:
            over = budget_exceeded(self.usage, user_id, cfg)
            if over:
                for i in need:
                    decisions[i] = decisions[i].after_llm(False, "budget")
                need = []
        t_model = self.clock()

        # 3. the LLM for the unsure ones, concurrently
        answers: dict[int, tuple[dict, float]] = {}
        if need:
            answers = self._ask_llm(user_id, events, need, probs, top, labels, version)

        # 4. answers, log, metrics
        results = []
        llm_cost = 0.0
        for i, ev in enumerate(events):
            d = decisions[i]
            alternatives = []
            if model is not None:
                alternatives = [{"calendar_id": labels[j], "probability": round(float(probs[i, j]), 4)}
                                for j in top[i]]
            cal = alternatives[0]["calendar_id"] if alternatives else None
            if d.method == "only_calendar":
                cal = sole
            reason = d.reason
            defer_reason = None if d.method in ("ml", "only_calendar") else deferred_why[i]
            done = t_model
            usd = 0.0
            called = d.call_llm
            if d.call_llm:
                answer, done = answers[i]
                if "calendar_id" in answer and not answer.get("error") and not self._allowed(user_id, answer, labels):
                    answer = {"error": "invalid_answer"}  # a calendar the user does not have: never answered
                if "calendar_id" in answer and not answer.get("error"):
                    d = d.after_llm(True)
                    cal = answer["calendar_id"]
                    reason = str(answer.get("reason", ""))[:200] or "llm"
                    usd = float(answer.get("usd") or 0.0)
                    llm_cost += usd
                else:
                    code = str(answer.get("error") or "llm_failed")
                    d = d.after_llm(False, "budget" if code == "budget" else f"llm_{code}")
                    reason = d.reason
                    cal = alternatives[0]["calendar_id"] if d.method == "ml_low_confidence" else None
            confidence = None
            if model is not None and cal is not None:
                confidence = next((a["probability"] for a in alternatives if a["calendar_id"] == cal), None)
                if confidence is None and cal in labels:
                    confidence = round(float(probs[i, labels.index(cal)]), 4)
            results.append({
                "event_id": ev.event_id or self.new_id(),
                "calendar_id": cal,
                "confidence": confidence,
                "method": d.method,
                "model_version": version,
                "threshold": threshold,
                "alternatives": alternatives,
                "reason": reason,
                "novelty": round(novelty[i], 4) if novelty is not None else None,
                "anomaly": round(anomaly[i], 4) if anomaly is not None else None,
                "defer_reason": defer_reason,
                "cohort": cohort,
                "latency_ms": round((done - t0) * 1000.0, 3),
                "_usd": usd,
                "_llm": called,
            })

        if remember:
            self._remember(user_id, events, results)
        self._emit(results, n, llm_cost, t0)
        self._log(user_id, events, results)
        for r in results:
            r.pop("_usd", None)
            r.pop("_llm", None)
            r.pop("_logged", None)
        return results

    # ------------------------------------------------------------------ helpers

    def remember_setting(self, user_id: str) -> bool:
        """The user's ``remember`` setting (``PUT .../settings``), read once per user and
        ``MODEL_REVALIDATE_SECONDS`` per container (a failed read keeps the last known value, else
        false: the answer says ``remembered`` either way)."""
        if self.settings is None:
            return False
        got = self.settings.get(user_id)
        return bool(got and got[0].get("remember") is True)

    def _sole_calendar(self, user_id: str) -> Optional[str]:
        """The user's calendar when they have exactly one registered (the calendar directory, the
        same list the LLM fallback offers as candidates), else None. An empty list (no calendar
        registered, or a first read that failed) gives None: the LLM is asked, as before; a failed
        re-read keeps the last known list (:class:`calroute.calendars.CalendarDirectory`)."""
        if self.calendars is None:
            return None
        cals = self.calendars.get(user_id)
        return cals[0].calendar_id if len(cals) == 1 else None

    def _check_rememberable(self, events: list[Event]) -> None:
        from ..errors import InvalidInput

        if self.events is None:
            raise InvalidInput("remember is not available here (no event store wired)", field="remember")
        for i, ev in enumerate(events):
            if not ev.event_id:
                where = "event" if len(events) == 1 else f"events[{i}]"
                raise InvalidInput(f"{where}: remember needs an event_id (events are remembered by id)",
                                   field=f"{where}.event_id")

    def _remember(self, user_id: str, events: list[Event], results: list[dict]) -> None:
        """Store each answered event with its answer as a remembered label: provenance ``ml`` (the
        model answered on its own), ``llm`` (the fallback answered) or ``sole`` (``only_calendar``:
        the user's one registered calendar, the only answer there was; it certifies like an import
        unless the user's other labels contradict it, :func:`calroute.schema.resolve_sole_labels`);
        nothing for ``none``, a declined or over-budget fallback (``ml_low_confidence``). The meta
        (margin of the model's top two, novelty, confidence) is what the review queue shows (its
        tilt reads the margin). One
        conditional PutItem per event (never over a user's label) and, for ids not stored before, one
        counter update: only requests that ask for it pay (docs/learning.md measures it)."""
        from ..schema import LABEL_LLM, LABEL_ML, LABEL_SOLE

        # the answering method -> the remembered label's provenance; any other method is not kept
        provenance = {"ml": LABEL_ML, "llm": LABEL_LLM, "llm_only": LABEL_LLM, "only_calendar": LABEL_SOLE}

        answers = []
        for ev, r in zip(events, results):
            r["remembered"] = False
            if r["calendar_id"] is None or r["method"] not in provenance or not ev.event_id:
                continue
            alts = r["alternatives"]
            margin = (alts[0]["probability"] - (alts[1]["probability"] if len(alts) > 1 else 0.0)) if alts else None
            meta = {"method": r["method"], "margin": None if margin is None else round(margin, 4),
                    "novelty": r["novelty"], "confidence": r["confidence"], "model_version": r["model_version"]}
            answers.append((ev.model_copy(update={"calendar_id": r["calendar_id"]}),
                            provenance[r["method"]],
                            {k: v for k, v in meta.items() if v is not None}, r))
        if not answers:
            return
        try:
            new = set(self.events.remember(user_id, [a[:3] for a in answers]))
            if new and self.users is not None:
                per_cal: dict[str, int] = {}
                sole = 0
                for ev, prov, _, _ in answers:
                    if ev.event_id in new:
                        per_cal[ev.calendar_id] = per_cal.get(ev.calendar_id, 0) + 1
                        sole += prov == LABEL_SOLE  # may certify: the gates may pass
                self.users.bump(user_id, events=len(new), calendars=per_cal, labels=sole)
        except Exception as exc:  # noqa: BLE001 - the answer matters more than remembering it
            self.sink.add_metric("RememberFailures", "Count", 1)
            if self.logger:
                self.logger.warning("remember failed", extra={"user": hashed_user(user_id), "error": type(exc).__name__})
            return
        for _, _, _, r in answers:
            r["remembered"] = True
        self.sink.add_metric("Remembered", "Count", len(answers))

    def _allowed(self, user_id: str, answer: dict, labels: list[str]) -> bool:
        """Is the fallback's calendar one of the user's? (the LLM function checks too; this is the
        boundary that receives the answer). Unknown without a directory and without a model."""
        cal = answer.get("calendar_id")
        if not isinstance(cal, str) or not cal:
            return False
        if self.calendars is not None:
            # a deleted calendar is never an answer, even from a calendar list read before its deletion
            # finished (unless the served model, trained after the deletion, has it: ``labels``)
            removed = getattr(self.calendars, "removed", lambda _u: {})(user_id)
            known = {c.calendar_id for c in self.calendars.get(user_id) if c.calendar_id not in removed}
            return cal in known | set(labels)
        return True  # no directory wired (some tests): the LLM function's own check stands

    def _ask_llm(self, user_id: str, events: list[Event], need: list[int], probs, top, labels: list[str],
                 version: Optional[str]) -> dict[int, tuple[dict, float]]:
        def one(i: int) -> tuple[int, dict, float]:
            candidates = []
            if probs is not None:
                candidates = [{"calendar_id": labels[j], "probability": round(float(probs[i, j]), 4)} for j in top[i]]
            payload = {"user_id": user_id, "event": events[i].to_flat(), "candidates": candidates,
                       "model_version": version}
            answer = self.invoker.invoke(payload)
            if not isinstance(answer, dict):
                answer = {"error": "invoke_failed"}
            elif answer.get("error") == "not_configured":
                # the fallback function has no endpoint/key: stop invoking it for a while
                self._llm_off_until = self.clock() + LLM_NOT_CONFIGURED_BACKOFF_S
            return i, answer, self.clock()

        if len(need) == 1:
            i, a, t = one(need[0])
            return {i: (a, t)}
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.cfg.llm_max_concurrency,
                                            thread_name_prefix="llm-fallback")
        return {i: (a, t) for i, a, t in self._pool.map(one, need)}

    def _emit(self, results: list[dict], n: int, llm_cost: float, t0: float) -> None:
        sink = self.sink
        counts: dict[tuple[str, str], int] = {}
        fallbacks = 0
        for r in results:
            key = (r["method"], r["cohort"])
            counts[key] = counts.get(key, 0) + 1
            fallbacks += r["_llm"]
            if r["confidence"] is not None and r["method"] in ("ml", "ml_low_confidence"):
                sink.add_metric("Confidence", "None", r["confidence"])
        for (method, cohort), c in counts.items():
            sink.add_dimensioned("Predictions", "Count", c, {"method": method, "cohort": cohort})
        if fallbacks:
            sink.add_metric("LlmFallbacks", "Count", fallbacks)
        if llm_cost:
            sink.add_metric("LlmCostUsd", "None", llm_cost)
        sink.add_metric("ClassifyLatencyMs", "Milliseconds", (self.clock() - t0) * 1000.0)
        if self.after is not None:
            late = self._take_late_failures()
            if late:
                sink.add_metric("PredictionLogFailures", "Count", late)
        if n > 1:
            sink.add_metric("BatchSize", "Count", n)

    def _log(self, user_id: str, events: list[Event], results: list[dict]) -> None:
        """The prediction record of every answer: kept in the DynamoDB log by the sampling rule of
        :mod:`calroute.sampling` (each item with its ``sample_rate``), and one compact JSON line per
        answer (hashed user and event, no text, no calendar id) when ``lines`` is wired."""
        records = []
        if self.predictions is not None and (self._cut_unsure or self._cut_confident):
            from ..drift import summarize_event

            for ev, r in zip(events, results):
                bound = self._cut_confident if r["method"] in CONFIDENT_METHODS else self._cut_unsure
                if not kept(r["event_id"], bound):
                    r["_logged"] = False
                    continue
                r["_logged"] = True
                records.append({
                    "event_id": r["event_id"], "calendar_id": r["calendar_id"], "confidence": r["confidence"],
                    "method": r["method"], "model_version": r["model_version"], "threshold": r["threshold"],
                    "cohort": r["cohort"], "latency_ms": r["latency_ms"], "reason": r["reason"][:100],
                    "llm_usd": r["_usd"] or None, "drift": summarize_event(ev), "sample_rate": bound / RESOLUTION,
                })
        if self.lines is not None:
            self._lines(user_id, results)
        if not records:
            return
        if self.after is None:
            if not self._put_log(user_id, records):
                self.sink.add_metric("PredictionLogFailures", "Count", 1)
            return
        self.after.defer(functools.partial(self._put_log_late, user_id, records))

    def _put_log(self, user_id: str, records: list[dict]) -> bool:
        try:
            self.predictions.put_many(user_id, records)
            return True
        except Exception as exc:  # noqa: BLE001 - the answer matters more than its log line
            if self.logger:
                self.logger.warning("prediction log write failed",
                                    extra={"user": hashed_user(user_id), "error": type(exc).__name__})
            return False

    def _put_log_late(self, user_id: str, records: list[dict]) -> None:
        """The deferred write (after the response): a failure is counted here and reported with the
        next request's metrics (this request's are already flushed)."""
        if not self._put_log(user_id, records):
            with self._late_lock:
                self._late_failures += 1

    def _take_late_failures(self) -> int:
        with self._late_lock:
            n, self._late_failures = self._late_failures, 0
        return n

    def _lines(self, user_id: str, results: list[dict]) -> None:
        """``{"record": "prediction", ...}`` per answer, for a CloudWatch Logs subscription filter
        (``{ $.record = "prediction" }``) → Firehose → S3 (docs/serving.md). ~10 µs an answer."""
        user = hashed_user(user_id)
        out = []
        for r in results:
            out.append(json.dumps({
                "record": "prediction", "user": user, "event": hashed_user(r["event_id"]),
                "method": r["method"], "defer_reason": r["defer_reason"], "confidence": r["confidence"],
                "threshold": r["threshold"], "novelty": r["novelty"], "anomaly": r["anomaly"],
                "model_version": r["model_version"], "cohort": r["cohort"], "latency_ms": r["latency_ms"],
                "llm": r["_llm"], "llm_usd": r["_usd"] or None, "logged": r.get("_logged", False),
            }, separators=(",", ":")))
        try:
            self.lines("\n".join(out) + "\n")
        except Exception:  # noqa: BLE001 - never fail an answer for its log line
            self.sink.add_metric("PredictionLogFailures", "Count", 1)
