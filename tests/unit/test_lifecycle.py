"""The user's data lifecycle (issue 17) on the in-memory fakes: list, delete events and calendars,
the serving filter of deleted calendars, export round trip, erasure (idempotent, resumable after a
partial failure, audited under a keyed hash). The same port methods run against moto in
tests/integration/test_adapters.py and through the handler in tests/integration/test_data_api.py."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from calroute import forget, wiring
from calroute.config import Settings
from calroute.errors import InvalidInput, NotFound, ServiceUnavailable
from calroute.removed import RestrictedModel, dropped_labels, renormalise, serving_view, version_time
from calroute.retrain import needs_training
from calroute.services.training.train_user import train_user
from calroute.services.lifecycle import ERASE_STEPS, replay, resolve_hmac_key, user_digest
from support.fakes import fake_stores
from support.models import FakeTrainer, make_events
from test_services import install

pytestmark = pytest.mark.usefixtures("no_network")

U = "alice"
CFG = Settings(auth_mode="none", prediction_log_confident_sample_rate=1.0)  # every answer logged: erase must find it


def seeded(calendars=("home", "kids", "work"), per_calendar: int = 20, user: str = U):
    stores = fake_stores()
    ingest = wiring.ingest_service(CFG, stores=stores)
    events = [e.to_flat() for e in make_events(calendars, per_calendar)]
    ingest.ingest_events(user, events)
    svc = wiring.lifecycle_service(CFG, stores=stores)
    svc.sleep = lambda seconds: None  # the DELETE's wait for other containers: tested with a clock below
    return stores, svc, events


# ----------------------------------------------------------------------------- list


def test_calendars_list_counts_and_events_page_newest_first():
    stores, svc, events = seeded(per_calendar=7)
    cals = svc.list_calendars(U)["calendars"]
    assert [(c["calendar_id"], c["events"]) for c in cals] == [("home", 7), ("kids", 7), ("work", 7)]
    seen, cursor = [], None
    while True:
        page = svc.list_events(U, cursor=cursor, limit=4)
        seen += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert page["count"] == 4
    assert len(seen) == 21 and len({e["event_id"] for e in seen}) == 21
    starts = [datetime.fromisoformat(e["start"]) for e in seen]
    assert starts == sorted(starts, reverse=True)
    only = svc.list_events(U, calendar_id="kids", limit=200)
    assert only["count"] == 7 and {e["calendar_id"] for e in only["events"]} == {"kids"}
    assert only["next_cursor"] is None
    assert svc.list_events("bob")["events"] == [] and svc.list_calendars("bob") == {"calendars": []}
    with pytest.raises(InvalidInput) as exc:
        svc.list_events(U, cursor="not-a-cursor!")
    assert exc.value.field == "cursor"


# ----------------------------------------------------------------------------- delete


def test_deleting_an_event_removes_it_and_its_corrections_and_counts_toward_retraining():
    stores, svc, _ = seeded()
    ingest = wiring.ingest_service(CFG, stores=stores)
    ingest.correct_event(U, "work-1", "home")
    stores.predictions.put_many(U, [{"event_id": "work-1", "calendar_id": "work", "method": "ml"}])
    before = stores.users.profile(U)["corrections_total"]
    out = svc.delete_event(U, "work-1")
    assert out == {"event_id": "work-1", "deleted": True, "corrections_deleted": 1, "predictions_deleted": 1}
    assert stores.events.get_event(U, "work-1") is None
    assert [c for c in stores.users.corrections(U) if c["event_id"] == "work-1"] == []
    assert stores.predictions.get(U, "work-1") is None
    assert stores.users.profile(U)["corrections_total"] == before + 1
    with pytest.raises(NotFound) as exc:  # documented: a second delete is 404 event_not_found
        svc.delete_event(U, "work-1")
    assert exc.value.code == "event_not_found"


def test_deleted_events_are_not_in_the_next_training_set():
    stores, svc, _ = seeded()
    for eid in ("work-0", "home-3", "kids-5"):
        svc.delete_event(U, eid)
    seen = {}

    class Recording(FakeTrainer):
        def train_user_model(self, events, cfg, **kw):
            seen["ids"] = {e.event_id for e in events}
            return super().train_user_model(events, cfg, **kw)

    out = train_user({"user_id": U, "run_id": "r1", "reason": "test"}, stores, CFG, trainer=Recording())
    assert out["status"] == "candidate"
    assert len(seen["ids"]) == 57 and not seen["ids"] & {"work-0", "home-3", "kids-5"}


def test_deleting_a_calendar_removes_it_its_events_and_queues_a_retrain():
    stores, svc, _ = seeded()
    install(stores, calendars=("home", "kids", "work"))
    stores.predictions.put_many(U, [{"event_id": "kids-1", "calendar_id": "kids", "method": "ml"}])
    out = svc.delete_calendar(U, "kids")
    assert out["deleted"] and out["events_deleted"] == 20 and out["events_moved"] == 0 and out["retrain_requested"]
    assert [c.calendar_id for c in stores.users.calendars(U)] == ["home", "work"]
    assert not [e for e in stores.events.list_events(U) if e.calendar_id == "kids"]
    assert stores.predictions.get(U, "kids-1") is None
    profile = stores.users.profile(U)
    assert "calev#kids" not in profile  # else the planner would see a "new calendar" forever
    assert stores.users.removed_calendars(U) == {"kids": out["removed_at"]}
    # the planner retrains: the request is newer than the last training
    last = stores.registry.versions(U)[-1]
    need, why = needs_training(profile=profile, active=stores.registry.active(U), last=last, cfg=CFG,
                               now=datetime.now(timezone.utc))
    assert need and "calendar kids deleted" in why
    # ...and a training after the request satisfies it
    later = {**last, "trained_at": (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat(),
             "events_total_at_training": profile["events_total"], "corrections_total_at_training": profile["corrections_total"],
             "labels": ["home", "work"]}
    assert needs_training(profile=profile, active=stores.registry.active(U), last=later, cfg=CFG,
                          now=datetime.now(timezone.utc))[0] is False
    with pytest.raises(NotFound) as exc:
        svc.delete_calendar(U, "kids")
    assert exc.value.code == "calendar_not_found"


def test_deleting_a_calendar_with_move_to_relabels_its_events():
    stores, svc, _ = seeded()
    out = svc.delete_calendar(U, "kids", move_to="family")
    assert out["events_moved"] == 20 and out["events_deleted"] == 0 and out["moved_to"] == "family"
    labels = {e.calendar_id for e in stores.events.list_events(U)}
    assert labels == {"home", "work", "family"}
    assert [c.calendar_id for c in stores.users.calendars(U)] == ["family", "home", "work"]
    with pytest.raises(InvalidInput):
        svc.delete_calendar(U, "home", move_to="home")


# ----------------------------------------------------------------------------- serving


class _Model:
    labels = ["home", "kids", "work"]
    feature_spec = 2

    def predict_proba(self, X):
        return np.array([[0.2, 0.7, 0.1], [0.0, 1.0, 0.0]], dtype=np.float32)


def test_renormalise_and_the_restricted_view():
    p = renormalise(np.array([[0.2, 0.7, 0.1], [0.0, 1.0, 0.0]]), np.array([0, 2]))
    assert np.allclose(p, [[2 / 3, 1 / 3], [0.5, 0.5]]) and np.allclose(p.sum(axis=1), 1)
    view = RestrictedModel(_Model(), [0, 2])
    assert view.labels == ["home", "work"] and view.feature_spec == 2
    assert view.predict_proba(None).shape == (2, 2)
    assert version_time("v20260101000001-000001") == datetime(2026, 1, 1, 0, 0, 1, tzinfo=timezone.utc)
    assert version_time("garbage") is None
    removed = {"kids": "2026-06-01T00:00:00+00:00"}
    assert dropped_labels(_Model.labels, "v20260101000001-000001", removed) == {"kids"}
    assert dropped_labels(_Model.labels, "v20260701000001-000001", removed) == set()  # trained after: as is
    assert dropped_labels(_Model.labels, None, removed) == {"kids"}  # unknown age: never answer it

    class Dir:
        def __init__(self, r):
            self.r = r

        def removed(self, user):
            return self.r

    m = _Model()
    assert serving_view(m, "v20260101000001-000001", None, U) is m
    assert serving_view(m, "v20260101000001-000001", Dir({}), U) is m
    assert serving_view(m, "v20260101000001-000001", Dir({c: "2026-06-01" for c in m.labels}), U) is None


def test_after_a_calendar_is_deleted_no_answer_names_it_even_before_retraining():
    stores, svc, events = seeded()
    install(stores, calendars=("home", "kids", "work"))
    predict = wiring.predict_service(CFG, stores=stores, invoker=None)
    kids = [{k: v for k, v in e.items() if k != "calendar_id"} for e in events if e["calendar_id"] == "kids"]
    before = predict.classify_batch(U, kids)
    assert sum(r["calendar_id"] == "kids" for r in before) >= 15  # the model knows the calendar
    svc.delete_calendar(U, "kids")  # same container: the predict caches forget the user at once
    after = predict.classify_batch(U, kids)
    assert len(after) == 20
    for r in after:
        assert r["calendar_id"] != "kids"
        assert "kids" not in {a["calendar_id"] for a in r["alternatives"]}
        assert abs(sum(a["probability"] for a in r["alternatives"]) - 1.0) < 1e-3  # renormalised over 2
    assert predict.classify(U, {"summary": "sprint standup", "start": "2026-03-03T10:00:00Z"})["calendar_id"] == "work"


def test_the_llm_is_never_offered_a_deleted_calendar():
    stores, svc, events = seeded()
    install(stores, calendars=("home", "kids", "work"))
    asked = []

    class Invoker:
        def invoke(self, payload):
            asked.append(payload)
            return {"calendar_id": "kids", "reason": "stale", "usd": 0.0}

    cfg = Settings(auth_mode="none", target_precision=0.95)
    predict = wiring.predict_service(cfg, stores=stores, invoker=Invoker())
    svc.delete_calendar(U, "kids")
    out = predict.classify(U, {"event_id": "x", "summary": "zzz qqq", "start": "2026-03-03T03:00:00Z"})
    assert out["calendar_id"] != "kids"
    for p in asked:
        assert "kids" not in {c["calendar_id"] for c in p["candidates"]}


class Clock:
    """One monotonic clock for every "container" of a test; ``sleep`` advances it."""

    def __init__(self):
        self.t, self.slept = 1000.0, []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += seconds


def other_container(stores, cfg, clock, invoker=None):
    """A second predict container on the same stores: its own model cache and calendar directory on
    ``clock``, NOT registered with :mod:`calroute.forget` (the DELETE's ``forget_user`` reaches only
    the container that served it)."""
    from calroute.cache import ModelCache
    from calroute.policy import flag_provider
    from calroute.removed import LifecycleDirectory
    from calroute.services.predict import PredictService

    cache = ModelCache.from_settings(cfg, stores.registry, stores.models, clock=clock)
    directory = LifecycleDirectory(stores.users.calendars, stores.users.removed_calendars,
                                   ttl=cfg.model_revalidate_seconds, clock=clock)
    return PredictService(cfg, cache=cache, invoker=invoker, predictions=stores.predictions, usage=stores.usage,
                          flags=flag_provider(cfg), calendars=directory)


class RecordingLlm:
    """The LLM: answers ``kids`` whenever it is offered it (else the first calendar it may name)."""

    def __init__(self):
        self.asked = []

    def complete(self, *, model, messages, response_format):
        from calroute.llm.types import LlmReply

        enum = response_format["json_schema"]["schema"]["properties"]["calendar_id"]["enum"]
        self.asked.append({"enum": enum, "data": messages[-1]["content"]})
        pick = "kids" if "kids" in enum else enum[0]
        return LlmReply(content=json.dumps({"calendar_id": pick, "reason": "asked"}), input_tokens=10, output_tokens=3)


def test_a_calendar_deleted_through_one_container_is_never_answered_by_another():
    """Issue 17 item 2 across containers: container B is warm (model, calendar list, tombstones, the
    LLM fallback's example cache all cached) when the DELETE is served by container A. From the
    moment the DELETE answers, B never names the calendar over a batch of its own events: not as the
    model's answer or an alternative, not among the LLM's candidates, calendars or similar examples.
    The DELETE answers only once B's tombstone view (REMOVED_CHECK_SECONDS) has expired."""
    from calroute.forget import REMOVED_CHECK_SECONDS
    from calroute.services.llm_fallback import FallbackService

    stores, _, events = seeded()
    record = install(stores, calendars=("home", "kids", "work"))
    # a strict threshold: most events go to the LLM with the model's candidates
    stores.registry.activate(U, {**record, "threshold": 0.999}, expected_version=record["version"],
                             actor="test", reason="test")
    cfg = Settings(auth_mode="none", openai_base_url="http://127.0.0.1:9/v1", llm_max_concurrency=1)
    clock = Clock()
    llm = RecordingLlm()
    fallback = FallbackService(cfg, client_factory=lambda: llm, users=stores.users, events=stores.events,
                               registry=stores.registry, usage=stores.usage)
    payloads = []

    class Invoker:  # the LLM fallback function, in-process
        def invoke(self, payload):
            payloads.append(payload)
            return fallback.handle(payload)

    b = other_container(stores, cfg, clock, Invoker())
    kids = [{k: v for k, v in e.items() if k != "calendar_id"} for e in events if e["calendar_id"] == "kids"]
    before = b.classify_batch(U, kids)
    assert sum(r["calendar_id"] == "kids" for r in before) >= 15  # B knows the calendar...
    assert any(r["method"] == "llm" for r in before) and any("kids" in a["enum"] for a in llm.asked)
    assert any('"kids"' in a["data"] for a in llm.asked)  # ...and its examples are in the LLM's cache

    a_side = wiring.lifecycle_service(CFG, stores=stores)
    a_side.monotonic, a_side.sleep = clock, clock.sleep
    a_side.delete_calendar(U, "kids")
    # the fakes are instant: the DELETE waited (almost) the whole interval before answering
    assert clock.slept and 0 < sum(clock.slept) <= REMOVED_CHECK_SECONDS
    assert clock.t - 1000.0 < cfg.model_revalidate_seconds  # B's model and calendar list: still cached

    payloads.clear()
    llm.asked.clear()
    after = b.classify_batch(U, kids) + [b.classify(U, e) for e in kids[:5]]
    assert len(after) == 25 and payloads and llm.asked  # the LLM was asked about them
    for r in after:
        assert r["calendar_id"] != "kids", r
        assert "kids" not in {x["calendar_id"] for x in r["alternatives"]}
        assert r["calendar_id"] in {"home", "work", None}
    for p in payloads:
        assert "kids" not in {c["calendar_id"] for c in p["candidates"]}
    for asked in llm.asked:
        assert "kids" not in asked["enum"] and '"kids"' not in asked["data"]  # nor a similar example
    # B read its calendar list again with the new tombstone (else, for up to MODEL_REVALIDATE_SECONDS,
    # "kids" would look like a calendar the model has not met and send events to the LLM)
    assert "kids" not in {c.calendar_id for c in b.calendars.get(U)}


def test_another_container_refuses_a_deleted_calendar_from_a_list_read_mid_deletion():
    """B re-reads the calendar list when it sees the tombstone, possibly before the deletion removed
    the calendar item: an answer naming the calendar (a fallback that trusts a stale list) is still
    refused at predict's boundary."""
    stores, _, events = seeded()
    record = install(stores, calendars=("home", "kids", "work"))
    stores.registry.activate(U, {**record, "threshold": 0.999}, expected_version=record["version"],
                             actor="test", reason="test")
    clock = Clock()

    class Stale:
        def invoke(self, payload):
            return {"calendar_id": "kids", "reason": "stale", "usd": 0.0}

    b = other_container(stores, Settings(auth_mode="none"), clock, Stale())
    ev = {"event_id": "k", "summary": "zzz qqq", "start": "2026-03-03T03:00:00Z"}
    assert b.classify(U, ev)["calendar_id"] == "kids"  # the calendar exists: accepted
    stores.users.mark_calendar_removed(U, "kids", at="2026-12-01T00:00:00+00:00")  # deletion under way
    assert "kids" in {c.calendar_id for c in stores.users.calendars(U)}
    clock.sleep(1.0)
    out = b.classify(U, ev)
    assert out["calendar_id"] != "kids" and "llm_invalid_answer" in out["reason"], out


def test_the_llm_is_not_offered_a_deleted_calendar_from_the_models_labels():
    """A user without registered calendars: the fallback offers the ACTIVE model's labels, which
    outlive a deletion until the retrain: the deleted one is not among them."""
    stores = fake_stores()
    install(stores, calendars=("home", "kids", "work"))
    for cal in ("home", "kids", "work"):
        stores.users.delete_calendar(U, cal)
    fallback = wiring.fallback_service(CFG, stores=stores, client_factory=RecordingLlm)
    assert [c.calendar_id for c in fallback._calendars(U)] == ["home", "kids", "work"]
    stores.users.mark_calendar_removed(U, "kids", at="2026-12-01T00:00:00+00:00")
    assert [c.calendar_id for c in fallback._calendars(U)] == ["home", "work"]


# ----------------------------------------------------------------------------- export


def test_export_round_trips_into_a_new_user_that_trains_the_same_calendars():
    stores, svc, _ = seeded()
    wiring.ingest_service(CFG, stores=stores).put_calendar(U, "work", "Work", "the office")
    wiring.ingest_service(CFG, stores=stores).correct_event(U, "home-2", "work")
    install(stores, calendars=("home", "kids", "work"))
    stores.predictions.put_many(U, [{"event_id": "p1", "calendar_id": "work", "method": "ml"}])
    stores.usage.add(U, usd=0.01, input_tokens=10, output_tokens=2)
    lines = [json.loads(json.dumps(x, default=str)) for x in svc.export(U)]
    types = {x["type"] for x in lines}
    assert {"export", "profile", "calendar", "event", "correction", "model", "active_model", "model_audit",
            "prediction", "usage"} <= types
    assert not [x for x in lines if "user_id" in x]  # partition keys stay behind (the lines name no owner)

    cals, evs = replay(lines)
    assert len(evs) == 60 and {c.calendar_id for c in cals} == {"home", "kids", "work"}
    ingest = wiring.ingest_service(CFG, stores=stores)
    for c in cals:
        ingest.put_calendar("bob", c.calendar_id, c.name, c.description)
    ingest.ingest_events("bob", evs)
    assert svc.list_calendars("bob") == svc.list_calendars(U)
    out = train_user({"user_id": "bob", "run_id": "r1", "reason": "test"}, stores, CFG, trainer=FakeTrainer())
    original = train_user({"user_id": U, "run_id": "r1", "reason": "test"}, stores, CFG, trainer=FakeTrainer())
    assert (stores.registry.get_version("bob", out["version"])["labels"]
            == stores.registry.get_version(U, original["version"])["labels"] == ["home", "kids", "work"])


# ----------------------------------------------------------------------------- erase


def everything_of(stores, user: str) -> list:
    """Whatever any fake store still holds of ``user`` (keys and contents)."""
    left = []
    left += [("events", k) for k in stores.events.items.get(user, {})]
    left += [("users", k) for d in (stores.users.profiles, stores.users.cals, stores.users.removed,
                                    stores.users.corr) for k in d if k == user]
    left += [("registry", k) for k, v in stores.registry.items.items() if k[0] == user or user in json.dumps(v, default=str)]
    left += [("predictions", k) for k in stores.predictions.items if k[0] == user]
    left += [("usage", k) for k in stores.usage.rows if k[0] == user]
    left += [("models", k) for k, vs in stores.models.history.items()
             if user in k or any(v is not None and user.encode() in v for v in vs)]
    return left


def populated():
    stores, svc, _ = seeded()
    seeded_bob = wiring.ingest_service(CFG, stores=stores)
    seeded_bob.ingest_events("bob", [e.to_flat() for e in make_events(("home", "work"), 12)])
    install(stores, calendars=("home", "kids", "work"))
    install(stores, n=2, calendars=("home", "kids", "work"))  # two versions, the first archived
    stores.models.put(U, "v20260101000001-000001", b"overwritten")  # a second object version
    stores.models.put(U, "v20260101000009-000009", b"x", ".parity.npz")
    stores.models.delete(stores.models.key(U, "v20260101000009-000009", ".parity.npz"))  # a delete marker
    install(stores, user="bob", calendars=("home", "work"))
    wiring.ingest_service(CFG, stores=stores).correct_event(U, "home-1", "work")
    svc.delete_calendar(U, "kids")  # a tombstone
    stores.predictions.put_many(U, [{"event_id": "p1", "calendar_id": "work", "method": "ml"}])
    stores.predictions.put_many("bob", [{"event_id": "p1", "calendar_id": "work", "method": "ml"}])
    stores.usage.add(U, usd=0.01, input_tokens=10, output_tokens=2)
    stores.models.put_json("runs/r1/users.json", [{"user_id": U, "run_id": "r1", "reason": "x"}])
    stores.models.put_json("runs/r2/users.json", [{"user_id": "bob", "run_id": "r2", "reason": "x"}])
    stores.registry.put_run("r1", {"failures": [{"user_id": U, "stage": "train", "error": "boom"},
                                                {"user_id": "bob", "stage": "train", "error": "x"}]})
    return stores, svc


def test_erase_removes_everything_of_the_user_and_nothing_of_others():
    stores, svc = populated()
    bob_before = everything_of(stores, "bob")
    predict = wiring.predict_service(CFG, stores=stores, invoker=None)
    assert predict.classify(U, {"summary": "sprint standup", "start": "2026-03-03T10:00:00Z"})["method"] == "ml"
    out = svc.erase(U, actor="self")
    assert out["erased"] and set(out["removed"]) == set(ERASE_STEPS)
    assert out["removed"]["events"] == 40 and out["removed"]["model_objects"] >= 5
    assert out["removed"]["run_manifests"] == 1 and out["removed"]["run_records"] == 1
    assert out["removed"]["usage"] == 1 and out["removed"]["predictions"] == 2  # + the classify above
    assert everything_of(stores, U) == []
    # the model cache of this container forgot at once
    assert predict.classify(U, {"summary": "sprint standup", "start": "2026-03-03T10:00:00Z"})["method"] == "none"
    # others untouched (bob's failure entry stays in the run record, bob's manifest stays)
    assert everything_of(stores, "bob") == bob_before
    assert stores.models.get_json("runs/r2/users.json")
    assert stores.usage.spent("_global") > 0  # service-wide totals carry no user
    # audited under a keyed hash, never the id, no content
    (audit,) = stores.registry.erasures()
    assert audit["user_hash"] == user_digest(U, resolve_hmac_key(CFG)) == out["user_hash"]
    assert audit["actor"] == "self" and audit["removed"] == out["removed"]
    assert U not in json.dumps(audit)
    again = svc.erase(U, actor="self")  # a second erase succeeds: only the log line of the classify since
    assert again["total"] == again["removed"]["predictions"] == 1
    assert svc.erase(U, actor="self")["total"] == 0 and len(stores.registry.erasures()) == 3


class Boom(Exception):
    pass


def test_an_erase_killed_half_way_is_completed_by_running_it_again():
    stores, svc = populated()

    class DiesOnce:
        def __init__(self, inner):
            self.inner, self.armed = inner, True

        def delete_user(self, user):
            if self.armed:
                self.armed = False
                raise Boom("killed")
            return self.inner.delete_user(user)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    dying = DiesOnce(stores.predictions)
    half = replace(stores, predictions=dying)
    svc = wiring.lifecycle_service(CFG, stores=half)
    with pytest.raises(Boom):
        svc.erase(U, actor="ops")
    assert stores.registry.active(U) is None  # the serving-relevant part went first
    assert stores.events.items.get(U)  # ...and the rest is still there
    assert stores.registry.erasures() == []  # no audit of an unfinished erase
    out = svc.erase(U, actor="ops")
    assert out["removed"]["registry"] == 0 and out["removed"]["events"] == 40
    assert everything_of(stores, U) == []
    assert len(stores.registry.erasures()) == 1


def test_erase_needs_its_audit_key_before_deleting_anything():
    stores, _ = populated()
    svc = wiring.lifecycle_service(Settings(auth_mode="iam"), stores=stores)
    with pytest.raises(ServiceUnavailable) as exc:
        svc.erase(U, actor="iam:arn")
    assert exc.value.code == "erasure_not_configured"
    assert stores.events.items.get(U) and stores.registry.active(U)
    keyed = wiring.lifecycle_service(Settings(auth_mode="iam", erasure_hmac_key="k1"), stores=stores)
    assert keyed.erase(U, actor="iam:arn")["user_hash"] == user_digest(U, "k1") != user_digest(U, "k2")


def test_forget_reaches_every_registered_cache():
    told = []

    class C:
        def invalidate(self, user):
            told.append(user)

    c = forget.register(C())
    assert forget.forget_user("zed") >= 1 and "zed" in told
    del c


def test_erase_removes_the_training_result_files_that_name_the_user():
    """The training Map's ResultWriter files (runs/<run>/results/<map run>/SUCCEEDED_n.json, FAILED_n,
    PENDING_n) carry each child's Input (its batch: user ids) and Output (its users' results) as JSON
    strings: every version of a file naming the user goes with the erasure; files naming only others,
    and the manifest (it names no user), stay."""
    from calroute.adapters.s3_models import run_object_names_user

    stores, svc = populated()
    base = "runs/r1/results/0b1c2d3e"

    def entry(status, users, output=None):
        e = {"ExecutionArn": "arn:x", "Status": status, "Input": json.dumps({"Items": [{"user_id": u} for u in users]})}
        if output is not None:
            e["Output"] = json.dumps(output)
        return e

    # alice in a batch's input and in its output; in a FAILED child's input only; bob alone elsewhere
    stores.models.put_json(f"{base}/SUCCEEDED_0.json", [
        entry("SUCCEEDED", [U, "bob"], [{"user_id": U, "status": "promoted"}, {"user_id": "bob", "status": "skipped"}])])
    stores.models.put_json(f"{base}/FAILED_0.json", [entry("FAILED", ["cy", U])])
    stores.models.put_json(f"{base}/PENDING_0.json", [entry("PENDING", ["bob"])])
    stores.models.put_json("runs/r2/results/9f8e/SUCCEEDED_0.json",
                           [entry("SUCCEEDED", ["bob"], [{"user_id": "bob", "status": "promoted"}])])
    # an older version of the same key that named alice only in its output
    stores.models.put_json("runs/r2/results/9f8e/SUCCEEDED_1.json",
                           [entry("SUCCEEDED", ["x"], [{"user_id": U, "status": "failed"}])])
    stores.models.put_json("runs/r2/results/9f8e/SUCCEEDED_1.json",
                           [entry("SUCCEEDED", ["bob"], [{"user_id": "bob", "status": "failed"}])])
    stores.models.put_json(f"{base}/manifest.json", {"DestinationBucket": "b", "MapRunArn": "arn:x", "ResultFiles": {
        "SUCCEEDED": [{"Key": f"{base}/SUCCEEDED_0.json", "Size": 1}], "FAILED": [], "PENDING": []}})

    out = svc.erase(U, actor="self")
    # users.json of r1 + SUCCEEDED_0 + FAILED_0 of r1 + the old version of r2's SUCCEEDED_1
    assert out["removed"]["run_manifests"] == 4
    left = {k for k, _ in stores.models.all_versions("runs/")}
    assert f"{base}/SUCCEEDED_0.json" not in left and f"{base}/FAILED_0.json" not in left
    assert {f"{base}/PENDING_0.json", f"{base}/manifest.json", "runs/r2/results/9f8e/SUCCEEDED_0.json"} <= left
    assert [json.loads(v)[0]["Input"] for v in stores.models.history["runs/r2/results/9f8e/SUCCEEDED_1.json"]] == \
        [json.dumps({"Items": [{"user_id": "bob"}]})]
    for k in stores.models.objects:
        if k.startswith("runs/"):
            assert not run_object_names_user(k, stores.models.objects[k], U), k
    # what names and what does not
    body = json.dumps([entry("SUCCEEDED", ["bob"], [{"user_id": U}])]).encode()
    assert run_object_names_user(f"{base}/SUCCEEDED_3.json", body, U)
    assert not run_object_names_user(f"{base}/SUCCEEDED_3.json", body, "al")  # whole ids only
    assert not run_object_names_user(f"{base}/manifest.json", body, U)  # not a result file
    assert not run_object_names_user(f"{base}/SUCCEEDED_3.json", b"{not json", U)
