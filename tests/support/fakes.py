"""The in-memory fakes of every port live in :mod:`calroute_dev.memory` (the replay tooling runs the
real services on them too); tests import them from here as before."""

from calroute_dev.memory import (  # noqa: F401
    FakeEventStore,
    FakeModelBlobs,
    FakePredictionLog,
    FakeRegistry,
    FakeUsageLedger,
    FakeUserStore,
    Recorder,
    fake_stores,
    now_iso,
    stored,
)
