"""Packaging, checked statically (the real cross-build runs in CI: `make build`).

- every layer of template.yaml is built by a Makefile target ``build-<LogicalId>`` (SAM BuildMethod
  makefile) that cross-builds for the Lambda runtime (python3.12, manylinux x86_64, wheels only);
- layer requirements are pinned to the versions the test suite runs;
- layers/trim.py removes what Lambda never runs and keeps what it does (``*.libs``, ``.dist-info``);
- the CoreLayer's build target, run for real into a temporary ARTIFACTS_DIR (only the cross-platform
  pip download stubbed out), ships exactly the runtime package: no tooling module (CLI, local stack,
  evaluation, report live in tools/calroute_dev), no tooling import, every module importable alone;
- each function imports (at module load) only what its layers ship: a function without the
  inference/training/llm/ical layer must not import numpy/onnxruntime/sklearn/openai/icalendar.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from calroute_dev.local.template import ROOT, _Tag, load_template

T = load_template()
RES = T["Resources"]
LAYERS = {k: v for k, v in RES.items() if v["Type"] == "AWS::Serverless::LayerVersion"}
LAYERS_DIR = ROOT / "layers"
sys.path.insert(0, str(LAYERS_DIR))
import trim  # noqa: E402  (layers/trim.py)

# top-level modules each optional layer ships (a function without the layer must not import them)
LAYER_MODULES = {
    "InferenceLayer": {"numpy", "onnxruntime"},
    "TrainingLayer": {"numpy", "onnxruntime", "sklearn", "scipy", "skl2onnx", "onnx"},
    "LlmLayer": {"openai", "httpx2", "httpcore2", "anyio", "jiter"},
    "IcalLayer": {"icalendar", "recurring_ical_events", "x_wr_timezone", "tzdata"},
    "ParseLayer": {"dateparser", "regex", "pytz", "tzlocal"},
}
NOT_SHIPPED = {"calroute_dev", "moto", "pytest", "hypothesis", "matplotlib"}


def _layer_makefile(logical: str) -> Path:
    return ROOT / LAYERS[logical]["Properties"]["ContentUri"] / "Makefile"


def test_layers_declared():
    assert set(LAYERS) == {"CoreLayer", "InferenceLayer", "TrainingLayer", "LlmLayer", "IcalLayer", "ParseLayer"}
    for logical, res in LAYERS.items():
        assert res["Metadata"]["BuildMethod"] == "makefile", logical
        p = res["Properties"]
        assert p["CompatibleRuntimes"] == ["python3.12"] and p["CompatibleArchitectures"] == ["x86_64"]


@pytest.mark.parametrize("logical", ["CoreLayer", "InferenceLayer", "TrainingLayer", "LlmLayer", "IcalLayer",
                                     "ParseLayer"])
def test_layer_makefile_has_build_target(logical):
    mk = _layer_makefile(logical)
    assert mk.is_file(), mk
    text = mk.read_text()
    assert re.search(rf"^build-{logical}:", text, re.M), f"{mk}: no build-{logical} target"
    assert "include $(HERE)../layer.mk" in text
    assert "$(call build-layer," in text
    req = mk.parent / "requirements.txt"
    assert req.is_file(), req


def test_cross_build_flags():
    mk = (LAYERS_DIR / "layer.mk").read_text()
    flags = " ".join(mk.split("PIP_TARGET_FLAGS :=", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ").split())
    for flag in ("--platform manylinux_2_28_x86_64", "--platform manylinux2014_x86_64", "--only-binary=:all:",
                 "--python-version 3.12", "--implementation cp", "--abi cp312"):
        assert flag in flags, flag
    assert '--target "$(ARTIFACTS_DIR)/python"' in mk
    assert "$(PIP_TARGET_FLAGS)" in mk
    assert "trim.py" in mk
    # no container builds anywhere
    for f in [LAYERS_DIR / "layer.mk", *(LAYERS_DIR / d / "Makefile" for d in ("core", "inference", "training", "llm", "ical", "parse"))]:
        assert not re.search(r"--use-container|docker (run|build)", f.read_text()), f


def _requirements(layer_dir: str) -> dict[str, str]:
    out = {}
    for line in (LAYERS_DIR / layer_dir / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"layers/{layer_dir}/requirements.txt: {line!r} is not pinned (==)"
            out[re.sub(r"\[.*\]", "", name).lower()] = version
    return out


@pytest.mark.parametrize("layer_dir", ["core", "inference", "training", "llm", "ical", "parse"])
def test_layer_requirements_pinned_to_tested_versions(layer_dir):
    for name, version in _requirements(layer_dir).items():
        assert md.version(name) == version, f"layers/{layer_dir}: {name}=={version}, tests run {md.version(name)}"


def test_constraints_file_pins_every_layer_requirement():
    """`make venv` installs with -c constraints.txt: it must hold exactly the layers' pins."""
    text = (ROOT / "constraints.txt").read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", text, re.M))
    for layer in ("core", "inference", "training", "llm", "ical", "parse"):
        for name, version in _requirements(layer).items():
            assert pins.get(name) == version, f"constraints.txt: {name} should be =={version} (layers/{layer})"


def test_layer_contents_split():
    inference, training = _requirements("inference"), _requirements("training")
    assert set(inference) == {"numpy", "onnxruntime"}, "predict path: no sklearn/scipy/onnx/protobuf"
    assert {"scikit-learn", "scipy", "skl2onnx", "onnx", "onnxruntime", "numpy"} <= set(training), \
        "training layer is self-contained (parity gate with onnxruntime, no inference layer needed)"
    assert "openai" in _requirements("llm") and "openai" not in _requirements("core")
    assert "icalendar" in _requirements("ical") and "icalendar" not in _requirements("core")
    # issue 13: the date parser ships in its own layer, never in the core or inference layers
    # (both reach the predict function, whose size is capped and which never imports it)
    assert "dateparser" in _requirements("parse")
    assert all("dateparser" not in _requirements(d) for d in ("core", "inference", "llm", "training", "ical"))
    assert "--no-deps" in (LAYERS_DIR / "inference" / "Makefile").read_text()


# ------------------------------------------------------------------------------------- the built CoreLayer
TOOLING = ROOT / "tools" / "calroute_dev"
# modules the runtime never needs: the developer tooling's own and its libraries
TOOLING_IMPORTS = {"calroute_dev", "argparse", "matplotlib", "moto", "yaml", "pytest", "hypothesis", "requests"}


def _build_core_layer(artifacts: Path) -> Path:
    """Run the CoreLayer's real build target (what `sam build` runs: make --makefile layers/core/Makefile
    build-CoreLayer with ARTIFACTS_DIR set) with only the cross-platform pip download stubbed out."""
    proc = subprocess.run(["make", "--no-print-directory", "--makefile", str(LAYERS_DIR / "core" / "Makefile"),
                           "build-CoreLayer", f"ARTIFACTS_DIR={artifacts}", f"PYTHON={sys.executable}",
                           "PIP_INSTALL=:"], capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return artifacts / "python" / "calroute"


def _imported_top_levels(path: Path) -> set[str]:
    import ast

    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_built_core_layer_ships_exactly_the_runtime_package(tmp_path):
    built = _build_core_layer(tmp_path / "artifacts")
    files = {p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file()}
    shipped = {f for f in files if "__pycache__" not in f}
    source = {p.relative_to(ROOT / "layers" / "core" / "calroute").as_posix()
              for p in (ROOT / "layers" / "core" / "calroute").rglob("*.py") if "__pycache__" not in p.parts}
    assert shipped == source, f"shipped != source: {sorted(shipped ^ source)}"  # all of calroute, nothing else
    # and the byte-code of exactly these modules, built by the build (not a developer's stale cache)
    byte_code = {f for f in files if "__pycache__" in f}
    expected = {(PurePosixPath(s).parent / "__pycache__" / f"{PurePosixPath(s).stem}.cpython-312.pyc").as_posix()
                for s in source}
    assert byte_code == expected, sorted(byte_code ^ expected)
    # no tooling module: neither the old in-package ones nor any name of the tooling package
    tooling = {p.relative_to(TOOLING).as_posix() for p in TOOLING.rglob("*.py")} - {"__init__.py"}
    assert tooling, TOOLING
    for name in ("cli.py", "evaluate.py", "evaluation.py", "report.py", "local", *tooling):
        assert not (built / name).exists(), f"the CoreLayer ships tooling: calroute/{name}"
    bad = {rel: sorted(_imported_top_levels(built / rel) & TOOLING_IMPORTS) for rel in sorted(shipped)}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"shipped modules importing tooling: {bad}"


def test_built_core_layer_ships_byte_code_the_read_only_runtime_uses_as_is(tmp_path):
    """Lambda's /opt is read-only: without .pyc every cold start compiles each imported module from
    source. The build compiles with unchecked-hash pycs (no source timestamp check: a zip's mtimes
    do not matter), and the runtime loads them instead of compiling."""
    import importlib.util

    built = _build_core_layer(tmp_path / "artifacts")
    pyc = built / "__pycache__" / "wiring.cpython-312.pyc"
    header = pyc.read_bytes()[:16]
    assert header[:4] == importlib.util.MAGIC_NUMBER
    assert int.from_bytes(header[4:8], "little") == 0b01, "hash-based, source not checked"
    # loaded from the .pyc: the source is not even read (a blanked source changes nothing)
    (built / "ids.py").write_text("raise ImportError('compiled from source')\n")
    proc = subprocess.run([sys.executable, "-c", "import calroute.ids as i; print(i.__cached__)"],
                          capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
                          env=dict(os.environ, PYTHONPATH=str(built.parent), PYTHONDONTWRITEBYTECODE="1"))
    assert proc.returncode == 0, proc.stderr[-1500:]


def test_built_core_layer_imports_without_the_tooling(tmp_path):
    """Every module of the built python/calroute imports with the tooling package and its libraries blocked."""
    built = _build_core_layer(tmp_path / "artifacts")
    code = r"""
import importlib, importlib.abc, json, pkgutil, sys
blocked = set(json.loads(sys.argv[1]))
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"{name} is developer tooling")
        return None
sys.meta_path.insert(0, Block())
import calroute
assert calroute.__file__.startswith(sys.argv[2]), calroute.__file__
bad = {}
for m in pkgutil.walk_packages(calroute.__path__, "calroute."):
    try:
        importlib.import_module(m.name)
    except BaseException as exc:  # noqa: BLE001
        bad[m.name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(bad))
"""
    env = dict(os.environ, PYTHONPATH=str(built.parent), AUTH_MODE="none", AWS_DEFAULT_REGION="us-east-1",
               POWERTOOLS_TRACE_DISABLED="true")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(["calroute_dev", "matplotlib", "moto", "pytest"]),
                           str(built)], capture_output=True, text=True, timeout=180, env=env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    bad = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not bad, bad


# ------------------------------------------------------------------------------------- trim.py
def _touch(root: Path, rel: str, size: int = 10) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x" * size)
    return p


def test_trim_removes_dead_weight_and_keeps_runtime_files(tmp_path):
    keep = ["numpy/__init__.py", "numpy/_core/_multiarray_umath.cpython-312-x86_64-linux-gnu.so",
            "numpy.libs/libscipy_openblas64_-abc.so", "numpy/testing/__init__.py", "numpy/f2py/__init__.py",
            "openai-3.54.0.dist-info/METADATA", "openai/__init__.py", "scipy.libs/libgfortran.so.5",
            "onnxruntime/capi/onnxruntime_pybind11_state.cpython-312-x86_64-linux-gnu.so",
            "onnxruntime/capi/libonnxruntime_providers_shared.so", "tzdata/zoneinfo/Europe/Paris"]
    drop = ["numpy/_core/tests/test_x.py", "numpy/__pycache__/x.cpython-312.pyc", "numpy/__init__.pyi",
            "numpy/_core/include/numpy/ndarraytypes.h", "bin/f2py", "onnxruntime/transformers/x.py",
            "onnxruntime/quantization/q.py", "onnxruntime/tools/t.py", "onnxruntime/capi/libonnxruntime.so.1.32.0",
            "openai-3.54.0.dist-info/RECORD", "sklearn/utils/_typedefs.pxd", "boto3/__init__.py",
            "boto3-1.0.dist-info/METADATA", "scipy/linalg/tests/test_basic.py"]
    for rel in keep + drop:
        _touch(tmp_path, rel)
    (tmp_path / "boto3-1.0.dist-info" / "top_level.txt").write_text("boto3\n")
    freed = trim.trim(tmp_path, ["boto3"])
    assert freed > 0
    for rel in keep:
        assert (tmp_path / rel).exists(), f"trim removed {rel}"
    for rel in drop:
        assert not (tmp_path / rel).exists(), f"trim kept {rel}"


def test_trim_never_touches_libs_dirs(tmp_path):
    _touch(tmp_path, "scikit_learn.libs/libgomp.so.1")
    _touch(tmp_path, "scikit_learn.libs/tests/data.h")  # even names that match a drop rule
    trim.trim(tmp_path)
    assert (tmp_path / "scikit_learn.libs/tests/data.h").exists()


# ------------------------------------------------------------------------------------- import closure
_PROBE = r"""
import importlib.abc, importlib.util, json, sys
blocked = set(json.loads(sys.argv[1])); apps = json.loads(sys.argv[2])
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        for b in blocked:
            if name == b or name.startswith(b + "."):
                raise ImportError(f"{name} is not in this function's layers")
        return None
sys.meta_path.insert(0, Block())
bad = {}
for name, path in apps.items():
    try:
        spec = importlib.util.spec_from_file_location("fn_" + name, path)
        mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        assert callable(getattr(mod, "lambda_handler", None)), "no lambda_handler"
    except BaseException as exc:  # noqa: BLE001
        bad[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(bad))
"""


def _function_groups() -> dict[tuple[str, ...], dict[str, str]]:
    groups: dict[tuple[str, ...], dict[str, str]] = {}
    for logical, res in RES.items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        p = res["Properties"]
        layers = tuple(sorted(x.value for x in p.get("Layers", []) if isinstance(x, _Tag)))
        groups.setdefault(layers, {})[logical] = str(ROOT / p["CodeUri"] / "app.py")
    return groups


def test_functions_import_only_what_their_layers_ship():
    """Each function's app.py is imported with the modules of the layers it lacks blocked."""
    env = dict(os.environ, AUTH_MODE="none", AWS_DEFAULT_REGION="us-east-1", POWERTOOLS_TRACE_DISABLED="true")
    procs = {}
    for layers, apps in _function_groups().items():
        provided = set().union(*(LAYER_MODULES.get(layer, set()) for layer in layers))
        blocked = (set().union(*LAYER_MODULES.values()) - provided) | NOT_SHIPPED
        procs[layers] = subprocess.Popen(
            [sys.executable, "-c", _PROBE, json.dumps(sorted(blocked)), json.dumps(apps)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(ROOT))
    failures = {}
    for layers, proc in procs.items():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        failures.update(json.loads(out.strip().splitlines()[-1]))
    assert not failures, "functions importing modules their layers do not ship:\n" + "\n".join(
        f"  {k}: {v}" for k, v in sorted(failures.items()))
