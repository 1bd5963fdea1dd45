"""The review queue's rules, one by one (calroute.services.review; the mutation target
``services.review``): the event vectors, their similarities, the stratified order, the sample's
picks and what each stands for, the queue's answer and the confirmation — against the in-memory
stores."""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from calroute.errors import InvalidInput, NotFound
from calroute.features import GROUP_WEIGHTS, spec_tokens
from calroute.ports import StoredEvent
from calroute.schema import parse_event
from calroute.services import review
from calroute.services.review import (confirm_event, priority, rank, review_queue, similarities,
                                      stratified_order, vector)
from support.fakes import fake_stores


DEFAULT_META = {"margin": 0.5, "novelty": 0.0, "method": "llm"}


def ev_row(eid: str, cal: str, title: str, start: datetime, *, minutes: int = 60, meta=DEFAULT_META,
           provenance: str = "llm") -> StoredEvent:
    ev = parse_event({"event_id": eid, "summary": title, "start": start.isoformat(),
                      "end": (start + timedelta(minutes=minutes)).isoformat(), "calendar_id": cal})
    return StoredEvent(ev, provenance, "2025-06-01T00:00:00Z", None if meta is None else dict(meta))


MON = datetime(2025, 1, 6, 9, 0, tzinfo=timezone.utc)  # a Monday in January 2025
ELSEWHEN = datetime(2023, 8, 17, 19, 30, tzinfo=timezone.utc)  # another year, month, weekday, hour


def same_time(prefix: str, cal: str, title: str, n: int, start: datetime = MON, **kw) -> list[StoredEvent]:
    """``n`` events with one vector (same title, same start): one group, in id order."""
    return [ev_row(f"{prefix}{i:03d}", cal, title, start, **kw) for i in range(n)]


def ids_(ranked) -> list[str]:
    return [r.event.event_id for r, _ in ranked]


# ----------------------------------------------------------------------------- vectors, similarity

def test_vector_is_the_weighted_normalised_token_counts_of_title_words_trigrams_and_time():
    r = ev_row("a", "work", "Go go team go", MON)
    toks = spec_tokens(r.event)
    want: dict[str, float] = {}
    for g in ("t", "c", "k"):
        counts = Counter(toks[g])
        norm = math.sqrt(sum(c * c for c in counts.values()))
        for t, c in counts.items():
            want[f"{g}\x1f{t}"] = GROUP_WEIGHTS[g] * c / norm
    total = math.sqrt(sum(v * v for v in want.values()))
    want = {k: v / total for k, v in want.items()}
    got = vector(r)
    assert got.keys() == want.keys()
    assert all(got[k] == pytest.approx(want[k], rel=1e-12) for k in want)
    assert got["t\x1fgo"] > got["t\x1fteam"] > 0  # "go" three times
    assert sum(v * v for v in got.values()) == pytest.approx(1.0)
    assert all(v > 0 for v in got.values())


def test_similarities_are_cosines_within_a_group_positive_only_and_capped():
    sims = similarities([{"a": 0.6, "b": 0.8}, {"a": 0.6, "b": 0.8}, {"a": 1.0}, {"a": 1.0}],
                        ["x", "x", "x", "y"])
    assert sims[0] == {0: 1.0, 1: pytest.approx(1.0), 2: pytest.approx(0.6)}
    assert sims[2] == {2: 1.0, 0: pytest.approx(0.6), 1: pytest.approx(0.6)}
    assert sims[3] == {3: 1.0}  # another group: never compared
    # a zero or negative cosine is left out; a product above 1 (vectors not unit) is capped at 1;
    # an event is 1 to itself whatever its length
    sims = similarities([{"a": 1.0, "b": 1.0}, {"a": 1.0, "b": -1.0}, {"c": 2.0}, {"c": 2.0}, {"d": 0.5}],
                        ["x"] * 5)
    assert sims[0] == {0: 1.0} and sims[1] == {1: 1.0}
    assert sims[2] == {2: 1.0, 3: 1.0}
    assert sims[4] == {4: 1.0}


# ----------------------------------------------------------------------------- the order

def test_calendars_come_most_pending_first_each_one_contiguous():
    rows = (same_time("z", "zulu", "Standup", 3)
            + [ev_row("q1", "zulu", "Quarterly budget", ELSEWHEN + timedelta(days=40), minutes=240)]
            + same_time("a", "alpha", "Climbing", 2, ELSEWHEN))
    order = [r.event.calendar_id for r in stratified_order(rows)]
    assert order == ["zulu"] * 4 + ["alpha"] * 2


def test_within_a_calendar_the_chain_goes_to_the_most_similar_group_next():
    # A (7 standups) is the densest; C (6, another time and length) is denser than B (1) but shares
    # nothing with A, B shares A's time and a word: after A comes B, then C
    rows = (same_time("a", "work", "Standup", 7) + same_time("b", "work", "Standup review retro planning", 1)
            + same_time("c", "work", "Climbing", 6, ELSEWHEN, minutes=240))
    sims = similarities([vector(rows[0]), vector(rows[7]), vector(rows[8])], ["work"] * 3)
    assert 2 not in sims[0] and sims[0][1] > 0  # the premise: A-C nothing, A-B similar
    density = [sum(w * sims[i].get(j, 0.0) for j, w in enumerate((7, 1, 6))) for i in range(3)]
    assert density[0] > density[2] > density[1]  # the premise: by density alone C would come before B
    assert [r.event.event_id for r in stratified_order(rows)] == (
        [f"a{i:03d}" for i in range(7)] + ["b000"] + [f"c{i:03d}" for i in range(6)])


def test_repeats_are_ordered_by_start_then_id():
    rows = [ev_row(e, "work", "Standup", MON) for e in ("d", "b", "c", "a")]
    assert [r.event.event_id for r in stratified_order(rows)] == ["a", "b", "c", "d"]


# ----------------------------------------------------------------------------- the picks

def test_rank_with_no_room_or_one_place():
    rows = same_time("w", "work", "Standup", 5)
    assert rank(rows, 0) == [] and rank([], 3) == []
    assert ids_(rank(rows, 1)) == ["w000"] and rank(rows, 1)[0][1] == 5


def test_a_pool_event_halfway_between_two_picks_is_stood_for_by_the_earlier_one():
    rows = same_time("w", "work", "Standup", 4)  # picks at positions 0 and 2; position 1 is a tie
    assert [(r.event.event_id, n) for r, n in rank(rows, 2)] == [("w000", 2), ("w002", 2)]


def test_a_taken_position_falls_back_to_the_nearest_free_event():
    # 14 events, 10 picks: the 10th van der Corput position (int(0.5625 × 14) = 7) is taken; the
    # nearest free event is the 7th (distance 1), not the first free one (the 5th)
    rows = same_time("w", "work", "Standup", 14)
    assert ids_(rank(rows, 10)) == [f"w{i:03d}" for i in (0, 7, 3, 10, 1, 8, 5, 12, 2, 6)]


def test_the_backlog_spread_sorts_by_start_then_id(monkeypatch):
    monkeypatch.setattr(review, "POOL_MAX", 2)
    rows = [ev_row(e, "work", "Standup", MON) for e in ("d", "c", "b", "a")]
    assert sorted(ids_(rank(rows, 2))) == ["a", "c"]


def test_recent_share_rounds_up(monkeypatch):
    rows = [ev_row(f"w{i:03d}", "work", "Standup", MON + timedelta(minutes=i)) for i in range(41)]
    monkeypatch.setattr(review, "RECENT_SHARE", 0.5)
    got = rank(rows, 3)
    assert sum(n for _, n in got) == 21 and min(ids_(got)) >= "w020"


def test_margin_reads_zero_without_a_model_and_is_clipped_to_one():
    def m(meta):
        return review._margin(ev_row("a", "w", "x", MON, meta=meta))

    assert m({"margin": 1.5}) == 1.0 and m({"margin": -0.2}) == 0.0 and m({"margin": 0.25}) == 0.25
    assert m({"margin": None}) == 0.0 and m({}) == 0.0 and m(None) == 0.0


def test_newest_sorts_newer_first_then_smaller_id():
    older, a, b = (ev_row(e, "w", "x", MON + timedelta(hours=h)) for e, h in (("z", 0), ("a", 1), ("b", 1)))
    assert sorted([older, b, a], key=review._newest) == [a, b, older]


def test_priority_is_the_margin_discounted_by_novelty():
    def p(meta):
        return priority(ev_row("a", "w", "x", MON, meta=meta))

    assert p({"margin": 0.4, "novelty": 0.5}) == pytest.approx(0.3)
    assert p({"margin": 0.4, "novelty": 0.0}) == pytest.approx(0.4)
    assert p({"margin": 0.4}) == pytest.approx(0.2)  # novelty unknown: counted as fully novel
    assert p({"novelty": 0.0}) == 0.0 and p(None) == 0.0


# ----------------------------------------------------------------------------- the queue's answer

def seeded(n: int = 12):
    stores = fake_stores()
    stores.events.put_events("alice", [ev_row("u1", "work", "Standup", MON, provenance="user").event])
    meta = {"margin": 0.123456, "novelty": 0.2, "confidence": 0.61, "method": "llm", "model_version": "v1"}
    stores.events.remember("alice", [(r.event, "llm", meta) for r in same_time("w", "work", "Standup", n)])
    return stores


def test_review_queue_answers_each_event_with_what_it_was_answered_with():
    stores = seeded()
    out = review_queue("alice", stores, limit=1)
    answered_at = stores.events.get_stored("alice", "w000").updated_at
    assert out == {"user_id": "alice", "pending": 12, "events": [{
        "event_id": "w000", "calendar_id": "work", "summary": "Standup", "start": "2025-01-06T09:00:00+00:00",
        "margin": 0.123456, "novelty": 0.2, "confidence": 0.61, "method": "llm", "model_version": "v1",
        "priority": 0.1111, "represents": 12, "answered_at": answered_at}]}


def test_review_queue_limits():
    stores = seeded()
    assert len(review_queue("alice", stores)["events"]) == review.DEFAULT_LIMIT == 10
    assert len(review_queue("alice", stores, limit=review.MAX_LIMIT)["events"]) == 12
    for bad in (0, -1, review.MAX_LIMIT + 1, True, 2.0, "3"):
        with pytest.raises(InvalidInput) as err:
            review_queue("alice", stores, limit=bad)
        assert err.value.field == "limit"
        assert err.value.message == f"limit must be an integer from 1 to {review.MAX_LIMIT}"


# ----------------------------------------------------------------------------- confirm

def test_confirm_makes_a_remembered_label_trusted_counts_it_and_marks_the_prediction():
    stores = seeded(2)
    stores.predictions.put_many("alice", [{"event_id": "w000", "calendar_id": "work", "method": "llm"}])
    assert confirm_event("alice", "w000", stores) == {"event_id": "w000", "calendar_id": "work",
                                                      "provenance": "confirmed", "changed": True}
    assert stores.events.get_stored("alice", "w000").provenance == "confirmed"
    assert stores.events.get_stored("alice", "w000").event.calendar_id == "work"
    assert stores.users.profile("alice")["labels_total"] == 1
    logged = stores.predictions.get("alice", "w000")
    assert logged["was_correct"] is True and logged["corrected_to"] == "work"
    # an event the prediction log does not have: confirmed, and nothing is logged for it
    assert confirm_event("alice", "w001", stores)["changed"] is True
    assert stores.predictions.get("alice", "w001") is None
    assert stores.users.profile("alice")["labels_total"] == 2


def test_confirming_the_users_own_label_changes_nothing():
    stores = seeded(1)
    assert confirm_event("alice", "u1", stores) == {"event_id": "u1", "calendar_id": "work",
                                                    "provenance": "user", "changed": False}
    assert stores.events.get_stored("alice", "u1").provenance == "user"
    assert "labels_total" not in stores.users.profile("alice")


def test_confirm_refuses_unknown_and_invalid_events():
    stores = seeded(1)
    with pytest.raises(NotFound) as err:
        confirm_event("alice", "nope", stores)
    assert (err.value.message, err.value.field) == ("event 'nope' not found", "eventId")
    with pytest.raises(NotFound):
        confirm_event("bob", "w000", stores)  # another user's event is not there for bob
    with pytest.raises(InvalidInput) as err:
        confirm_event("alice", "bad id!", stores)
    assert err.value.field == "eventId"
