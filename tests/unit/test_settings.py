"""The user's settings (``GET``/``PUT /v1/users/{userId}/settings``): ``remember`` makes classify keep
the answered events of requests that do not say remember (docs/learning.md "Classify and remember")."""

from __future__ import annotations

import pytest

from calroute import wiring
from calroute.adapters.invoke import CallableInvoker
from calroute.config import Settings
from calroute.errors import InvalidInput
from calroute.schema import CalendarInfo
from calroute.services.ingest import get_settings, put_settings
from support.fakes import Recorder, fake_stores

CFG = Settings(prediction_log_sample_rate=0, prediction_log_lines=False)
EV = {"event_id": "e1", "summary": "Standup", "start": "2026-03-03T10:00:00Z"}


def _svc(stores, sink=None):
    for cal in ("work", "home"):
        stores.users.put_calendar("alice", CalendarInfo(calendar_id=cal, name=cal))
    return wiring.predict_service(CFG, stores=stores, sink=sink,
                                  invoker=CallableInvoker(lambda p: {"calendar_id": "work", "reason": "r", "usd": 0.0}))


def test_settings_default_partial_update_and_refusals():
    stores = fake_stores()
    assert get_settings("alice", stores) == {"remember": False, "updated_at": None}
    out = put_settings("alice", {"remember": True}, stores)
    assert out["remember"] is True and out["updated_at"]
    assert put_settings("alice", {}, stores)["remember"] is True  # nothing named: nothing changes
    with pytest.raises(InvalidInput) as err:
        put_settings("alice", {"colour": "blue"}, stores)
    assert err.value.field == "colour" and "unknown setting" in str(err.value)
    with pytest.raises(InvalidInput):
        put_settings("alice", {"remember": "yes"}, stores)
    with pytest.raises(InvalidInput):
        put_settings("../bob", {"remember": True}, stores)
    assert get_settings("alice", stores)["remember"] is True and get_settings("bob", stores)["remember"] is False


def test_the_setting_decides_only_when_the_request_does_not():
    stores = fake_stores()
    svc = _svc(stores)
    assert "remembered" not in svc.classify("alice", EV, remember=None)  # no setting: as before
    stores.users.put_settings("alice", {"remember": True})
    svc = _svc(stores)
    assert svc.classify("alice", EV, remember=None)["remembered"] is True
    assert stores.events.get_stored("alice", "e1").provenance == "llm"
    assert "remembered" not in svc.classify("alice", {**EV, "event_id": "e2"}, remember=False)
    assert stores.events.get_stored("alice", "e2") is None
    # under the setting an event without an id is answered, not kept, not refused
    r = svc.classify("alice", {k: v for k, v in EV.items() if k != "event_id"}, remember=None)
    assert r["calendar_id"] == "work" and r["remembered"] is False
    with pytest.raises(InvalidInput):  # asked for explicitly, an id is needed as before
        svc.classify("alice", {k: v for k, v in EV.items() if k != "event_id"}, remember=True)


def test_the_setting_is_read_once_per_interval_and_a_failed_read_keeps_the_last_value():
    stores = fake_stores()
    stores.users.put_settings("alice", {"remember": True})
    reads = []
    real = stores.users.settings
    stores.users.settings = lambda u: reads.append(u) or real(u)
    sink = Recorder()
    svc = _svc(stores, sink)
    for i in range(3):
        svc.classify("alice", {**EV, "event_id": f"e{i}"}, remember=None)
    assert reads == ["alice"]  # one read, then the per-container view (MODEL_REVALIDATE_SECONDS)
    assert svc.classify("alice", {**EV, "event_id": "x"}, remember=True)["remembered"] is True
    assert reads == ["alice"]  # a request that says remember never reads the setting

    def broken(u):
        raise RuntimeError("throttled")

    stores.users.settings = broken
    svc.settings.forget("alice")  # as after the interval: read again, fails
    assert svc.remember_setting("alice") is False  # nothing known yet: false (the answer says so)
    stores.users.settings = real
    svc.settings.forget("alice")
    assert svc.remember_setting("alice") is True
    stores.users.settings = broken
    svc.settings._entries["alice"] = (svc.settings.clock() - 1e9, svc.settings._entries["alice"][1])  # stale
    assert svc.remember_setting("alice") is True  # the last known value
    assert sink.total("SettingsReadFailures") == 2 and sink.total("CalendarReadFailures") == 0

    def no_calendars(u):
        raise RuntimeError("throttled")

    svc.calendars.fetch = no_calendars  # the directory holds the bound method it was wired with
    svc.calendars.forget("alice")
    svc.classify("alice", {**EV, "event_id": "y"}, remember=False)  # answered all the same
    assert sink.total("CalendarReadFailures") == 1
