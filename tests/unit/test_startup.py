"""The cold-start GC pause (calroute.startup): only when asked, resumed (and frozen) by the end of
the first invocation of a handler, whatever it returned or raised. Each case runs in a fresh
interpreter: the pause is decided when ``calroute.startup`` is first imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest


def run(body: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(body)], capture_output=True, text=True,
                         env={**os.environ, "COLD_START_GC": "", **env}, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("value,paused", [("pause", True), ("PAUSE ", True), ("", False), ("off", False)])
def test_pause_only_when_asked(value, paused):
    got = run("""
        import gc, json
        from calroute import startup
        print(json.dumps({"enabled": gc.isenabled(), "paused": startup.paused()}))
    """, COLD_START_GC=value)
    assert got == {"enabled": not paused, "paused": paused}


def test_first_invocation_resumes_and_freezes_even_when_it_raises():
    got = run("""
        import gc, json
        from calroute import startup
        calls = []
        @startup.resumes_after_first_call
        def handler(event, context):
            calls.append(gc.isenabled())
            if event == "boom":
                raise RuntimeError("first call fails")
            return "ok"
        during = startup.paused()
        frozen_before = gc.get_freeze_count()
        try:
            handler("boom", None)
        except RuntimeError:
            pass
        after_first = {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count() > frozen_before,
                       "paused": startup.paused()}
        second = handler("x", None)
        print(json.dumps({"during": during, "calls": calls, "after_first": after_first, "second": second,
                          "still_enabled": gc.isenabled()}))
    """, COLD_START_GC="pause")
    assert got == {"during": True, "calls": [False, True], "second": "ok", "still_enabled": True,
                   "after_first": {"enabled": True, "frozen": True, "paused": False}}


def test_a_collector_disabled_by_someone_else_is_left_alone():
    got = run("""
        import gc, json
        gc.disable()
        frozen_before = gc.get_freeze_count()
        from calroute import startup
        startup.resume()
        print(json.dumps({"paused": startup.paused(), "enabled": gc.isenabled(),
                          "froze": gc.get_freeze_count() != frozen_before}))
    """, COLD_START_GC="pause")
    assert got == {"paused": False, "enabled": False, "froze": False}


@pytest.mark.parametrize("fn", ["predict", "llm_fallback", "train_user", "models"])
def test_every_function_pauses_at_import_and_its_handler_resumes(fn):
    """The function module imports calroute.startup first, and its handler is wrapped: the first
    invocation (here a request that fails validation, or a task without input) resumes the GC."""
    got = run(f"""
        import gc, importlib.util, json, sys
        sys.path.insert(0, "layers/core")
        spec = importlib.util.spec_from_file_location("fn", "functions/{fn}/app.py")
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        from calroute import startup
        at_import = (startup.paused(), gc.isenabled())
        class Ctx:
            function_name = "t"; function_version = "1"; memory_limit_in_mb = 512; aws_request_id = "r"
            invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:t"
            def get_remaining_time_in_millis(self): return 1000
        try:
            mod.lambda_handler({{}}, Ctx())
        except Exception:
            pass
        print(json.dumps({{"at_import": at_import, "after": (startup.paused(), gc.isenabled())}}))
    """, COLD_START_GC="pause", POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_TRACE_DISABLED="true",
                AWS_DEFAULT_REGION="us-east-1")
    assert got == {"at_import": [True, False], "after": [False, True]}


def test_the_template_pauses_every_function_and_the_local_stack_does_not():
    import yaml  # noqa: F401 - the template loader needs it
    from calroute_dev.local.stack import local_overrides
    from calroute_dev.local.template import load_template

    assert load_template()["Globals"]["Function"]["Environment"]["Variables"]["COLD_START_GC"] == "pause"
    assert local_overrides()["COLD_START_GC"] == ""


def test_the_variable_is_declared_as_read_outside_settings():
    from calroute import startup
    from calroute.config import LIBRARY_ENVIRONMENT, Settings

    assert startup.ENV in LIBRARY_ENVIRONMENT and startup.ENV.lower() not in Settings.model_fields
