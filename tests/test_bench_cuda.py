"""The GPU bundle (bench/gpu_bundle.py) and the benchmark's pieces that run without a GPU.

The GPU run itself is not tested here; what it stands on is: the bundle's parts, their
sizes, a runtime-only ``tvm`` that imports and runs a convc library without TVM's compiler
(in a Python that sees nothing but the bundle and NumPy), and the partitioning.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bench import gpu_bundle, gpu_launch, gpu_nets
from bench.cuda import TOLERANCE, input_array, rel_l2, report
from convc import zoo

LIMIT_MIB = 64


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> tuple[Path, gpu_bundle.Manifest]:
    """The bundle of the tiny network, batch 1, float32, CUDA sm_90 (for this Python: the
    installed tvm_ffi travels inside the runtime archive, no download)."""
    out = tmp_path_factory.mktemp("bundle") / "gpu_bundle"
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    manifest = gpu_bundle.build_bundle(out, ["tiny"], [1], ["float32"], "cuda:sm_90", LIMIT_MIB, here)
    return out, manifest


def test_bundle_has_one_part_within_the_limit(bundle):
    out, manifest = bundle
    assert [p["name"] for p in manifest.parts] == ["part1"] and not manifest.left_out
    part = out / "part1"
    size = gpu_bundle.folder_size(part)
    print(f"tiny bundle: {size / gpu_bundle.MIB:.2f} MiB")  # the size, reported with -s
    assert size <= LIMIT_MIB * gpu_bundle.MIB and manifest.parts[0]["mib"] == round(size / gpu_bundle.MIB, 2)
    assert json.loads((out / "manifest.json").read_text())["parts"] == manifest.parts
    assert {p.name for p in part.iterdir()} == {"run.py", "runtime.tar.xz", "jobs"}
    assert "run.py --out $OUT" in gpu_bundle.instructions(manifest, out)


def test_job_archive_holds_a_cuda_library_and_the_reference(bundle, tmp_path):
    out, _ = bundle
    site, jobs = gpu_launch.unpack(out / "part1", tmp_path)
    job = jobs / "tiny_b1_float32"
    assert json.loads((job / "job.json").read_text()) == {"model": "tiny", "batch": 1, "dtype": "float32",
                                                        "net": "tiny"}
    assert b"__global__" in (job / "lib.so").read_bytes()  # CUDA source, compiled at load there
    model = gpu_nets.transfer_model(zoo.build("tiny", batch=1))
    np.testing.assert_array_equal(np.load(job / "reference.npy"), gpu_nets.reference(model))
    graph = json.loads((jobs / "nets" / "tiny" / "graph.json").read_text())
    assert [n["op"] for n in graph["nodes"]] == [n.op_type for n in model.graph.node]
    weights = np.load(jobs / "nets" / "tiny" / "weights.npz")
    for init in model.graph.initializer:
        np.testing.assert_array_equal(weights[init.name], numpy_helper.to_array(init))
    assert (site / "tvm" / "lib" / "libtvm_runtime.so").exists()
    assert not (site / "tvm" / "lib" / "libtvm_compiler.so").exists()


def _bare_python(site: Path, tmp: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a Python without site-packages (``-S``, no PYTHONPATH): it sees the
    standard library, ``site`` and a folder holding only NumPy and typing_extensions."""
    import typing_extensions
    deps = tmp / "deps"
    deps.mkdir()
    for module in (np, typing_extensions):
        source = Path(module.__file__)
        source = source.parent if source.name == "__init__.py" else source
        (deps / source.name).symlink_to(source)
        libs = source.parent / f"{source.name}.libs"
        if libs.exists():
            (deps / libs.name).symlink_to(libs)
    prelude = f"import sys; sys.path[:0] = [{str(site)!r}, {str(deps)!r}]\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "TVM_LIBRARY_PATH"}
    return subprocess.run([sys.executable, "-S", "-c", prelude + textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=120)


def test_runtime_only_tvm_imports_without_the_compiler(bundle, tmp_path):
    out, _ = bundle
    site, _ = gpu_launch.unpack(out / "part1", tmp_path)
    done = _bare_python(site, tmp_path, """
        import tvm, tvm.runtime, tvm_ffi, convc.runtime
        assert tvm.__file__.startswith(sys.path[0]), tvm.__file__
        assert convc.runtime.__file__.startswith(sys.path[0]), convc.runtime.__file__
        assert tvm.base._RUNTIME_ONLY
        assert "libtvm_compiler" not in open("/proc/self/maps").read()
        assert tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True) is not None
        try:
            import tvm.relax.frontend
        except (ImportError, AttributeError):
            print("no relax")
        print("ok")
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["no", "relax", "ok"]


def test_runtime_only_bundle_runs_a_library(bundle, tmp_path):
    """The bundle's runtime loads and runs a convc library with no compiler around (a CPU one:
    there is no GPU here) and matches onnxruntime."""
    from convc.compiler import compile as compile_model
    out, _ = bundle
    site, _ = gpu_launch.unpack(out / "part1", tmp_path)
    model = gpu_nets.transfer_model(zoo.build("tiny", batch=2))
    compile_model(model, target="llvm").export_library(tmp_path / "tiny.so")
    np.save(tmp_path / "want.npy", gpu_nets.reference(model))
    np.save(tmp_path / "x.npy", input_array((2, 3, 32, 32)))
    done = _bare_python(site, tmp_path, f"""
        import numpy as np, tvm
        from convc.runtime import load
        assert tvm.base._RUNTIME_ONLY
        x = np.load({str(tmp_path / "x.npy")!r})
        got = load({str(tmp_path / "tiny.so")!r}).run({{"input": x}})[0]
        np.save({str(tmp_path / "got.npy")!r}, got)
    """)
    assert done.returncode == 0, done.stderr[-3000:]
    assert rel_l2(np.load(tmp_path / "got.npy"), np.load(tmp_path / "want.npy")) <= TOLERANCE["float32"]


def test_partition_respects_the_capacity_and_ships_each_net_once_per_part(tmp_path):
    def archive(name, size, net=""):
        path = tmp_path / f"{name}.bin"
        path.write_bytes(b"\0" * size)
        return gpu_bundle.Archive(name, path, net)
    nets = {"net_a": archive("net_a", 30), "net_b": archive("net_b", 10)}
    jobs = [archive("a1", 40, "net_a"), archive("a2", 25, "net_a"), archive("b1", 50, "net_b"),
            archive("b2", 5, "net_b"), archive("huge", 95, "net_a")]
    left_out = []
    parts = gpu_bundle.partition(jobs, nets, 100, left_out)
    assert len(left_out) == 1 and left_out[0].startswith("huge")
    placed = [a.name for p in parts for a in p.archives if a.net]
    assert sorted(placed) == ["a1", "a2", "b1", "b2"]
    for part in parts:
        assert part.size <= 100
        names = [a.name for a in part.archives]
        assert len(names) == len(set(names))
        assert all(a.net in names for a in part.archives if a.net)


def test_transfer_weights_lie_on_power_of_two_grids():
    model = zoo.build("tiny", batch=1)
    moved = gpu_nets.transfer_model(model)
    for before, after in zip(model.graph.initializer, moved.graph.initializer):
        a, b = numpy_helper.to_array(before), numpy_helper.to_array(after)
        if a.size <= 1:
            continue
        nonzero = np.abs(b[b != 0]).astype(np.float64)
        mantissa, _ = np.frexp(nonzero)
        assert np.all(mantissa * 64 == np.round(mantissa * 64)), before.name  # at most 6 significant bits
        assert np.abs(a - b).max() <= np.abs(a).max()  # rounded, not replaced
    eps = [a.f for n in moved.graph.node if n.op_type == "BatchNormalization" for a in n.attribute
           if a.name == "epsilon"]
    assert eps and set(eps) == {0.0}
    onnx.checker.check_model(moved)


def test_report_lists_every_record_and_flags_failures():
    ok = {"model": "resnet18", "batch": 1, "dtype": "float16", "gflop": 3.6, "convc_ms": [2.0, 2.2],
          "torch_ms": {"nchw": [1.0, 1.1], "channels_last": [0.8, 0.9]}, "convc_error": 2e-3,
          "torch_error": {}, "load_s": 1.0, "error": ""}
    bad = dict(ok, dtype="float32", convc_error=1e-3)
    failed = dict(ok, batch=32, error="ConvcError: no CUDA device")
    rows = [line for line in report(None, [ok, bad, failed]).splitlines() if line.startswith("| resnet18")]
    assert len(rows) == 3
    assert "0.850 (channels_last)" in rows[0] and "| 2.47 |" in rows[0] and rows[0].endswith("yes |")
    assert rows[1].endswith("NO |") and "failed: ConvcError" in rows[2]
