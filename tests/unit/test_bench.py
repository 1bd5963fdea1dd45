"""The benchmark harness: percentile/timing helpers, the generated docs section, the JSON of a
``--quick`` run (tiny repetitions, one cheap section) and the rendering of a complete figures dict.
No timing assertions."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from bench import harness
from bench.__main__ import SECTIONS, TOP_KEYS
from bench.render import claims, render, render_targets, targets
from bench.state_machine import (estimate, happy_path_transitions, map_config, orchestration_cost, paper_model,
                                  unbatched)

ROOT = harness.ROOT


@pytest.mark.parametrize("n", [1, 2, 7, 100, 101])
def test_percentile_matches_numpy_linear_interpolation(n):
    rng = random.Random(n)
    xs = [rng.expovariate(1.0) for _ in range(n)]
    for q in (0, 1, 50, 90, 99, 100):
        assert harness.percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))


def test_percentile_known_values_and_errors():
    assert harness.percentile([3, 1, 2], 50) == 2
    assert harness.percentile([1, 2, 3, 4], 50) == 2.5
    assert harness.percentile([10, 20], 99) == pytest.approx(19.9)
    with pytest.raises(ValueError):
        harness.percentile([], 50)
    with pytest.raises(ValueError):
        harness.percentile([1], 101)


def test_time_calls_warms_up_and_runs_before_each_call():
    calls, befores = [], []
    ns = harness.time_calls(lambda: calls.append(1), repeat=4, warmup=3, before=lambda: befores.append(1))
    assert len(ns) == 4 and all(isinstance(x, int) and x >= 0 for x in ns)
    assert len(calls) == 7 and len(befores) == 7
    s = harness.summarize_ns([1_000_000, 2_000_000, 3_000_000])
    assert s == {"p50_ms": 2.0, "p99_ms": pytest.approx(2.98), "mean_ms": 2.0, "min_ms": 1.0, "n": 3}
    assert harness.ratio(3, 2) == 1.5 and harness.ratio(1, 0) is None and harness.ratio(None, 1) is None


def test_generated_section_is_replaced_between_markers_only():
    text = "# Benchmarks\n\nhand-written intro\n"
    once = harness.replace_generated(text, "table v1")
    assert once.startswith(text.rstrip()) and "table v1" in once
    assert once.count(harness.BEGIN_MARK) == 1 and once.count(harness.END_MARK) == 1
    twice = harness.replace_generated(once + "\nhand-written outro\n", "table v2")
    assert "table v1" not in twice and "table v2" in twice
    assert "hand-written intro" in twice and "hand-written outro" in twice
    assert twice.count(harness.BEGIN_MARK) == 1


def test_machine_info_has_the_versions_that_set_the_figures():
    m = harness.machine_info()
    for k in ("cpu_model", "cores", "ram_gb", "python", "numpy", "onnxruntime", "scikit-learn"):
        assert m[k], k
    assert harness.rss_bytes() > 0


def test_happy_path_transitions_follow_first_choice_and_count_map_items():
    definition = {"StartAt": "A", "States": {
        "A": {"Type": "Task", "Next": "M"},
        "M": {"Type": "Map", "Next": "S", "ItemProcessor": {"StartAt": "T", "States": {
            "T": {"Type": "Task", "Next": "C"},
            "C": {"Type": "Choice", "Choices": [{"Next": "P"}], "Default": "D"},
            "P": {"Type": "Task", "End": True},
            "D": {"Type": "Succeed"}}}},
        "S": {"Type": "Task", "Next": "Z"},
        "Z": {"Type": "Succeed"}}}
    assert happy_path_transitions(definition) == (4, 4)  # A M S Z ; T C P + the child execution



def _deployed() -> dict:
    from calroute_dev.local.lambdas import function_specs
    from calroute_dev.local.moto_server import state_machine_definition
    from calroute_dev.local.template import Resolver, load_template

    resolver = Resolver(load_template(), stack_name="calroute-bench-test")
    return json.loads(state_machine_definition(resolver, function_specs(resolver)))


#: the per-user measurements of the 2026-12-01 run (before this change): 1.813 GB-s per user, $1.81 per 10k
_MEASURED = {"user_seconds": 1.17, "gb_s_user": 1.813, "requests_user": 3.0, "gb_s_fixed_per_user": 0.0273}


def test_the_cost_model_reproduces_the_old_figure_and_prices_the_deployed_definition():
    deployed = _deployed()
    before = unbatched(deployed)
    # unbatched() is the definition this change replaced: STANDARD children, one user each
    assert "ItemBatcher" not in before["States"]["TrainUsers"]
    assert before["States"]["TrainUsers"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] == "STANDARD"
    assert before["States"]["TrainUsers"]["ItemProcessor"]["StartAt"] == "TrainUser"
    assert happy_path_transitions(before) == (4, 6)
    assert map_config(deployed) == {"execution_type": "EXPRESS", "batch": 10, "parent": 4, "child_fixed": 1,
                                    "child_per_user": 5}
    old = estimate(before, 10_000, _MEASURED)
    assert (old["state_transitions"], old["step_functions_usd"], old["total_usd"]) == (60_004, 1.5, 1.81)
    new = estimate(deployed, 10_000, _MEASURED)
    assert (new["children"], new["state_transitions"], new["express_requests"]) == (1_000, 1_004, 1_000)
    assert new["lambda_usd"] == old["lambda_usd"] and new["total_usd"] <= 0.40
    # Express duration: 10 users × (1.17 s + 3 × 0.05 s) = 13.2 s per child, 64 MB, rounded up to 100 ms
    assert new["express_gb_s"] == pytest.approx(1_000 * 13.2 * 64 / 1024, abs=0.1)
    # a partial last batch is its own (shorter) child
    assert orchestration_cost(deployed, 15, user_seconds=1.0)["children"] == 2
    # batched STANDARD children would still pay 5 transitions a user
    std = json.loads(json.dumps(deployed))
    std["States"]["TrainUsers"]["ItemProcessor"]["ProcessorConfig"]["ExecutionType"] = "STANDARD"
    assert orchestration_cost(std, 10_000, user_seconds=1.0)["state_transitions"] == 4 + 1_000 * 2 + 10_000 * 5


def test_the_paper_model_scales_duration_and_request_rates_with_max_concurrency():
    m = {**_MEASURED, "ddb_reads_user": 8.0, "ddb_writes_user": 5.0, "s3_gets_user": 3.0, "s3_puts_user": 2.0,
         "plan_seconds_per_user": 0.01, "events_per_user_mean": 80.0, "log_events_user": 25.0,
         "result_bytes_user": 200, "manifest_bytes_user": 80}
    pm = paper_model(_deployed(), m, users=1_000_000, concurrencies=(20, 1000))
    per_user = 1.17 + 3 * 0.05
    r20, r1000 = pm["by_max_concurrency"]
    assert r20["map_hours"] == pytest.approx(1e6 * per_user / 20 / 3600, abs=0.01)
    assert r1000["ddb_writes_per_s"] == round(1000 / per_user * 5.0) and r1000["lambda_concurrency"] == 1000
    assert pm["plan_seconds"] == 10_000 > pm["plan_lambda_limit_s"]  # Plan alone cannot do 1M users
    assert pm["results_bytes"] > pm["results_limit_bytes"]            # nor can inline results
    c = pm["cost"]
    assert c["total_usd"] == pytest.approx(sum(v for k, v in c.items() if k != "total_usd"), abs=0.05)
    assert c["s3_usd"] == pytest.approx(1e6 * (3 * 0.0004 + 2 * 0.005) / 1000, abs=0.01)


def test_quick_run_prints_the_documented_keys(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", "--only", "training",
                           "--results-dir", str(tmp_path), "--docs", str(tmp_path / "benchmarks.md")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(proc.stdout)
    assert tuple(figures) == TOP_KEYS
    assert figures["quick"] is True and figures["schema"] == 1
    for k in ("cpu_model", "cores", "ram_gb", "python", "numpy", "onnxruntime", "scikit-learn"):
        assert k in figures["machine"]
    (size, run), = figures["training"].items()
    assert {"wall_s_p50", "cpu_s_p50", "runs", "calendars", "onnx_bytes", "parity_passed"} <= set(run)
    assert run["parity_passed"] is True
    for s in set(SECTIONS) - {"training"}:
        assert figures[s] == {"skipped": "not selected"}
    assert {t["name"] for t in figures["targets"]} and all("met" in t for t in figures["targets"])
    written = list(tmp_path.glob("*.json"))
    assert len(written) == 1 and json.loads(written[0].read_text())["training"] == figures["training"]
    docs = (tmp_path / "benchmarks.md").read_text()
    assert harness.BEGIN_MARK in docs and harness.END_MARK in docs and "### Training end to end" in docs


def test_docs_document_every_top_level_key():
    docs = (ROOT / "docs" / "benchmarks.md").read_text()
    for k in TOP_KEYS:
        assert f"`{k}`" in docs, k


def _stats(p50=0.2):
    return {"p50_ms": p50, "p99_ms": p50 * 3, "mean_ms": p50, "min_ms": p50 / 2, "n": 10}


def _complete_figures() -> dict:
    fams = {f: {"onnx_bytes": 100_000, "rss_growth_mb": {"1": 1.0, "100": 30.0, "1000": 300.0}, "per_model_kb": 300.0,
                "models_per_gb": 3495, "cache_charge_kb": 490.0} for f in ("logreg", "gb_dense")}
    cost = {"lambda_gb_s": 1.0, "lambda_usd": 1.0, "state_transitions": 60004, "step_functions_usd": 1.5,
            "total_usd": 2.5, "usd_per_1000_users": 0.25}
    price = {"llm_tokens_usd": 1e-4, "lambda_usd": 1e-6, "api_usd": 1e-6, "total_usd": 1.02e-4,
             "per_million_events_usd": 102.0}
    return {
        "schema": 1, "started_at": "2026-01-01T00:00:00+00:00", "duration_s": 1.0, "quick": False,
        "machine": {**harness.machine_info(), "loadavg_at_end": [0.1, 0.1, 0.1]},
        "serving": {"model": {"user": "u", "family": "logreg", "calendars": 5, "train_events": 381,
                              "onnx_bytes": 100_000, "threshold": 0.5, "onnx_vs_sklearn_max_abs_diff": 1e-7},
                    **{k: _stats() for k in ("handler_warm", "handler_warm_default", "handler_warm_logged", "featurize", "onnx_featurize_predict",
                                             "sklearn_featurize_predict", "onnx_predict_only", "sklearn_predict_only",
                                             "gb14_onnx_featurize_predict", "gb14_sklearn_featurize_predict",
                                             "batch100_logged", "batch100_default", "cache_miss", "s3_get",
                                             "session_create")},
                    "batch100": {**_stats(20.0), "per_event_ms": 0.2}, "gb14_onnx_bytes": 700_000,
                    "novelty": _stats(0.012), "novelty_standalone": _stats(0.02), "anomaly": _stats(0.005),
                    "novelty_anomaly_p50_ms": 0.017,
                    "ratios": {"sklearn_over_onnx_model_p50": 3.0, "sklearn_over_onnx_predict_only_p50": 10.0,
                               "gb14_onnx_over_linear_onnx_p50": 0.5, "gb14_sklearn_over_linear_onnx_p50": 50.0}},
        "cold_start": {k: {"import_ms": 300.0, "first_call_ms": 200.0, "import_plus_first_call_ms": 510.0,
                           "process_ms": 600.0, "n": 7, "sklearn_imported": False,
                           **({"before_llm_call_ms": 720.0} if k == "llm_fallback" else {})}
                       for k in ("predict", "llm_fallback")},
        "memory": {"user": "u", "train_events": 263, "counts": [1, 100, 1000], "families": fams},
        "training": {"1000": {"wall_s_p50": 1.5, "cpu_s_p50": 1.4, "runs": 3, "calendars": 4, "onnx_bytes": 90_000,
                              "parity_passed": True}},
        "accuracy": {"overall": {"coverage": 0.9, "accuracy_kept": 0.98, "accuracy_all": 0.95, "macro_f1": 0.9},
                     "mean_of_users": {"coverage": 0.9, "accuracy_kept": 0.98},
                     "users": [{"user": "u", "coverage": 0.9, "accuracy_kept": 0.98}]},
        "state_machine": {"users": 100, "events_per_user": [60, 149], "status": "SUCCEEDED", "wall_s": 100.0,
                          "cost_10k_usd": 0.35, "cost_10k_modelled_usd": 0.2, "same_outcomes": True,
                          "counts": {"trained": 100}, "per_user_p50_ms": 900, "train_user_p50_s": 0.8,
                          "functions": {"TrainUserFunction": {"calls": 100, "p50_s": 0.8, "total_s": 80.0,
                                                              "memory_mb": 2048}},
                          "transitions": {"parent": 4, "per_user": 6}, "per_user_lambda_gb_s": 2.0,
                          "cost": {"10000": cost, "100000": cost},
                          "prices": {"lambda_usd_per_gb_s": 1.66667e-05, "lambda_usd_per_request": 2e-07,
                                     "sfn_usd_per_transition": 2.5e-05, "region": "us-east-1"}},
        "llm_economics": {"assumptions": {"llm_latency_s": [0.4, 0.8], "llm_accuracy": 0.9, "llm_model": "gpt-4o-mini",
                                          "llm_price_per_1m_tokens": {"input": 0.15, "output": 0.6}, "tokens": "chars/4",
                                          "lambda_usd_per_gb_s": 1.66667e-05, "predict_memory_mb": 1769,
                                          "llm_memory_mb": 512, "http_api_usd_per_request": 1e-6, "invoke": "in-process"},
                          "events": 781, "methods": {"ml": 700, "llm": 81}, "llm_calls_per_1000": 103.7,
                          "coverage": 0.896, "accuracy_ml_kept": 0.99, "accuracy_hybrid_with_assumed_llm": 0.98,
                          "prompt_tokens_mean": 800.0, "prompt_tokens_p99": 1200.0, "completion_tokens_mean": 20.0,
                          "usd_per_llm_call": 0.00013,
                          "latency": {k: _stats() for k in ("hybrid", "ml_answered", "llm_only",
                                                            "llm_only_overhead_without_llm_latency")},
                          "cost_per_event": {"hybrid": price, "llm_only": price, "ml_only": price},
                          "non_ml_outcomes": {"llm": 81},
                          "claims": {"ml_share": 0.896, "speedup_p50": 600.0, "speedup_p50_llm_latency_only": 500.0,
                                     "cheaper_x": 8.0,
                                     "accuracy_on_handled": 0.99}},
    }


def test_render_of_a_complete_run_has_every_section_and_verdict():
    f = _complete_figures()
    f["targets"], f["claims"] = targets(f), claims(f)
    by_name = {t["name"].split(" (")[0]: t for t in f["targets"]}
    assert by_name["warm classify p50"]["met"] is True       # 0.2 ms ≤ 0.3 ms
    assert by_name["warm classify p99"]["met"] is True       # 0.6 ms ≤ 1 ms
    assert by_name["predict cold import"]["met"] is False    # 300 ms > 250 ms
    assert by_name["novelty + anomaly per event on the predict path"]["met"] is True  # 17 ≤ 20 µs
    total = by_name["predict import + first classify"]
    assert (total["measured"], total["met"]) == (510.0, True)  # the per-run p50, not 300 + 200; ≤ 600 ms
    asked = by_name["LLM function import + first call until the LLM is asked"]
    assert (asked["measured"], asked["met"]) == (720.0, False)  # > 700 ms
    old = {k: v for k, v in f["cold_start"]["predict"].items() if k != "import_plus_first_call_ms"}
    old_run = {**f, "cold_start": {"predict": old, "llm_fallback": {}}}  # a results file from before the key
    by_old = {t["name"].split(" (")[0]: t for t in targets(old_run)}
    assert by_old["predict import + first classify"]["measured"] == 500.0
    assert by_old["LLM function import + first call until the LLM is asked"]["met"] is None
    assert by_name["warm classify p99 with the production logging default"]["met"] is True  # 0.6 ≤ 1.5 ms
    assert {c["name"]: c["holds"] for c in f["claims"]}["cheaper than LLM-only ($ per event ratio)"] is False
    md = render(f)
    for heading in ("### Targets", "### Serving", "### Cold start", "### RAM per cached user model",
                    "### Training end to end", "### Accuracy", "### Training state machine", "### LLM economics"):
        assert heading in md, heading
    assert "NOT met" in md and "does NOT hold" in md and "103.7 LLM calls per 1,000 events" in md
    assert "not measured" not in render_targets(f)


def test_a_partial_run_merges_the_other_sections_from_the_newest_results(tmp_path):
    """``--only serving --merge-previous``: the sections not run come from the newest earlier
    results file, named in machine.merged_sections; targets are recomputed."""
    import json as _json

    from bench.__main__ import merge_previous

    old = _complete_figures()
    (tmp_path / "2026-01-01.json").write_text(_json.dumps(old))
    (tmp_path / "anomaly.json").write_text("{}")  # not a run: ignored
    new = {**{s: {"skipped": "not selected"} for s in SECTIONS}, "serving": old["serving"],
           "machine": {"cores": 2}, "targets": [], "claims": []}
    merge_previous(new, tmp_path)
    assert new["memory"] == old["memory"] and new["machine"]["merged_sections"]["memory"] == old["started_at"]
    assert "serving" not in new["machine"]["merged_sections"]
    # merging again from a file that had merged a section itself keeps the date of the run that measured it
    again = {**{s: {"skipped": "not selected"} for s in SECTIONS}, "serving": old["serving"],
             "machine": {"cores": 2}, "targets": [], "claims": []}
    (tmp_path / "2026-01-02.json").write_text(_json.dumps({**new, "started_at": "2026-01-02T00:00:00+00:00"}))
    merge_previous(again, tmp_path)
    assert again["machine"]["merged_sections"]["memory"] == old["started_at"]
    assert any(t["measured"] is not None for t in new["targets"])
    assert "earlier run" in render({**old, **new, "machine": {**old["machine"], **new["machine"]}})


def test_compare_keeps_the_best_round_and_renders_the_ratio(tmp_path):
    """bench.compare (two revisions in the same run): per key the best (lowest) round of each side,
    a missing key is "-", and the docs block replaces only its own markers."""
    from bench import compare

    base = [{"serving": {"handler_warm": {"p50_ms": 0.9, "p99_ms": 2.0}}, "cold_start": {}},
            {"serving": {"handler_warm": {"p50_ms": 0.7, "p99_ms": 3.0}}, "cold_start": {}}]
    head = [{"serving": {"handler_warm": {"p50_ms": 0.6, "p99_ms": 1.0}},
             "cold_start": {"predict": {"import_ms": 300.0}}}]
    assert compare.best(base, "serving", ("handler_warm",), "p50_ms") == 0.7
    assert compare.best(base, "cold_start", ("predict",), "import_ms") is None
    assert compare.value(head[0], "cold_start", ("predict",), "import_ms") == 300.0
    rows = [{"label": lbl, "section": s, "path": list(p), "field": f, "base": compare.best(base, s, p, f),
             "head": compare.best(head, s, p, f)} for lbl, s, p, f in compare.KEYS]
    text = compare.render({"base": {"rev": "abc", "sha": "a" * 40}, "head": {"rev": "HEAD", "sha": "b" * 40},
                           "started_at": "2026-12-01 13:00 UTC", "sections": "serving,cold_start", "rounds": 2,
                           "why": "", "loadavg_at_start": 1.0, "loadavg_at_end": 1.0, "rows": rows})
    assert "| warm classify through the predict handler (p50) | 700 µs | 600 µs | 0.86× |" in text
    assert "| predict: import in a fresh process (import) | - | 300 ms | - |" in text
    doc = tmp_path / "b.md"
    doc.write_text(f"x\n{harness.BEGIN_MARK}\nkept\n{harness.END_MARK}\n")
    out = harness.replace_generated(doc.read_text(), text, compare.COMPARE_BEGIN, compare.COMPARE_END)
    assert "kept" in out and out.count(compare.COMPARE_BEGIN) == 1 and "0.86×" in out


def test_removed_cost_renders_its_figures_into_security_md():
    """docs/security.md's deleted-calendar cost table is generated by bench.removed_cost."""
    from bench import removed_cost

    res = {"removed_check_seconds": 1.0, "model_revalidate_seconds": 60, "backend": "moto",
           "machine": "2 CPUs", "requests_per_case": 7, "hit_p50_ms": 0.31, "hit_p99_ms": 0.9,
           "tombstones_read_p50_ms": 4.25, "tombstones_read_p99_ms": 8.5, "pointer_read_p50_ms": 3.75,
           "pointer_read_p99_ms": 7.5, "tombstones_read_adds_ms": 3.94, "pointer_read_adds_ms": 3.44}
    text = removed_cost.render(res)
    assert "| 0.31 ms | 0.90 ms |" in text and "| 4.25 ms | 8.50 ms |" in text and "| 3.75 ms | 7.50 ms |" in text
    assert "adds 3.94 ms" in text and "7 requests a case" in text
    doc = (ROOT / "docs" / "security.md").read_text(encoding="utf-8")
    assert doc.index(removed_cost.BEGIN) < doc.index("Measured by `python -m bench.removed_cost`") < doc.index(removed_cost.END)


def test_render_of_the_batched_state_machine_section():
    deployed = _deployed()
    m = {**_MEASURED, "ddb_reads_user": 8.0, "ddb_writes_user": 5.0, "s3_gets_user": 3.0, "s3_puts_user": 2.0,
         "plan_seconds_per_user": 0.01, "events_per_user_mean": 80.0, "log_events_user": 25.0,
         "result_bytes_user": 200, "manifest_bytes_user": 80}

    def run(label, definition):
        return {"label": label, "status": "SUCCEEDED", "wall_s": 10.0, "users": 100, "events_per_user": [60, 99],
                "process_cpu_s": 9.5,
                "counts": {"planned": 100, "trained": 100}, "children": 10, "users_per_child_max": 10,
                "child_seconds_max": 12.0, "config": map_config(definition),
                "functions": {"TrainUserFunction": {"calls": 100, "p50_s": 0.5, "total_s": 50.0, "cpu_s": 40.0,
                                                    "modelled_s": 45.0, "aws_wall_s": 30.0,
                                                    "aws_calls": {"s3": 200}, "memory_mb": 2048}},
                "cost": {"10000": estimate(definition, 10_000, m)}}

    f = _complete_figures()
    f["state_machine"] = {"variants": {"before": run("before", unbatched(deployed)), "after": run("after", deployed)},
                          "same_outcomes": True, "express_limit_s": 300, "cost_10k_usd": 0.35,
                          "alternatives_10k": {"express_batched": estimate(deployed, 10_000, m)},
                          "paper_1m": paper_model(deployed, m),
                          "prices": {"lambda_usd_per_gb_s": 1.66667e-05, "lambda_usd_per_request": 2e-07,
                                     "sfn_usd_per_transition": 2.5e-05, "express_usd_per_request": 1e-06,
                                     "express_usd_per_gb_s": 1.667e-05, "express_memory_mb": 64,
                                     "task_overhead_s": 0.05, "ddb_call_s": 0.005, "s3_call_s": 0.02,
                                     "region": "us-east-1"}}
    f["targets"], f["claims"] = targets(f), claims(f)
    md = render(f)
    assert "Same outcome counts: **yes**" in md and "| before | 10,000 |" in md and "**$1.81**" in md
    assert "#### Paper model: 1,000,000 users" in md and "| 1,000 |" in md
    # the handler's wall inside its AWS calls, and the process's CPU over the run
    assert "| TrainUserFunction | 100 | 0.50 s | 50.0 s | 40.0 s | 30.0 s | 45.0 s |" in md
    assert "10.0 s of wall and 9.5 s of CPU in the bench's process" in md
    cost = next(t for t in f["targets"] if t["name"].startswith("training cost per nightly run"))
    assert cost["met"] is True
    f["state_machine"]["same_outcomes"] = False  # cheaper but different outcomes is not the target
    assert next(t for t in targets(f) if t["name"].startswith("training cost"))["met"] is False


def test_cold_start_breakdown_groups_importtime_by_package_and_phase():
    from bench.coldstart import parse_importtime

    text = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:      1000 |       1000 |   numpy._core",
        "import time:      2000 |       3000 | numpy",
        "import time:       500 |        500 | calroute.config",
        "import time:       300 |        300 | json",
        "@@first-call@@",
        "import time:      4000 |       4000 |     botocore.client",
        "import time:      1500 |       5500 |   boto3",
        "import time:       700 |        700 | onnxruntime.capi",
        "some other stderr line",
    ])
    got = parse_importtime(text)
    assert got["import"] == {"numpy": 3.0, "calroute": 0.5, "stdlib and other": 0.3}
    assert got["first_call"] == {"boto3/botocore": 5.5, "onnxruntime": 0.7}
    f = _complete_figures()
    f["cold_start"]["predict"]["breakdown"] = {
        "import_ms": 300.0, "first_call_ms": 200.0, "import_by_package_ms": got["import"],
        "first_call_imports_by_package_ms": got["first_call"], "first_call_outside_imports_ms": 193.8}
    f["targets"], f["claims"] = targets(f), claims(f)
    md = render(f)
    assert "| predict: package | at import | in the first request |" in md
    assert "| boto3/botocore | 0 µs | 5.50 ms |" in md and "| 194 ms |" in md


def test_cold_start_without_gc_pause_is_rendered_beside_the_deployed_runs_of_the_same_minutes():
    from bench.coldstart import VARIANTS

    assert VARIANTS["without_gc_pause"] == {"COLD_START_GC": ""}
    f = _complete_figures()
    f["cold_start"]["predict"]["without_gc_pause"] = {
        "import_ms": 300.0, "first_call_ms": 250.0, "import_plus_first_call_ms": 550.0, "n": 5,
        "deployed_beside": {"import_ms": 260.0, "first_call_ms": 210.0, "import_plus_first_call_ms": 470.0, "n": 5}}
    f["cold_start"]["llm_fallback"]["without_gc_pause"] = {
        "import_ms": 200.0, "first_call_ms": 400.0, "import_plus_first_call_ms": 600.0, "n": 5,
        "before_llm_call_ms": 580.0,
        "deployed_beside": {"import_ms": 180.0, "first_call_ms": 330.0, "import_plus_first_call_ms": 510.0, "n": 5,
                            "before_llm_call_ms": 490.0}}
    f["targets"], f["claims"] = targets(f), claims(f)
    md = render(f)
    assert ("predict: 550 ms without, 470 ms with (5 runs each); LLM fallback: 600 ms (until the LLM is asked "
            "580 ms) without, 510 ms (until the LLM is asked 490 ms) with (5 runs each).") in md


def test_cold_start_children_get_the_templates_process_settings_not_its_resource_names():
    """The cold-start bench measures the function as deployed: the template's plain settings
    (OPENBLAS_NUM_THREADS, the log sampling) reach the child; table names, the LLM alias ARN and
    whatever the bench sets itself (here AUTH_MODE) do not come from the template."""
    from bench.coldstart import template_env

    env = template_env("predict", environ={"AUTH_MODE": "none"})
    assert env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["COLD_START_GC"] == "pause"  # measured with the deployed GC pause (calroute.startup)
    assert env["PREDICTION_LOG_CONFIDENT_SAMPLE_RATE"] == "0.005"
    assert env["MODEL_CACHE_MB"] == "512"
    for name in ("AUTH_MODE", "EVENTS_TABLE", "MODEL_BUCKET", "LLM_FUNCTION_NAME", "ML_ENABLED_PARAM"):
        assert name not in env, name
    llm = template_env("llm_fallback", environ={})
    assert llm["OPENBLAS_NUM_THREADS"] == "1" and llm["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert "MODEL_CACHE_MB" not in llm  # predict's own variable
