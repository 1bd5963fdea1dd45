"""Contract tests of the DynamoDB registry (:mod:`calroute.adapters.dynamo.registry`) on moto, tables
created from template.yaml (the ``aws`` fixture): the items it writes, the requests it sends (the
conditions of its conditional writes, consistent reads, page limits), the domain errors it raises,
and its error translation (every method of the :class:`~calroute.ports.ModelRegistry` port turns
throttling into :class:`ServiceUnavailable`).

``tests/integration/test_adapters.py`` holds the cases the DynamoDB adapter and the in-memory fake
share; these are the DynamoDB-only details (written for the mutants of ``make mutation`` that those
cases let survive). Time and the audit key's random suffix are fixed where an assertion reads them.
"""

from __future__ import annotations

import copy
import inspect
import json
import re
from datetime import datetime

import pytest

from botocore.exceptions import ClientError

from calroute import wiring
from calroute.adapters.dynamo import registry as registry_mod
from calroute.adapters.dynamo.registry import DynamoRegistry, active_pointer
from calroute.config import settings
from calroute.errors import Conflict, NotFound, ServiceUnavailable
from calroute.ports import ERASURE_PK, RUN_PK, ModelRegistry
from calroute.services.models import ModelsService
from support.botocore_stub import StubHttp

V1, V2, V3 = (f"v2026010100000{i}-abcdef" for i in (1, 2, 3))


def _record(v, **kw):
    return {"version": v, "s3_key": f"models/alice/{v}.onnx", "sha256": "x" * 64, "threshold": 0.75,
            "feature_spec": 2, "labels": ["home", "work"], **kw}


class Clock:
    """``now_iso`` replacement: successive milliseconds from 2026-05-01T00:00:00.000+00:00."""

    def __init__(self):
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"2026-05-01T00:00:00.{self.n:03d}+00:00"

    @property
    def last(self) -> str:
        return f"2026-05-01T00:00:00.{self.n:03d}+00:00"


class TopRandom:
    """``random`` replacement: ``randrange(n)`` answers ``n - 1`` (the largest suffix the range allows)."""

    @staticmethod
    def randrange(n):
        return n - 1


class Requests:
    """Every DynamoDB request of the process's shared client, as the adapter passed it
    (``provide-client-params``: Python values, before boto3 serialises them)."""

    def __init__(self, client):
        self.client = client
        self.calls: list[tuple[str, dict]] = []
        client.meta.events.register("provide-client-params.dynamodb", self._record)

    def _record(self, params, model, **kw):
        self.calls.append((model.name, copy.deepcopy(params)))

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    def of(self, op: str) -> list[dict]:
        return [p for o, p in self.calls if o == op]

    def stop(self) -> None:
        self.client.meta.events.unregister("provide-client-params.dynamodb", self._record)


def _answer_error(code: str):
    """A ``before-call`` hook answering every DynamoDB request with the error ``code`` (no request is
    sent, so boto3's retries do not run: what a throttle that outlived them looks like)."""

    def hook(params, model, **kw):
        return StubHttp(400), {"Error": {"Code": code, "Message": "injected"},
                            "ResponseMetadata": {"HTTPStatusCode": 400}}

    return hook


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(registry_mod, "now_iso", c)
    return c


@pytest.fixture
def reg(aws) -> DynamoRegistry:
    r = wiring.stores(settings()).registry
    assert isinstance(r, DynamoRegistry)
    return r


@pytest.fixture
def requests(reg):
    rec = Requests(reg.t.ddb.meta.client)
    yield rec
    rec.stop()


def _item(reg, pk: str, sk: str):
    return reg.table.get_item(Key={"user_id": pk, "sk": sk}).get("Item")


# ----------------------------------------------------------------------------- versions


def test_put_version_writes_the_record_once_as_a_candidate(reg, clock):
    reg.put_version("alice", V1, _record(V1, metrics={"holdout_accuracy": 0.5}))
    item = reg.get_version("alice", V1)
    assert item == {"user_id": "alice", "sk": f"MODEL#{V1}", "version": V1, "created_at": clock.last,
                    "status": "candidate", **_record(V1, metrics={"holdout_accuracy": 0.5})}
    reg.put_version("alice", V2, _record(V2, status="rejected"))  # a given status is kept
    assert reg.get_version("alice", V2)["status"] == "rejected"
    with pytest.raises(Conflict) as dup:
        reg.put_version("alice", V1, _record(V1, threshold=0.1))
    assert (dup.value.code, dup.value.field) == ("version_exists", "version")
    assert dup.value.message == f"model version {V1} is already registered"
    assert reg.get_version("alice", V1)["threshold"] == 0.75  # the conditional write kept the first
    assert reg.get_version("bob", V1) is None and reg.get_version("alice", V3) is None


def test_set_status_updates_only_an_existing_version(reg, clock):
    reg.put_version("alice", V1, _record(V1))
    reg.set_status("alice", V1, "validated")
    item = reg.get_version("alice", V1)
    assert (item["status"], item["status_reason"], item["status_at"]) == ("validated", "", clock.last)
    reg.set_status("alice", V1, "rejected", "worse", accuracy=0.5, parity={"ok": True})
    item = reg.get_version("alice", V1)
    assert (item["status"], item["status_reason"], item["accuracy"], item["parity"]) == (
        "rejected", "worse", 0.5, {"ok": True})
    assert item["threshold"] == 0.75 and item["created_at"] == "2026-05-01T00:00:00.001+00:00"  # untouched
    with pytest.raises(NotFound) as missing:
        reg.set_status("alice", V2, "validated", "x")
    assert missing.value.field == "version" and missing.value.message == f"model version {V2} not found"
    assert reg.get_version("alice", V2) is None  # no item created by the failed update
    with pytest.raises(NotFound):
        reg.set_status("bob", V1, "validated")


def test_versions_are_only_the_users_model_records_oldest_first(reg):
    for v in (V3, V1, V2):
        reg.put_version("alice", v, _record(v))
    reg.activate("alice", _record(V1), expected_version=None, actor="a", reason="r")  # ACTIVE + AUDIT items
    reg.put_version("bob", V1, _record(V1))
    assert [r["version"] for r in reg.versions("alice")] == [V1, V2, V3]
    assert all(r["sk"].startswith("MODEL#") for r in reg.versions("alice"))
    assert [r["version"] for r in reg.versions("bob")] == [V1] and reg.versions("carol") == []


def test_versions_and_the_audit_trail_read_every_page(reg, requests):
    """A Query answers at most 1 MB (moto enforces it too): three ~380 kB records take two pages."""
    big = "x" * 380_000
    for v in (V1, V2, V3):
        reg.put_version("alice", v, _record(v, holdout_event_ids=big))
        reg.audit("alice", action="a", note=big)
    requests.calls.clear()
    assert [r["version"] for r in reg.versions("alice")] == [V1, V2, V3]
    assert len(reg.audit_trail("alice")) == 3
    queries = requests.of("Query")
    assert len(queries) == 4 and "ExclusiveStartKey" in queries[1] and "ExclusiveStartKey" in queries[3]


# ----------------------------------------------------------------------------- the ACTIVE pointer


def test_active_pointer_item():
    rec = _record(V2, metrics={"holdout_accuracy": 0.9}, status="validated")
    assert active_pointer("alice", rec, expected_version=V1, ts="T") == {
        "user_id": "alice", "sk": "ACTIVE", "version": V2, "s3_key": rec["s3_key"], "sha256": "x" * 64,
        "threshold": 0.75, "feature_spec": 2, "labels": ["home", "work"], "promoted_at": "T",
        "previous_version": V1}
    bare = {k: v for k, v in rec.items() if k != "labels"}
    pointer = active_pointer("alice", bare, expected_version=None, ts="T")
    assert pointer["labels"] == [] and pointer["previous_version"] == ""


def test_activate_writes_the_pointer_marks_the_version_and_audits(reg, clock, requests):
    reg.put_version("alice", V1, _record(V1))
    requests.calls.clear()
    p1 = reg.activate("alice", _record(V1), expected_version=None, actor="ops", reason="first")
    sent = list(requests.calls)
    ts = "2026-05-01T00:00:00.002+00:00"
    expected = {"user_id": "alice", "sk": "ACTIVE", "version": V1, "s3_key": f"models/alice/{V1}.onnx",
                "sha256": "x" * 64, "threshold": 0.75, "feature_spec": 2, "labels": ["home", "work"],
                "promoted_at": ts, "previous_version": ""}
    assert p1 == expected and reg.active("alice") == expected
    v1 = reg.get_version("alice", V1)
    assert (v1["status"], v1["status_reason"], v1["promoted_at"]) == ("active", "first", ts)
    (audit,) = reg.audit_trail("alice")
    assert {k: audit[k] for k in ("action", "actor", "reason", "from_version", "to_version")} == {
        "action": "promote", "actor": "ops", "reason": "first", "from_version": "", "to_version": V1}
    # the requests: pointer (only if there is none), the version's status, the audit item; nothing else
    assert [op for op, _ in sent] == ["PutItem", "UpdateItem", "PutItem"]
    put, update = sent[0][1], sent[1][1]
    assert put["ConditionExpression"] == "attribute_not_exists(sk)" and put["Item"]["sk"] == "ACTIVE"
    assert update["Key"] == {"user_id": "alice", "sk": f"MODEL#{V1}"}


def test_activate_replaces_only_the_expected_version_and_archives_it(reg, clock, requests):
    for v in (V1, V2):
        reg.put_version("alice", v, _record(v))
    reg.activate("alice", _record(V1), expected_version=None, actor="a", reason="first")
    with pytest.raises(Conflict) as none_expected:
        reg.activate("alice", _record(V2), expected_version=None, actor="b", reason="stale")
    assert none_expected.value.code == "active_changed"
    assert none_expected.value.message == "the active model changed concurrently (expected none)"
    with pytest.raises(Conflict) as wrong:
        reg.activate("alice", _record(V2), expected_version=V2, actor="b", reason="stale")
    assert wrong.value.message == f"the active model changed concurrently (expected {V2})"
    assert reg.active("alice")["version"] == V1 and reg.get_version("alice", V2)["status"] == "candidate"
    requests.calls.clear()
    p2 = reg.activate("alice", _record(V2), expected_version=V1, actor="b", reason="better", action="rollback")
    assert (p2["version"], p2["previous_version"]) == (V2, V1)
    put = requests.of("PutItem")[0]
    assert put["ConditionExpression"] == "version = :ev" and put["ExpressionAttributeValues"] == {":ev": V1}
    assert requests.ops() == ["PutItem", "UpdateItem", "UpdateItem", "PutItem"]
    v1 = reg.get_version("alice", V1)
    assert (v1["status"], v1["status_reason"]) == ("archived", f"replaced by {V2}")
    assert reg.get_version("alice", V2)["status"] == "active"
    last = reg.audit_trail("alice")[-1]
    assert (last["action"], last["from_version"], last["to_version"]) == ("rollback", V1, V2)


def test_reactivating_the_active_version_does_not_archive_it(reg, requests):
    reg.put_version("alice", V1, _record(V1))
    reg.activate("alice", _record(V1), expected_version=None, actor="a", reason="r")
    requests.calls.clear()
    reg.activate("alice", _record(V1), expected_version=V1, actor="a", reason="again")
    assert requests.ops() == ["PutItem", "UpdateItem", "PutItem"]
    assert reg.get_version("alice", V1)["status"] == "active"


def test_activate_survives_a_removed_old_version_record(reg):
    for v in (V1, V2):
        reg.put_version("alice", v, _record(v))
    reg.activate("alice", _record(V1), expected_version=None, actor="a", reason="r")
    reg.table.delete_item(Key={"user_id": "alice", "sk": f"MODEL#{V1}"})
    assert reg.activate("alice", _record(V2), expected_version=V1, actor="a", reason="r")["version"] == V2
    assert reg.get_version("alice", V1) is None  # the archive update did not recreate it


def test_active_reads_eventually_consistent_unless_asked(reg, requests):
    assert reg.active("alice") is None
    reg.put_version("alice", V1, _record(V1))
    reg.activate("alice", _record(V1), expected_version=None, actor="a", reason="r")
    requests.calls.clear()
    assert reg.active("alice")["version"] == V1 and reg.active("alice", consistent=True)["version"] == V1
    assert [(g["Key"], g["ConsistentRead"]) for g in requests.of("GetItem")] == [
        ({"user_id": "alice", "sk": "ACTIVE"}, False), ({"user_id": "alice", "sk": "ACTIVE"}, True)]
    assert reg.active("bob") is None


def test_promote_and_rollback_walk_the_registry_history(aws, clock):
    """ModelsService on the DynamoDB registry: v1 → v2 → v3, rollback → v2, rollback → v1, then 409
    (nothing older that was not rolled back); a promotion against a moved pointer is 409 and audited."""
    stores = wiring.stores(settings())
    reg = stores.registry
    svc = ModelsService(stores, settings())
    for v in (V1, V2, V3):
        key, sha = stores.models.put("alice", v, f"onnx {v}".encode())
        reg.put_version("alice", v, _record(v, s3_key=key, sha256=sha, validated=True, status="validated"))
    for v in (V1, V2, V3):
        assert svc.promote("alice", v, reason="ship", actor="ops")["active_version"] == v
    assert svc.rollback("alice", reason="bad", actor="ops") == {
        "user_id": "alice", "active_version": V2, "rolled_back_from": V3}
    assert svc.rollback("alice", reason="bad", actor="ops")["active_version"] == V1
    with pytest.raises(Conflict) as nothing:
        svc.rollback("alice", reason="bad", actor="ops")
    assert nothing.value.code == "no_previous_version"
    assert {r["version"]: r["status"] for r in reg.versions("alice")} == {
        V1: "active", V2: "rolled_back", V3: "rolled_back"}
    assert reg.active("alice")["previous_version"] == V2
    trail = [(a["action"], a["from_version"], a["to_version"]) for a in reg.audit_trail("alice")]
    assert trail == [("manual_promote", "", V1), ("manual_promote", V1, V2), ("manual_promote", V2, V3),
                     ("rollback", V3, V2), ("rollback", V2, V1)]
    # a race: the pointer moves between the service's read and its conditional write
    real_active = reg.active

    def stale_active(user_id, consistent=False):
        seen = real_active(user_id, consistent)
        reg.activate(user_id, reg.get_version(user_id, V3), expected_version=seen["version"], actor="other",
                     reason="meanwhile")
        return seen

    reg.active = stale_active
    with pytest.raises(Conflict) as race:
        svc.promote("alice", V2, reason="ship", actor="ops")
    del reg.active
    assert race.value.code == "active_changed" and reg.active("alice")["version"] == V3
    lost = next(a for a in reg.audit_trail("alice") if a["action"].endswith("_conflict"))
    assert (lost["action"], lost["version"], lost["expected_version"]) == ("manual_promote_conflict", V2, V1)


# ----------------------------------------------------------------------------- audit trail, drift


def test_audit_items_are_keyed_by_time_and_read_in_time_order(reg, clock, monkeypatch):
    monkeypatch.setattr(registry_mod, "random", TopRandom)
    for action in ("b", "a", "c"):
        reg.audit("alice", action=action, actor="x")
    trail = reg.audit_trail("alice")
    assert [a["action"] for a in trail] == ["b", "a", "c"]  # time order, not by field
    assert [(a["sk"], a["at"]) for a in trail] == [
        (f"AUDIT#2026-05-01T00:00:00.00{i}+00:00#ffff", f"2026-05-01T00:00:00.00{i}+00:00") for i in (1, 2, 3)]
    assert reg.audit_trail("bob") == [] and reg.versions("alice") == []


def test_audit_key_suffix_is_four_random_hex_digits(reg):
    for _ in range(3):
        reg.audit("alice", action="a")
    for a in reg.audit_trail("alice"):
        assert re.fullmatch(r"AUDIT#\d{4}-\d\d-\d\dT[\d:.]+\+00:00#[0-9a-f]{4}", a["sk"]), a["sk"]
        assert a["sk"].split("#")[1] == a["at"]
        datetime.fromisoformat(a["at"])


def test_mark_drift_writes_the_report_on_the_pointer_and_an_existing_version_only(reg):
    reg.put_version("alice", V1, _record(V1))
    reg.activate("alice", _record(V1), expected_version=None, actor="a", reason="r")
    calm = {"drifted": False, "max": 0.01}
    assert reg.mark_drift("alice", V1, calm, at="2026-01-02T00:00:00+00:00") is True
    for item in (reg.active("alice"), reg.get_version("alice", V1)):
        assert (item["drift"], item["drifted"], item["drift_at"]) == (calm, False, "2026-01-02T00:00:00+00:00")
    # ACTIVE names V1 but its version record is gone: the pointer is updated, no record is created
    reg.table.delete_item(Key={"user_id": "alice", "sk": f"MODEL#{V1}"})
    assert reg.mark_drift("alice", V1, {"drifted": True}, at="2026-01-03T00:00:00+00:00") is True
    assert reg.active("alice")["drifted"] is True and reg.get_version("alice", V1) is None
    assert reg.mark_drift("bob", V1, {"drifted": True}, at="x") is False and reg.active("bob") is None


# ----------------------------------------------------------------------------- training runs, erasures


def test_run_records_newest_first_twenty_by_default(reg):
    for i in range(21):
        reg.put_run(f"r2026010100{i:04d}-aaaaaa", {"trained": i})
    got = reg.runs()
    assert len(got) == 20 and got[0]["run_id"] == "r20260101000020-aaaaaa" and got[0]["trained"] == 20
    assert got[-1]["run_id"] == "r20260101000001-aaaaaa"
    assert _item(reg, RUN_PK, "r20260101000003-aaaaaa")["run_id"] == "r20260101000003-aaaaaa"
    assert reg.get_run("r20260101000003-aaaaaa") == {"user_id": RUN_PK, "sk": "r20260101000003-aaaaaa",
                                                     "run_id": "r20260101000003-aaaaaa", "trained": 3}


def test_erasure_records_keep_their_time_and_come_newest_first(reg, clock, monkeypatch):
    monkeypatch.setattr(registry_mod, "random", TopRandom)
    reg.put_erasure({"action": "erase", "at": "2026-04-01T00:00:00.000+00:00", "user_hash": "h0"})
    reg.put_erasure({"action": "erase", "user_hash": "h1"})  # no time given: now
    (newest, oldest) = reg.erasures()
    assert (newest["user_hash"], newest["at"], newest["sk"]) == ("h1", clock.last, f"ERASE#{clock.last}#ffff")
    assert (oldest["at"], oldest["sk"]) == ("2026-04-01T00:00:00.000+00:00", "ERASE#2026-04-01T00:00:00.000+00:00#ffff")
    assert newest["user_id"] == ERASURE_PK and [e["user_hash"] for e in reg.erasures(limit=1)] == ["h1"]


def test_erasures_fifty_by_default(reg):
    for i in range(51):
        reg.put_erasure({"action": "erase", "at": f"2026-04-01T00:00:{i:02d}.000+00:00", "user_hash": f"h{i}"})
    got = reg.erasures()
    assert len(got) == 50 and got[0]["user_hash"] == "h50" and got[-1]["user_hash"] == "h1"


def test_scrub_runs_removes_the_user_from_failures_and_rejections_only(reg):
    reg.put_run("r1", {"failures": [{"user_id": "bob"}], "rejections": [{"user_id": "alice", "why": "w"},
                                                                        {"user_id": "bob"}, "note"]})
    reg.put_run("r2", {"failures": "n/a", "rejections": [{"user_id": "bob"}]})
    reg.put_run("r3", {"failures": [{"user_id": "alice"}], "seconds": 1.5})
    assert reg.scrub_runs("alice") == 2 and reg.scrub_runs("alice") == 0
    assert reg.get_run("r1")["rejections"] == [{"user_id": "bob"}, "note"]
    assert reg.get_run("r1")["failures"] == [{"user_id": "bob"}]
    assert reg.get_run("r2") == {"user_id": RUN_PK, "sk": "r2", "run_id": "r2", "failures": "n/a",
                                 "rejections": [{"user_id": "bob"}]}
    assert reg.get_run("r3")["failures"] == [] and reg.get_run("r3")["seconds"] == 1.5


# ----------------------------------------------------------------------------- the user's data lifecycle


def test_delete_user_counts_every_item_once(reg):
    for v in (V1, V2):
        reg.put_version("alice", v, _record(v))
    reg.audit("alice", action="train_requested")
    reg.put_version("bob", V1, _record(V1))
    assert reg.delete_user("alice") == 3  # no ACTIVE: two versions and the audit item
    assert reg.versions("alice") == [] and reg.audit_trail("alice") == [] and len(reg.versions("bob")) == 1


def test_delete_user_counts_the_pointer_once_when_the_listing_still_shows_it(reg, aws):
    """The listing after the pointer's DeleteItem is an eventually consistent Query: it may still
    show ACTIVE. The pointer is counted (and deleted) once."""
    import boto3

    reg.put_version("alice", V1, _record(V1))
    reg.activate("alice", _record(V1), expected_version=None, actor="a", reason="r")  # + ACTIVE, AUDIT
    low = boto3.client("dynamodb")
    client = reg.t.ddb.meta.client

    def stale_listing(params, model, **kw):
        resp = low.query(**json.loads(params["body"]))  # wire format in, wire format out
        resp["Items"].append({"user_id": {"S": "alice"}, "sk": {"S": "ACTIVE"}})
        resp["Count"] += 1
        return StubHttp(200), resp

    client.meta.events.register("before-call.dynamodb.Query", stale_listing)
    try:
        assert reg.delete_user("alice") == 3
    finally:
        client.meta.events.unregister("before-call.dynamodb.Query", stale_listing)
    assert reg.active("alice") is None and reg.versions("alice") == []


# ----------------------------------------------------------------------------- error translation


def _port_methods() -> set[str]:
    return {n for n, v in vars(ModelRegistry).items() if inspect.isfunction(v) and not n.startswith("_")}


CALLS = {
    "put_version": lambda r: r.put_version("alice", V1, _record(V1)),
    "get_version": lambda r: r.get_version("alice", V1),
    "set_status": lambda r: r.set_status("alice", V1, "validated"),
    "versions": lambda r: r.versions("alice"),
    "active": lambda r: r.active("alice"),
    "activate": lambda r: r.activate("alice", _record(V1), expected_version=None, actor="a", reason="r"),
    "audit": lambda r: r.audit("alice", action="a"),
    "put_gate_skip": lambda r: r.put_gate_skip("alice", {"reason": "r", "at": "x", "labels_total": 1}),
    "gate_skip": lambda r: r.gate_skip("alice"),
    "mark_drift": lambda r: r.mark_drift("alice", V1, {"drifted": True}, at="x"),
    "audit_trail": lambda r: r.audit_trail("alice"),
    "put_run": lambda r: r.put_run("r1", {}),
    "get_run": lambda r: r.get_run("r1"),
    "runs": lambda r: r.runs(),
    "delete_user": lambda r: r.delete_user("alice"),
    "scrub_runs": lambda r: r.scrub_runs("alice"),
    "put_erasure": lambda r: r.put_erasure({"action": "erase"}),
    "erasures": lambda r: r.erasures(),
}


def test_every_port_method_is_exercised_below():
    assert set(CALLS) == _port_methods()


@pytest.mark.parametrize("method", sorted(CALLS))
def test_throttling_becomes_service_unavailable_on_every_method(reg, method):
    """Reads, queries, plain and conditional writes, deletions and the composite ``activate``: a
    throttle that outlived boto3's retries is a 503 with Retry-After; any other error passes as is."""
    client = reg.t.ddb.meta.client
    for code, expect in (("ProvisionedThroughputExceededException", ServiceUnavailable),
                         ("AccessDeniedException", ClientError)):
        hook = _answer_error(code)
        client.meta.events.register("before-call.dynamodb", hook)
        try:
            with pytest.raises(expect) as err:
                CALLS[method](reg)
        finally:
            client.meta.events.unregister("before-call.dynamodb", hook)
        if expect is ServiceUnavailable:
            assert err.value.retry_after == 2 and err.value.status == 503
            assert isinstance(err.value.__cause__, ClientError)
        else:
            assert err.value.response["Error"]["Code"] == code
