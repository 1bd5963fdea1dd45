"""The README stays truthful: every setting and template parameter is documented, the set-up is
exactly `make local` + `make test`, and every doc it links exists."""

from __future__ import annotations

import re
from pathlib import Path

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
