"""Check the unzipped size of every function after ``sam build`` (code + all of its layers).

    python infra/sizecheck.py .aws-sam/build [--smoke] [--json out.json]

Reads ``.aws-sam/build/template.yaml`` (the built template: CodeUri/ContentUri point at the built
artifact directories), sums for each ``AWS::Serverless::Function`` its code directory and the
directories of the layers it references (Globals ``Layers`` included), prints a table and exits 1
when a function is over its limit. Lambda's hard limit is 250 MiB unzipped for code + all layers;
calroute keeps tighter budgets where they matter (cold start, headroom):

    PredictFunction    <= 120 MiB   core + inference
    TrainUserFunction  <= 230 MiB   core + training (self-contained: no inference layer)
    every function     <= 250 MiB

``--smoke`` also imports, in a fresh ``python3.12 -S`` process whose ``sys.path`` is only the
function's code dir + its layers (+ boto3 & co. standing in for what the Lambda runtime provides),
the heavy modules each layer exists for - proving the trimming kept everything importable.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

MiB = 1024 * 1024
LAMBDA_LIMIT_MIB = 250
LIMITS_MIB = {"PredictFunction": 120, "TrainUserFunction": 230}

# What the Lambda python3.12 runtime provides (never shipped in a layer); --smoke links these from
# the running interpreter's site-packages.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six.py")

# Import smoke tests, by layer logical id: code run with the function's sys.path.
LAYER_SMOKE = {
    "CoreLayer": "import calroute.http.resolver, calroute.http.auth, calroute.config, calroute.schema, calroute.ids, pydantic, aws_xray_sdk",
    "InferenceLayer": (
        "import numpy as np, onnxruntime as ort, calroute.runtime, calroute.features\n"
        "assert 'CPUExecutionProvider' in ort.get_available_providers()\n"
        "assert float(np.linalg.inv(np.eye(2)).sum()) == 2.0"
    ),
    "TrainingLayer": (
        "import numpy as np, onnxruntime, skl2onnx, onnx\n"
        "from sklearn.linear_model import LogisticRegression\n"
        "from calroute.onnx_export import to_onnx, check_parity\n"
        "X = np.random.RandomState(0).rand(40, 6).astype(np.float32); y = np.array(['a', 'b'] * 20)\n"
        "m = LogisticRegression(max_iter=200).fit(X, y)\n"
        "b = to_onnx(m, 6, ['a', 'b'], {'threshold': 0.5, 'version': 'v1', 'user': 'u'})\n"
        "assert check_parity(b, X, m.predict_proba(X))['passed']"
    ),
    "LlmLayer": (
        # the adapter's lazy import must work in the built layer (its fallback, a whole import, would
        # only be slower: the smoke says which it got)
        "import sys, calroute.services.llm_fallback\n"
        "from calroute.adapters.openai_sdk import load_sdk\n"
        "sdk = load_sdk(); assert sdk.lazy, 'the OpenAI SDK was imported whole'\n"
        "assert 'numpy' not in sys.modules; sdk.OpenAI(api_key='x', base_url='http://127.0.0.1:9')\n"
        "import openai; assert openai.OpenAI is sdk.OpenAI"
    ),
    "IcalLayer": "import icalendar, recurring_ical_events, zoneinfo; zoneinfo.ZoneInfo('Europe/Paris')",
    "ParseLayer": (
        "import datetime as dt, dateparser\n"
        "from calroute.slots.when import find_dates\n"
        "assert find_dates('next Monday', dt.datetime(2019, 3, 1))[0].value == '2019-03-04'"
    ),
}


def load_template(path: Path) -> dict:
    """The built template, read with the project's one CloudFormation-aware safe YAML loader."""
    from calroute_dev.local.template import load_template as _load

    return _load(path)


def _ref(value) -> str | None:
    """Logical id of a ``!Ref X`` / ``{"Ref": X}`` value."""
    if getattr(value, "tag", None) == "Ref":
        return str(value.value)
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return str(value["Ref"])
    return None


def dir_size(path: Path) -> int:
    """Apparent size of every regular file below ``path`` (what Lambda counts once unzipped)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def function_layers(template: dict, logical: str) -> list[str]:
    glob = ((template.get("Globals") or {}).get("Function") or {}).get("Layers") or []
    own = (template["Resources"][logical].get("Properties") or {}).get("Layers") or []
    out: list[str] = []
    for v in list(glob) + list(own):
        ref = _ref(v)
        if ref and ref not in out:
            out.append(ref)
    return out


def measure(build_dir: Path) -> list[dict]:
    """One row per function: code/layer sizes (bytes), total, limit (MiB), ok."""
    build_dir = build_dir.resolve()
    template = load_template(build_dir / "template.yaml")
    resources = template.get("Resources") or {}
    rows = []
    for logical, res in resources.items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        props = res.get("Properties") or {}
        code = build_dir / str(props.get("CodeUri", logical))
        if not code.is_dir():
            raise SystemExit(f"sizecheck: {logical}: code dir {code} missing (run sam build first)")
        layers = {}
        for layer in function_layers(template, logical):
            lres = resources.get(layer)
            if lres is None or lres.get("Type") != "AWS::Serverless::LayerVersion":
                raise SystemExit(f"sizecheck: {logical}: layer {layer} is not a LayerVersion of the template")
            ldir = build_dir / str((lres.get("Properties") or {}).get("ContentUri", layer))
            if not ldir.is_dir():
                raise SystemExit(f"sizecheck: layer {layer}: {ldir} missing (run sam build first)")
            layers[layer] = dir_size(ldir)
        code_size = dir_size(code)
        total = code_size + sum(layers.values())
        limit = min(LIMITS_MIB.get(logical, LAMBDA_LIMIT_MIB), LAMBDA_LIMIT_MIB)
        rows.append({"function": logical, "code": code_size, "layers": layers, "total": total,
                     "limit_mib": limit, "ok": total <= limit * MiB,
                     "code_dir": str(code), "layer_dirs": {
                         k: str(build_dir / str(resources[k]["Properties"]["ContentUri"])) for k in layers}})
    return rows


def layer_sizes(build_dir: Path) -> dict[str, int]:
    template = load_template(build_dir / "template.yaml")
    out = {}
    for logical, res in (template.get("Resources") or {}).items():
        if res.get("Type") == "AWS::Serverless::LayerVersion":
            d = build_dir / str((res.get("Properties") or {}).get("ContentUri", logical))
            if d.is_dir():
                out[logical] = dir_size(d)
    return out


def print_table(rows: list[dict], layers: dict[str, int]) -> None:
    print("layer                      unzipped MiB")
    for name, size in sorted(layers.items()):
        print(f"  {name:<24} {size / MiB:8.1f}")
    print()
    print(f"{'function':<22} {'code':>6} {'layers':>8} {'total':>8} {'limit':>6}  status  layers")
    for r in rows:
        status = "ok" if r["ok"] else "OVER"
        lay = " + ".join(f"{k} {v / MiB:.1f}" for k, v in r["layers"].items())
        print(f"{r['function']:<22} {r['code'] / MiB:6.2f} {sum(r['layers'].values()) / MiB:8.1f} "
              f"{r['total'] / MiB:8.1f} {r['limit_mib']:6d}  {status:<6}  {lay}")


def find_python312() -> str | None:
    cands = [shutil.which("python3.12") or "python3.12"]
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if root.is_dir():
        cands += [str(p / "bin" / "python3.12") for p in sorted(root.glob("3.12*"), reverse=True)]
    if sys.version_info[:2] == (3, 12):
        cands.insert(0, sys.executable)
    for c in cands:
        try:
            out = subprocess.run([c, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                                 capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.stdout.strip() == "True":
            return c
    return None


def smoke(rows: list[dict]) -> list[str]:
    """Import each function's heavy modules from its code dir + layers only. Returns failures."""
    py = find_python312()
    if py is None:
        return ["no python3.12 interpreter to run the import smoke test"]
    import boto3  # the runtime-provided packages come from this interpreter's site-packages

    site = Path(boto3.__file__).resolve().parents[1]
    failures = []
    with tempfile.TemporaryDirectory(prefix="calroute-runtime-") as rt:
        for name in RUNTIME_PROVIDED:
            if (site / name).exists():
                os.symlink(site / name, Path(rt) / name)
        for r in rows:
            # Lambda: /var/task, then /opt/python (the layers, merged), then the runtime's packages
            paths = [r["code_dir"]] + [str(Path(d) / "python") for d in r["layer_dirs"].values()] + [rt]
            for layer in r["layer_dirs"]:
                code = LAYER_SMOKE.get(layer)
                if not code:
                    continue
                prog = f"import sys; sys.path[:0] = {paths!r}\n{code}\n"
                env = {"PATH": os.environ.get("PATH", ""), "AWS_DEFAULT_REGION": "us-east-1",
                       "HOME": os.environ.get("HOME", "/tmp")}
                res = subprocess.run([py, "-S", "-c", prog], capture_output=True, text=True, env=env,
                                     cwd=rt, timeout=300)
                tag = f"{r['function']}/{layer}"
                if res.returncode != 0:
                    failures.append(f"{tag}: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}")
                    print(f"  smoke {tag:<40} FAIL\n{res.stderr[-2000:]}")
                else:
                    print(f"  smoke {tag:<40} ok")
    return failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="unzipped size of every function (code + layers) after sam build")
    ap.add_argument("build_dir", nargs="?", default=".aws-sam/build", type=Path)
    ap.add_argument("--smoke", action="store_true", help="also import each layer's modules from the built dirs")
    ap.add_argument("--json", type=Path, help="write the measurements as JSON")
    args = ap.parse_args(argv)
    if not (args.build_dir / "template.yaml").is_file():
        print(f"sizecheck: {args.build_dir}/template.yaml not found: run `make build` (sam build) first",
              file=sys.stderr)
        return 2
    rows = measure(args.build_dir)
    layers = layer_sizes(args.build_dir)
    print_table(rows, layers)
    if args.json:
        args.json.write_text(json.dumps({"layers": layers, "functions": rows}, indent=2))
    over = [r["function"] for r in rows if not r["ok"]]
    failures = []
    if args.smoke:
        print()
        # one smoke run per distinct layer combination is enough
        seen, unique = set(), []
        for r in rows:
            key = tuple(r["layer_dirs"])
            if key not in seen:
                seen.add(key)
                unique.append(r)
        failures = smoke(unique)
    if over:
        print(f"\nsizecheck: OVER the limit: {', '.join(over)}", file=sys.stderr)
    if failures:
        print("\nsizecheck: import smoke test failed:\n  " + "\n  ".join(failures), file=sys.stderr)
    return 1 if over or failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
