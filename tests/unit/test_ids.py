"""calroute.ids: every validator's accepted charset, its rejections (with the field and the kind of id
named in a 4xx message), and the derived / hashed ids' exact form. The mutation target for ids.py
(tools/calroute_dev/mutation/targets.toml): each assertion here kills a mutant that the service
tests let through."""

from __future__ import annotations

import hashlib

import pytest

from calroute import ids
from calroute.errors import InvalidInput

VALIDATORS = [
    (ids.user_id, "userId", "user id", "alice.b@example.org"),
    (ids.calendar_id, "calendarId", "calendar id", "work-cal_2"),
    (ids.event_id, "eventId", "event id", "_evt:123@x"),
    (ids.model_version, "version", "model version", "v20260301120000-abc123"),
]


@pytest.mark.parametrize("check, field, what, good", VALIDATORS)
def test_a_valid_id_is_returned_unchanged(check, field, what, good):
    assert check(good) == good


@pytest.mark.parametrize("check, field, what, good", VALIDATORS)
@pytest.mark.parametrize("bad", ["", "a/b", "a..b", " a", "a\n", None, 7])
def test_an_invalid_id_names_its_default_field_and_kind(check, field, what, good, bad):
    with pytest.raises(InvalidInput) as exc:
        check(bad)
    err = exc.value
    assert err.field == field
    assert err.message.startswith(f"{field} {repr(bad)} is not a valid {what}: it must match ")
    assert "and not contain '..'" in err.message
    assert err.to_dict() == {"error": "invalid_input", "message": err.message, "field": field}


@pytest.mark.parametrize("check, field, what, good", VALIDATORS)
def test_the_caller_names_the_field(check, field, what, good):
    with pytest.raises(InvalidInput) as exc:
        check("bad/id", field="body.events[3].id")
    assert exc.value.field == "body.events[3].id"
    assert exc.value.message.startswith("body.events[3].id 'bad/id' is not a valid ")


def test_a_long_value_is_shown_cut_to_80_characters():
    value = "x/" * 500
    with pytest.raises(InvalidInput) as exc:
        ids.user_id(value)
    shown = repr(value)[:80]
    assert f"userId {shown} is not a valid user id" in exc.value.message
    assert repr(value)[:81] not in exc.value.message


@pytest.mark.parametrize("value", ["a..b", "v..1", "x.."])
def test_double_dots_are_refused_even_where_the_charset_allows_dots(value):
    with pytest.raises(InvalidInput):
        ids.user_id(value)
    with pytest.raises(InvalidInput):
        ids.event_id(value)
    assert not ids.is_valid_event_id(value)
    assert ids.is_valid_event_id(value.replace("..", "."))


def test_single_dots_and_the_charset_edges():
    assert ids.user_id("a." + "b" * 62) == "a." + "b" * 62          # 64 characters: the limit
    with pytest.raises(InvalidInput):
        ids.user_id("a" * 65)
    assert ids.calendar_id("c" * 128)
    with pytest.raises(InvalidInput):
        ids.calendar_id("c" * 129)
    assert ids.is_valid_event_id("e" * 256) and not ids.is_valid_event_id("e" * 257)
    assert ids.is_valid_event_id("_x:y") and not ids.is_valid_event_id("x y")


def test_derived_event_id_is_blake2b_128_over_the_parts_joined_by_unit_separator():
    got = ids.derived_event_id("cal", "20250102T100000Z", "Standup ü")
    want = hashlib.blake2b("cal\x1f20250102T100000Z\x1fStandup ü".encode("utf-8"), digest_size=16).hexdigest()
    assert got == f"h-{want}"
    assert len(got) == 2 + 32 and ids.is_valid_event_id(got)
    # the separator matters: ("ab", "c") and ("a", "bc") are different events
    assert ids.derived_event_id("ab", "c") != ids.derived_event_id("a", "bc")


def test_hashed_user_is_a_stable_12_hex_digest_of_the_user():
    got = ids.hashed_user("alice")
    assert got == hashlib.blake2b(b"alice", digest_size=6).hexdigest()
    assert len(got) == 12 and got != ids.hashed_user("bob")
