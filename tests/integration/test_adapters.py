"""The DynamoDB/S3 adapters against moto, with resources created from template.yaml."""

import threading

import pytest

from calroute.adapters.aws import EventRepo, ModelStore, Registry, UserRepo, batch_write
from calroute.config import settings
from calroute.errors import Conflict, ModelIntegrityError, ServiceUnavailable
from calroute.schema import parse_event


def _ev(i, cal="work"):
    return parse_event({"event_id": f"e{i}", "summary": f"Meeting {i}", "start": "2026-03-02T09:00:00Z",
                        "calendar_id": cal})


def test_events_upsert_is_idempotent(aws):
    repo = EventRepo(settings().events_table)
    repo.put_events("alice", [_ev(i) for i in range(60)])
    repo.put_events("alice", [_ev(i, "home") for i in range(60)])
    evs = repo.list_events("alice")
    assert len(evs) == 60 and {e.calendar_id for e in evs} == {"home"}
    assert repo.list_events("bob") == []


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


def test_model_store_sha_checked(aws):
    store = ModelStore(settings().model_bucket)
    key, sha = store.put("alice", "v20260101000000-abcdef", b"onnx-bytes")
    assert store.get(key, sha) == b"onnx-bytes"
    with pytest.raises(ModelIntegrityError):
        store.get(key, "0" * 64)
    with pytest.raises(ModelIntegrityError):
        store.get("models/alice/missing.onnx")


def test_conditional_promote_race_has_one_winner(aws):
    reg = Registry(settings().registry_table)
    recs = []
    for i in range(2):
        v = f"v2026010100000{i}-abcdef"
        rec = {"version": v, "s3_key": f"models/alice/{v}.onnx", "sha256": "x" * 64, "threshold": 0.8,
               "feature_spec": 1, "labels": ["a", "b"]}
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


def test_user_counters_and_calendars(aws):
    from calroute.schema import CalendarInfo

    users = UserRepo(settings().users_table)
    users.bump("alice", events=5)
    users.bump("alice", events=3, corrections=1)
    p = users.profile("alice")
    assert p["events_total"] == 8 and p["corrections_total"] == 1
    users.put_calendar("alice", CalendarInfo(calendar_id="work", name="Work", description="Day job"))
    assert [c.name for c in users.calendars("alice")] == ["Work"]
    assert [p["user_id"] for p in users.iter_profiles()] == ["alice"]
