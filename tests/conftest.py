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
