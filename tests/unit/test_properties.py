"""Hypothesis properties of the one schema and the one featurizer: any valid event featurizes to a
fixed-shape, finite vector without raising; invalid input is rejected with InvalidInput (never
another exception)."""

from datetime import datetime, timedelta, timezone

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calroute.errors import InvalidInput
from calroute.features import N_FEATURES, featurize
from calroute.schema import parse_event

texts = st.text(max_size=300)  # any unicode: RTL, emoji, control characters, surrogates excluded by JSON
aware = st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2199, 12, 30),
                     timezones=st.sampled_from([timezone.utc, timezone(timedelta(hours=9)),
                                                timezone(timedelta(hours=-5, minutes=-30))]))


@st.composite
def flat_events(draw):
    start = draw(aware)
    dur = draw(st.integers(min_value=0, max_value=60 * 24 * 30))
    all_day = draw(st.booleans())
    ev = {
        "summary": draw(texts), "description": draw(texts), "location": draw(texts),
        "attendees": draw(st.lists(st.emails(), max_size=5)),
    }
    if all_day:
        ev["start"] = start.date().isoformat()
        ev["end"] = (start.date() + timedelta(days=1 + dur // 1440)).isoformat()
    else:
        ev["start"] = start.isoformat()
        ev["end"] = (start + timedelta(minutes=dur)).isoformat()
    return ev


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flat_events())
def test_any_valid_event_featurizes(raw):
    ev = parse_event(raw)
    X = featurize([ev])
    assert X.shape == (1, N_FEATURES)
    assert X.dtype == np.float32
    assert np.isfinite(X).all()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.sampled_from(["summary", "start", "end", "all_day", "attendees", "id", "event_id",
                                        "location", "calendar_id", "description", "organizer", "x"]),
                       json_values, max_size=8))
def test_arbitrary_json_is_accepted_or_rejected_cleanly(raw):
    try:
        ev = parse_event(raw)
    except InvalidInput as exc:
        assert exc.field and exc.message
        return
    assert np.isfinite(featurize([ev])).all()
