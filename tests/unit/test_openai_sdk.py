"""The OpenAI SDK imported lazily (calroute.adapters.openai_sdk): fewer modules, the same client.

Each case runs in a fresh interpreter (the test process has imported ``openai`` whole long ago), and
the real SDK talks to the fake OpenAI-compatible server of this process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from support.fake_llm import answer, fake_llm  # noqa: F401

PRELUDE = textwrap.dedent("""
    import json, sys
    from calroute.adapters import openai_sdk
    def openai_modules():
        return sorted(k for k in sys.modules if k == "openai" or k.startswith("openai."))
    def ask(sdk, base_url):
        client = sdk.OpenAI(base_url=base_url, api_key="sk-test", timeout=5.0, max_retries=0)
        resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        return json.loads(resp.choices[0].message.content)["calendar_id"], type(resp).__name__
""")


def run(body: str, *args: str) -> dict:
    code = PRELUDE + textwrap.dedent(body)
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_lazy_import_loads_a_fraction_of_the_sdk_and_the_client_works(fake_llm):
    fake_llm.behave(answer("home"))
    got = run("""
        sdk = openai_sdk.load_sdk()
        cal, kind = ask(sdk, sys.argv[1])
        mods = openai_modules()
        print(json.dumps({"lazy": sdk.lazy, "cal": cal, "kind": kind, "n": len(mods),
                          "evals": "openai.types.eval_create_params" in mods,
                          "responses_init": hasattr(sys.modules["openai.types.responses"], "Response")
                                            if "openai.types.responses" in sys.modules else False}))
    """, fake_llm.base_url)
    assert got["lazy"] is True
    assert (got["cal"], got["kind"]) == ("home", "ChatCompletion")
    assert not got["evals"]  # openai/types/__init__.py did not run
    assert got["n"] < 250  # ~160 modules against ~400 for `import openai` (3.54.0)
    assert len(fake_llm.requests) == 1


def test_whole_sdk_still_importable_after_the_lazy_one(fake_llm):
    fake_llm.behave(answer("work"))
    got = run("""
        sdk = openai_sdk.load_sdk()
        import openai  # a later `import openai` (another library, a debugger) gets the whole SDK
        from openai.types import ChatModel  # runs openai/types/__init__.py now
        cal, _ = ask(sdk, sys.argv[1])
        print(json.dumps({"same": openai.OpenAI is sdk.OpenAI, "version": openai.__version__,
                          "errors": openai.APIConnectionError is sdk.errors.APIConnectionError,
                          "has_chatmodel": ChatModel is not None, "cal": cal,
                          "evals": "openai.types.eval_create_params" in sys.modules}))
    """, fake_llm.base_url)
    assert got == {"same": True, "version": got["version"], "errors": True, "has_chatmodel": True, "cal": "work",
                   "evals": True}
    assert got["version"].count(".") == 2


def test_a_reorganised_sdk_falls_back_to_the_whole_import(fake_llm):
    fake_llm.behave(answer("home"))
    got = run("""
        openai_sdk.LAZY_PACKAGES = openai_sdk.LAZY_PACKAGES + ("openai.no_such_package",)
        sdk = openai_sdk.load_sdk()
        cal, _ = ask(sdk, sys.argv[1])
        print(json.dumps({"lazy": sdk.lazy, "cal": cal, "n": len(openai_modules())}))
    """, fake_llm.base_url)
    assert got["lazy"] is False and got["cal"] == "home"
    assert got["n"] > 250  # imported whole


def test_already_imported_sdk_is_used_as_is():
    got = run("""
        import openai
        sdk = openai_sdk.load_sdk()
        print(json.dumps({"lazy": sdk.lazy, "same": sdk.OpenAI is openai.OpenAI}))
    """)
    assert got == {"lazy": False, "same": True}


def test_lazy_package_runs_its_init_once_on_first_other_attribute():
    got = run("""
        sdk = openai_sdk.load_sdk()
        types_pkg = sys.modules["openai.types"]
        before = "openai.types.eval_create_params" in sys.modules
        first = types_pkg.ChatModel        # not a submodule: the real __init__ runs
        after = "openai.types.eval_create_params" in sys.modules
        second = types_pkg.ChatModel
        try:
            types_pkg.no_such_name
            missing = "no error"
        except AttributeError as exc:
            missing = "AttributeError"
        print(json.dumps({"before": before, "after": after, "same": first is second, "missing": missing}))
    """)
    assert got == {"before": False, "after": True, "same": True, "missing": "AttributeError"}


@pytest.mark.parametrize("attr", ["__all__", "__version__"])
def test_dunder_lookups_do_not_initialise_a_lazy_package(attr):
    got = run(f"""
        sdk = openai_sdk.load_sdk()
        present = hasattr(sys.modules["openai"], {attr!r})
        print(json.dumps({{"present": present, "evals": "openai.types.eval_create_params" in sys.modules}}))
    """)
    assert got == {"present": False, "evals": False}
