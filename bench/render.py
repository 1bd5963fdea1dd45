"""Figures → the targets/claims verdicts and the generated Markdown of docs/benchmarks.md."""

from __future__ import annotations

from typing import Any, Optional

from .harness import fmt_ms, fmt_pct


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def _verdict(value: Optional[float], ok: Optional[bool]) -> str:
    if value is None:
        return "not measured"
    return "met" if ok else "NOT met"


def targets(f: dict) -> list[dict]:
    """The issue's targets, each ``{"name", "target", "measured", "unit", "met"}``."""
    from calroute.training import DEFAULT_FAMILY

    out = []

    def add(name: str, target: str, value: Optional[float], unit: str, ok) -> None:
        met = None if value is None else bool(ok(value))
        out.append({"name": name, "target": target, "measured": value, "unit": unit, "met": met})

    add("warm classify p50 (real handler, model cached)", "≤ 0.3 ms",
        _get(f, "serving", "handler_warm", "p50_ms"), "ms", lambda v: v <= 0.3)
    add("warm classify p99 (real handler, model cached)", "≤ 1 ms",
        _get(f, "serving", "handler_warm", "p99_ms"), "ms", lambda v: v <= 1.0)
    add("warm classify p99 with the production logging default (real handler, emulator store)", "≤ 1.5 ms",
        _get(f, "serving", "handler_warm_default", "p99_ms"), "ms", lambda v: v <= 1.5)
    add(f"cached user models per GB ({DEFAULT_FAMILY}, the default family)", "≥ 1,000",
        _get(f, "memory", "families", DEFAULT_FAMILY, "models_per_gb"), "models", lambda v: v >= 1000)
    add("training end to end, 1k events (wall p50)", "≤ 2 s",
        _get(f, "training", "1000", "wall_s_p50"), "s", lambda v: v <= 2.0)
    cov = _get(f, "accuracy", "overall", "coverage")
    acc = _get(f, "accuracy", "overall", "accuracy_kept")
    add("coverage at accuracy_kept ≥ 97%, ≤ 20 training events per calendar (pooled)", "≥ 85% (with ≥ 97%)",
        cov, "share", lambda v: v >= 0.85 and (acc or 0) >= 0.97)
    add("novelty + anomaly per event on the predict path (p50, same run)", "≤ 20 µs",
        _get(f, "serving", "novelty_anomaly_p50_ms"), "ms", lambda v: v <= 0.020)
    add("predict cold import", "≤ 250 ms", _get(f, "cold_start", "predict", "import_ms"), "ms", lambda v: v <= 250)
    same = _get(f, "state_machine", "same_outcomes")
    add("training cost per nightly run, 10k users (same outcome counts as before)", "≤ $0.40",
        _get(f, "state_machine", "cost_10k_usd"), "usd", lambda v: v <= 0.40 and same is not False)
    add("… the same with the load-independent Lambda figure (thread CPU + modelled AWS calls)", "≤ $0.40",
        _get(f, "state_machine", "cost_10k_modelled_usd"), "usd", lambda v: v <= 0.40 and same is not False)
    add("predict import + first classify (fresh process, p50)", "≤ 600 ms", _cold_total(f, "predict"), "ms",
        lambda v: v <= 600)
    add("LLM function import + first call until the LLM is asked (fresh process, p50)", "≤ 700 ms",
        _get(f, "cold_start", "llm_fallback", "before_llm_call_ms"), "ms", lambda v: v <= 700)
    return out


def _cold_breakdown(cold: dict) -> list[str]:
    """Where the cold start goes (one extra ``-X importtime`` run per function), when measured."""
    out: list[str] = []
    for name, key in (("predict", "predict"), ("LLM fallback", "llm_fallback")):
        b = (cold.get(key) or {}).get("breakdown")
        if not isinstance(b, dict) or "import_by_package_ms" not in b:
            continue
        imp, call = b["import_by_package_ms"], b["first_call_imports_by_package_ms"]
        groups = sorted(set(imp) | set(call), key=lambda g: -(imp.get(g, 0) + call.get(g, 0)))
        if not out:
            out += ["Where it goes (one more run under `python -X importtime`, which adds its own overhead: "
                    "module execution time by package, during the module import and during the first "
                    "request; then the first request's time outside imports):", ""]
        out += [f"| {name}: package | at import | in the first request |", "|---|---|---|"]
        out += [f"| {g} | {fmt_ms(imp.get(g, 0.0))} | {fmt_ms(call.get(g, 0.0))} |" for g in groups]
        out += [f"| first request outside imports (clients, reads, ONNX session, the request) | - | "
                f"{fmt_ms(b['first_call_outside_imports_ms'])} |",
                f"| total (this run) | {fmt_ms(b['import_ms'])} | {fmt_ms(b['first_call_ms'])} |", ""]
    return out


def _cold_total(f: dict, fn: str) -> Optional[float]:
    """p50 of import + first request per run; for a results file from before that key, the sum of
    the two p50s."""
    c = _get(f, "cold_start", fn) or {}
    if not isinstance(c, dict):
        return None
    if c.get("import_plus_first_call_ms") is not None:
        return c["import_plus_first_call_ms"]
    if c.get("import_ms") is not None and c.get("first_call_ms") is not None:
        return round(c["import_ms"] + c["first_call_ms"], 1)
    return None


def claims(f: dict) -> list[dict]:
    """The seed's claims checked against the LLM-economics run."""
    c = _get(f, "llm_economics", "claims") or {}
    out = []

    def add(name: str, claim: str, value: Optional[float], ok) -> None:
        out.append({"name": name, "claim": claim, "measured": value,
                    "holds": None if value is None else bool(ok(value))})

    add("share of events the model handles", "85-90%", c.get("ml_share"), lambda v: v >= 0.85)
    add("faster than LLM-only (p50 latency ratio)", "50×", c.get("speedup_p50"), lambda v: v >= 50)
    add("faster than LLM-only, counting only the LLM's own latency", "50×", c.get("speedup_p50_llm_latency_only"),
        lambda v: v >= 50)
    add("cheaper than LLM-only ($ per event ratio)", "10×", c.get("cheaper_x"), lambda v: v >= 10)
    add("accuracy on the events the model handles", "≥ 90%", c.get("accuracy_on_handled"), lambda v: v >= 0.90)
    return out


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit == "ms":
        return fmt_ms(v)
    if unit == "share":
        return fmt_pct(v)
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "usd":
        return f"${v:,.2f}"
    if isinstance(v, float):
        return f"{v:,.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def render_targets(f: dict) -> str:
    lines = ["| target | goal | measured | verdict |", "|---|---|---|---|"]
    for t in f.get("targets") or []:
        lines.append(f"| {t['name']} | {t['target']} | {_fmt(t['measured'], t['unit'])} | "
                     f"{_verdict(t['measured'], t['met'])} |")
    lines += ["", "| seed's claim | claimed | measured | verdict |", "|---|---|---|---|"]
    for c in f.get("claims") or []:
        v = c["measured"]
        shown = "-" if v is None else (fmt_pct(v) if v <= 1.0 and "share" in c["name"] or "accuracy" in c["name"]
                                       else f"{v:,.1f}×")
        lines.append(f"| {c['name']} | {c['claim']} | {shown} | "
                     f"{'not measured' if v is None else ('holds' if c['holds'] else 'does NOT hold')} |")
    return "\n".join(lines)


def _row(name: str, s: Optional[dict], note: str = "") -> str:
    if not isinstance(s, dict) or "p50_ms" not in s:
        return f"| {name} | - | - | - | {note} |"
    return f"| {name} | {fmt_ms(s['p50_ms'])} | {fmt_ms(s['p99_ms'])} | {s['n']} | {note} |"


def _section_error(f: dict, name: str) -> Optional[str]:
    s = f.get(name)
    if isinstance(s, dict) and ("error" in s or "skipped" in s):
        return f"_{name}: {s.get('error') or s.get('skipped')}_"
    return None


def render(f: dict) -> str:
    """The generated part of docs/benchmarks.md."""
    m = f["machine"]
    out = [f"_Run of {f['started_at']} ({'quick' if f['quick'] else 'full'}, {f['duration_s']} s) on "
           f"{m['cpu_model']}, {m['cores']} cores, {m['ram_gb']} GB RAM, Python {m['python']}, numpy {m['numpy']}, "
           f"onnxruntime {m['onnxruntime']}, scikit-learn {m['scikit-learn']}; load average "
           f"{m.get('loadavg_at_start')} at start, {m.get('loadavg_at_end')} at end (other processes were "
           f"running). Raw figures: `bench/results/{f['started_at'][:10]}.json`._", "",
           "### Targets", "", render_targets(f), ""]
    merged = m.get("merged_sections") or {}
    if merged:
        out[1:1] = ["", "_Sections from an earlier run (`--merge-previous`): " + ", ".join(
            f"{k} ({v})" for k, v in sorted(merged.items())) + "._"]

    s = f.get("serving") or {}
    out += ["### Serving (one event, model cached)", ""]
    err = _section_error(f, "serving")
    if err:
        out += [err, ""]
    else:
        mdl = s["model"]
        out += [f"Model: {mdl['user']} ({mdl['calendars']} real calendars, {mdl['train_events']} events), family "
                f"`{mdl['family']}`, ONNX {mdl['onnx_bytes'] / 1024:.0f} KiB, max |ONNX − sklearn| = "
                f"{mdl['onnx_vs_sklearn_max_abs_diff']:.1e}.", "",
                "| what | p50 | p99 | n | note |", "|---|---|---|---|---|",
                _row("predict handler, API GW v2 event → response", s.get("handler_warm"),
                     "prediction log off; Powertools resolver + validation + metrics included"),
                _row("predict handler, production logging default", s.get("handler_warm_default"),
                     "a new event id per call; unsure answers all, confident ones by crc32 sample "
                     f"({fmt_pct(_get(s, 'handler_warm_default', 'logged_share_of_calls'))} of these calls) "
                     "to DynamoDB in the request; one JSON record line each"),
                _row("… the same, each call one invoke with the after-response extension registered",
                     s.get("handler_warm_extension"),
                     "log off, PREDICTION_LOG_AFTER_RESPONSE=true (opt-in): what the extension's wake-ups "
                     "(INVOKE event, end mark) cost a request"),
                _row("… resolver only (no Logger/Tracer/Metrics decorators)", s.get("resolver_only"),
                     "Powertools routing + OpenAPI validation + service"),
                _row("… service only (`PredictService.classify`)", s.get("service_classify"),
                     "parse, cache hit, featurize, ONNX, routing, EMF line"),
                _row("predict handler + prediction-log write of every answer", s.get("handler_warm_logged"),
                     "DynamoDB PutItem to the moto server over HTTP, in the request (PREDICTION_LOG_AFTER_RESPONSE=false)"),
                _row("… the same write after the response: the response", s.get("handler_warm_logged_after_response"),
                     "every answer written by the internal extension"),
                _row("… the same write after the response: the invoke phase (billed)",
                     _get(s, "handler_warm_logged_after_response", "invoke_phase"), "response + write"),
                _row("featurize (1 event)", s.get("featurize"), "feature spec 2 (time tokens)"),
                _row("featurize (1 event), spec 1", s.get("featurize_v1"), "what spec-1 models are served with"),
                _row("novelty (1 event), predict path", s.get("novelty"),
                     "title words + 3-grams against the novelty index; tokens shared with the featurizer"),
                _row("novelty (1 event), standalone", s.get("novelty_standalone"),
                     "the same, tokenising the title itself (what it would cost without sharing)"),
                _row("anomaly (1 event), predict path", s.get("anomaly"),
                     "when/how-long tokens against the predicted calendar's; read off the featurizer's time tokens"),
                _row("anomaly (1 event), standalone", s.get("anomaly_standalone"), "the same, building its tokens itself"),
                _row("featurize + ONNX predict_proba", s.get("onnx_featurize_predict")),
                _row("featurize + sklearn predict_proba (same model)", s.get("sklearn_featurize_predict")),
                _row("ONNX predict_proba only", s.get("onnx_predict_only")),
                _row("sklearn predict_proba only", s.get("sklearn_predict_only")),
                _row("seed: GB(100, depth 5) on 14 features, ONNX", s.get("gb14_onnx_featurize_predict"),
                     f"featurize_dense + ONNX; {s.get('gb14_onnx_bytes', 0) / 1024:.0f} KiB"),
                _row("seed: GB(100, depth 5) on 14 features, sklearn", s.get("gb14_sklearn_featurize_predict")),
                _row("batch of 100 events through the handler", s.get("batch100"),
                     f"{fmt_ms(_get(s, 'batch100', 'per_event_ms'))} per event; log off"),
                _row("batch of 100, production logging default", s.get("batch100_default")),
                _row("batch of 100 + prediction-log writes", s.get("batch100_logged")),
                _row("cache miss: registry GET + S3 GET + sha256 + session", s.get("cache_miss"), "moto server"),
                _row("S3 GET + sha256 alone", s.get("s3_get")),
                _row("ONNX session creation alone", s.get("session_create")), ""]
        tail = _get(s, "handler_warm_default", "tail")
        if tail:
            out += [f"The production default's p99 taken apart (a second pass of {tail['n']} calls with new ids, "
                    f"`handler_warm_default.tail`): {tail['writes']} calls wrote to DynamoDB (p50 "
                    f"{fmt_ms(tail['write_p50_ms'])}) and the {tail['after_write']} calls right after a write took "
                    f"p50 {fmt_ms(tail['after_write_p50_ms'])}: together {fmt_pct(tail['share_write_or_after'])} of "
                    f"the calls (a write sample of r costs the tail about 2r of the calls: from r ≈ 0.5 % on they "
                    f"fill the slowest 1 % by themselves). Every other call: p50 "
                    f"{fmt_ms(tail['others_p50_ms'])}, p99 {fmt_ms(tail['others_p99_ms'])} (this pass, all calls: "
                    f"p99 {fmt_ms(tail['p99_ms'])}).", ""]
        r = s.get("ratios") or {}
        out += ["Ratios (p50, same run): sklearn/ONNX for the model "
                f"{r.get('sklearn_over_onnx_model_p50')}× (featurize included), "
                f"{r.get('sklearn_over_onnx_predict_only_p50')}× (predict only); "
                f"seed GB-14 ONNX / linear ONNX {r.get('gb14_onnx_over_linear_onnx_p50')}×; "
                f"seed GB-14 through sklearn / linear ONNX {r.get('gb14_sklearn_over_linear_onnx_p50')}×.", ""]

    out += ["### Cold start (fresh process: import the module, serve one request)", ""]
    err = _section_error(f, "cold_start")
    if err:
        out += [err, ""]
    else:
        out += ["| function | import p50 | first request p50 | import + first request p50 | until the LLM is asked p50 "
                "| whole process p50 | runs | sklearn loaded |",
                "|---|---|---|---|---|---|---|---|"]
        for name, key in (("predict", "predict"), ("LLM fallback", "llm_fallback")):
            c = f["cold_start"][key]
            total = _cold_total(f, key)
            asked = c.get("before_llm_call_ms")
            out.append(f"| {name} | {fmt_ms(c['import_ms'])} | {fmt_ms(c['first_call_ms'])} | "
                       f"{fmt_ms(total) if total is not None else '-'} | {fmt_ms(asked) if asked is not None else '-'} | "
                       f"{fmt_ms(c['process_ms'])} | {c['n']} | {'yes' if c['sklearn_imported'] else 'no'} |")
        out += ["", "The first request includes building the service (boto3 clients), the registry and S3 reads "
                "and the ONNX session (predict), or the LLM client and the DynamoDB reads (LLM fallback, "
                "stand-in server answering at once; \"until the LLM is asked\" stops when the stand-in receives "
                "the request). A fresh process here finds every third-party module's byte-code in the venv; "
                "the layers ship theirs too (docs/deployment.md).", ""]
        snap = [(name, f["cold_start"][key].get("snapstart")) for name, key in
                (("predict", "predict"), ("LLM fallback", "llm_fallback"))]
        snap = [(n, v) for n, v in snap if isinstance(v, dict) and v.get("first_call_ms") is not None]
        if snap:
            out += ["With SnapStart (`SnapStart=PublishedVersions`; the same children with "
                    "`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`: the import primes the service, its boto3 clients, "
                    "onnxruntime or the OpenAI SDK, as the snapshotted init does; then the restore hook and the first "
                    "request are timed; Lambda's own restore of the snapshot is not included and not measurable here): "
                    + "; ".join(f"{n}: init (snapshotted, once per published version) {fmt_ms(v['import_ms'])}, "
                                f"restore hook + first request {fmt_ms(v['first_call_ms'])}"
                                + (f", until the LLM is asked {fmt_ms(v['before_llm_call_ms'])}"
                                   if v.get("before_llm_call_ms") is not None else "")
                                + f" p50 ({v['n']} runs)" for n, v in snap) + ".", ""]
        bare = [(name, f["cold_start"][key].get("without_layer_bytecode")) for name, key in
                (("predict", "predict"), ("LLM fallback", "llm_fallback"))]
        bare = [(n, b) for n, b in bare if isinstance(b, dict)]
        if bare:
            out += ["Without the layers' byte-code (their modules compiled from source in every fresh process, "
                    "as the layers were shipped before 2026-12-01; the runtime's standard library and boto3 "
                    "keep theirs): " + "; ".join(
                        f"{n} import {fmt_ms(b['import_ms'])} + first request {fmt_ms(b['first_call_ms'])} = "
                        f"{fmt_ms(b['import_plus_first_call_ms'])} p50 ({b['n']} runs)" for n, b in bare) + ".", ""]
        nogc = [(name, f["cold_start"][key].get("without_gc_pause")) for name, key in
                (("predict", "predict"), ("LLM fallback", "llm_fallback"))]
        nogc = [(n, v) for n, v in nogc if isinstance(v, dict) and isinstance(v.get("deployed_beside"), dict)]
        if nogc:
            def one(v: dict) -> str:
                asked = v.get("before_llm_call_ms")
                return (f"{fmt_ms(v['import_plus_first_call_ms'])}"
                        + (f" (until the LLM is asked {fmt_ms(asked)})" if asked is not None else ""))
            out += ["Without the cold-start GC pause (`COLD_START_GC` unset: the collector runs during the "
                    "init and the first request, as before 2026-12-02; `calroute.startup`), import + first "
                    "request p50, interleaved with as many runs as deployed in the same minutes: " + "; ".join(
                        f"{n}: {one(v)} without, {one(v['deployed_beside'])} with ({v['n']} runs each)"
                        for n, v in nogc) + ".", ""]
        out += _cold_breakdown(f["cold_start"])

    out += ["### RAM per cached user model", ""]
    err = _section_error(f, "memory")
    if err:
        out += [err, ""]
    else:
        mem = f["memory"]
        counts = mem["counts"]
        out += [f"Model of {mem['user']} ({mem['train_events']} training events, 5 calendars), loaded N times "
                "in a fresh process (one session per user, one prediction each).", "",
                "| family | ONNX size | " + " | ".join(f"RSS growth at {c:,}" for c in counts)
                + " | per model | models per GB | cache charge |",
                "|---|---|" + "---|" * len(counts) + "---|---|---|"]
        for fam, d in mem["families"].items():
            if "error" in d:
                out.append(f"| {fam} | {d['error']} |")
                continue
            out.append(f"| {fam} | {d['onnx_bytes'] / 1024:.0f} KiB | "
                       + " | ".join(f"{d['rss_growth_mb'].get(str(c), 0):.1f} MB" for c in counts)
                       + f" | {d['per_model_kb']:.0f} KiB | {d['models_per_gb']:,} | {d['cache_charge_kb']:.0f} KiB |")
        out += ["", "_cache charge_ is what `OnnxModel.memory_estimate` charges the model in the LRU cache.", ""]

    out += ["### Training end to end (`train_user_model`: features, out-of-fold threshold, fit, ONNX, parity)", ""]
    err = _section_error(f, "training")
    if err:
        out += [err, ""]
    else:
        out += ["| events | calendars | wall p50 | CPU p50 | runs | ONNX size | parity |", "|---|---|---|---|---|---|---|"]
        for n, d in f["training"].items():
            out.append(f"| {int(n):,} | {d['calendars']} | {d['wall_s_p50']:.2f} s | {d['cpu_s_p50']:.2f} s | {d['runs']} | "
                       f"{d['onnx_bytes'] / 1024:.0f} KiB | {'passed' if d['parity_passed'] else 'FAILED'} |")
        out.append("")

    out += ["### Accuracy with ≤ 20 training events per calendar (`calroute evaluate --max-train-per-calendar 20`)", ""]
    err = _section_error(f, "accuracy")
    if err:
        out += [err, ""]
    else:
        a = f["accuracy"]
        out += ["| scope | coverage | accuracy_kept | accuracy_all | macro-F1 |", "|---|---|---|---|---|"]
        for name, key in (("pooled", "overall"), ("mean of users", "mean_of_users")):
            d = a[key]
            out.append(f"| {name} | {fmt_pct(d.get('coverage'))} | {fmt_pct(d.get('accuracy_kept'))} | "
                       f"{fmt_pct(d.get('accuracy_all'))} | {fmt_pct(d.get('macro_f1'))} |")
        for u in a["users"]:
            out.append(f"| {u['user']} | {fmt_pct(u.get('coverage'))} | {fmt_pct(u.get('accuracy_kept'))} | | |")
        out.append("")

    out += ["### Training state machine (local run) and its cost", ""]
    err = _section_error(f, "state_machine")
    if err:
        out += [err, ""]
    elif "variants" in f["state_machine"]:
        out += _render_state_machine(f["state_machine"])
    else:  # a results file from before the batched definition
        sm = f["state_machine"]
        out += [f"{sm['users']} synthetic users ({sm['events_per_user'][0]}-{sm['events_per_user'][1]} events, 3 real "
                f"calendars each), one scheduled run: **{sm['status']}** in {sm['wall_s']:.1f} s wall "
                f"(Map run one user at a time locally); per user p50 {fmt_ms(sm['per_user_p50_ms'])} "
                f"(run record), TrainUser p50 {sm['train_user_p50_s']} s; counts {sm['counts']}.", "",
                "| function | calls | p50 | total | memory |", "|---|---|---|---|---|"]
        for fn, d in sm["functions"].items():
            out.append(f"| {fn} | {d['calls']} | {d['p50_s']:.2f} s | {d['total_s']:.1f} s | {d['memory_mb']} MB |")
        out += ["", f"State transitions (happy path): {sm['transitions']['parent']} per run + "
                f"{sm['transitions']['per_user']} per user. Lambda: {sm['per_user_lambda_gb_s']} GB-s per user.", "",
                "| users | Lambda GB-s | Lambda $ | transitions | Step Functions $ | total $ per run | $ per 1,000 users |",
                "|---|---|---|---|---|---|---|"]
        for n, c in sm["cost"].items():
            out.append(f"| {int(n):,} | {c['lambda_gb_s']:,.0f} | ${c['lambda_usd']:,.2f} | {c['state_transitions']:,} | "
                       f"${c['step_functions_usd']:,.2f} | ${c['total_usd']:,.2f} | ${c['usd_per_1000_users']:.3f} |")
        p = sm["prices"]
        out += ["", f"Prices ({p['region']}): Lambda ${p['lambda_usd_per_gb_s']} per GB-s and "
                f"${p['lambda_usd_per_request'] * 1e6:.2f} per 1M requests at the template's MemorySize; Step Functions "
                f"Standard ${p['sfn_usd_per_transition'] * 1e6:.0f} per 1M transitions. S3/DynamoDB request costs "
                "are left out (cents at 100k users).", ""]

    out += ["### LLM economics (hybrid vs LLM-only)", ""]
    err = _section_error(f, "llm_economics")
    if err:
        out += [err, ""]
    else:
        e = f["llm_economics"]
        a = e["assumptions"]
        lat = e["latency"]
        cost = e["cost_per_event"]
        out += [f"{e['events']} test events of the bundled users (evaluation split) through the real predict "
                f"handler; methods {e['methods']}; **{e['llm_calls_per_1000']} LLM calls per 1,000 events**"
                + (f"; as new users with {e['few_shot']['train_per_calendar']} training events per calendar: methods "
                   f"{e['few_shot']['methods']}, **{e['few_shot']['llm_calls_per_1000']} LLM calls per 1,000 events**"
                   if e.get("few_shot") else "") + ".", "",
                "| router | latency p50 | latency p99 | $ per event | $ per 1M events | accuracy | ML coverage |",
                "|---|---|---|---|---|---|---|",
                f"| ML only (unsure answers kept) | {fmt_ms(lat['ml_answered']['p50_ms'])} | "
                f"{fmt_ms(lat['ml_answered']['p99_ms'])} | ${cost['ml_only']['total_usd']:.2e} | "
                f"${cost['ml_only']['per_million_events_usd']:,.2f} | {fmt_pct(e.get('accuracy_ml_only'))} | 100% |",
                f"| hybrid (calroute) | {fmt_ms(lat['hybrid']['p50_ms'])} | {fmt_ms(lat['hybrid']['p99_ms'])} | "
                f"${cost['hybrid']['total_usd']:.2e} | ${cost['hybrid']['per_million_events_usd']:,.2f} | "
                f"{fmt_pct(e['accuracy_hybrid_with_assumed_llm'])} (model's own: {fmt_pct(e['accuracy_ml_kept'])}) | "
                f"{fmt_pct(e['coverage'])} |",
                *([f"| hybrid, new users ({e['few_shot']['train_per_calendar']} training events per calendar) | "
                   f"{fmt_ms(e['few_shot']['latency']['p50_ms'])} | {fmt_ms(e['few_shot']['latency']['p99_ms'])} | "
                   f"${e['few_shot']['cost_per_event']['total_usd']:.2e} | "
                   f"${e['few_shot']['cost_per_event']['per_million_events_usd']:,.2f} | "
                   f"{fmt_pct(e['few_shot']['accuracy_hybrid_with_assumed_llm'])} (model's own: "
                   f"{fmt_pct(e['few_shot']['accuracy_ml_kept'])}) | {fmt_pct(e['few_shot']['coverage'])} |"]
                  if (e.get("few_shot") or {}).get("cost_per_event") else []),
                *([f"| ML only, new users ({e['few_shot']['train_per_calendar']} training events per calendar) | "
                   "- | - | - | - | "
                   f"{fmt_pct(e['few_shot'].get('accuracy_ml_only'))} | 100% |"]
                  if (e.get("few_shot") or {}).get("accuracy_ml_only") is not None else []),
                f"| LLM only | {fmt_ms(lat['llm_only']['p50_ms'])} | {fmt_ms(lat['llm_only']['p99_ms'])} | "
                f"${cost['llm_only']['total_usd']:.2e} | ${cost['llm_only']['per_million_events_usd']:,.2f} | "
                f"{a['llm_accuracy']:.0%} (assumed) | 0% |", "",
                f"Prompt: {e['prompt_tokens_mean']} input tokens on average (p99 {e['prompt_tokens_p99']}), "
                f"{e['completion_tokens_mean']} output; ${e['usd_per_llm_call']:.6f} per call at "
                f"{a['llm_model']} prices {a['llm_price_per_1m_tokens']} per 1M tokens. LLM-only handler time "
                f"without the LLM's own latency: p50 {fmt_ms(lat['llm_only_overhead_without_llm_latency']['p50_ms'])} "
                "(the fallback's reads and similar-event search).", "",
                f"Assumptions: stand-in latency uniform {a['llm_latency_s'][0]}-{a['llm_latency_s'][1]} s per call; "
                f"stand-in accuracy {a['llm_accuracy']:.0%}; tokens {a['tokens']}; {a['invoke']}; Lambda "
                f"${a['lambda_usd_per_gb_s']} per GB-s at {a['predict_memory_mb']} MB (predict, which waits for the "
                f"fallback) and {a['llm_memory_mb']} MB (fallback), API Gateway HTTP API "
                f"${a['http_api_usd_per_request'] * 1e6:.2f} per 1M requests.", ""]
        if e.get("non_ml_outcomes"):
            out += [f"Non-ML outcomes: {e['non_ml_outcomes']}.", ""]
    return "\n".join(out)


def _usd(v: Optional[float]) -> str:
    return "-" if v is None else f"${v:,.2f}"


def _render_state_machine(sm: dict) -> list[str]:
    """The training state machine section: the two local runs, the cost per run, the 1M-user paper model."""
    v = sm["variants"]
    before, after = v.get("before"), v["after"]
    out = [f"Two scheduled runs over {after['users']} synthetic users each ({after['events_per_user'][0]}-"
           f"{after['events_per_user'][1]} events, 3 real calendars; the two sets have the same events), one "
           "user at a time locally (`MaxConcurrency=1`), real handlers through moto's ASL interpreter "
           "(`calroute_dev.local.asl_compat` emulates `ItemBatcher` and runs the EXPRESS children as moto "
           "child executions): **before** = the definition this change replaced (one user per STANDARD child "
           "workflow; `bench.state_machine.unbatched` of the deployed one), **after** = the deployed definition. "
           f"Same outcome counts: **{'yes' if sm.get('same_outcomes') else 'NO' if sm.get('same_outcomes') is False else 'not compared'}**.",
           "", "| run | status | wall | children | users per child (max) | longest child | counts |",
           "|---|---|---|---|---|---|---|"]
    for r in (before, after):
        if r is None:
            continue
        c = {k: x for k, x in r["counts"].items() if x}
        out.append(f"| {r['label']} ({r['config']['execution_type']}, {r['config']['batch']} per child) | "
                   f"{r['status']} | {r['wall_s']:.1f} s | {r['children']} | {r['users_per_child_max']} | "
                   f"{r['child_seconds_max']:.1f} s (Express limit {sm['express_limit_s']} s) | {c} |")
    out += ["", "| function (after run) | calls | p50 | total wall | thread CPU | inside AWS calls | modelled | AWS calls | memory |",
            "|---|---|---|---|---|---|---|---|---|"]
    for fn, d in after["functions"].items():
        aws = f"{d['aws_wall_s']:.1f} s" if d.get("aws_wall_s") is not None else "-"
        out.append(f"| {fn} | {d['calls']} | {d['p50_s']:.2f} s | {d['total_s']:.1f} s | {d.get('cpu_s', 0):.1f} s | "
                   f"{aws} | {d.get('modelled_s', 0):.1f} s | {d.get('aws_calls') or {}} | {d['memory_mb']} MB |")
    if after.get("process_cpu_s") is not None:
        out += ["", f"The after run took {after['wall_s']:.1f} s of wall and {after['process_cpu_s']:.1f} s of CPU in "
                "the bench's process (handlers, moto server and ASL interpreter share one GIL). _Inside AWS calls_: "
                "a handler's wall seconds in its boto3 calls (request, the emulator's answer, parse)."]
    out += ["", "Cost per run, each run's own Lambda measurements and definition (`orchestration_cost`, "
            "`lambda_cost`):", "",
            "| run | users | Lambda GB-s | Lambda $ | children | transitions | Express GB-s | Step Functions $ | "
            "total $ per run | $ per 1,000 users | total, modelled Lambda |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in (before, after):
        if r is None:
            continue
        for n, c in r["cost"].items():
            out.append(f"| {r['label']} | {int(n):,} | {c['lambda_gb_s']:,.0f} | {_usd(c['lambda_usd'])} | "
                       f"{c['children']:,} | {c['state_transitions']:,} | {c['express_gb_s']:,.0f} | "
                       f"{_usd(c['step_functions_usd'])} | **{_usd(c['total_usd'])}** | ${c['usd_per_1000_users']:.4f} | "
                       f"{_usd(c.get('total_usd_modelled'))} |")
    alt = sm.get("alternatives_10k") or {}
    if alt:
        out += ["", "What each change buys alone (10,000 users, the after run's measurements): " + "; ".join(
            f"{k.replace('_', ' ')} {_usd(c['total_usd'])} (Step Functions {_usd(c['step_functions_usd'])})"
            for k, c in alt.items()) + "."]
    p = sm["prices"]
    out += ["", f"Prices ({p['region']}): Lambda ${p['lambda_usd_per_gb_s']} per GB-s and "
            f"${p['lambda_usd_per_request'] * 1e6:.2f} per 1M requests at the template's MemorySize; Step Functions "
            f"Standard ${p['sfn_usd_per_transition'] * 1e6:.0f} per 1M transitions (one more per child execution "
            f"started); Express ${p['express_usd_per_request'] * 1e6:.2f} per 1M requests and "
            f"${p['express_usd_per_gb_s']:.8f} per GB-s at {p['express_memory_mb']} MB, a child's duration = its "
            f"users' step time + {p['task_overhead_s']} s per Lambda task, rounded up to 100 ms. _Modelled_ Lambda "
            f"(load-independent): each handler's thread CPU time + {p.get('ddb_call_s')} s per DynamoDB call + "
            f"{p.get('s3_call_s')} s per S3 call, instead of its wall time on this loaded machine against the moto "
            "server. S3/DynamoDB requests and logs: in the paper model below.", ""]
    pm = sm.get("paper_1m")
    if pm:
        a = pm["assumptions"]
        out += [f"#### Paper model: {pm['users']:,} users", "",
                f"Assumptions: {a['trained_per_run']}; a user's steps take {a['per_user_seconds']} s "
                f"({a['per_user_seconds_source']}); {a['users_per_child']} users per EXPRESS child, so a child "
                f"runs ~{a['child_seconds']} s of its {a['express_limit_s']} s limit; per user "
                f"{pm['per_user_requests']['dynamodb_reads']} DynamoDB reads, "
                f"{pm['per_user_requests']['dynamodb_writes']} writes, {pm['per_user_requests']['s3_gets']} S3 GETs, "
                f"{pm['per_user_requests']['s3_puts']} PUTs (counted in the after run: every boto3 call of the "
                f"process), ~{pm['per_user_requests']['log_events']} logged history events.", "",
                "| MaxConcurrency | Map duration | Lambda concurrency | DynamoDB reads/s | writes/s | S3 GET/s | PUT/s |",
                "|---|---|---|---|---|---|---|"]
        for r in pm["by_max_concurrency"]:
            out.append(f"| {r['max_concurrency']:,} | {r['map_hours']:.1f} h | {r['lambda_concurrency']:,} | "
                       f"{r['ddb_reads_per_s']:,} | {r['ddb_writes_per_s']:,} | {r['s3_gets_per_s']:,} | "
                       f"{r['s3_puts_per_s']:,} |")
        lim = a["limits"]
        c = pm["cost"]
        out += ["", "Limits: Lambda " + lim["lambda_concurrency"] + "; Distributed Map " + lim["distributed_map_children"]
                + "; DynamoDB on demand " + lim["dynamodb_on_demand"] + "; S3 " + lim["s3"] + ".", "",
                f"Cost per 1M-user run: Lambda {_usd(c['lambda_usd'])}, Step Functions {_usd(c['step_functions_usd'])}, "
                f"DynamoDB {_usd(c['dynamodb_usd'])}, S3 {_usd(c['s3_usd'])}, CloudWatch Logs {_usd(c['logs_usd'])}: "
                f"**{_usd(c['total_usd'])}** (DynamoDB at one request unit per call plus the events the "
                "TrainUser and Promote queries read, ~0.4 KB an event).", "",
                "What does not scale as it stands: Plan is one Lambda that reads every profile in turn — "
                f"~{pm['plan_seconds']:,} s at this run's (modelled) per-profile time, against Lambda's "
                f"{pm['plan_lambda_limit_s']} s maximum (shard it: parallel Scan segments in a Map); it is now the "
                f"first limit a run reaches. users.json is ~{pm['users_json_bytes'] / 1e6:,.0f} MB. The Map's "
                "results no longer come back inline: its `ResultWriter` puts them in S3 under "
                "`runs/<runId>/results/` and the execution state carries only the manifest's reference, whatever "
                f"the run size (inline, the {pm['results_limit_bytes'] // 1024} KB payload limit was passed at ~"
                f"{pm['results_limit_bytes'] // max(1, pm['results_bytes'] // pm['users']):,} users); Summarize "
                f"then reads ≥ ~{pm['results_bytes'] / 1e6:,.0f} MB of result files in one Lambda (the users' "
                "results plus each child's metadata): size its memory and time, or stream them, before 1M users.", ""]
    return out
