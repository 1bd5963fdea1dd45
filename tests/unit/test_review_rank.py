"""The review queue's ranking (calroute.services.review.rank, docs/learning.md "Review queue"): a
stratified, representative sample of the pending LLM answers — calendars and groups of similar
events in proportion to their numbers, a group's picks spread over its weeks, uncertainty only as a
tilt inside a stratum — deterministic, a short queue's positions the first of a longer one's,
pure Python."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from calroute.errors import InvalidInput
from calroute.ports import StoredEvent
from calroute.schema import parse_event
from calroute.services import review
from calroute.services.review import rank, review_queue, van_der_corput
from support.fakes import fake_stores

T0 = datetime(2025, 1, 6, 9, 0, tzinfo=timezone.utc)  # a Monday


def row(eid: str, cal: str, title: str, day: int, *, hour: int = 9, margin=0.5, provenance: str = "llm") -> StoredEvent:
    start = T0 + timedelta(days=day, hours=hour - 9)
    ev = parse_event({"event_id": eid, "summary": title, "start": start.isoformat(),
                      "end": (start + timedelta(hours=1)).isoformat(), "calendar_id": cal})
    meta = {} if margin is None else {"margin": margin, "novelty": 0.0, "method": "llm"}
    return StoredEvent(ev, provenance, "2025-06-01T00:00:00Z", meta)


def series(prefix: str, cal: str, title: str, n: int, *, every: int = 7, first: int = 0, hour: int = 9,
           margin=0.5) -> list[StoredEvent]:
    return [row(f"{prefix}{i:03d}", cal, title, first + every * i, hour=hour, margin=margin) for i in range(n)]


def ids_(ranked) -> list[str]:
    return [r.event.event_id for r, _ in ranked]


def test_van_der_corput_spreads_every_prefix():
    assert [van_der_corput(j) for j in range(8)] == [0, 0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]


def test_only_llm_labels_are_ranked():
    rows = series("w", "work", "Standup", 5) + [row("u1", "work", "Standup", 1, provenance="user"),
                                                 row("c1", "work", "Standup", 2, provenance="confirmed"),
                                                 row("m1", "work", "Standup", 3, provenance="ml")]
    assert sorted(ids_(rank(rows))) == [f"w{i:03d}" for i in range(5)]


def test_calendars_share_the_queue_in_proportion_to_their_pending_answers():
    # 30 pending work answers, 10 gym: 10 picks take 7-8 work and 2-3 gym, whatever the gym margins
    rows = (series("w", "work", "Standup", 15, every=2) + series("r", "work", "Design review", 15, every=2, hour=14)
            + series("g", "gym", "Climbing", 10, every=3, hour=19))
    cals = Counter(r.event.calendar_id for r, _ in rank(rows, 10))
    assert cals["work"] in (7, 8) and cals["gym"] in (2, 3)
    # confident answers are not preferred: the gym's share is the same when the model was sure of them
    sure = [r._replace(meta={**r.meta, "margin": 0.99}) if r.event.calendar_id == "gym" else r for r in rows]
    assert Counter(r.event.calendar_id for r, _ in rank(sure, 10)) == cals


def test_groups_of_similar_events_share_it_in_proportion_too():
    # one calendar: a series of 24, one of 8, and 8 one-offs; 10 picks ~ 6 / 2 / 2 (a lowest-margin or a
    # coverage-first queue would give the one-offs most of the picks)
    rows = (series("s", "work", "Weekly sync", 24, every=7)
            + series("p", "work", "Payroll run", 8, every=28, hour=15)
            + [row(f"o{i}", "work", title, 3 + 20 * i, hour=11) for i, title in enumerate(
                ["Offsite Lisbon", "Fire drill", "Vendor pitch", "Board dinner", "Audit kickoff", "Hackathon",
                 "Press interview", "Office move"])])
    got = Counter(r.event.event_id[0] for r, _ in rank(rows, 10))
    assert 5 <= got["s"] <= 7 and 1 <= got["p"] <= 3 and 1 <= got["o"] <= 3


def test_a_series_picks_spread_over_its_weeks():
    rows = series("w", "work", "Standup", 40)
    days = sorted((r.event.start_utc - T0).days // 7 for r, _ in rank(rows, 4))
    # four picks of 40 weeks: one in each quarter, not four neighbouring weeks
    assert [d // 10 for d in days] == [0, 1, 2, 3]


def test_uncertainty_tilts_within_a_stratum_only():
    rows = series("w", "work", "Standup", 40)
    plain = ids_(rank(rows, 4))
    # a less sure answer next to a pick is taken instead of it; one far away is not
    near = int(plain[1][1:]) + 1
    far = (int(plain[1][1:]) + 10) % 40
    tilted = [r._replace(meta={**r.meta, "margin": 0.05}) if int(r.event.event_id[1:]) in (near, far) else r
              for r in rows]
    got = ids_(rank(tilted, 4))
    assert got[1] == f"w{near:03d}" and f"w{far:03d}" not in got


def test_deterministic_and_a_short_queue_is_the_prefix_of_a_longer_one_when_margins_tie():
    rows = (series("w", "work", "Standup", 30, every=3) + series("g", "gym", "Climbing", 12, every=5, hour=19)
            + [row("x1", "gym", "Yoga retreat", 50)])
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    full = ids_(rank(rows, 20))
    assert ids_(rank(shuffled, 20)) == full
    assert ids_(rank(rows, 5)) == full[:5]
    assert len(set(full)) == 20
    # the tilt's window is a share of the sampling interval: a shorter queue looks further for a less
    # sure neighbour (here two places along the order from the pick at position ½, same calendar)
    order = review.stratified_order(sorted(rows, key=lambda r: r.event.start_utc))
    p = len(order) // 2
    near = order[p + 2].event.event_id
    assert order[p + 2].event.calendar_id == order[p].event.calendar_id and near not in full[:3]
    tilted = [r._replace(meta={**r.meta, "margin": 0.1}) if r.event.event_id == near else r for r in rows]
    short, long_ = ids_(rank(tilted, 3)), ids_(rank(tilted, 20))
    assert short[1] == near and long_[1] == order[p].event.event_id


def test_represents_counts_every_pooled_answer_once():
    rows = series("w", "work", "Standup", 30, every=3) + series("g", "gym", "Climbing", 12, every=5, hour=19)
    ranked = rank(rows, 6)
    assert sum(n for _, n in ranked) == len(rows) and all(n >= 1 for _, n in ranked)


def test_a_long_backlog_is_sampled_evenly_over_time(monkeypatch):
    monkeypatch.setattr(review, "POOL_MAX", 20)
    rows = series("w", "work", "Standup", 100, every=1)
    assert review._pool(sorted(rows, key=lambda r: r.event.start_utc))[::5] == \
        sorted(rows, key=lambda r: r.event.start_utc)[::25]
    got = rank(rows, 4)
    assert len(got) == 4 and sum(n for _, n in got) == 20


def test_review_queue_shape_and_limits():
    stores = fake_stores()
    stores.events.put_events("alice", [row("u1", "work", "Standup", 0).event])
    stores.events.remember("alice", [(r.event, "llm", r.meta) for r in series("w", "work", "Standup", 12)]
                           + [(row("g1", "gym", "Climbing", 3, hour=19).event, "llm", {"method": "llm_only"})])
    out = review_queue("alice", stores, limit=3)
    assert out["pending"] == 13 and len(out["events"]) == 3
    first = out["events"][0]
    assert set(first) >= {"event_id", "calendar_id", "summary", "start", "margin", "novelty", "priority",
                          "represents", "answered_at"}
    assert sum(e["represents"] for e in review_queue("alice", stores, limit=13)["events"]) == 13
    for bad in (0, 101, True, "3"):
        with pytest.raises(InvalidInput):
            review_queue("alice", stores, limit=bad)


def test_the_ranking_imports_no_numpy():
    """The ingest function (which serves the queue) ships the core layer only: no numpy."""
    code = ("import sys; from calroute.services import review; "
            "assert 'numpy' not in sys.modules, 'numpy imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_recent_share_draws_a_queue_from_the_newest_pending_answers_only(monkeypatch):
    rows = series("w", "work", "Standup", 40, every=1)  # w000 oldest … w039 newest
    assert review.RECENT_SHARE == 1.0  # shipped: every pending answer may be asked
    assert min(ids_(rank(rows, 5))) < "w020"
    monkeypatch.setattr(review, "RECENT_SHARE", 0.5)
    assert min(ids_(rank(rows, 5))) >= "w020" and len(rank(rows, 5)) == 5
    assert sum(n for _, n in rank(rows, 5)) == 20  # the sample stands for the newer half only
    assert len(rank(rows)) == 40  # the whole listing (no limit) is never cut
    monkeypatch.setattr(review, "RECENT_SHARE", 0.0)
    assert sorted(ids_(rank(rows, 5))) == [f"w{i:03d}" for i in range(35, 40)]  # at least the limit: the newest
