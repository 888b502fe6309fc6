"""The runtime-only Python environment a GPU machine without TVM's compiler needs.

TVM's package minus ``lib/libtvm_compiler.so`` (about 260 MB), ``3rdparty`` and the C++
sources and headers is about 20 MB; without the compiler library ``import tvm`` falls
back to runtime-only mode, which loads and runs exported libraries (shared/gpu.md).
``tvm_ffi`` has a build per Python version: the GPU machine runs Python 3.12, so its
cp312 wheel comes along (fetched with ``pip download``) and is unpacked there. convc's
own runtime is three files: ``convc/__init__.py`` (re-exports only), ``errors.py`` and
``runtime.py``, which imports only ``tvm.runtime``.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import tvm

REPO = Path(__file__).resolve().parent.parent
TVM_FFI_VERSION = "0.1.14.post1"  # below 0.1.15 (see shared/tvm-notes.md), as installed here
CONVC_RUNTIME = ("convc/__init__.py", "convc/errors.py", "convc/runtime.py")
# parts of the tvm package that running a library never reads
_SKIP_DIRS = {"__pycache__", "3rdparty", "include", "src", "web"}
_SKIP_FILES = {"libtvm_compiler.so"}


def tvm_runtime_files() -> list[tuple[str, Path]]:
    """(name in the bundle, file here) for the runtime-only ``tvm`` package."""
    root = Path(tvm.__file__).resolve().parent
    files = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root.parent)
        if path.is_file() and not _SKIP_DIRS.intersection(rel.parts) and path.name not in _SKIP_FILES:
            files.append((rel.as_posix(), path))
    return files


def installed_tvm_ffi_files() -> list[tuple[str, Path]]:
    """The ``tvm_ffi`` package installed here (for a bundle used by this Python version)."""
    import tvm_ffi
    root = Path(tvm_ffi.__file__).resolve().parent
    return [(path.relative_to(root.parent).as_posix(), path) for path in sorted(root.rglob("*"))
            if path.is_file() and not _SKIP_DIRS.intersection(path.relative_to(root).parts)]


def convc_runtime_files() -> list[tuple[str, Path]]:
    return [(name, REPO / name) for name in CONVC_RUNTIME]


def fetch_tvm_ffi_wheel(python_version: str, cache: Path) -> Path:
    """The ``apache-tvm-ffi`` wheel for CPython ``python_version`` (e.g. "3.12"), downloaded
    into ``cache`` unless it is there already."""
    tag = "cp" + python_version.replace(".", "")
    cached = sorted(cache.glob(f"apache_tvm_ffi-{TVM_FFI_VERSION}-{tag}-*.whl"))
    if cached:
        return cached[0]
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                           "--python-version", python_version, "--platform", "manylinux_2_28_x86_64",
                           f"apache-tvm-ffi=={TVM_FFI_VERSION}", "-d", str(cache)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"pip could not download apache-tvm-ffi {TVM_FFI_VERSION} for Python "
                           f"{python_version}: {done.stderr.strip()[-500:]}")
    (wheel,) = cache.glob(f"apache_tvm_ffi-{TVM_FFI_VERSION}-{tag}-*.whl")
    return wheel


def write_runtime(path: Path, extra: list[tuple[str, Path]] = (), with_installed_ffi: bool = False) -> None:
    """``path`` (a .tar.xz): the runtime-only tvm, convc's runtime and ``extra`` files;
    ``with_installed_ffi`` adds this machine's ``tvm_ffi`` (else a wheel travels beside it)."""
    files = tvm_runtime_files() + convc_runtime_files() + list(extra)
    if with_installed_ffi:
        files += installed_tvm_ffi_files()
    with tarfile.open(path, "w:xz", preset=6) as tar:
        for name, source in files:
            tar.add(source, arcname=name)
