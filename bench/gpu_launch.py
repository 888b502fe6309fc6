"""Unpack one part of a convc GPU bundle and run the CUDA benchmark on it.

Copied into each part as ``run.py`` by ``bench/gpu_bundle.py``; runs on the GPU machine
with the standard library only:

    python3 bench/gpu_bundle/part1/run.py --out "$OUT"

It unpacks the runtime (``tvm`` without its compiler, convc's runtime, the benchmark),
the ``tvm_ffi`` wheel for this Python and the jobs into a temporary folder, then runs the
benchmark with that runtime first on ``PYTHONPATH``; results go to
``OUT/results-<part>.json``. ``--unpack-only`` stops after unpacking and prints the folder.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

BENCHMARK = "convc_bench_cuda.py"  # bench/cuda.py, as the runtime archive holds it


def unpack(part: Path, work: Path) -> tuple[Path, Path]:
    """(site folder, jobs folder) of ``part`` unpacked under ``work``."""
    site, jobs = work / "site", work / "jobs"
    with tarfile.open(part / "runtime.tar.xz") as tar:
        tar.extractall(site, filter="data")
    for wheel in sorted(part.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(site)
    for archive_path in sorted((part / "jobs").glob("*.tar.xz")):
        with tarfile.open(archive_path) as tar:
            tar.extractall(jobs, filter="data")
    return site, jobs


def main(argv=None) -> int:
    part = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description="run convc's CUDA benchmark from this bundle part")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", part / "results")))
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cuda", help="cpu: rehearse with a bundle of CPU libraries")
    parser.add_argument("--unpack-only", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="convc-gpu-"))
    site, jobs = unpack(part, work)
    if args.unpack_only:
        print(work)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p))
    # tvm_ffi would otherwise JIT-build a PyTorch extension at import (a faster DLPack path)
    env.setdefault("TVM_FFI_DISABLE_TORCH_C_DLPACK", "1")
    command = [sys.executable, str(site / BENCHMARK), "--jobs", str(jobs),
               "--out", str(args.out / f"results-{part.name}.json"),
               "--repeat", str(args.repeat), "--warmup", str(args.warmup), "--device", args.device]
    return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main())
