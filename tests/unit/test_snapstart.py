"""SnapStart (opt-in, template parameter ``SnapStart``): what a SnapStart init primes, the
after-restore hook (random reseeded, pooled connections dropped) and that nothing changes in an
ordinary cold start. The template side is tests/integration/test_template.py."""

from __future__ import annotations

import importlib.util
import os
import random
import sys
import types
from pathlib import Path

import pytest

from calroute import wiring
from calroute.adapters.dynamo import base as dynamo_base

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def hooks(monkeypatch):
    """A stand-in for the Lambda runtime's ``snapshot_restore_py``: records what is registered."""
    registered: list = []
    mod = types.ModuleType("snapshot_restore_py")
    mod.register_after_restore = lambda fn, *a, **k: registered.append(fn)
    mod.register_before_snapshot = lambda fn, *a, **k: None
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", mod)
    return registered


@pytest.mark.parametrize("init_type", [None, "on-demand", "provisioned-concurrency"])
def test_an_ordinary_init_primes_nothing(monkeypatch, hooks, init_type):
    if init_type is None:
        monkeypatch.delenv(wiring.INIT_TYPE_ENV, raising=False)
    else:
        monkeypatch.setenv(wiring.INIT_TYPE_ENV, init_type)
    primed = []
    assert wiring.snapstart_init(lambda: primed.append(1)) is False
    assert primed == [] and hooks == []


def test_a_snapstart_init_primes_once_and_registers_the_restore_hook(monkeypatch, hooks):
    monkeypatch.setenv(wiring.INIT_TYPE_ENV, "snap-start")
    primed = []
    assert wiring.snapstart_init(lambda: primed.append(1)) is True
    assert primed == [1]
    assert hooks == [wiring.after_restore]


def test_after_restore_gives_each_restored_copy_its_own_random_sequence(monkeypatch):
    closed = []
    monkeypatch.setattr(dynamo_base, "_shared", types.SimpleNamespace(close_connections=lambda: closed.append(1)))
    snapshot = random.getstate()

    def restored_draws(hook: bool) -> list[float]:
        random.setstate(snapshot)  # every environment restored from one snapshot starts here
        if hook:
            wiring.after_restore()
        return [random.random() for _ in range(3)]

    assert restored_draws(False) == restored_draws(False)  # what the hook is for
    assert restored_draws(True) != restored_draws(True)
    assert closed == [1, 1]  # and the shared clients' pooled connections were dropped each time


def test_tables_create_clients_without_connecting_and_close_their_pools(no_network):
    import boto3

    t = dynamo_base.Tables(boto3.session.Session(region_name="us-east-1"))
    t.close_connections()  # nothing created yet: nothing to close, no error
    t.create_clients()
    assert t._ddb is not None and t._s3 is not None
    closed = []
    t.s3.close = lambda: closed.append("s3")
    t.ddb.meta.client.close = lambda: closed.append("dynamodb")
    t.close_connections()
    assert sorted(closed) == ["dynamodb", "s3"]


def _load_fresh(name: str):
    """Import functions/<name>/app.py under a new module name (its module-level init runs again)."""
    spec = importlib.util.spec_from_file_location(f"calroute_fn_{name}_snapstart_test",
                                                  ROOT / "functions" / name / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("name", ["predict", "llm_fallback"])
def test_handlers_build_their_service_in_a_snapstart_init_only(monkeypatch, hooks, fresh_settings, no_network, name):
    monkeypatch.setattr(dynamo_base, "_shared", dynamo_base.Tables())
    monkeypatch.setenv(wiring.INIT_TYPE_ENV, "on-demand")
    mod = _load_fresh(name)
    assert mod.service.cache_info().currsize == 0 and hooks == []
    assert dynamo_base.shared_tables()._ddb is None  # lazy: the first request creates the clients

    monkeypatch.setenv(wiring.INIT_TYPE_ENV, "snap-start")
    sdk = []
    monkeypatch.setattr(wiring, "prime_llm_sdk", lambda: sdk.append(1))
    mod = _load_fresh(name)
    assert sdk == ([1] if name == "llm_fallback" else []), "the OpenAI SDK goes into the fallback's snapshot only"
    assert mod.service.cache_info().currsize == 1, "the service is in the snapshot"
    assert dynamo_base.shared_tables()._ddb is not None and dynamo_base.shared_tables()._s3 is not None
    assert hooks == [wiring.after_restore]
    if name == "predict":
        assert "onnxruntime" in sys.modules
    else:  # the LLM client reads the API key: never built before a snapshot; the SDK's modules are
        assert mod.service()._client is None


def test_priming_the_llm_sdk_imports_it_without_a_client_or_a_key():
    """In a fresh interpreter: the SDK's modules are loaded, no client exists, no key is read."""
    import subprocess

    code = ("import gc, os, sys; os.environ.pop('OPENAI_API_KEY', None)\n"
            "from calroute import wiring\n"
            "assert 'openai' not in sys.modules\n"
            "wiring.prime_llm_sdk()\n"
            "import openai\n"
            "assert 'openai.types.chat' in sys.modules\n"
            "assert not [o for o in gc.get_objects() if isinstance(o, openai.OpenAI)]\n"
            "print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "layers" / "core")}, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
