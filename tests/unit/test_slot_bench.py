"""bench.slot_route / bench.slot_parsers write only their own blocks of the docs."""

from __future__ import annotations

from bench import slot_parsers, slot_route

ROUTE = {"texts": 3, "target_ms": 20.0, "service_build_ms": 800.0, "first_request_ms": 90.0, "meets_target": True,
         "measured_at": "2026-12-01 13:00 UTC", "load_avg": 1.0, "machine": {"cpu_model": "cpu", "cores": 2},
         **{k: {"p50_ms": 1.0, "p99_ms": 2.0, "mean_ms": 1.2, "n": 10, "non_200": 0}
            for k in ("handler_warm", "service_parse", "rules_only")}}


def test_route_block_replaces_only_itself(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n<!-- bench:begin x -->\nother\n<!-- bench:end -->\n\ntail text\n")
    slot_route.write_doc(ROUTE, doc)
    first = doc.read_text()
    assert "other" in first and "tail text" in first and "Target met (p99 ≤ 20 ms): yes" in first
    slot_route.write_doc({**ROUTE, "meets_target": False}, doc)
    again = doc.read_text()
    assert again.count(slot_route.BEGIN) == 1 and "Target met (p99 ≤ 20 ms): no" in again
    assert again.replace("no.", "yes.") == first


def test_parser_table_reports_a_parser_that_does_not_import():
    res = {"now": "2019-03-01T09:00:00", "parsers": {
        "good": {"version": "1", "train": {"date_accuracy": 1.0, "date_n": 4, "time_accuracy": 0.5, "time_n": 2,
                                           "p50_ms": 1.0, "p95_ms": 2.0}},
        "missing": {"error": "ModuleNotFoundError: No module named 'ctparse'"}}}
    text = slot_parsers.table(res)
    assert "| good | 1 | 1.000 (4) | 0.500 (2) | 1.00 / 2.00 |" in text
    assert "not measured: ModuleNotFoundError" in text
