"""Trim a cross-built Lambda layer in place (``python trim.py <dir>/python [--drop pkg ...]``).

Removes what a Lambda never executes: byte-code caches, test suites, type stubs, C headers and
Cython sources, console scripts, numpy's include, unused onnxruntime tool packages, and any
package the Lambda runtime already provides (``--drop``, used for boto3/botocore and friends).

Never touched: ``*.libs`` directories (numpy.libs, scipy.libs, scikit_learn.libs hold the bundled
OpenBLAS/gfortran/gomp shared objects the extension modules link against) and ``.dist-info`` metadata
(openai, pydantic and others read their own version through importlib.metadata); only the bulky
``RECORD`` files inside ``.dist-info`` are dropped.

Standard library only: it runs under whatever Python drives ``sam build``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

# directories removed wherever they appear
DROP_DIR_NAMES = {"__pycache__", "tests", "test", "testing_data", "benchmarks", "_pyinstaller"}
# package code that happens to match a name above (relative paths); kept
KEEP_DIRS: frozenset[str] = frozenset()
# paths relative to the layer's python/ dir
DROP_PATHS = [
    "bin",
    "numpy/_core/include",
    "numpy/_core/lib/pkgconfig",
    "numpy/doc",
    "numpy/typing/tests",
    "onnxruntime/transformers",
    "onnxruntime/quantization",
    "onnxruntime/tools",
    "onnxruntime/datasets",
    "onnxruntime/backend",
    "onnxruntime/training",
    # the C-API shared library (33 MiB): for C/C++ consumers only; the Python binding
    # (onnxruntime_pybind11_state*.so) is linked statically and never loads it
    "onnxruntime/capi/libonnxruntime.so.*",
    "scipy/datasets",
    "sklearn/datasets/data",
    "sklearn/datasets/descr",
    "sklearn/datasets/images",
    "google/protobuf/compiler",
    "onnx/backend/test",
    "onnx/reference/ops/aionnxml/_op_run_aionnxml.pyi",
    "wrapt-stubs",
]
DROP_SUFFIXES = (".pyc", ".pyo", ".pyi", ".pxd", ".pyx", ".pxi", ".h", ".hpp", ".c", ".cpp", ".cc",
                 ".f", ".f90", ".a", ".md")
DROP_FILE_NAMES = {"RECORD", "py.typed"}


def _rm(path: Path) -> int:
    """Remove a file or tree; returns the bytes freed."""
    if not path.exists() and not path.is_symlink():
        return 0
    if path.is_dir() and not path.is_symlink():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
        shutil.rmtree(path)
        return size
    size = path.stat().st_size if path.is_file() else 0
    path.unlink()
    return size


def top_level_names(dist_info: Path) -> set[str]:
    """Import names a distribution installs (top_level.txt, else the dist name)."""
    tl = dist_info / "top_level.txt"
    if tl.is_file():
        return {ln.strip() for ln in tl.read_text().splitlines() if ln.strip()}
    return {dist_info.name.split("-")[0]}


def drop_distributions(root: Path, names: list[str]) -> int:
    """Remove whole distributions (code + .dist-info), e.g. boto3 which the Lambda runtime provides."""
    freed = 0
    wanted = {n.lower().replace("-", "_") for n in names}
    for di in list(root.glob("*.dist-info")):
        dist = di.name.split("-")[0].lower().replace("-", "_")
        if dist not in wanted:
            continue
        for top in top_level_names(di) | {dist}:
            for cand in (root / top, root / f"{top}.py"):
                freed += _rm(cand)
        freed += _rm(di)
    return freed


def trim(root: Path, drop: list[str] | None = None) -> int:
    """Trim the layer directory ``root`` (the ``python/`` dir); returns bytes freed."""
    root = root.resolve()
    freed = drop_distributions(root, drop or [])
    for rel in DROP_PATHS:
        for p in (root.glob(rel) if "*" in rel else [root / rel]):
            freed += _rm(p)
    # directories by name (never inside *.libs)
    for p in sorted(root.rglob("*"), key=lambda x: len(x.parts), reverse=True):
        rel = p.relative_to(root).as_posix()
        if rel.split("/")[0].endswith(".libs") or rel.split("/")[0].endswith(".dist-info"):
            continue
        if p.is_dir() and p.name in DROP_DIR_NAMES and rel not in KEEP_DIRS:
            freed += _rm(p)
    for p in list(root.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        top = rel.split("/")[0]
        if top.endswith(".libs"):
            continue
        if top.endswith(".dist-info"):
            if p.name in DROP_FILE_NAMES:
                freed += _rm(p)
            continue
        if p.suffix in DROP_SUFFIXES or p.name in DROP_FILE_NAMES:
            freed += _rm(p)
    return freed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the layer's python/ directory")
    ap.add_argument("--drop", nargs="*", default=[], help="distributions to remove entirely")
    args = ap.parse_args(argv)
    if not args.root.is_dir():
        print(f"trim: {args.root} is not a directory", file=sys.stderr)
        return 2
    freed = trim(args.root, args.drop)
    total = sum(p.stat().st_size for p in args.root.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"trim: {args.root}: freed {freed / 2**20:.1f} MiB, now {total / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
