"""Shared test setup: fake AWS credentials and region, handler loading by path."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", "us-east-1")
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
os.environ.pop("AWS_PROFILE", None)
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "calroute-test")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_DEV", "false")
os.environ.setdefault("AUTH_MODE", "none")
for _k in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
    os.environ.pop(_k, None)

DATASETS = (ROOT.parent / "shared" / "datasets")


def load_handler(name: str):
    """Import functions/<name>/app.py as a uniquely named module (every handler is called app.py)."""
    path = ROOT / "functions" / name / "app.py"
    mod_name = f"calroute_fn_{name}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def fresh_settings(monkeypatch):
    """Change env vars with monkeypatch, then call the returned function to reload settings."""
    from calroute.config import settings

    settings.cache_clear()
    yield settings
    settings.cache_clear()


@pytest.fixture
def no_network(monkeypatch):
    """Every socket connection fails: for tests that must run on in-memory fakes only."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("a unit test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def aws(monkeypatch):
    """In-process moto with every table and bucket created from template.yaml; env vars set the
    way the template sets them for the functions. Yields the :class:`Resolver`."""
    from moto import mock_aws

    from calroute.adapters.dynamo import base as dynamo_base
    from calroute.config import settings
    from calroute.local.template import Resolver, create_data_resources, load_template

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        resolver = Resolver(load_template(), stack_name="calroute-test")
        create_data_resources(resolver)
        env = {
            "EVENTS_TABLE": resolver.physical_name("EventsTable"),
            "USERS_TABLE": resolver.physical_name("UsersTable"),
            "REGISTRY_TABLE": resolver.physical_name("RegistryTable"),
            "PREDICTIONS_TABLE": resolver.physical_name("PredictionsTable"),
            "USAGE_TABLE": resolver.physical_name("UsageTable"),
            "MODEL_BUCKET": resolver.physical_name("ModelBucket"),
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        # fresh boto3 resources inside the mock
        monkeypatch.setattr(dynamo_base, "_shared", dynamo_base.Tables())
        settings.cache_clear()
        yield resolver
        settings.cache_clear()


def pytest_collection_modifyitems(config, items):
    """Files with ``slow`` tests (the load test, fuzzing, the local stack) run first, longest first:
    ``make test`` distributes whole files over two workers in collection order, and a minutes-long
    file that starts last would leave one worker idle while it runs."""
    weight = {"test_load.py": 0, "test_fuzz.py": 1}

    def key(item):
        slow = any(it.get_closest_marker("slow") for it in by_file[item.path])
        return (0 if slow else 1, weight.get(item.path.name, 2) if slow else 0)

    by_file: dict = {}
    for it in items:
        by_file.setdefault(it.path, []).append(it)
    items.sort(key=key)  # stable: the order within a file and among the other files is kept


@pytest.fixture
def models_api(aws, monkeypatch, fresh_settings):
    """The models function's real handler with dev auth: ``models_api(method, path, user="alice",
    headers=..., body=...)`` → (status, headers, JSON body); ``user=None`` sends no identity."""
    from support.apigw import call

    monkeypatch.setenv("AUTH_MODE", "dev")
    monkeypatch.setenv("OPERATOR_IDS", "ops")  # promote/rollback are operator-only
    from support.handlers import fresh_services

    mod = load_handler("models")
    fresh_services(monkeypatch, mod)
    fresh_settings.cache_clear()

    def request(method, path, user="alice", **kw):
        headers = kw.pop("headers", {})
        if user:
            headers["x-calroute-user"] = user
        return call(mod.lambda_handler, method, path, headers=headers, **kw)

    request.mod = mod
    return request
