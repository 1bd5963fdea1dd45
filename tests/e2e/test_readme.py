"""The README stays truthful: every setting and template parameter is documented, the set-up is
exactly `make local` + `make test`, every doc it links exists, and every command of "Try the API"
prints, against the local stack after its demo, what the README says it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _section(start: str, end: str) -> str:
    return README.split(start, 1)[1].split(end, 1)[0]


def test_every_setting_is_in_the_configuration_table():
    from calroute.config import Settings

    table = _section("<!-- settings-table:start -->", "<!-- settings-table:end -->")
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", table, flags=re.M))
    assert documented == {name.upper() for name in Settings.model_fields}
    assert "(undocumented)" not in table


def test_every_template_parameter_is_documented():
    from calroute_dev.local.template import load_template

    table = _section("<!-- parameters-table:start -->", "<!-- parameters-table:end -->")
    documented = set(re.findall(r"^\| `([A-Za-z0-9]+)` \|", table, flags=re.M))
    assert documented == set(load_template().get("Parameters") or {})


def test_set_up_is_exactly_make_local_and_make_test():
    setup = _section("## Set up (fresh clone)", "\n## ")
    block = setup.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make local", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^local: venv\n\t\$\(VENV\)/bin/calroute local", makefile, flags=re.M)


def test_linked_docs_exist():
    """Every linked doc exists, except one the README itself calls "not written yet" — and once it
    is written, the README must stop saying so."""
    for doc in sorted(set(re.findall(r"docs/[a-z0-9_-]+\.md", README))):
        pending = re.search(re.escape(doc) + r"\W{0,4} \(not written yet\)", README) is not None
        if (ROOT / doc).is_file():
            assert not pending, f"{doc} exists now: drop '(not written yet)' from the README"
        else:
            assert pending, f"README links {doc}, which does not exist"


# ------------------------------------------------------------------ the commands of "Try the API"
#
# Every command of the section runs against a local stack whose demo ran as in `make local` (same
# user, same data, same training), and its output must be what the `# →` line under it says:
# `# → {...}` a JSON answer with these fields (`"…"`: any value), `# → "text"` output containing it.

ANY = "…"


def try_the_api_commands() -> list[tuple[str, str | None]]:
    """(command, claim or None) for every command of the README's "Try the API" section."""
    text = _section("## Try the API (local stack)", "\n## ")
    out: list[tuple[str, str | None]] = []
    for block in text.split("```bash")[1:]:
        body = block.split("```", 1)[0].replace("\\\n", " ")
        for line in body.splitlines():
            line = line.strip()
            if line.startswith("# →"):
                assert out and out[-1][1] is None, f"a claim without a command: {line}"
                out[-1] = (out[-1][0], line[len("# →"):].strip())
            elif line and not line.startswith("#"):
                out.append((re.sub(r"\s{2,}#\s.*$", "", line), None))
    return out


def check_claim(claim: str, stdout: str) -> None:
    import json

    want = json.loads(claim)
    if isinstance(want, str):
        assert want in stdout, f"{want!r} not in the output"
        return
    got = json.loads(stdout)
    for key, value in want.items():
        assert key in got, f"{key} missing"
        if value != ANY:
            assert got[key] == value, f"{key}: {got[key]!r}, the README says {value!r}"


def test_every_try_the_api_command_has_a_claim():
    cmds = try_the_api_commands()
    assert len(cmds) >= 12
    assert [c for c, claim in cmds if claim is None] == []
    assert any(c.startswith("calroute invoke ") for c, _ in cmds)


def test_claims_are_checked():
    check_claim('{"a": 1, "b": "…"}', '{"a": 1, "b": [2], "c": 3}')
    check_claim('"calendar    x"', "calendar    x\nmethod ml\n")
    for claim, out in (('{"a": 1}', '{"a": 2}'), ('{"a": 1}', '{"b": 1}'), ('"nope"', "yes")):
        try:
            check_claim(claim, out)
        except AssertionError:
            continue
        raise AssertionError(f"{claim} accepted {out}")


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory):
    """The local stack after the demo of `make local` (d3_developer seeded, trained, classified)."""
    from support.local_stack import running_stack

    from calroute_dev.local.demo import DEMO_DIR
    from calroute_dev.local.stack import run_demo

    with running_stack(tmp_path_factory.mktemp("calroute-readme")) as st:
        report = run_demo(st, DEMO_DIR)
        yield st, report
        sfn = st.emulator.client("stepfunctions")  # let a run the commands started finish first
        deadline = time.monotonic() + 300
        while sfn.list_executions(stateMachineArn=st.emulator.state_machine_arn,
                                  statusFilter="RUNNING")["executions"] and time.monotonic() < deadline:
            time.sleep(0.2)  # polling a state machine execution; not timing anything


@pytest.mark.slow
@pytest.mark.integration
def test_the_demo_shows_the_hybrid(demo_stack):
    _, report = demo_stack
    assert report["training"]["status"] == "SUCCEEDED"
    assert report["summary"]["accuracy_ml"] >= 0.9
    new = report["new"]
    assert {r["method"] for r in new} >= {"ml", "ml_low_confidence"}
    reasons = {r["defer_reason"] for r in new} - {None}
    assert {"novel_event", "unusual_time"} <= reasons, reasons


@pytest.mark.slow
@pytest.mark.integration
def test_try_the_api_commands_answer_what_the_readme_says(demo_stack, tmp_path):
    stack, _ = demo_stack
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "calroute").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m calroute_dev.cli "$@"\n')
    (shim / "calroute").chmod(0o755)
    env = {**os.environ, "PATH": f"{shim}{os.pathsep}{os.environ.get('PATH', '')}",
           "CALROUTE_API": stack.url, "CALROUTE_AWS_ENDPOINT": stack.emulator.endpoint,
           "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "core"), str(ROOT / "tools")])}
    failures = []
    for cmd, claim in try_the_api_commands():
        run = cmd.replace("http://127.0.0.1:3000", stack.url)
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", run], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=600)
        try:
            assert proc.returncode == 0, f"exit {proc.returncode}"
            check_claim(claim, proc.stdout)
        except (AssertionError, ValueError) as exc:
            failures.append(f"{cmd}\n  {exc}\n  stdout: {proc.stdout[-800:]}\n  stderr: {proc.stderr[-800:]}")
    assert not failures, "\n".join(failures)


def test_licence_is_an_spdx_expression_and_the_readme_names_it():
    """PEP 639: `project.license` is an SPDX string (a TOML table is deprecated by setuptools), which
    needs setuptools >= 77 to build."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in project["build-system"]["requires"]
    assert "Licence: Apache-2.0" in README
