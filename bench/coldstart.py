"""Cold start: a fresh Python process imports a function module (``functions/<name>/app.py``) and
serves one request, repeated; p50 of the import time, of the first request, of the two together
(``import_plus_first_call_ms``, per run) and of the whole process.

The child talks to the parent's emulator (``AWS_ENDPOINT_URL``) and, for the LLM function, to the
parent's stand-in LLM server, which notes when each request reaches it: ``before_llm_call_ms`` is
the time from the start of the import to the moment the LLM is asked (both clocks are the machine's
wall clock). Interpreter start-up is in ``process_ms`` only (Lambda's runtime bootstrap is not ours
to measure here).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from .harness import ROOT, percentile, progress

CHILD = r"""
import json, sys, time
t0 = time.perf_counter(); t0_epoch = time.time()
import importlib.util
name, payload_path = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
spec = importlib.util.spec_from_file_location("calroute_fn_" + name, sys.argv[4])
mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod
spec.loader.exec_module(mod)
t1 = time.perf_counter()
import os
if os.environ.get("CALROUTE_BENCH_RESTORE") == "1":
    # SnapStart: the import above was the snapshotted init (it primed the service); a restored
    # environment runs the restore hook, then serves. The clock restarts at the restore.
    from calroute import wiring
    r0 = time.perf_counter()
    wiring.after_restore()
    t0_epoch = time.time() - (time.perf_counter() - r0)
    t1 = r0
sys.stderr.write("@@first-call@@\n"); sys.stderr.flush()
sk_import = "sklearn" in sys.modules
ort_import = "onnxruntime" in sys.modules
with open(payload_path) as fh:
    payload = json.load(fh)
class Ctx:
    function_name = "calroute-bench"; function_version = "$LATEST"; memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:calroute-bench"
    aws_request_id = "cold"; log_group_name = "/aws/lambda/calroute-bench"; log_stream_name = "cold"
    def get_remaining_time_in_millis(self): return 15000
import io, contextlib
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    out = mod.lambda_handler(payload, Ctx())
t2 = time.perf_counter()
ok = (out.get("statusCode") == 200) if "statusCode" in out else ("calendar_id" in out)
print(json.dumps({"import_ms": (t1 - t0) * 1000, "first_call_ms": (t2 - t1) * 1000, "ok": ok, "t0_epoch": t0_epoch,
                  "sklearn_after_import": sk_import, "sklearn_after_call": "sklearn" in sys.modules,
                  "onnxruntime_after_import": ort_import, "answer": str(out)[:300]}))
"""


#: the template's logical id of each measured function
LOGICAL = {"predict": "PredictFunction", "llm_fallback": "LlmFallbackFunction"}


def template_env(name: str, environ: Optional[dict] = None) -> dict[str, str]:
    """What the deployed function's process is given by template.yaml (Globals + its own variables,
    the parameters at their defaults) and the bench does not set itself: every variable that is not
    a resource's name or ARN (the emulator's env supplies those) and not already in ``environ``
    (``os.environ``: the bench's deliberate settings, e.g. ``AUTH_MODE=none``, win). So a child
    imports numpy with the template's ``OPENBLAS_NUM_THREADS`` and serves with its sampling rates."""
    from calroute_dev.local.template import Resolver, _Tag, function_environment, load_template

    environ = os.environ if environ is None else environ
    resolver = Resolver(load_template())
    tpl = resolver.template
    raw = dict((((tpl.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get("Variables") or {})
    props = resolver.resources[LOGICAL[name]].get("Properties") or {}
    raw.update(((props.get("Environment") or {}).get("Variables")) or {})

    def names_a_resource(v) -> bool:
        if not isinstance(v, _Tag):
            return False
        if v.tag == "Ref":
            return str(v.value) in resolver.resources or str(v.value).endswith(".Alias")
        return v.tag in ("GetAtt", "Sub")

    env = function_environment(resolver, LOGICAL[name])
    return {k: v for k, v in sorted(env.items()) if not names_a_resource(raw.get(k)) and k not in environ}


#: what the Lambda python3.12 runtime provides, byte-code included (never in our layers)
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six")


def _children(name: str, path: str, env: dict, repeat: int,
              llm_asked_at: Callable[[], Optional[float]] | None = None) -> list[dict]:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, name, path, str(ROOT / "layers" / "core"),
                               str(ROOT / "functions" / name / "app.py")],
                              capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
        wall = (time.perf_counter() - t0) * 1000
        if proc.returncode != 0:
            raise RuntimeError(f"cold-start child for {name} failed: {proc.stderr[-2000:]}")
        rec = json.loads(proc.stdout.strip().splitlines()[-1])
        rec["process_ms"] = wall
        rec["import_plus_first_call_ms"] = rec["import_ms"] + rec["first_call_ms"]
        if llm_asked_at is not None:
            asked = llm_asked_at()
            rec["before_llm_call_ms"] = (asked - rec["t0_epoch"]) * 1000 if asked and asked > rec["t0_epoch"] else None
        runs.append(rec)
    return runs


def _p50(runs: list[dict], keys) -> dict:
    return {k: round(percentile([r[k] for r in runs], 50), 1) for k in keys}


def _without_layer_bytecode(prefix: str) -> str:
    """A copy of the byte-code prefix without what our layers ship (site-packages other than the
    runtime's boto3 & co., and calroute): those modules then compile from source, as they did in
    layers shipped without .pyc."""
    import shutil
    import sysconfig

    bare = tempfile.mkdtemp(prefix="calroute-pyc-bare-")
    shutil.copytree(prefix, bare, dirs_exist_ok=True)
    site = Path(bare) / sysconfig.get_paths()["purelib"].lstrip("/")
    if site.is_dir():
        for entry in site.iterdir():
            if entry.name.split(".")[0].split("-")[0] not in RUNTIME_PROVIDED:
                shutil.rmtree(entry, ignore_errors=True)
    shutil.rmtree(Path(bare) / str(ROOT).lstrip("/"), ignore_errors=True)
    return bare


#: configurations measured beside the deployed one (``bare_repeat`` runs each, after the timed ones):
#: result key -> the environment that differs. ``without_gc_pause``: the cold-start GC pause off
#: (``COLD_START_GC`` unset, :mod:`calroute.startup`), what every function did before 2026-12-02.
VARIANTS = {"without_gc_pause": {"COLD_START_GC": ""}}


def measure(name: str, payload: dict, *, repeat: int, env: dict | None = None,
            llm_asked_at: Callable[[], Optional[float]] | None = None, bare_repeat: int = 3,
            variant_repeat: int = 0) -> dict:
    """Run the child ``repeat`` times for ``functions/<name>/app.py``; p50 of each figure.
    ``llm_asked_at()``: when the stand-in LLM last received a request (epoch s), or None.

    Every module has byte-code, as deployed (the runtime's standard library and boto3, and the
    layers, which ship theirs): an untimed first child writes it into a private pycache prefix that
    the timed children read (so the figures do not depend on a checkout's ``__pycache__`` or on
    ``PYTHONDONTWRITEBYTECODE``). ``without_layer_bytecode``: ``bare_repeat`` more children with the
    layers' byte-code removed from that prefix (how the layers shipped before 2026-12-01), and
    ``variant_repeat`` for each of :data:`VARIANTS`, interleaved with as many more deployed-configuration runs
    (``deployed_beside``) so that each variant has a same-minutes comparison on a noisy machine."""
    import shutil

    prefix = tempfile.mkdtemp(prefix="calroute-pyc-")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(payload, fh)
        path = fh.name
    env = dict(env or {})
    bare = None
    try:
        _children(name, path, {**env, "PYTHONPYCACHEPREFIX": prefix, "PYTHONDONTWRITEBYTECODE": ""}, 1)
        timed = {**env, "PYTHONPYCACHEPREFIX": prefix, "PYTHONDONTWRITEBYTECODE": "1"}
        runs = _children(name, path, timed, repeat, llm_asked_at)
        bare = _without_layer_bytecode(prefix) if bare_repeat else None
        bare_runs = (_children(name, path, {**timed, "PYTHONPYCACHEPREFIX": bare}, bare_repeat, llm_asked_at)
                     if bare else [])
        variant_runs: dict[str, list] = {k: [] for k in VARIANTS} if variant_repeat else {}
        beside: list = []
        for _ in range(variant_repeat):
            for key, diff in VARIANTS.items():
                variant_runs[key] += _children(name, path, {**timed, **diff}, 1, llm_asked_at)
                beside += _children(name, path, timed, 1, llm_asked_at)
    finally:
        os.unlink(path)
        shutil.rmtree(prefix, ignore_errors=True)
        if bare:
            shutil.rmtree(bare, ignore_errors=True)
    out = _p50(runs, ("import_ms", "first_call_ms", "import_plus_first_call_ms", "process_ms"))
    if llm_asked_at is not None:
        asked = [r["before_llm_call_ms"] for r in runs if r.get("before_llm_call_ms") is not None]
        out["before_llm_call_ms"] = round(percentile(asked, 50), 1) if len(asked) == len(runs) else None
    out["import_p99_ms"] = round(percentile([r["import_ms"] for r in runs], 99), 1)
    out["n"] = len(runs)
    out["all_ok"] = all(r["ok"] for r in runs)
    out["sklearn_imported"] = any(r["sklearn_after_call"] for r in runs)
    out["onnxruntime_at_import"] = any(r["onnxruntime_after_import"] for r in runs)
    if not out["all_ok"]:
        out["sample_answer"] = runs[-1]["answer"]
    if bare_runs:
        out["without_layer_bytecode"] = {**_p50(bare_runs, ("import_ms", "first_call_ms", "import_plus_first_call_ms")),
                                         "n": len(bare_runs)}
    keys = ("import_ms", "first_call_ms", "import_plus_first_call_ms")
    for key, runs_k in variant_runs.items():
        out[key] = {**_p50(runs_k, keys), "n": len(runs_k), "deployed_beside": {**_p50(beside, keys), "n": len(beside)}}
        if llm_asked_at is not None:
            for target, rs in ((out[key], runs_k), (out[key]["deployed_beside"], beside)):
                asked = [r["before_llm_call_ms"] for r in rs if r.get("before_llm_call_ms") is not None]
                target["before_llm_call_ms"] = round(percentile(asked, 50), 1) if len(asked) == len(rs) else None
    return out


#: top-level module -> the group the breakdown reports it under (anything else: "stdlib and other")
GROUPS = {
    "calroute": "calroute", "numpy": "numpy", "onnxruntime": "onnxruntime",
    "pydantic": "pydantic", "pydantic_core": "pydantic", "annotated_types": "pydantic",
    "typing_extensions": "pydantic", "typing_inspection": "pydantic",
    "aws_lambda_powertools": "Powertools", "jmespath": "Powertools",
    "boto3": "boto3/botocore", "botocore": "boto3/botocore", "s3transfer": "boto3/botocore",
    "urllib3": "boto3/botocore", "dateutil": "boto3/botocore", "six": "boto3/botocore",
    "openai": "openai SDK", "httpx2": "openai SDK", "httpcore2": "openai SDK", "anyio": "openai SDK",
    "jiter": "openai SDK",
}


def parse_importtime(stderr: str) -> dict:
    """``python -X importtime`` output (with the child's ``@@first-call@@`` marker) -> milliseconds
    of module execution ("self" times) per group, during the module import and during the first
    request."""
    phase, out = "import", {"import": {}, "first_call": {}}
    for line in stderr.splitlines():
        if line.startswith("@@first-call@@"):
            phase = "first_call"
            continue
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[len("import time:"):].split("|")
        try:
            self_us = int(parts[0])
        except ValueError:  # the header line
            continue
        group = GROUPS.get(parts[2].strip().split(".")[0], "stdlib and other")
        out[phase][group] = out[phase].get(group, 0.0) + self_us / 1000.0
    return {ph: {g: round(v, 1) for g, v in sorted(d.items(), key=lambda kv: -kv[1])} for ph, d in out.items()}


def breakdown(name: str, payload: dict, *, env: dict | None = None) -> dict:
    """One more child under ``-X importtime``: where the import and the first request spend their
    time, by package (module execution), and the first request's time outside imports (reads,
    clients, ONNX session, the request itself). importtime's own overhead inflates these a little."""
    import shutil

    prefix = tempfile.mkdtemp(prefix="calroute-pyc-")  # byte-code everywhere, as in measure()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(payload, fh)
        path = fh.name
    try:
        _children(name, path, {**(env or {}), "PYTHONPYCACHEPREFIX": prefix, "PYTHONDONTWRITEBYTECODE": ""}, 1)
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", CHILD, name, path,
                               str(ROOT / "layers" / "core"), str(ROOT / "functions" / name / "app.py")],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, **(env or {}), "PYTHONPYCACHEPREFIX": prefix,
                                   "PYTHONDONTWRITEBYTECODE": "1"})
    finally:
        os.unlink(path)
        shutil.rmtree(prefix, ignore_errors=True)
    if proc.returncode != 0:
        return {"error": proc.stderr[-300:]}
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    mods = parse_importtime(proc.stderr)
    in_call = sum(mods["first_call"].values())
    return {"import_ms": round(rec["import_ms"], 1), "first_call_ms": round(rec["first_call_ms"], 1),
            "import_by_package_ms": mods["import"], "first_call_imports_by_package_ms": mods["first_call"],
            "first_call_outside_imports_ms": round(max(0.0, rec["first_call_ms"] - in_call), 1)}


def run(quick: bool, *, user: str, flat_event: dict, llm_env: dict,
        llm_asked_at: Callable[[], Optional[float]] | None = None) -> dict:
    from .aws_env import http_event

    repeat = 2 if quick else 7
    variant_repeat = 1 if quick else 5
    progress(f"cold start: predict module ×{repeat}")
    pred_payload = http_event("POST", f"/v1/users/{user}/classify", {"event": flat_event})
    # as deployed: the template's settings (OPENBLAS_NUM_THREADS, the prediction-log sampling, ...),
    # and an on-demand init with the Extensions API there (a stand-in in another process), so the
    # import registers the after-response extension as it does in Lambda
    from calroute_dev.local.extensions_api import RemoteExtensionsApi

    pred_env = {**template_env("predict"), "LAMBDA_INVOKE_MODE": "lambda"}
    bare = 1 if quick else 3  # without the layers' byte-code
    with RemoteExtensionsApi() as ext_api:
        on_demand = {**pred_env, "AWS_LAMBDA_RUNTIME_API": ext_api.address, "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"}
        pred = measure("predict", pred_payload, repeat=repeat, env=on_demand, bare_repeat=bare,
                       variant_repeat=variant_repeat)
        pred["breakdown"] = breakdown("predict", pred_payload, env=on_demand)
        pred["extensions_registered"] = ext_api.registered()
    progress(f"cold start: LLM fallback module ×{repeat}")
    llm_payload = {"user_id": user, "event": flat_event, "candidates": []}
    llm_env = {**template_env("llm_fallback"), **llm_env}
    llm = measure("llm_fallback", llm_payload, repeat=repeat, env=llm_env, llm_asked_at=llm_asked_at,
                  bare_repeat=bare, variant_repeat=variant_repeat)
    llm["breakdown"] = breakdown("llm_fallback", llm_payload, env=llm_env)
    # SnapStart (template parameter SnapStart=PublishedVersions): the init is snapshotted, so what a
    # cold start still does of ours is the restore hook and the first request (Lambda's own restore
    # of the snapshot is not measurable here)
    snap = {"AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start", "CALROUTE_BENCH_RESTORE": "1"}
    progress(f"cold start: after a SnapStart restore, predict and LLM fallback ×{repeat}")
    pred["snapstart"] = measure("predict", pred_payload, repeat=repeat, env={**pred_env, **snap}, bare_repeat=0)
    llm["snapstart"] = measure("llm_fallback", llm_payload, repeat=repeat, env={**llm_env, **snap},
                               llm_asked_at=llm_asked_at, bare_repeat=0)
    pred["template_env"], llm["template_env"] = sorted(template_env("predict")), sorted(template_env("llm_fallback"))
    return {"predict": pred, "llm_fallback": llm}
