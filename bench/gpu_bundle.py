"""Build ``bench/gpu_bundle/``: what a GPU machine needs to run ``bench/cuda.py`` (runs here).

    python -m bench.gpu_bundle [--models resnet18 resnet50 mobilenetv2] [--batches 1 32]
                               [--dtypes float32 float16] [--target cuda:sm_90] [--limit-mib 64]

A GPU run takes at most 64 MiB of files and has no TVM compiler and no package registry
(shared/gpu.md). So the CUDA libraries are compiled here (``--target cuda:sm_90``), one
per job (network, batch, dtype), from the networks with transfer weights
(``bench/gpu_nets.py``: compressible, checked against onnxruntime all the same), and
packed with xz into parts of at most ``--limit-mib`` each. Every part is self-contained:

    part<k>/run.py            the launcher (bench/gpu_launch.py; standard library only)
    part<k>/runtime.tar.xz    tvm without libtvm_compiler.so, convc's runtime, the benchmark
    part<k>/*.whl             apache-tvm-ffi for the GPU machine's Python (cp312)
    part<k>/jobs/*.tar.xz     <net>_b<batch>_<dtype>/{job.json, lib.so, reference.npy}
                              and nets/<net>/{graph.json, weights.npz} for PyTorch

It prints one ``run`` call per part (results under $OUT) and the merge command for
``bench/RESULTS-cuda.md``; ``manifest.json`` lists parts, sizes and jobs left out.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bench import gpu_launch, gpu_nets, gpu_runtime
from bench.cuda import JOB_FILE

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "gpu_bundle"
MODELS = ("resnet18", "resnet50", "mobilenetv2")
MIB = 1 << 20
MARGIN = MIB  # for the launcher, and for the repository growing a little before the run


@dataclass
class Archive:
    """One packed file of a part: a job (its library) or a network (for PyTorch)."""

    name: str
    path: Path
    net: str = ""  # a job's network archive, by name

    @property
    def size(self) -> int:
        return self.path.stat().st_size


@dataclass
class Part:
    name: str
    archives: list[Archive] = field(default_factory=list)

    def holds(self, name: str) -> bool:
        return any(a.name == name for a in self.archives)

    @property
    def size(self) -> int:
        return sum(a.size for a in self.archives)


@dataclass
class Manifest:
    target: str
    limit_mib: float
    parts: list[dict] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # jobs that failed to build or fit
    seconds: float = 0.0


def _pack(path: Path, folder: Path) -> Path:
    with tarfile.open(path, "w:xz", preset=6) as tar:
        tar.add(folder, arcname=folder.name)
    return path


def build_net(name: str, staging: Path) -> Archive:
    """The archive ``nets/<name>/{graph.json, weights.npz}`` (the batch-1 description)."""
    from convc import zoo
    graph, weights = gpu_nets.describe(gpu_nets.transfer_model(zoo.build(name, batch=1)))
    folder = staging / "nets" / name
    folder.mkdir(parents=True)
    (folder / "graph.json").write_text(graph)
    np.savez(folder / "weights.npz", **weights)
    with tarfile.open(staging / f"net_{name}.tar.xz", "w:xz", preset=6) as tar:
        tar.add(folder, arcname=f"nets/{name}")
    return Archive(f"net_{name}", staging / f"net_{name}.tar.xz")


def build_jobs(name: str, batch: int, dtypes: list[str], target: str, staging: Path,
               left_out: list[str]) -> list[Archive]:
    """One archive per dtype: the library of ``name`` at ``batch`` and onnxruntime's output."""
    from convc import zoo
    from convc.compiler import compile as compile_model
    model = gpu_nets.transfer_model(zoo.build(name, batch=batch))
    reference = gpu_nets.reference(model)
    archives = []
    for dtype in dtypes:
        job = f"{name}_b{batch}_{dtype}"
        try:
            library = compile_model(model, target=target, dtype=dtype)
        except Exception as err:  # a job that does not build is reported, the others go on
            left_out.append(f"{job}: {type(err).__name__}: {str(err)[:300]}")
            continue
        folder = staging / job
        folder.mkdir(parents=True)
        library.export_library(folder / "lib.so")
        np.save(folder / "reference.npy", reference)
        (folder / JOB_FILE).write_text(json.dumps({"model": name, "batch": batch, "dtype": dtype, "net": name}))
        archives.append(Archive(job, _pack(staging / f"{job}.tar.xz", folder), net=f"net_{name}"))
        shutil.rmtree(folder)
    return archives


def partition(jobs: list[Archive], nets: dict[str, Archive], capacity: int,
              left_out: list[str]) -> list[Part]:
    """Jobs into parts of at most ``capacity`` bytes each (first fit, largest first), each
    part with the network archives its jobs need."""
    parts: list[Part] = []
    for job in sorted(jobs, key=lambda a: a.size, reverse=True):
        net = nets[job.net]
        need = lambda part: job.size + (0 if part.holds(net.name) else net.size)  # noqa: E731
        part = next((p for p in parts if p.size + need(p) <= capacity), None)
        if part is None:
            if job.size + net.size > capacity:
                left_out.append(f"{job.name}: {(job.size + net.size) / MIB:.1f} MiB packed does not fit "
                                f"a part ({capacity / MIB:.1f} MiB beside the runtime)")
                continue
            part = Part(f"part{len(parts) + 1}")
            parts.append(part)
        if not part.holds(net.name):
            part.archives.append(net)
        part.archives.append(job)
    return parts


def working_tree_size() -> int:
    """Bytes of what travels with every GPU run besides the part: the repository's tracked and
    untracked-not-ignored files (and ``shared/`` where the checkout holds one)."""
    repo = HERE.parent
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo,
                            capture_output=True, check=True).stdout.decode().split("\0")
    files = [repo / name for name in listed if name and (repo / name).is_file()]
    shared = repo / "shared"
    return sum(f.stat().st_size for f in files) + (folder_size(shared) if shared.is_dir() else 0)


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build_bundle(out: Path, models: list[str], batches: list[int], dtypes: list[str],
                 target: str = "cuda:sm_90", limit_mib: float = 64, python_version: str = "3.12") -> Manifest:
    """Write the bundle under ``out`` (replacing it) and return its manifest.

    ``target`` is convc's target string; "llvm" makes a bundle of CPU libraries, to
    rehearse the whole run here (``run.py --device cpu``).
    ``python_version`` is the GPU machine's; when it is this Python's, the installed
    ``tvm_ffi`` goes into the runtime archive instead of a downloaded wheel.
    """
    start = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    manifest = Manifest(target, limit_mib)
    local_python = python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    with tempfile.TemporaryDirectory(prefix="convc-bundle-") as tmp:
        staging = Path(tmp)
        runtime = staging / "runtime.tar.xz"
        gpu_runtime.write_runtime(runtime, [(gpu_launch.BENCHMARK, HERE / "cuda.py")],
                                  with_installed_ffi=local_python)
        wheel = None if local_python else gpu_runtime.fetch_tvm_ffi_wheel(python_version, HERE / ".wheels")
        fixed = runtime.stat().st_size + (wheel.stat().st_size if wheel else 0) + working_tree_size() + MARGIN
        nets = {f"net_{m}": build_net(m, staging) for m in models}
        jobs = [job for m in models for b in batches
                for job in build_jobs(m, b, dtypes, target, staging, manifest.left_out)]
        for part in partition(jobs, nets, int(limit_mib * MIB) - fixed, manifest.left_out):
            folder = out / part.name
            (folder / "jobs").mkdir(parents=True)
            shutil.copy(runtime, folder / "runtime.tar.xz")
            if wheel:
                shutil.copy(wheel, folder / wheel.name)
            shutil.copy(Path(gpu_launch.__file__), folder / "run.py")
            for archive in part.archives:
                shutil.copy(archive.path, folder / "jobs" / archive.path.name)
            manifest.parts.append({"name": part.name, "mib": round(folder_size(folder) / MIB, 2),
                                   "jobs": [a.name for a in part.archives if a.net]})
    manifest.seconds = round(time.perf_counter() - start, 1)
    (out / "manifest.json").write_text(json.dumps(asdict(manifest), indent=1))
    return manifest


def instructions(manifest: Manifest, out: Path) -> str:
    """The commands that run each part on a GPU machine, then merge the results here."""
    rel = out.resolve().relative_to(HERE.parent) if out.resolve().is_relative_to(HERE.parent) else out
    lines = [f"bundle {out}: {len(manifest.parts)} part(s), built in {manifest.seconds} s"]
    for part in manifest.parts:
        lines.append(f"  {part['name']}: {part['mib']} MiB, jobs {', '.join(part['jobs'])}")
        lines.append(f'    run(command="python3 {rel}/{part["name"]}/run.py --out $OUT", '
                     f'carry=["{rel}/{part["name"]}"], kind="nvidia-h100-x1")')
    lines += [f"  left out: {item}" for item in manifest.left_out]
    lines.append("then here: python -m bench.cuda --merge <files_at>/results-part*.json")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="build the bundle that runs bench/cuda.py on a GPU machine")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float16"])
    parser.add_argument("--target", default="cuda:sm_90", help="llvm: CPU libraries, for a rehearsal here")
    parser.add_argument("--limit-mib", type=float, default=64)
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    manifest = build_bundle(args.out, args.models, args.batches, args.dtypes, args.target, args.limit_mib,
                            args.python_version)
    print(instructions(manifest, args.out))
    return 0 if manifest.parts else 1


if __name__ == "__main__":
    sys.exit(main())
