"""The one featurizer, shared by training and serving (pure Python + numpy, no sklearn).

A feature vector is ``N_DENSE`` hand features followed by ``HASH_DIM`` signed hashed-token
features. Hashing uses ``zlib.crc32`` (deterministic across processes and machines; Python's
built-in ``hash()`` is salted per process and must never be used here).

Dense features (the seed's 14 hand features are exactly these columns):

====  ======================  ==========================================
 idx  name                    meaning
====  ======================  ==========================================
  0   hour_sin                sin(2π·local hour/24)
  1   hour_cos                cos(2π·local hour/24)
  2   dow_sin                 sin(2π·weekday/7)
  3   dow_cos                 cos(2π·weekday/7)
  4   weekend                 Saturday or Sunday
  5   all_day                 all-day event
  6   log_duration            log1p(minutes)/log1p(1440·7), clipped to 1
  7   multi_day               lasts more than 24 h
  8   has_location            location present
  9   has_description         description present
 10   log_attendees           log1p(attendees)/log1p(200)
 11   recurring               part of a recurring series
 12   title_length            min(len(title), 100)/100
 13   evening                 starts 18:00 or later (timed events)
====  ======================  ==========================================

Token groups, each L2-normalised then weighted: title words, title character 3-grams, location
words, description words (first 300), attendee e-mail domains and the organizer's domain.

Feature spec 2 (``FEATURE_SPEC_VERSION``, models trained from 2026-12) adds a **time token group**
``k`` (:func:`time_tokens`): the start hour, the exact start time (to 5 minutes), the weekday,
weekday × hour, a duration bucket, all-day / multi-day / weekend, and shape tokens (location,
description, attendees present; recurring). Hashed like words, a linear model can learn "20:20 on a
weekday = hockey" or "all-day, several days = holidays", which the sin/cos columns could not say.
Spec 1 models (no ``k`` group) keep being served with the spec-1 featurizer until retrained:
:func:`featurize` takes the model's spec.
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
import zlib
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

if TYPE_CHECKING:  # numpy is imported lazily: the LLM function tokenises but never builds matrices
    import numpy as np

from .schema import Event

FEATURE_SPEC_VERSION = 2
#: Specs the serving path can featurize (a model of any of these is served).
SUPPORTED_SPECS = (1, 2)
HASH_DIM = 1 << 12
DENSE_NAMES = (
    "hour_sin", "hour_cos", "dow_sin", "dow_cos", "weekend", "all_day", "log_duration", "multi_day",
    "has_location", "has_description", "log_attendees", "recurring", "title_length", "evening",
)
N_DENSE = len(DENSE_NAMES)
N_FEATURES = N_DENSE + HASH_DIM
# Weight of each token group after L2 normalisation.
GROUP_WEIGHTS = {"t": 1.0, "c": 0.6, "l": 0.5, "d": 0.4, "a": 0.5, "o": 0.5, "k": 0.8}
#: Groups of each spec (spec 1 has no time tokens).
SPEC_GROUPS = {1: ("t", "c", "l", "d", "a", "o"), 2: ("t", "c", "l", "d", "a", "o", "k")}
MAX_DESCRIPTION_TOKENS = 300
FEATURE_SPEC = {
    "version": FEATURE_SPEC_VERSION,
    "hash": "crc32",
    "hash_dim": HASH_DIM,
    "dense": list(DENSE_NAMES),
    "groups": GROUP_WEIGHTS,
    "time_tokens": ["h", "hm", "w", "wh", "dur", "allday", "multiday", "weekend", "shape"],
    "char_ngrams": 3,
    "dtype": "float32",
}
#: Column groups, used for drift (PSI per feature group) and reports.
FEATURE_GROUPS = {"time": slice(0, 8), "shape": slice(8, N_DENSE), "tokens": slice(N_DENSE, N_FEATURES)}

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_TAG_RE = re.compile(r"<[^>]{0,200}>")
_LOG_WEEK = math.log1p(1440.0 * 7)
_LOG_ATT = math.log1p(200.0)
_TWO_PI = 2.0 * math.pi


def normalize_text(text: str) -> str:
    """Unescape HTML entities, drop tags, NFKC, lower-case."""
    if not text:
        return ""
    if "&" in text:
        text = html.unescape(text)
    if "<" in text:
        text = _TAG_RE.sub(" ", text)
    return unicodedata.normalize("NFKC", text).lower()


def words(text: str) -> list[str]:
    """Word tokens of normalised text (Unicode-aware: Korean, Czech, ... tokenise too)."""
    return _WORD_RE.findall(normalize_text(text))


def char_ngrams(tokens: Sequence[str], n: int = 3) -> list[str]:
    out: list[str] = []
    for w in tokens:
        padded = f" {w} "
        if len(padded) <= n:
            out.append(padded)
            continue
        out += [padded[i : i + n] for i in range(len(padded) - n + 1)]
    return out


def _domain(email: str) -> str:
    return email.rsplit("@", 1)[-1].lower() if "@" in email else email.lower()


def event_tokens(ev: Event) -> dict[str, list[str]]:
    """Tokens of each group for one event (also used for calendar profiles and similarity)."""
    title = words(ev.summary)
    return {
        "t": title,
        "c": char_ngrams(title),
        "l": words(ev.location),
        "d": words(ev.description)[:MAX_DESCRIPTION_TOKENS],
        "a": sorted({_domain(a) for a in ev.attendees}),
        "o": [_domain(ev.organizer)] if ev.organizer else [],
    }


def dense_features(ev: Event) -> list[float]:
    """The 14 hand features of one event (see the module docstring)."""
    st = ev.start
    hour = 0.0 if ev.all_day else st.hour + st.minute / 60.0
    dow = st.weekday()
    minutes = ev.duration_minutes
    return [
        math.sin(_TWO_PI * hour / 24.0),
        math.cos(_TWO_PI * hour / 24.0),
        math.sin(_TWO_PI * dow / 7.0),
        math.cos(_TWO_PI * dow / 7.0),
        1.0 if dow >= 5 else 0.0,
        1.0 if ev.all_day else 0.0,
        min(1.0, math.log1p(minutes) / _LOG_WEEK),
        1.0 if minutes > 1440.0 else 0.0,
        1.0 if ev.location else 0.0,
        1.0 if ev.description else 0.0,
        min(1.0, math.log1p(len(ev.attendees)) / _LOG_ATT),
        1.0 if ev.recurring else 0.0,
        min(len(ev.summary), 100) / 100.0,
        1.0 if (not ev.all_day and st.hour >= 18) else 0.0,
    ]


#: Upper bounds (minutes) of the duration buckets of :func:`time_tokens`.
DURATION_BUCKETS = (0, 30, 60, 90, 120, 180, 240, 360, 600, 1440)


def duration_bucket(minutes: float) -> str:
    for b in DURATION_BUCKETS:
        if minutes <= b:
            return str(b)
    return "long"


def time_tokens(ev: Event) -> list[str]:
    """The time/shape tokens of feature spec 2 (group ``k``): when and how an event happens, as
    words a linear model can weigh one by one."""
    st = ev.start
    dow = st.weekday()
    minutes = ev.duration_minutes
    out = [f"w{dow}", f"dur{duration_bucket(minutes)}", f"y{st.year}", f"ym{st.year}-{st.month:02d}"]
    if ev.all_day:
        out.append("allday")
        out.append(f"wallday{dow}")
    else:
        out += [f"h{st.hour}", f"hm{st.hour}:{st.minute - st.minute % 5:02d}", f"wh{dow}_{st.hour}"]
    if minutes > 1440.0:
        out.append("multiday")
    if dow >= 5:
        out.append("weekend")
    if ev.location:
        out.append("has_loc")
    if ev.description:
        out.append("has_desc")
    if ev.attendees:
        out.append("has_att")
    if ev.recurring:
        out.append("recurring")
    return out


def spec_tokens(ev: Event, spec: int = FEATURE_SPEC_VERSION) -> dict[str, list[str]]:
    """Every token group the featurizer of ``spec`` hashes for ``ev``."""
    groups = event_tokens(ev)
    if spec >= 2:
        groups["k"] = time_tokens(ev)
    return groups


def _hash(group: str, token: str) -> tuple[int, float]:
    h = zlib.crc32(f"{group}\x1f{token}".encode("utf-8"))
    return N_DENSE + (h & (HASH_DIM - 1)), (1.0 if (h >> 31) & 1 else -1.0)


#: Per-group memo of ``_hash`` (token → (column, sign)): a user's events repeat the same words, so
#: most tokens of a request were hashed before. Bounded: once a group holds ``_HASH_MEMO_MAX``
#: tokens, new ones are hashed without being remembered (no eviction, no growth; ~3 MB per group).
_HASH_MEMO_MAX = 20_000
_HASH_MEMO: dict[str, dict[str, tuple[int, float]]] = {g: {} for g in GROUP_WEIGHTS}


def featurize_into(ev: Event, row: np.ndarray, spec: int = FEATURE_SPEC_VERSION,
                   groups: Optional[dict[str, list[str]]] = None) -> None:
    """Write one event's features into ``row`` (a zeroed float32 vector of length N_FEATURES).

    Each token group is L2-normalised and weighted on its own; groups that hash to the same column
    add up (summed in float64, stored once as float32). ``spec`` is the model's feature spec;
    ``groups`` the event's :func:`spec_tokens` of that spec when the caller already has them (the
    predict path tokenises once for the featurizer and the novelty score).
    """
    row[:N_DENSE] = dense_features(ev)
    total: dict[int, float] = {}
    for group, toks in (spec_tokens(ev, spec) if groups is None else groups).items():
        if not toks:
            continue
        memo = _HASH_MEMO[group]
        acc: dict[int, float] = {}
        for tok in toks:
            hs = memo.get(tok)
            if hs is None:
                hs = _hash(group, tok)
                if len(memo) < _HASH_MEMO_MAX:
                    memo[tok] = hs
            idx, sign = hs
            acc[idx] = acc.get(idx, 0.0) + sign
        norm = math.sqrt(sum(v * v for v in acc.values()))
        if norm == 0.0:
            continue
        scale = GROUP_WEIGHTS[group] / norm
        for idx, v in acc.items():
            total[idx] = total.get(idx, 0.0) + v * scale
    if total:  # distinct columns of a zeroed row: one fancy assignment
        import numpy as np

        n = len(total)
        row[np.fromiter(total.keys(), np.intp, n)] = np.fromiter(total.values(), np.float32, n)


def featurize(events: Iterable[Event], spec: int = FEATURE_SPEC_VERSION,
              tokens: Optional[Sequence[dict[str, list[str]]]] = None) -> np.ndarray:
    """Feature matrix (n_events × N_FEATURES, float32) for events in order, with the featurizer of
    feature spec ``spec`` (a model is always served with the spec it was trained with). ``tokens``:
    the events' :func:`spec_tokens` of ``spec``, in order, when the caller computed them already."""
    import numpy as np

    if spec not in SUPPORTED_SPECS:
        raise ValueError(f"unknown feature spec {spec}; supported: {SUPPORTED_SPECS}")
    evs = list(events)
    if tokens is not None and len(tokens) != len(evs):
        raise ValueError(f"{len(tokens)} token sets for {len(evs)} events")
    X = np.zeros((len(evs), N_FEATURES), dtype=np.float32)
    for i, ev in enumerate(evs):
        featurize_into(ev, X[i], spec, None if tokens is None else tokens[i])
    return X


def featurize_dense(events: Iterable[Event]) -> np.ndarray:
    """Only the 14 hand features (the seed's feature set), float32."""
    import numpy as np

    return np.asarray([dense_features(e) for e in events], dtype=np.float32).reshape(-1, N_DENSE)
