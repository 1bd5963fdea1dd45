"""The featurizer's definition (calroute.features), piece by piece with values worked out by hand:
text normalisation, word and character tokens, e-mail domains, the 14 dense columns, the duration
buckets and the spec-2 time tokens, the crc32 hashing trick and the per-group L2 normalisation.
A model is served with exactly the vectors it was trained on, so every one of these is pinned."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from calroute import features as F
from calroute.schema import parse_event


def event(**kw):
    return parse_event({"summary": "x", "start": "2026-03-02T10:00:00Z", "end": "2026-03-02T11:00:00Z", **kw})


# ----------------------------------------------------------------------------- text


@pytest.mark.parametrize("text, expected", [
    ("", ""),
    (None, ""),
    ("Board MEETING", "board meeting"),
    ("Tom &amp; Jerry", "tom & jerry"),
    ("a&b", "a&b"),
    ("<b>Bold</b>move", " bold move"),
    ("1 < 2", "1 < 2"),
    ("1 < 2 and 3 > 2", "1   2"),
    ("&lt;i&gt;x&lt;/i&gt;", " x "),  # entities first, then tags
    ("<" + "a" * 201 + ">z", "<" + "a" * 201 + ">z"),  # not a tag: longer than 200
    ("<" + "a" * 200 + ">z", " z"),
    ("ﬁle Ｈello", "file hello"),  # NFKC
])
def test_normalize_text(text, expected):
    assert F.normalize_text(text) == expected


def test_words_are_unicode_aware():
    assert F.words("Schůzka: 회의 & <b>Plan</b>-B_2") == ["schůzka", "회의", "plan", "b_2"]
    assert F.words("") == []


def test_char_ngrams_pad_each_word():
    assert F.char_ngrams(["abc", "a", "ab"]) == [" ab", "abc", "bc ", " a ", " ab", "ab "]
    assert F.char_ngrams(["abc"], 2) == [" a", "ab", "bc", "c "]
    assert F.char_ngrams(["a"], 4) == [" a "]
    assert F.char_ngrams(["ab"], 4) == [" ab "]
    assert F.char_ngrams([]) == []


@pytest.mark.parametrize("email, domain", [
    ("Coach@Morley.Example", "morley.example"),
    ("a@b@Corp.COM", "corp.com"),
    ("NoAt.Example", "noat.example"),
])
def test_domain(email, domain):
    assert F._domain(email) == domain


def test_event_tokens():
    ev = event(summary="Hockey &amp; Co", location="Ice Rink 2", description="bring <b>skates</b>",
               attendees=["b@Club.example", "a@club.example", "c@other.example"], organizer="Boss@HQ.example")
    assert F.event_tokens(ev) == {
        "t": ["hockey", "co"],
        "c": [" ho", "hoc", "ock", "cke", "key", "ey ", " co", "co "],
        "l": ["ice", "rink", "2"],
        "d": ["bring", "skates"],
        "a": ["club.example", "other.example"],
        "o": ["hq.example"],
    }
    bare = F.event_tokens(event(summary=""))
    assert bare == {"t": [], "c": [], "l": [], "d": [], "a": [], "o": []}


def test_description_tokens_stop_at_300():
    ev = event(description=" ".join(f"w{i}" for i in range(301)))
    d = F.event_tokens(ev)["d"]
    assert len(d) == F.MAX_DESCRIPTION_TOKENS == 300 and d[-1] == "w299"


# ----------------------------------------------------------------------------- dense columns


def test_dense_features_of_a_weekday_morning_meeting():
    # Monday 2026-03-02 10:30 for 60 minutes, one attendee, 7-character title
    ev = event(summary="Standup", start="2026-03-02T10:30:00Z", end="2026-03-02T11:30:00Z",
               attendees=["a@b.example"])
    hour = 10.5
    assert F.dense_features(ev) == pytest.approx([
        math.sin(2 * math.pi * hour / 24), math.cos(2 * math.pi * hour / 24), 0.0, 1.0,
        0.0, 0.0, math.log1p(60) / math.log1p(1440 * 7), 0.0, 0.0, 0.0,
        math.log1p(1) / math.log1p(200), 0.0, 0.07, 0.0], abs=1e-12)


def test_dense_features_of_a_saturday_evening_with_everything():
    # Saturday 2026-03-07 18:00, 90 minutes
    ev = event(summary="T" * 150, start="2026-03-07T18:00:00Z", end="2026-03-07T19:30:00Z", location="Pub",
               description="d", recurring=True, attendees=[f"p{i}@x.example" for i in range(200)])
    # more attendees than the API accepts (an older store's rows): still clipped to 1
    many = ev.model_copy(update={"attendees": tuple(f"p{i}@x.example" for i in range(300))})
    assert F.dense_features(many)[10] == 1.0
    out = F.dense_features(ev)
    assert out[:4] == pytest.approx([math.sin(2 * math.pi * 18 / 24), math.cos(2 * math.pi * 18 / 24),
                                     math.sin(2 * math.pi * 5 / 7), math.cos(2 * math.pi * 5 / 7)], abs=1e-12)
    assert out[4:] == pytest.approx([1.0, 0.0, math.log1p(90) / math.log1p(1440 * 7), 0.0, 1.0, 1.0, 1.0, 1.0,
                                     1.0, 1.0], abs=1e-12)
    # 17:59 is not evening; Friday is not weekend, Sunday is
    assert F.dense_features(event(start="2026-03-06T17:59:00Z", end="2026-03-06T18:30:00Z"))[4] == 0.0
    assert F.dense_features(event(start="2026-03-06T17:59:00Z", end="2026-03-06T18:30:00Z"))[13] == 0.0
    assert F.dense_features(event(start="2026-03-08T09:00:00Z", end="2026-03-08T10:00:00Z"))[4] == 1.0


def test_dense_features_of_a_multi_day_all_day_event():
    # all day Sunday 2026-03-08 for 10 days: hour 0, weekend, duration clipped to 1, multi-day, not evening
    ev = event(summary="Holiday", start="2026-03-08", end="2026-03-18", all_day=True)
    assert ev.all_day and ev.duration_minutes == 14400
    assert F.dense_features(ev) == pytest.approx([
        0.0, 1.0, math.sin(2 * math.pi * 6 / 7), math.cos(2 * math.pi * 6 / 7), 1.0, 1.0, 1.0, 1.0,
        0.0, 0.0, 0.0, 0.0, 0.07, 0.0], abs=1e-12)
    # the hour of an all-day event is 0 whatever time its start carries (the featurizer does not
    # rely on the parser having moved it to midnight)
    late = ev.model_copy(update={"start": ev.start.replace(hour=15, minute=30)})
    assert F.dense_features(late)[:2] == [0.0, 1.0]
    # exactly one day is not multi-day; a minute more is
    one = event(start="2026-03-02T10:00:00Z", end="2026-03-03T10:00:00Z")
    assert F.dense_features(one)[7] == 0.0
    more = event(start="2026-03-02T10:00:00Z", end="2026-03-03T10:01:00Z")
    assert F.dense_features(more)[7] == 1.0


def test_featurize_dense_shape():
    assert F.featurize_dense([]).shape == (0, F.N_DENSE)
    X = F.featurize_dense([event(), event(summary="y" * 50)])
    assert X.shape == (2, 14) and X.dtype == np.float32 and X[1, 12] == np.float32(0.5)


# ----------------------------------------------------------------------------- time tokens (spec 2)


@pytest.mark.parametrize("minutes, bucket", [
    (0, "0"), (1, "30"), (30, "30"), (31, "60"), (60, "60"), (90, "90"), (91, "120"), (180, "180"),
    (240, "240"), (241, "360"), (600, "600"), (601, "1440"), (1440, "1440"), (1441, "long")])
def test_duration_bucket(minutes, bucket):
    assert F.duration_bucket(minutes) == bucket


def test_time_tokens_of_a_timed_event():
    ev = event(start="2026-03-06T20:24:00Z", end="2026-03-06T21:24:00Z")  # Friday
    assert F.time_tokens(ev) == ["w4", "dur60", "y2026", "ym2026-03", "h20", "hm20:20", "wh4_20"]
    ev = event(start="2026-11-07T09:05:00Z", end="2026-11-07T09:50:00Z", location="L", description="D",
               attendees=["a@b.example"], recurring=True)  # Saturday
    assert F.time_tokens(ev) == ["w5", "dur60", "y2026", "ym2026-11", "h9", "hm9:05", "wh5_9", "weekend",
                                 "has_loc", "has_desc", "has_att", "recurring"]


def test_multi_day_starts_after_exactly_one_day():
    one = event(start="2026-03-02T10:00:00Z", end="2026-03-03T10:00:00Z")
    assert "multiday" not in F.time_tokens(one) and "dur1440" in F.time_tokens(one)
    more = event(start="2026-03-02T10:00:00Z", end="2026-03-03T10:01:00Z")
    assert more.duration_minutes == 1441 and "multiday" in F.time_tokens(more)


def test_time_tokens_of_an_all_day_multi_day_event():
    ev = event(start="2026-03-08", end="2026-03-10", all_day=True)
    assert F.time_tokens(ev) == ["w6", "durlong", "y2026", "ym2026-03", "allday", "wallday6", "multiday",
                                 "weekend"]


def test_spec_tokens_add_the_time_group_from_spec_2():
    ev = event(summary="Hockey")
    assert "k" not in F.spec_tokens(ev, 1) and F.spec_tokens(ev, 1)["t"] == ["hockey"]
    assert F.spec_tokens(ev, 2)["k"] == F.time_tokens(ev)
    assert F.spec_tokens(ev)["k"] == F.time_tokens(ev)
    assert F.spec_tokens(ev, 3)["k"] == F.time_tokens(ev)


# ----------------------------------------------------------------------------- hashing


def test_hash_is_crc32_of_group_and_token():
    for group, tok in (("t", "hockey"), ("c", " ho"), ("k", "w4"), ("a", "x.example")):
        h = zlib.crc32(f"{group}\x1f{tok}".encode("utf-8"))
        assert F._hash(group, tok) == (F.N_DENSE + h % 4096, 1.0 if h >= 2 ** 31 else -1.0)
    signs = {F._hash("t", f"w{i}")[1] for i in range(50)}
    assert signs == {1.0, -1.0}
    assert F._hash("t", "é") == (F.N_DENSE + (zlib.crc32("t\x1fé".encode()) & 4095),
                                 1.0 if zlib.crc32("t\x1fé".encode()) >> 31 else -1.0)
    assert F.HASH_DIM == 4096 and F.N_FEATURES == 14 + 4096


def _expected(groups: dict[str, list[str]]) -> dict[int, float]:
    out: dict[int, float] = {}
    for g, toks in groups.items():
        acc: dict[int, float] = {}
        for t in toks:
            h = zlib.crc32(f"{g}\x1f{t}".encode("utf-8"))
            idx, sign = 14 + h % 4096, (1.0 if h >= 2 ** 31 else -1.0)
            acc[idx] = acc.get(idx, 0.0) + sign
        norm = math.sqrt(sum(v * v for v in acc.values()))
        for idx, v in acc.items():
            if norm:
                out[idx] = out.get(idx, 0.0) + v * F.GROUP_WEIGHTS[g] / norm
    return out


def test_one_group_is_l2_normalised_then_weighted():
    ev = event(summary="")
    row = np.zeros(F.N_FEATURES, dtype=np.float32)
    F.featurize_into(ev, row, 1, {"t": ["hockey"], "c": [], "l": ["a", "a", "b"]})
    assert np.array_equal(row[:14], np.asarray(F.dense_features(ev), dtype=np.float32))
    tok = {i: v for i, v in enumerate(row) if i >= 14 and v != 0.0}
    h = F._hash("t", "hockey")
    la, lb = F._hash("l", "a"), F._hash("l", "b")
    assert tok[h[0]] == pytest.approx(h[1] * 1.0)
    # "a" twice and "b" once: (2, 1) / sqrt(5), times the location weight 0.5
    assert tok[la[0]] == pytest.approx(la[1] * 2 * 0.5 / math.sqrt(5), rel=1e-6)
    assert tok[lb[0]] == pytest.approx(lb[1] * 0.5 / math.sqrt(5), rel=1e-6)
    assert len(tok) == 3


def test_tokens_that_cancel_out_leave_the_group_empty():
    # two tokens of opposite sign hashing to one column: the group's norm is 0, nothing is written
    seen: dict[int, tuple[str, float]] = {}
    pair = None
    for i in range(100_000):
        idx, sign = F._hash("t", f"w{i}")
        if idx in seen and seen[idx][1] != sign:
            pair = [seen[idx][0], f"w{i}"]
            break
        seen.setdefault(idx, (f"w{i}", sign))
    assert pair is not None
    row = np.zeros(F.N_FEATURES, dtype=np.float32)
    F.featurize_into(event(), row, 2, {"t": pair, "o": ["x.example"]})
    o = F._hash("o", "x.example")
    assert {i: float(v) for i, v in enumerate(row[14:], 14) if v} == {o[0]: pytest.approx(o[1] * 0.5)}


def test_featurize_matches_the_definition_for_each_spec():
    ev = event(summary="Hockey practice", location="Ice Rink", description="skates and sticks",
               attendees=["a@club.example"], organizer="boss@hq.example", start="2026-03-06T20:20:00Z",
               end="2026-03-06T21:30:00Z", recurring=True)
    for spec in (1, 2):
        X = F.featurize([ev], spec)
        tok = {i: float(v) for i, v in enumerate(X[0]) if i >= 14 and v != 0.0}
        want = _expected(F.spec_tokens(ev, spec))
        assert tok.keys() == {i for i, v in want.items() if abs(v) > 1e-9}
        assert all(tok[i] == pytest.approx(want[i], rel=1e-5) for i in tok)
    assert not np.array_equal(F.featurize([ev], 1), F.featurize([ev], 2))
    assert np.array_equal(F.featurize([ev]), F.featurize([ev], 2))


def test_featurize_uses_the_callers_tokens_in_order():
    a, b = event(summary="alpha"), event(summary="beta")
    tokens = [F.spec_tokens(b), F.spec_tokens(a)]
    X = F.featurize([a, b], tokens=tokens)
    Y = F.featurize([b, a])
    assert np.array_equal(X[:, 14:], Y[:, 14:])
    assert np.array_equal(X[:, :14], F.featurize([a, b])[:, :14])


def test_featurize_refuses_an_unknown_spec_or_mismatched_tokens():
    with pytest.raises(ValueError, match=r"unknown feature spec 3; supported: \(1, 2\)"):
        F.featurize([event()], 3)
    with pytest.raises(ValueError, match="unknown feature spec 0"):
        F.featurize([event()], 0)
    with pytest.raises(ValueError, match="1 token sets for 2 events"):
        F.featurize([event(), event()], tokens=[F.spec_tokens(event())])
    assert F.featurize([], 1).shape == (0, F.N_FEATURES)
    assert F.featurize([event()], 1, tokens=[F.spec_tokens(event(), 1)]).shape == (1, F.N_FEATURES)


def test_the_hash_memo_is_consulted_before_hashing(monkeypatch):
    # a remembered (column, sign) is used as is: the memo is what the predict path reads
    monkeypatch.setattr(F, "_HASH_MEMO", {g: {} for g in F.GROUP_WEIGHTS})
    F._HASH_MEMO["t"]["hockey"] = (20, -1.0)
    row = np.zeros(F.N_FEATURES, dtype=np.float32)
    F.featurize_into(event(), row, 2, {"t": ["hockey"]})
    assert {i: float(v) for i, v in enumerate(row[14:], 14) if v} == {20: -1.0}


def test_the_hash_memo_remembers_up_to_its_bound(monkeypatch):
    monkeypatch.setattr(F, "_HASH_MEMO_MAX", 3)
    monkeypatch.setattr(F, "_HASH_MEMO", {g: {} for g in F.GROUP_WEIGHTS})
    row = np.zeros(F.N_FEATURES, dtype=np.float32)
    F.featurize_into(event(), row, 2, {"t": ["a", "b", "c", "d", "e"]})
    assert F._HASH_MEMO["t"] == {t: F._hash("t", t) for t in ("a", "b", "c")}
    assert F._HASH_MEMO["l"] == {}


def test_spec_constants():
    assert F.FEATURE_SPEC_VERSION == 2 and F.SUPPORTED_SPECS == (1, 2)
    assert F.SPEC_GROUPS[1] == ("t", "c", "l", "d", "a", "o") and F.SPEC_GROUPS[2][-1] == "k"
    assert F.GROUP_WEIGHTS == {"t": 1.0, "c": 0.6, "l": 0.5, "d": 0.4, "a": 0.5, "o": 0.5, "k": 0.8}
