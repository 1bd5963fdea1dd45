"""The retraining policy: does a user need a (new) model?

A user needs training when

1. they were never trained and can train (the data gates pass);
2. their last training is older than ``retrain_max_age_days`` (30);
3. ``retrain_new_events`` (50) or more events arrived since the last training (the users PROFILE
   ``events_total`` vs the ``events_total_at_training`` recorded on the model version);
4. ``retrain_corrections`` (10) or more corrections were recorded since the last training
   (``corrections_total`` vs ``corrections_total_at_training``), or ``retrain_confident_misses`` (1)
   of them corrected the model's own answer (``confident_misses_total`` vs
   ``confident_misses_total_at_training``): the model was sure and wrong, so the next run learns
   the user's label instead of repeating the answer until ten corrections pile up;
5. a drift monitor flagged the active model (``drifted`` on the registry ACTIVE item or on the
   version record) and no training happened since the flag was set;
6. a calendar the last training did not know (not in its ``labels``) has ``min_per_calendar`` (5)
   or more events (the users PROFILE ``calev#<calendarId>`` counters): until then its events go to
   the LLM (:mod:`calroute.calendars`), after it the model can answer with it;
7. a retrain was requested after the last training (``retrain_requested_at`` on the PROFILE: a
   calendar was deleted, :mod:`calroute.services.lifecycle`).

"The last training" is the newest model version of the user, whatever became of it (active,
archived, rejected, conflict): a candidate that lost to the champion is not retrained every night,
only once new data (or age) says so. Pure functions: ``now`` is injected.

**A run the data gates stopped is not repeated on the same labels.** The gates count the user's
trusted labels (``user``, ``confirmed``, ``sole``), which the profile's ``events_total`` does not
tell apart from remembered LLM answers: a user who classifies with ``remember`` and has not
imported enough labels would otherwise be sent to TrainUser every night, to read all their events
and stop at the gates again. TrainUser records the stop (:func:`gate_skip_record`: the profile's
``labels_total``, read *before* the events, and the gates); the planner skips the user while
:func:`gate_memo_holds` — no write that could change the trusted labels since
(``labels_total``), the same gates and ``TRAINING_MAX_EVENTS``, and for at most
``retrain_max_age_days`` (any change the counter misses heals by then).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from .config import Settings
from .timeutil import parse_ts

#: Profile attribute prefix of the per-calendar event counters (the users table adapter writes them).
CALENDAR_COUNT_PREFIX = "calev#"
NEVER_TRAINED = "never trained"
UP_TO_DATE = "up to date"


def trained_at(record: dict) -> Optional[datetime]:
    """When a version was trained (``trained_at``, else its registry ``created_at``)."""
    return parse_ts(record.get("trained_at")) or parse_ts(record.get("created_at"))


def latest_training(versions: list[dict]) -> Optional[dict]:
    """The newest version record (version ids sort by time), or None."""
    return max(versions, key=lambda r: r.get("version", "")) if versions else None


def needs_training(*, profile: dict, active: Optional[dict], last: Optional[dict], cfg: Settings,
                   now: datetime, can_train: tuple[bool, str] = (True, ""),
                   gate_memo: Optional[dict] = None) -> tuple[bool, str]:
    """Decide for one user. Returns ``(needs, reason)``.

    ``profile``: the users PROFILE item (``events_total``, ``corrections_total``); ``active``: the
    registry ACTIVE item or None; ``last``: the newest model version record (see
    :func:`latest_training`) or None; ``can_train``: the gates' verdict ``(ok, reason)`` — only
    consulted for users never trained (callers may pass a cheap counter-based check);
    ``gate_memo``: the registry's record of the last run the gates stopped (a needed run waits
    while :func:`gate_memo_holds`).
    """
    need, reason = _needs_training(profile=profile, active=active, last=last, cfg=cfg, now=now,
                                   can_train=can_train)
    if need:
        held, why = gate_memo_holds(gate_memo, profile, cfg, now)
        if held:
            return False, why
    return need, reason


def _needs_training(*, profile: dict, active: Optional[dict], last: Optional[dict], cfg: Settings,
                    now: datetime, can_train: tuple[bool, str]) -> tuple[bool, str]:
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    if last is None and active is None:
        ok, why = can_train
        return (True, NEVER_TRAINED) if ok else (False, f"cannot train yet: {why}")
    ref = last or active or {}
    ref_at = trained_at(ref) or parse_ts((active or {}).get("promoted_at"))

    # drift hook: a flag on the active pointer (or its version record) not yet answered by a newer
    # training attempt
    if active is not None:
        flagged = bool(active.get("drifted")) or bool(
            last is not None and last.get("version") == active.get("version") and last.get("drifted"))
        newer = last is not None and last.get("version", "") > active.get("version", "")
        if flagged and not newer:
            return True, "drift detected on the active model"

    if ref_at is not None:
        age_days = (now - ref_at).total_seconds() / 86400.0
        if age_days >= cfg.retrain_max_age_days:
            return True, f"last training is {age_days:.0f} days old (max {cfg.retrain_max_age_days})"

    events_total = int(profile.get("events_total") or 0)
    at_events = ref.get("events_total_at_training")
    if at_events is not None:
        new_events = events_total - int(at_events)
        if new_events >= cfg.retrain_new_events:
            return True, f"{new_events} new events since training (threshold {cfg.retrain_new_events})"

    known = ref.get("labels")
    if known is not None:
        fresh = {k[len(CALENDAR_COUNT_PREFIX):]: int(v or 0) for k, v in profile.items()
                 if isinstance(k, str) and k.startswith(CALENDAR_COUNT_PREFIX)}
        ready = sorted(c for c, n in fresh.items() if c not in set(known) and n >= cfg.min_per_calendar)
        if ready:
            return True, (f"new calendar {ready[0]} has {fresh[ready[0]]} events (threshold {cfg.min_per_calendar})"
                          if len(ready) == 1 else f"{len(ready)} new calendars with {cfg.min_per_calendar}+ events")

    requested = parse_ts(profile.get("retrain_requested_at"))
    if requested is not None and (ref_at is None or requested > ref_at):
        return True, f"retrain requested: {str(profile.get('retrain_reason') or 'data removed')[:100]}"

    corrections_total = int(profile.get("corrections_total") or 0)
    at_corr = ref.get("corrections_total_at_training")
    if at_corr is not None:
        new_corr = corrections_total - int(at_corr)
        if new_corr >= cfg.retrain_corrections:
            return True, f"{new_corr} corrections since training (threshold {cfg.retrain_corrections})"
    at_miss = ref.get("confident_misses_total_at_training")
    if at_miss is not None:
        new_miss = int(profile.get("confident_misses_total") or 0) - int(at_miss)
        if new_miss >= cfg.retrain_confident_misses:
            return True, (f"{new_miss} of the model's own answers corrected since training "
                          f"(threshold {cfg.retrain_confident_misses})")
    return False, UP_TO_DATE


def gates_key(cfg: Settings) -> str:
    """The data gates a skip was decided under (``min_events/min_calendars/min_per_calendar/max``)."""
    return f"{cfg.min_events}/{cfg.min_calendars}/{cfg.min_per_calendar}/{cfg.max_train_events}"


def gate_skip_record(profile: dict, cfg: Settings, *, reason: str, now: datetime) -> dict:
    """What TrainUser records when the gates stop a run (``profile`` read before the events)."""
    return {"reason": reason[:300], "at": now.isoformat(), "labels_total": int(profile.get("labels_total") or 0),
            "gates": gates_key(cfg)}


def gate_memo_holds(memo: Optional[dict], profile: dict, cfg: Settings, now: datetime) -> tuple[bool, str]:
    """``(True, reason)`` when the last run the gates stopped (``memo``) still decides: no label
    write since (the profile's ``labels_total`` unchanged), the same gates, younger than
    ``retrain_max_age_days``; else ``(False, "")``."""
    if not memo:
        return False, ""
    at = parse_ts(memo.get("at"))
    if at is None or memo.get("gates") != gates_key(cfg):
        return False, ""
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    if (now - at).total_seconds() >= cfg.retrain_max_age_days * 86400.0:
        return False, ""
    if int(profile.get("labels_total") or 0) != int(memo.get("labels_total") or 0):
        return False, ""
    return True, (f"cannot train yet: {memo.get('reason')} "
                  f"(no new labels since {at.date().isoformat()})")


def counter_gate(profile: dict, cfg: Settings) -> tuple[bool, str]:
    """A cheap pre-check of the data gates from the profile counters alone (the planner uses it to
    avoid reading every never-trained user's events; TrainUser runs the real gates)."""
    n = int(profile.get("events_total") or 0)
    if n < cfg.min_events:
        return False, f"only {n} labelled events (need {cfg.min_events})"
    return True, ""
