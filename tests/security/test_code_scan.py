"""Security promises checked on the code itself: no pickle, no joblib.load, no eval/exec on data,
np.load only with allow_pickle=False, YAML only through safe loaders, no built-in hash() in the
featurizer path."""

import ast
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = [p for d in ("layers", "tools", "functions", "bench", "infra") for p in (ROOT / d).rglob("*.py")
           if ".aws-sam" not in p.parts and "site-packages" not in str(p) and "/python/" not in str(p)]


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield node, owner, name


def test_scan_covers_the_code():
    assert len(SCANNED) >= 10


def test_no_pickle_joblib_eval_exec():
    bad = []
    for path in SCANNED:
        src = path.read_text(encoding="utf-8")
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "shelve", "marshal") for n in names):
                    bad.append(f"{path}:{node.lineno} imports {names}")
        for node, owner, name in _calls(tree):
            if owner == "" and name in ("eval", "exec", "compile", "__import__"):
                bad.append(f"{path}:{node.lineno} calls {name}()")
            if owner in ("pickle", "joblib") :
                bad.append(f"{path}:{node.lineno} calls {owner}.{name}")
    assert not bad, "\n".join(bad)


def test_np_load_never_allows_pickle():
    bad = []
    for path in SCANNED:
        for node, owner, name in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            if owner in ("np", "numpy") and name == "load":
                kw = {k.arg: k.value for k in node.keywords}
                v = kw.get("allow_pickle")
                if not (isinstance(v, ast.Constant) and v.value is False):
                    bad.append(f"{path}:{node.lineno}")
    assert not bad, "np.load without allow_pickle=False: " + ", ".join(bad)


def test_yaml_only_with_safe_loaders():
    bad = []
    for path in SCANNED:
        src = path.read_text(encoding="utf-8")
        for m in re.finditer(r"yaml\.(load|unsafe_load|full_load)\(([^)]*)\)", src):
            if m.group(1) != "load" or "Loader=" not in m.group(2):
                bad.append(f"{path}: {m.group(0)}")
            elif "Loader=_Loader" not in m.group(2) and "SafeLoader" not in m.group(2):
                bad.append(f"{path}: {m.group(0)}")
    assert not bad, bad


def test_featurizer_and_cohorts_never_use_builtin_hash():
    bad = []
    for path in SCANNED:
        for node, owner, name in _calls(ast.parse(path.read_text(encoding="utf-8"))):
            if owner == "" and name == "hash":
                bad.append(f"{path}:{node.lineno}")
    assert not bad, "built-in hash() is salted per process: " + ", ".join(bad)


def test_predict_path_never_imports_sklearn():
    """The predict function's import graph (its app.py and the core modules it imports) has no sklearn."""
    import subprocess
    import sys

    code = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('predict_app', r'{ROOT / 'functions/predict/app.py'}')\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "bad = [k for k in sys.modules if k.split('.')[0] in ('sklearn', 'scipy', 'skl2onnx', 'matplotlib', 'openai')]\n"
        "print(','.join(sorted(set(b.split('.')[0] for b in bad))))\n"
    )
    if not (ROOT / "functions/predict/app.py").exists():
        import pytest

        pytest.skip("predict function not present")
    env = {"AWS_DEFAULT_REGION": "us-east-1", "POWERTOOLS_TRACE_DISABLED": "true", "PATH": ""}
    if os.environ.get("PYTHONPATH"):  # the package under test, when it is not the installed one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"predict imports {out.stdout.strip()}"
