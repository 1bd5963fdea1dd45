"""docs/reliability.md stays true: every test its "Faults injected" table names exists, and the figures
that runs produce sit between the markers those runs rewrite (tests/reliability/figures.py,
calroute_dev.mutation)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "reliability.md"


def _faults_table() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## Faults injected")
    return text[start:text.index("\n## ", start + 1)]


def test_every_test_the_faults_table_names_exists():
    refs = re.findall(r"`((?:tests/[\w/]+/)?(test_\w+\.py))::(\w+)(?:\[[^\]]*\])?`", _faults_table())
    # a row may name only the test after a file named earlier in the same cell: "`a.py::t1`, `t2`"
    assert len(refs) >= 25, refs
    missing = []
    for path, name, test in refs:
        files = [ROOT / path] if path.startswith("tests/") else list((ROOT / "tests").rglob(name))
        assert files and all(f.is_file() for f in files), path
        if not any(re.search(rf"^def {test}\(", f.read_text(encoding="utf-8"), re.M) for f in files):
            missing.append(f"{path}::{test}")
    assert not missing, missing


def test_the_generated_figures_have_their_markers():
    sys.path.insert(0, str(ROOT / "tests" / "reliability"))
    import figures

    text = DOC.read_text(encoding="utf-8")
    for name in figures.RENDER:
        begin, end = figures.markers(name)
        assert text.count(begin) == 1 and text.count(end) == 1 and text.index(begin) < text.index(end), name
    assert text.count("<!-- mutation:begin") == 1 and text.count("<!-- mutation:end -->") == 1


def test_figures_render_a_record_into_a_copy_of_the_doc(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "reliability"))
    import figures

    doc, results = tmp_path / "reliability.md", tmp_path / "results"
    doc.write_text(DOC.read_text(encoding="utf-8"), encoding="utf-8")
    results.mkdir()
    (results / "fuzz.json").write_text('{"rows": [{"context": "alone", "when": "W", "target": 10, "workers": 2, '
                                       '"requests": 12345, "generated": 7, "impersonations": 3, "errors5xx": 0, '
                                       '"seconds": 10.0, "operations": 14, "by_status": {"200": 5, "422": 7}}]}')
    figures.render_doc(doc, results)
    out = doc.read_text(encoding="utf-8")
    assert "| alone, W (`CALROUTE_FUZZ_REQUESTS=10`, 2 generator processes) | **12,345** | 7 | 3 | **0** | 10 s | " \
           "1234 req/s |" in out
    assert "Status mix (alone): 200: 5, 422: 7." in out
