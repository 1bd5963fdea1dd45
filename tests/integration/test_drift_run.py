"""Drift in training runs, end to end against moto (resources from template.yaml): TrainUser stores
the training reference on the candidate, the model is validated and promoted by the real states,
requests are classified by the real predict service (their text-free summaries logged), and the next
scheduled Plan measures drift: a user whose requests shift is flagged on the registry and planned with
reason drift; a stable user is not; Summarize emits DriftPsi (no user dimension)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from calroute import wiring
from calroute.adapters.dynamo.registry import DynamoRegistry
from calroute.config import settings
from calroute.schema import parse_event
from calroute.services.training import plan as plan_step
from calroute.services.training import promote as promote_step
from calroute.services.training import summarize as summarize_step
from calroute.services.training import train_user as train_step
from calroute.services.training import validate as validate_step

WORK = ["standup", "sprint", "review", "roadmap", "client", "deploy", "retro", "planning"]
HOME = ["dentist", "groceries", "yoga", "dinner", "laundry", "birthday", "gym", "plumber"]
NEW = ["festival", "concert", "marathon", "wedding", "camping", "regatta", "exhibition", "harvest"]


def _events(prefix: str, n_per_cal: int, seed: int, *, shifted: bool = False, labelled: bool = True) -> list:
    rng = random.Random(seed)
    base = datetime(2026, 1, 5, tzinfo=timezone.utc)  # a Monday
    out = []
    for cal, words in (("work", WORK), ("home", HOME)):
        for i in range(n_per_cal):
            day = base + timedelta(days=7 * rng.randrange(20))
            if shifted:  # all-day weekend events with words the model never saw
                start = day + timedelta(days=5 + rng.randrange(2))
                ev = {"summary": " ".join(rng.sample(NEW, 2)), "start": start.date().isoformat(), "all_day": True}
            elif cal == "work":  # weekday office hours
                start = day + timedelta(days=rng.randrange(5), hours=9 + rng.randrange(3))
                ev = {"summary": " ".join(rng.sample(words, 2)), "start": start.isoformat(),
                      "end": (start + timedelta(minutes=60)).isoformat(), "location": "Office"}
            else:  # evenings
                start = day + timedelta(days=rng.randrange(5), hours=18 + rng.randrange(2))
                ev = {"summary": " ".join(rng.sample(words, 2)), "start": start.isoformat(),
                      "end": (start + timedelta(minutes=60)).isoformat()}
            ev["event_id"] = f"{prefix}-{cal}-{i}"
            if labelled:
                ev["calendar_id"] = cal
            out.append(parse_event(ev))
    return out


class Metrics:
    def __init__(self):
        self.values: dict[str, list] = {}

    def add_metric(self, name, unit, value):
        self.values.setdefault(name, []).append(value)


@pytest.fixture
def world(aws):
    cfg = settings()
    repos = wiring.stores(cfg)
    return cfg, repos


def _train_and_promote(users: list[str], cfg, repos) -> dict:
    planned = plan_step.plan({"trigger": "schedule"}, repos, cfg)
    items = repos.models.get_json(planned["key"])
    assert sorted(i["user_id"] for i in items) == sorted(users)
    out = {}
    for it in items:
        r = train_step.train_user(it, repos, cfg)
        assert r["status"] == "candidate", r
        rec = repos.registry.get_version(it["user_id"], r["version"])
        ref = rec["drift_reference"]
        assert ref["n"] == 200 and set(ref["groups"]) == {"time", "shape", "tokens"}
        assert ref["labels"] == {"work": 100, "home": 100}
        r = validate_step.validate(r, repos, cfg)
        assert r["status"] == "valid", r
        r = promote_step.promote(r, repos, cfg)
        assert r["status"] == "promoted", r
        out[it["user_id"]] = r["version"]
    return out


def _classify(user: str, events: list, cfg) -> None:
    svc = wiring.predict_service(cfg)  # no LLM configured: the model answers or flags low confidence
    for i in range(0, len(events), 50):
        results = svc.classify_events(user, events[i:i + 50])
        assert all(r["model_version"] for r in results)


def test_shifted_requests_flag_drift_and_schedule_retraining(world):
    cfg, repos = world
    for u, seed in (("stable", 1), ("shifty", 2), ("quiet", 3)):
        evs = _events(u, 100, seed)
        repos.events.put_events(u, evs)
        repos.users.bump(u, events=len(evs))
    versions = _train_and_promote(["stable", "shifty", "quiet"], cfg, repos)

    _classify("stable", _events("req-s", 100, 11, labelled=False), cfg)
    _classify("shifty", _events("req-x", 100, 12, shifted=True, labelled=False), cfg)
    # below DRIFT_MIN_SAMPLES (100): PSI on so few requests is mostly sampling noise
    _classify("quiet", _events("req-q", 50, 13, labelled=False)[: cfg.drift_min_samples - 1], cfg)

    plan = plan_step.plan({"trigger": "schedule"}, repos, cfg, now=datetime.now(timezone.utc) + timedelta(hours=1))
    planned = {i["user_id"]: i["reason"] for i in repos.models.get_json(plan["key"])}
    assert planned == {"shifty": "drift detected on the active model"}
    assert plan["drift"]["checked"] == 2 and plan["drift"]["drifted"] == 1 and plan["drift"]["insufficient"] == 1
    assert plan["drift"]["max_psi"] > 0.15

    reg: DynamoRegistry = repos.registry
    shifty, stable, quiet = reg.active("shifty"), reg.active("stable"), reg.active("quiet")
    assert shifty["drifted"] is True and shifty["drift"]["max"] > 0.15 and shifty["drift"]["n"] == 200
    assert shifty["drift"]["version"] == versions["shifty"] and shifty["drift_at"]
    assert set(shifty["drift"]["psi"]) == {"time", "shape", "tokens"}
    assert stable["drifted"] is False and stable["drift"]["max"] <= 0.15, stable["drift"]
    assert "drifted" not in quiet  # too few requests: nothing concluded, nothing written
    assert reg.get_version("shifty", versions["shifty"])["drifted"] is True  # and on the version record

    # the models API reports it
    from calroute.services.models import ModelsService

    assert ModelsService(repos, cfg).status("shifty")["drifted"] is True

    # Summarize: DriftPsi (the run's max) and the drifted count; no user dimension anywhere
    metrics = Metrics()
    out = summarize_step.summarize({**plan, "results": []}, repos, cfg, metrics=metrics)
    assert metrics.values["DriftPsi"] == [pytest.approx(plan["drift"]["max_psi"])]
    assert metrics.values["DriftUsersDrifted"] == [1]
    assert reg.get_run(plan["run_id"])["drift"]["drifted"] == 1 and out["drift"]["checked"] == 2

    # retrained on the new data and promoted: the new ACTIVE carries no flag, the policy is satisfied
    new = _events("new", 100, 5, shifted=True)
    repos.events.put_events("shifty", [e.model_copy(update={"calendar_id": "home" if i % 2 else "work"})
                                          for i, e in enumerate(new)])
    r = train_step.train_user({"user_id": "shifty", "run_id": plan["run_id"]}, repos, cfg)
    r = promote_step.promote(validate_step.validate(r, repos, cfg), repos, cfg)
    assert r["status"] in ("promoted", "rejected"), r
    if r["status"] == "promoted":
        assert "drifted" not in reg.active("shifty")
    plan2 = plan_step.plan({"trigger": "schedule"}, repos, cfg)
    assert "shifty" not in {i["user_id"] for i in repos.models.get_json(plan2["key"])}


def test_a_stale_report_is_not_written_over_a_newer_model(world):
    cfg, repos = world
    evs = _events("u", 100, 4)
    repos.events.put_events("u", evs)
    repos.users.bump("u", events=len(evs))
    v1 = _train_and_promote(["u"], cfg, repos)["u"]
    reg: DynamoRegistry = repos.registry
    assert reg.mark_drift("u", "v20000101000000-000000", {"drifted": True, "max": 0.9}, at="x") is False
    assert "drifted" not in reg.active("u")
    assert reg.mark_drift("u", v1, {"drifted": False, "max": 0.01}, at="t") is True
    assert reg.active("u")["drifted"] is False


def test_explicit_training_requests_skip_the_drift_monitor(world):
    cfg, repos = world
    out = plan_step.plan({"trigger": "api", "user_ids": ["alice"]}, repos, cfg)
    assert "drift" not in out and out["count"] == 1
