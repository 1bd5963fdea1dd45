"""How unlike the user's training events an event is: a per-user novelty index that travels with
the model (in its ONNX metadata, so the model's sha256 covers it). Pure Python, no numpy.

The index is a bitmap of ``2**NOVELTY_BITS`` bits. Training sets one bit per distinct token of
the user's training events (crc32 of the group and the token, like the featurizer's hashing but in
a larger space): title words (``w``), title character 3-grams (``g``) and the time/shape tokens of
:func:`calroute.features.time_tokens` (``k``). At serving, :meth:`NoveltyIndex.score` is

    novelty = (share of title words unseen + share of title 3-grams unseen) / 2

in [0, 1] (an event without a title is fully novel: the model knows nothing of it), and
:meth:`NoveltyIndex.time_novelty` is the share of its time/shape tokens (weekday × hour, start time,
duration bucket, all-day) never seen. A token hashing onto a bit another token set is taken as seen
(a false "familiar", never a false "novel"); with a few thousand distinct tokens in 2**18 bits this
happens to ~1-2% of unseen tokens.

The **time/shape anomaly** (:class:`CalendarShapes`) is measured against the user's calendars: for
the calendar the model picked, the share of the event's when/how-long tokens (hour or all-day,
weekday, duration bucket, multi-day: :func:`shape_tokens`) that none of that calendar's training
events had. A 20:20 weekday game put in an all-day holiday calendar scores 1.0.

The routing rule (:mod:`calroute.policy`) combines the model's confidence with both into one score,
``confidence × (1 - NOVELTY_WEIGHT × novelty)``, set to 0 when the anomaly reaches
``ANOMALY_VETO``, and the per-user threshold on that score is certified on out-of-fold rows
(:mod:`calroute.risk`), whose novelty and anomaly are measured against each fold's own training
events — exactly what the live model meets. ``bench/anomaly.py`` measured this veto against
discounting by the anomaly and against IsolationForest scores (docs/trust.md).
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import TYPE_CHECKING, Iterable, Optional

from .features import char_ngrams, duration_bucket, time_tokens, words

if TYPE_CHECKING:
    from .schema import Event

NOVELTY_BITS = 18
_MASK = (1 << NOVELTY_BITS) - 1
#: Weight of novelty in the routing score ``confidence × (1 - NOVELTY_WEIGHT × novelty)``: a global
#: design constant (chosen on the tuning users, docs/learning.md), not fitted per user.
NOVELTY_WEIGHT = 0.5
#: The routing score is 0 when the anomaly against the predicted calendar reaches this (3 of an
#: event's 3-4 when/how-long tokens never seen in that calendar): chosen on the tuning users, where it
#: cost 0.2 points of mean coverage (bench/anomaly.py, docs/trust.md).
ANOMALY_VETO = 0.75
#: Time tokens whose novelty :meth:`NoveltyIndex.time_novelty` measures (prefixes).
_TIME_KEYS = ("wh", "hm", "dur", "allday", "wallday")
_MEMO_MAX = 50_000
#: Per-group memo token -> bit (bounded: past _MEMO_MAX tokens, new ones are hashed each time).
_MEMO: dict[str, dict[str, int]] = {"w": {}, "g": {}, "k": {}}


def _bits(group: str, tokens: list[str]) -> list[int]:
    memo = _MEMO[group]
    out = []
    for t in tokens:
        b = memo.get(t)
        if b is None:
            b = zlib.crc32(f"{group}\x1f{t}".encode("utf-8")) & _MASK
            if len(memo) < _MEMO_MAX:
                memo[t] = b
        out.append(b)
    return out


def _title_bits(ev: "Event") -> tuple[list[int], list[int]]:
    title = words(ev.summary)
    return _bits("w", title), _bits("g", char_ngrams(title))


def _time_bits(ev: "Event") -> list[int]:
    return _bits("k", [t for t in time_tokens(ev) if t.startswith(_TIME_KEYS)])


class NoveltyIndex:
    """The set of tokens a user's training events contain (a bitmap; see the module docstring)."""

    __slots__ = ("bits", "n_tokens")

    def __init__(self, bits: Optional[bytearray] = None, n_tokens: int = 0):
        self.bits = bits if bits is not None else bytearray(1 << (NOVELTY_BITS - 3))
        self.n_tokens = int(n_tokens)

    @classmethod
    def fit(cls, events: Iterable["Event"]) -> "NoveltyIndex":
        idx = cls()
        for ev in events:
            idx.add(ev)
        return idx

    def add(self, ev: "Event") -> None:
        ws, gs = _title_bits(ev)
        bits = self.bits
        for b in (*ws, *gs, *_time_bits(ev)):
            byte, mask = b >> 3, 1 << (b & 7)
            if not bits[byte] & mask:
                bits[byte] |= mask
                self.n_tokens += 1

    def _unseen(self, keys: list[int]) -> float:
        bits = self.bits
        miss = 0
        for b in keys:
            if not (bits[b >> 3] >> (b & 7)) & 1:
                miss += 1
        return miss / len(keys)

    def _unseen_tokens(self, group: str, tokens: list[str]) -> float:
        """:meth:`_unseen` of the tokens' bits, in one pass (the predict path's hot loop)."""
        memo, bits, miss = _MEMO[group], self.bits, 0
        for t in tokens:
            b = memo.get(t)
            if b is None:
                b = _bits(group, [t])[0]
            if not (bits[b >> 3] >> (b & 7)) & 1:
                miss += 1
        return miss / len(tokens)

    def score(self, ev: "Event", tokens: Optional[dict[str, list[str]]] = None) -> float:
        """Text novelty in [0, 1]: the mean of the unseen shares of title words and 3-grams
        (``tokens``: the event's featurizer tokens — groups ``t`` and ``c`` of
        :func:`calroute.features.spec_tokens` are exactly these — when the caller has them, so
        the predict path tokenises a title once)."""
        if tokens is not None:
            ws, gs = tokens["t"], tokens["c"]
            if not ws:
                return 1.0
            return 0.5 * (self._unseen_tokens("w", ws) + self._unseen_tokens("g", gs))
        wb, gb = _title_bits(ev)
        if not wb:
            return 1.0
        return 0.5 * (self._unseen(wb) + self._unseen(gb))

    def time_novelty(self, ev: "Event") -> float:
        """Share of the event's time/shape tokens (weekday × hour, start time, duration, all-day)
        that no training event had."""
        ks = _time_bits(ev)
        return self._unseen(ks) if ks else 0.0

    # ---------------------------------------------------------------- (de)serialisation

    def to_text(self) -> str:
        """``"<n_tokens>:<base64 of the zlib-compressed bitmap>"`` (ONNX metadata values are strings)."""
        return f"{self.n_tokens}:" + base64.b64encode(zlib.compress(bytes(self.bits), 9)).decode("ascii")

    @classmethod
    def from_text(cls, text: str) -> "NoveltyIndex":
        """Inverse of :meth:`to_text`; raises ``ValueError`` on anything else."""
        try:
            n, _, b64 = text.partition(":")
            raw = zlib.decompress(base64.b64decode(b64.encode("ascii"), validate=True))
        except Exception as exc:  # noqa: BLE001 - binascii/zlib errors: one clear error type
            raise ValueError(f"not a novelty index: {type(exc).__name__}") from None
        if len(raw) != 1 << (NOVELTY_BITS - 3):
            raise ValueError(f"novelty index has {len(raw)} bytes, expected {1 << (NOVELTY_BITS - 3)}")
        return cls(bytearray(raw), int(n))


def shape_tokens(ev: "Event") -> list[str]:
    """When and how long: the weekday, duration bucket, hour (or ``allday``) and ``multiday`` tokens
    of :func:`calroute.features.time_tokens` (built directly: this runs per classified event)."""
    minutes = ev.duration_minutes
    out = [f"w{ev.start.weekday()}", f"dur{duration_bucket(minutes)}",
           "allday" if ev.all_day else f"h{ev.start.hour}"]
    if minutes > 1440.0:
        out.append("multiday")
    return out


def shape_tokens_of(time_toks: list[str]) -> list[str]:
    """:func:`shape_tokens` read off the event's spec-2 time tokens (:func:`calroute.features.time_tokens`
    starts ``w<dow>, dur<bucket>, y<year>, ym<month>`` then ``allday`` or ``h<hour>``; ``multiday``
    follows when it lasts more than a day), so the predict path builds them once per event."""
    out = [time_toks[0], time_toks[1], time_toks[4]]
    if "multiday" in time_toks:
        out.append("multiday")
    return out


class CalendarShapes:
    """Per calendar, the when/how-long tokens its training events had (a few dozen strings each)."""

    __slots__ = ("seen",)

    def __init__(self, seen: Optional[dict[str, frozenset[str]]] = None):
        self.seen: dict[str, frozenset[str]] = dict(seen or {})

    @classmethod
    def fit(cls, events: Iterable["Event"]) -> "CalendarShapes":
        out = cls()
        for ev in events:
            out.add(ev)
        return out

    def add(self, ev: "Event") -> None:
        if ev.calendar_id is not None:
            self.seen[ev.calendar_id] = self.seen.get(ev.calendar_id, frozenset()) | frozenset(shape_tokens(ev))

    def anomaly(self, ev: "Event", calendar_id: str, time_toks: Optional[list[str]] = None) -> float:
        """Share of ``ev``'s when/how-long tokens no training event of ``calendar_id`` had (1.0 for a
        calendar without training events). ``time_toks``: the event's spec-2 time tokens (group
        ``k`` of :func:`calroute.features.spec_tokens`) when the caller has them."""
        toks = shape_tokens(ev) if time_toks is None else shape_tokens_of(time_toks)
        seen = self.seen.get(calendar_id)
        if seen is None:
            return 1.0
        miss = 0
        for t in toks:
            if t not in seen:
                miss += 1
        return miss / len(toks)

    def to_text(self) -> str:
        return json.dumps({c: sorted(t) for c, t in sorted(self.seen.items())}, separators=(",", ":"))

    @classmethod
    def from_text(cls, text: str) -> "CalendarShapes":
        """Inverse of :meth:`to_text`; raises ``ValueError`` on anything else."""
        try:
            raw = json.loads(text)
        except ValueError:
            raise ValueError("not a calendar shape index: bad JSON") from None
        if not isinstance(raw, dict) or not all(
                isinstance(c, str) and isinstance(t, list) and all(isinstance(x, str) for x in t) for c, t in raw.items()):
            raise ValueError("not a calendar shape index: expected {calendar: [token, ...]}")
        return cls({c: frozenset(t) for c, t in raw.items()})


def routing_score(confidence: float, novelty: Optional[float], weight: float = NOVELTY_WEIGHT,
                  anomaly: Optional[float] = None, veto: float = ANOMALY_VETO) -> float:
    """The score the threshold applies to: ``confidence × (1 - weight × novelty)``, 0 when
    ``anomaly >= veto`` (``confidence`` itself for a model without a novelty index, i.e. feature
    spec 1; no veto for a model without a shape index)."""
    if novelty is None:
        return float(confidence)
    if anomaly is not None and anomaly >= veto:
        return 0.0
    return float(confidence) * (1.0 - weight * novelty)
