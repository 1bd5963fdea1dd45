"""Contract tests of the storage ports: every case runs against the DynamoDB/S3 adapters on moto
(resources created from template.yaml) and against the in-memory fakes of ``support/fakes.py``, so
the fakes the service unit tests use are held to what the adapters do."""

import threading
from datetime import datetime, timedelta, timezone

import pytest

from calroute import wiring
from calroute.adapters.dynamo.base import batch_write
from calroute.config import settings
from calroute.errors import Conflict, ModelIntegrityError, NotFound, ServiceUnavailable
from calroute.ports import GLOBAL_PK, Stores
from calroute.schema import CalendarInfo, parse_event
from support.fakes import fake_stores


@pytest.fixture(params=["dynamo", "fake"])
def stores(request) -> Stores:
    if request.param == "dynamo":
        request.getfixturevalue("aws")
        return wiring.stores(settings())
    return fake_stores()


def boto3_client(name):
    import boto3

    return boto3.client(name)


def _ev(i, cal="work", **kw):
    return parse_event({"event_id": f"e{i}", "summary": f"Meeting {i}", "start": "2026-03-02T09:00:00Z",
                        "calendar_id": cal, **kw})


def _record(v, **kw):
    return {"version": v, "s3_key": f"models/alice/{v}.onnx", "sha256": "x" * 64, "threshold": 0.8,
            "feature_spec": 1, "labels": ["a", "b"], **kw}


V1, V2, V3 = (f"v2026010100000{i}-abcdef" for i in (1, 2, 3))


# ----------------------------------------------------------------------------- events


def test_events_upsert_is_idempotent(stores):
    repo = stores.events
    repo.put_events("alice", [_ev(i) for i in range(60)])
    repo.put_events("alice", [_ev(i, "home") for i in range(60)])
    evs = repo.list_events("alice")
    assert len(evs) == 60 and {e.calendar_id for e in evs} == {"home"}
    assert repo.list_events("bob") == []


def test_events_last_one_wins_within_a_batch_and_reads(stores):
    repo = stores.events
    assert repo.put_events("alice", [_ev(1), _ev(2), _ev(1, "home")]) == 2
    assert repo.get_event("alice", "e1").calendar_id == "home"
    assert repo.get_event("alice", "e9") is None and repo.get_event("bob", "e1") is None
    assert repo.existing_ids("alice", ["e1", "e3", "e2", "e1"]) == {"e1", "e2"}
    assert repo.existing_ids("bob", ["e1"]) == set()
    assert repo.count_events("alice") == 2 and repo.count_events("bob") == 0
    assert [e.event_id for e in repo.list_events("alice")] == ["e1", "e2"]  # sort-key order
    assert len(repo.list_events("alice", limit=1)) == 1


def test_set_calendar_relabels_and_moves_updated_at(stores):
    repo = stores.events
    repo.put_events("alice", [_ev(1, description="keep me")])
    (_, before), = repo.list_events_updated("alice")
    ev = repo.set_calendar("alice", "e1", "home")
    assert ev.calendar_id == "home" and ev.description == "keep me"
    (stored, after), = repo.list_events_updated("alice")
    assert stored.calendar_id == "home" and stored.description == "keep me" and after >= before
    datetime.fromisoformat(after)
    with pytest.raises(NotFound):
        repo.set_calendar("alice", "missing", "home")


def test_labels_carry_provenance_and_remembered_answers_never_overwrite_a_user_label(stores):
    repo = stores.events
    repo.put_events("alice", [_ev(1), _ev(2)])  # ingested: the user's labels
    assert repo.remember("alice", [(_ev(1, "home"), "llm", {"margin": 0.1}),  # a user label: kept
                                   (_ev(3, "home"), "llm", {"margin": 0.25, "novelty": 0.5}),
                                   (_ev(4, "work"), "ml", {})]) == ["e3", "e4"]
    got = {s.event.event_id: s for s in repo.list_stored("alice")}
    assert {k: (s.event.calendar_id, s.provenance) for k, s in got.items()} == {
        "e1": ("work", "user"), "e2": ("work", "user"), "e3": ("home", "llm"), "e4": ("work", "ml")}
    assert got["e3"].meta == {"margin": 0.25, "novelty": 0.5} and got["e1"].meta == {}
    # idempotent by event id: a second answer relabels a remembered event but is not new
    assert repo.remember("alice", [(_ev(3, "work"), "ml", {})]) == []
    assert repo.get_event("alice", "e3").calendar_id == "work"
    # a correction relabels as the user's; a confirmation as confirmed; neither is overwritten later
    repo.set_calendar("alice", "e3", "home")
    repo.set_calendar("alice", "e4", "work", provenance="confirmed")
    assert repo.remember("alice", [(_ev(3, "work"), "llm", {}), (_ev(4, "home"), "llm", {})]) == []
    got_rows = {s.event.event_id: s for s in repo.list_stored("alice")}
    got = {k: (s.event.calendar_id, s.provenance) for k, s in got_rows.items()}
    assert got["e3"] == ("home", "user") and got["e4"] == ("work", "confirmed")
    assert repo.list_stored("bob") == [] and repo.get_stored("bob", "e3") is None  # tenant-scoped
    assert repo.get_stored("alice", "e4") == got_rows["e4"] and repo.get_stored("alice", "e9") is None
    # a sole label (the user's only calendar) is a remembered answer: a later answer replaces it
    assert repo.remember("alice", [(_ev(5, "work"), "sole", {"method": "only_calendar"})]) == ["e5"]
    assert repo.get_stored("alice", "e5").provenance == "sole"
    assert repo.remember("alice", [(_ev(5, "home"), "llm", {"margin": 0.2})]) == []
    assert (repo.get_event("alice", "e5").calendar_id, repo.get_stored("alice", "e5").provenance) == ("home", "llm")


def test_items_without_provenance_read_as_user_labels(aws):
    import boto3

    from calroute.adapters.dynamo.events import DynamoEventStore

    cfg = settings()
    boto3.resource("dynamodb").Table(cfg.events_table).put_item(Item={
        "user_id": "alice", "event_id": "eold", "calendar_id": "work", "start": "2026-03-02T09:00:00+00:00",
        "data": '{"event_id":"eold","summary":"x","start":"2026-03-02T09:00:00Z","calendar_id":"work"}'})
    repo = DynamoEventStore(cfg.events_table)
    (old,) = repo.list_stored("alice")
    assert old.provenance == "user" and old.meta == {}
    assert repo.remember("alice", [(_ev("old", "home"), "llm", {})]) == []  # an old label is the user's
    assert repo.get_event("alice", "eold").calendar_id == "work"


# ----------------------------------------------------------------------------- users


def test_user_counters_and_calendars(stores):
    users = stores.users
    users.bump("alice", events=5)
    users.bump("alice", events=3, corrections=1)
    p = users.profile("alice")
    assert p["events_total"] == 8 and p["corrections_total"] == 1
    assert "confident_misses_total" not in p  # written only when a miss is counted
    users.bump("alice", corrections=1, misses=1)
    users.bump("alice", corrections=1, misses=1)
    p = users.profile("alice")
    assert p["corrections_total"] == 3 and p["confident_misses_total"] == 2 and p["events_total"] == 8
    assert "labels_total" not in p  # written only when a label is counted
    users.bump("alice", labels=4)
    users.bump("alice", events=1, labels=2)
    p = users.profile("alice")
    assert p["labels_total"] == 6 and p["events_total"] == 9 and p["corrections_total"] == 3
    assert p["user_id"] == "alice" and p["created_at"] <= p["updated_at"]
    assert users.profile("bob") == {}
    users.put_calendar("alice", CalendarInfo(calendar_id="work", name="Work", description="Day job"))
    assert [c.name for c in users.calendars("alice")] == ["Work"]
    assert [p["user_id"] for p in users.iter_profiles()] == ["alice"]


def test_per_calendar_counters_add_up(stores):
    """The retraining policy reads ``calev#<calendarId>``: bumps add per calendar, atomically."""
    from calroute.retrain import CALENDAR_COUNT_PREFIX
    users = stores.users
    users.bump("alice", events=3, calendars={"gym": 2, "work": 1})
    users.bump("alice", events=2, calendars={"gym": 2})
    p = users.profile("alice")
    assert p[f"{CALENDAR_COUNT_PREFIX}gym"] == 4 and p[f"{CALENDAR_COUNT_PREFIX}work"] == 1
    assert p["events_total"] == 5
    assert users.profile("bob") == {}


def test_calendars_are_replaced_and_ordered_by_id(stores):
    users = stores.users
    for cid in ("work", "home", "kids"):
        users.put_calendar("alice", CalendarInfo(calendar_id=cid, name=cid.title()))
    users.put_calendar("alice", CalendarInfo(calendar_id="home", name="Family", description="d"))
    assert [(c.calendar_id, c.name, c.description) for c in users.calendars("alice")] == [
        ("home", "Family", "d"), ("kids", "Kids", ""), ("work", "Work", "")]
    assert users.calendars("bob") == []


def test_record_correction_carries_the_prediction(stores):
    rec = stores.users.record_correction("alice", "e1", old="work", new="home",
                                         prediction={"calendar_id": "work", "method": "ml", "model_version": V1})
    assert rec["sk"].startswith("CORR#") and rec["sk"].endswith("#e1")
    assert (rec["from_calendar"], rec["to_calendar"], rec["predicted_calendar"], rec["predicted_method"],
            rec["predicted_model_version"]) == ("work", "home", "work", "ml", V1)
    bare = stores.users.record_correction("alice", "e2", old=None, new="home", prediction=None)
    assert bare["from_calendar"] == "" and "predicted_calendar" not in bare


# ----------------------------------------------------------------------------- model blobs


def test_model_store_sha_checked(stores):
    store = stores.models
    key, sha = store.put("alice", "v20260101000000-abcdef", b"onnx-bytes")
    assert key == store.key("alice", "v20260101000000-abcdef") == "models/alice/v20260101000000-abcdef.onnx"
    assert store.get(key, sha) == b"onnx-bytes" and store.get(key) == b"onnx-bytes"
    with pytest.raises(ModelIntegrityError):
        store.get(key, "0" * 64)
    with pytest.raises(ModelIntegrityError):
        store.get("models/alice/missing.onnx")
    store.delete(key)
    store.delete(key)  # already gone: no error
    with pytest.raises(ModelIntegrityError):
        store.get(key, sha)


def test_model_store_json_and_suffixes(stores):
    store = stores.models
    key, _ = store.put("alice", V1, b"npz", suffix=".parity.npz")
    assert key.endswith(f"{V1}.parity.npz")
    store.put_json("runs/r1/users.json", [{"user_id": "alice", "run_id": "r1"}])
    assert store.get_json("runs/r1/users.json") == [{"user_id": "alice", "run_id": "r1"}]
    with pytest.raises(NotFound):
        store.get_json("runs/missing/users.json")
    assert isinstance(store.bucket, str) and store.bucket


# ----------------------------------------------------------------------------- registry


def test_conditional_promote_race_has_one_winner(stores):
    reg = stores.registry
    recs = []
    for i in range(2):
        v = f"v2026010100000{i}-abcdef"
        rec = _record(v)
        reg.put_version("alice", v, rec)
        recs.append(rec)
    results = []

    def promote(rec):
        try:
            reg.activate("alice", rec, expected_version=None, actor="test", reason="race")
            results.append("won")
        except Conflict:
            results.append("lost")

    threads = [threading.Thread(target=promote, args=(r,)) for r in recs]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == ["lost", "won"]
    active = reg.active("alice")
    assert active["version"] in {r["version"] for r in recs}
    assert len(reg.audit_trail("alice")) == 1


def test_versions_status_and_activation_chain(stores):
    reg = stores.registry
    assert reg.active("alice") is None and reg.versions("alice") == [] and reg.get_version("alice", V1) is None
    for v in (V2, V1):
        reg.put_version("alice", v, _record(v, metrics={"holdout_accuracy": 0.9}, threshold=1.0))
    with pytest.raises(Conflict):
        reg.put_version("alice", V1, _record(V1))
    assert [r["version"] for r in reg.versions("alice")] == [V1, V2]
    rec = reg.get_version("alice", V1)
    assert rec["status"] == "candidate" and rec["metrics"] == {"holdout_accuracy": 0.9}
    assert rec["threshold"] == 1 and rec["labels"] == ["a", "b"]  # stored as DynamoDB stores numbers
    reg.set_status("alice", V1, "validated", "parity ok", validated=True, parity={"max_abs_diff": 0.5})
    rec = reg.get_version("alice", V1)
    assert (rec["status"], rec["status_reason"], rec["validated"], rec["parity"]) == (
        "validated", "parity ok", True, {"max_abs_diff": 0.5})
    with pytest.raises(NotFound):
        reg.set_status("alice", V3, "validated")

    p1 = reg.activate("alice", _record(V1), expected_version=None, actor="a", reason="first")
    assert p1["version"] == V1 and p1["previous_version"] == "" and p1["threshold"] == 0.8
    assert reg.active("alice", consistent=True)["version"] == V1
    with pytest.raises(Conflict) as lost:
        reg.activate("alice", _record(V2), expected_version=None, actor="b", reason="stale")
    assert lost.value.code == "active_changed"
    p2 = reg.activate("alice", _record(V2), expected_version=V1, actor="b", reason="better", action="manual_promote")
    assert p2["previous_version"] == V1
    statuses = {r["version"]: r["status"] for r in reg.versions("alice")}
    assert statuses == {V1: "archived", V2: "active"}
    trail = reg.audit_trail("alice")  # in time order; within one millisecond, in any order
    assert sorted((a["action"], a["from_version"], a["to_version"]) for a in trail) == [
        ("manual_promote", V1, V2), ("promote", "", V1)]
    manual = next(a for a in trail if a["action"] == "manual_promote")
    assert manual["actor"] == "b" and manual["reason"] == "better" and manual["at"]
    assert [a["sk"] for a in trail] == sorted(a["sk"] for a in trail)
    reg.audit("alice", action="train_requested", actor="x")
    assert "train_requested" in [a["action"] for a in reg.audit_trail("alice")]
    assert reg.active("bob") is None and reg.audit_trail("bob") == []


def test_mark_drift_only_on_the_active_version(stores):
    reg = stores.registry
    reg.put_version("alice", V1, _record(V1))
    assert reg.mark_drift("alice", V1, {"drifted": True}, at="2026-01-01T00:00:00+00:00") is False  # no ACTIVE
    reg.activate("alice", _record(V1), expected_version=None, actor="a", reason="r")
    report = {"drifted": True, "max": 0.4, "psi": {"hour": 0.4}}
    assert reg.mark_drift("alice", V1, report, at="2026-01-02T00:00:00+00:00") is True
    for item in (reg.active("alice"), reg.get_version("alice", V1)):
        assert item["drifted"] is True and item["drift"] == report and item["drift_at"].startswith("2026-01-02")
    assert reg.mark_drift("alice", V2, report, at="x") is False  # ACTIVE names another version


def test_training_run_records(stores):
    reg = stores.registry
    for r in ("r20260101000000-aaaaaa", "r20260102000000-bbbbbb", "r20260103000000-cccccc"):
        reg.put_run(r, {"trained": 1, "seconds": 1.5, "failures": []})
    run = reg.get_run("r20260102000000-bbbbbb")
    assert run["run_id"] == "r20260102000000-bbbbbb" and run["trained"] == 1 and run["seconds"] == 1.5
    assert reg.get_run("missing") is None
    assert [r["run_id"] for r in reg.runs(limit=2)] == ["r20260103000000-cccccc", "r20260102000000-bbbbbb"]
    assert reg.versions("_run") == []  # runs are not versions


# ----------------------------------------------------------------------------- prediction log


def _pred(eid, **kw):
    return {"event_id": eid, "calendar_id": "work", "method": "ml", "confidence": 0.91, "cohort": "treatment",
            "latency_ms": 1.5, "model_version": V1, "reason": "r", "llm_usd": None, **kw}


def test_prediction_log_expires_after_the_configured_retention(aws, monkeypatch):
    """``expires_at`` (the table's TTL attribute) is now + PREDICTION_TTL_DAYS, as wired from the
    settings: a log written with expires_at=1 (deleted at once) or the default ignored fails here."""
    import time as _time

    from calroute.config import settings as fresh

    monkeypatch.setenv("PREDICTION_TTL_DAYS", "7")
    fresh.cache_clear()
    try:
        log = wiring.stores(fresh()).predictions
        before = _time.time()
        log.put_many("alice", [_pred("e1")])
        after = _time.time()
        exp = log.get("alice", "e1")["expires_at"]
        assert int(before + 7 * 86400) <= exp <= int(after + 7 * 86400) + 1
    finally:
        fresh.cache_clear()
    ttl = boto3_client("dynamodb").describe_time_to_live(TableName=settings().predictions_table)
    assert ttl["TimeToLiveDescription"]["AttributeName"] == "expires_at"


def test_prediction_log_put_get_mark(stores):
    log = stores.predictions
    log.put_many("alice", [_pred("e1"), _pred("e2", calendar_id="home", confidence=None)])
    log.put_many("alice", [])
    item = log.get("alice", "e1")
    assert item["calendar_id"] == "work" and item["confidence"] == 0.91 and "llm_usd" not in item
    assert item["expires_at"] > 0 and item["created_at"]
    assert "confidence" not in log.get("alice", "e2")
    assert log.get("bob", "e1") is None
    marked = log.mark("alice", "e1", "home")
    assert marked["was_correct"] is False and marked["corrected_to"] == "home" and marked["calendar_id"] == "work"
    assert log.mark("alice", "e2", "home")["was_correct"] is True
    assert log.mark("alice", "missing", "home") is None
    assert log.get("alice", "e1")["was_correct"] is False


def test_prediction_log_since_and_bounded_scan(stores):
    log = stores.predictions
    before = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat(timespec="milliseconds")
    log.put_many("alice", [_pred(f"a{i}") for i in range(5)])
    log.put_many("bob", [_pred(f"b{i}", method="llm", llm_usd=0.002) for i in range(3)])
    later = (datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat(timespec="milliseconds")
    assert [i["event_id"] for i in log.since("alice", before)] == [f"a{i}" for i in range(5)]
    assert len(log.since("alice", before, limit=2)) == 2 and log.since("alice", later) == []
    items, info = log.scan_since(before, max_items=100)
    assert len(items) == 8 and info["truncated"] is False
    for it in items:
        assert set(it) <= set(log.SCAN_FIELDS) and "user_id" not in it and "event_id" not in it
    assert sorted(i["method"] for i in items).count("llm") == 3
    assert {i.get("llm_usd") for i in items} == {None, 0.002}
    few, info = log.scan_since(before, max_items=3)
    assert len(few) == 3 and info["truncated"] is True
    assert log.scan_since(later, max_items=10)[0] == []


# ----------------------------------------------------------------------------- usage ledger


def test_usage_ledger_sums_per_user_and_globally(stores):
    usage = stores.usage
    usage.add("alice", usd=0.001, input_tokens=100, output_tokens=5)
    usage.add("alice", usd=0.002, input_tokens=200, output_tokens=10)
    usage.add("bob", usd=0.5, input_tokens=1, output_tokens=1, calls=2)
    assert usage.spent("alice") == pytest.approx(0.003) and usage.spent("bob") == pytest.approx(0.5)
    assert usage.spent(GLOBAL_PK) == pytest.approx(0.503) and usage.spent("carol") == 0.0
    assert usage.spent("alice", "2000-01-01") == 0.0
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    (row,) = usage.days("alice", today)
    assert (row["day"], row["calls"], row["input_tokens"], row["output_tokens"]) == (today, 2, 300, 15)
    assert row["usd"] == pytest.approx(0.003)
    assert usage.days(GLOBAL_PK, today)[0]["calls"] == 4
    assert usage.days("alice", "2999-01-01") == []


# ----------------------------------------------------------------------------- DynamoDB internals


def test_batch_write_retries_unprocessed_items():
    calls = []

    class FakeClient:
        def batch_write_item(self, RequestItems):
            calls.append(RequestItems)
            items = RequestItems["t"]
            # process all but the last item each time
            return {"UnprocessedItems": {"t": items[-1:]} if len(items) > 1 else {}}

    batch_write(FakeClient(), "t", [{"PutRequest": {"Item": {"i": i}}} for i in range(30)], sleep=lambda s: None)
    sent = [r["PutRequest"]["Item"]["i"] for c in calls for r in c["t"]]
    assert set(sent) == set(range(30))

    class Stuck:
        def batch_write_item(self, RequestItems):
            return {"UnprocessedItems": RequestItems}

    with pytest.raises(ServiceUnavailable):
        batch_write(Stuck(), "t", [{"PutRequest": {"Item": {"i": 1}}}], sleep=lambda s: None)


# ----------------------------------------------------------------------------- the user's data lifecycle


def _object_versions(stores, prefix: str) -> list:
    """Every object version and delete marker under ``prefix`` (S3's versioned listing, or the fake's)."""
    if hasattr(stores.models, "history"):
        return stores.models.all_versions(prefix)
    s3 = stores.models.t.s3
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=stores.models.bucket, Prefix=prefix):
        out += [(v["Key"], v["VersionId"]) for v in (page.get("Versions") or []) + (page.get("DeleteMarkers") or [])]
    return out


def test_event_index_batch_get_and_deletes(stores):
    repo = stores.events
    repo.put_events("alice", [_ev(i, "work" if i % 2 else "home") for i in range(30)])
    repo.put_events("bob", [_ev(1)])
    index = repo.event_index("alice")
    assert len(index) == 30 and index[0] == ("e0", "2026-03-02T09:00:00+00:00", "home")
    assert sorted(e.event_id for e in repo.get_events("alice", ["e3", "e1", "missing", "e3"])) == ["e1", "e3"]
    assert repo.delete_events("alice", ["e1", "e2", "missing"]) == 2
    assert repo.delete_events("alice", ["e1"]) == 0  # idempotent
    assert repo.count_events("alice") == 28
    assert repo.delete_user("alice") == 28 and repo.delete_user("alice") == 0
    assert repo.event_index("alice") == [] and repo.count_events("bob") == 1


def test_user_lifecycle_items(stores):
    users = stores.users
    users.bump("alice", events=3, calendars={"work": 2, "home": 1})
    users.put_calendar("alice", CalendarInfo(calendar_id="work", name="Work"))
    users.put_calendar("alice", CalendarInfo(calendar_id="home"))
    users.record_correction("alice", "e1", old="work", new="home", prediction=None)
    users.record_correction("alice", "e2", old="work", new="home", prediction=None)
    users.put_calendar("bob", CalendarInfo(calendar_id="work"))
    assert [c["event_id"] for c in users.corrections("alice")] == ["e1", "e2"]
    assert users.delete_corrections("alice", ["e1", "zz"]) == 1
    assert [c["event_id"] for c in users.corrections("alice")] == ["e2"]
    assert users.delete_calendar("alice", "work") is True and users.delete_calendar("alice", "work") is False
    assert [c.calendar_id for c in users.calendars("alice")] == ["home"]
    p = users.profile("alice")
    assert "calev#work" not in p and p["calev#home"] == 1
    users.mark_calendar_removed("alice", "work", at="2026-05-01T00:00:00+00:00")
    assert users.removed_calendars("alice") == {"work": "2026-05-01T00:00:00+00:00"}
    assert [c.calendar_id for c in users.calendars("alice")] == ["home"]  # a tombstone is no calendar
    users.request_retrain("alice", at="2026-05-01T00:00:00+00:00", reason="calendar work deleted")
    p = users.profile("alice")
    assert p["retrain_requested_at"] == "2026-05-01T00:00:00+00:00" and p["events_total"] == 3
    assert users.settings("alice") == {}
    users.put_settings("alice", {"remember": True})
    users.put_settings("alice", {"remember": False})  # replaced, one item
    got = users.settings("alice")
    assert got["remember"] is False and got["updated_at"] and users.settings("bob") == {}
    assert users.profile("alice")["events_total"] == 3  # a separate item: no counter touched
    # profile, 1 calendar, 1 tombstone, 1 correction, the settings
    assert users.delete_user("alice") == 5 and users.delete_user("alice") == 0
    assert users.settings("alice") == {}
    assert users.profile("alice") == {} and users.removed_calendars("alice") == {}
    assert [c.calendar_id for c in users.calendars("bob")] == ["work"]


def test_registry_erase_scrubs_runs_and_keeps_an_erasure_audit(stores):
    reg = stores.registry
    reg.put_version("alice", V1, _record(V1))
    reg.activate("alice", _record(V1), expected_version=None, actor="t", reason="r")
    reg.put_version("bob", V1, _record(V1))
    reg.put_run("r1", {"failures": [{"user_id": "alice", "stage": "x"}, {"user_id": "bob", "stage": "y"}],
                       "rejections": []})
    reg.put_run("r2", {"failures": [{"user_id": "bob", "stage": "y"}]})
    assert reg.gate_skip("alice") is None
    reg.put_gate_skip("alice", {"reason": "first", "at": "2026-05-01T00:00:00+00:00", "labels_total": 3,
                                "gates": "10/2/5/20000"})
    reg.put_gate_skip("alice", {"reason": "needs more", "at": "2026-05-02T00:00:00+00:00", "labels_total": 4,
                                "gates": "10/2/5/20000", "user_id": "mallory", "sk": "ACTIVE"})  # keys are fixed
    got = reg.gate_skip("alice")
    assert got["reason"] == "needs more" and got["labels_total"] == 4 and got["sk"] == "GATES"
    assert reg.active("alice")["version"] == V1 and reg.gate_skip("mallory") is None
    assert reg.delete_user("alice") == 4  # ACTIVE, version, audit, the gates' stop
    assert reg.gate_skip("alice") is None
    assert reg.active("alice") is None and reg.versions("alice") == [] and reg.audit_trail("alice") == []
    assert reg.delete_user("alice") == 0 and len(reg.versions("bob")) == 1
    assert reg.scrub_runs("alice") == 1 and reg.scrub_runs("alice") == 0
    assert reg.get_run("r1")["failures"] == [{"user_id": "bob", "stage": "y"}]
    reg.put_erasure({"action": "erase", "at": "2026-05-01T00:00:00.000+00:00", "user_hash": "h1",
                     "removed": {"events": 2}, "total": 2})
    reg.put_erasure({"action": "erase", "at": "2026-05-01T00:00:01.000+00:00", "user_hash": "h2", "removed": {},
                     "total": 0})
    got = reg.erasures()
    assert [g["user_hash"] for g in got] == ["h2", "h1"] and got[1]["removed"] == {"events": 2}
    assert all("user_id" not in {k: v for k, v in g.items() if v != "_erasure"} for g in got)


def test_model_blobs_erase_every_version_and_scrub_manifests(stores):
    blobs = stores.models
    blobs.put("alice", V1, b"one")
    blobs.put("alice", V1, b"two")  # a second version of the same key
    blobs.put("alice", V2, b"x", ".parity.npz")
    blobs.delete(blobs.key("alice", V2, ".parity.npz"))  # a delete marker
    blobs.put("bob", V1, b"bob")
    blobs.put_json("runs/r1/users.json", [{"user_id": "alice", "run_id": "r1"}])
    blobs.put_json("runs/r1/users.json", [{"user_id": "bob", "run_id": "r1"}])
    blobs.put_json("runs/r2/users.json", [{"user_id": "bob", "run_id": "r2"}])
    assert len(_object_versions(stores, "models/alice/")) == 4
    assert blobs.delete_user("alice") == 4 and blobs.delete_user("alice") == 0
    assert _object_versions(stores, "models/alice/") == []
    assert len(_object_versions(stores, "models/bob/")) == 1
    assert blobs.scrub_manifests("alice") >= 1 and blobs.scrub_manifests("alice") == 0
    # the version naming her is gone, the later one (bob only) stays
    assert len(_object_versions(stores, "runs/r1/")) == 1
    assert blobs.get_json("runs/r1/users.json") == [{"user_id": "bob", "run_id": "r1"}]
    assert blobs.get_json("runs/r2/users.json") == [{"user_id": "bob", "run_id": "r2"}]


def test_prediction_log_and_usage_erase(stores):
    log, usage = stores.predictions, stores.usage
    log.put_many("alice", [_pred("e1"), _pred("e2"), _pred("e3")])
    log.put_many("bob", [_pred("e1")])
    assert log.delete("alice", ["e1", "zz"]) == 1 and log.get("alice", "e1") is None
    assert log.delete_user("alice") == 2 and log.delete_user("alice") == 0
    assert log.since("alice", "") == [] and log.get("bob", "e1")
    usage.add("alice", usd=0.5, input_tokens=1, output_tokens=1)
    usage.add("bob", usd=0.25, input_tokens=1, output_tokens=1)
    assert usage.delete_user("alice") == 1 and usage.delete_user("alice") == 0
    assert usage.spent("alice") == 0 and usage.spent("bob") == 0.25
    assert usage.spent(GLOBAL_PK) == 0.75 and usage.delete_user(GLOBAL_PK) == 0
