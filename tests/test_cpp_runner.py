"""The C++ runner: cmake builds convc-run against the TVM runtime of the installed wheel;
its outputs equal the Python runtime's bit for bit; bad input gives a message and exit 1."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import convc
from convc import zoo

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None or shutil.which("c++") is None,
                                reason="needs cmake and a C++ compiler")


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> Path:
    """convc-run built by cmake in a fresh build directory."""
    build = tmp_path_factory.mktemp("build")
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), f"-DPython_EXECUTABLE={sys.executable}"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build), "-j", "2"], check=True, capture_output=True)
    return build / "convc-run"


def two_in_two_out() -> onnx.ModelProto:
    """Inputs a (1,2,6,6) and b (1,3,6,6); outputs sum = conv(a) + b and act = relu(a), in that order."""
    w = np.random.default_rng(0).standard_normal((3, 2, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["a", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("Add", ["c", "b"], ["sum"]),
         helper.make_node("Relu", ["a"], ["act"])],
        "two", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 2, 6, 6]),
                helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 3, 6, 6])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, [1, 3, 6, 6]),
         helper.make_tensor_value_info("act", TensorProto.FLOAT, [1, 2, 6, 6])],
        [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel())])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def libraries(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("libs")
    paths = {}
    for name, model in [("tiny", zoo.build("tiny")), ("two", two_in_two_out())]:
        paths[name] = out / f"{name}.so"
        convc.compile(model).export_library(paths[name])
    return paths


def run(runner: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(runner), *map(str, args)], capture_output=True, text=True, timeout=120)


def save(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


@pytest.mark.parametrize("name", ["tiny", "two"])
def test_outputs_equal_python_runtime_bit_for_bit(runner, libraries, tmp_path, name):
    model = convc.load(libraries[name])
    rng = np.random.default_rng(3)
    feeds = {s.name: rng.standard_normal(s.shape).astype(s.dtype) for s in model.inputs}
    cmd = [libraries[name], "--output-dir", tmp_path]
    for input_name, array in feeds.items():
        cmd += ["--input", f"{input_name}={save(tmp_path / f'in_{input_name}.npy', array)}"]
    result = run(runner, *cmd)
    assert result.returncode == 0, result.stderr
    for spec, want in zip(model.outputs, model.run(feeds), strict=True):
        got = np.load(tmp_path / f"{spec.name}.npy")
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.tobytes() == want.tobytes()


def test_signature_and_bench(runner, libraries, tmp_path):
    x = save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))
    result = run(runner, libraries["tiny"], "--signature", "--input", f"input={x}", "--bench", "5")
    assert result.returncode == 0, result.stderr
    assert "input  input float32[1, 3, 32, 32]" in result.stdout
    assert "output fc float32[1, 10]" in result.stdout
    assert "latency over 5 runs" in result.stdout


def bad_case(tmp_path: Path, libraries: dict[str, Path], case: str) -> tuple[list, str]:
    """(arguments, expected message fragment) for one way of getting it wrong."""
    tiny = libraries["tiny"]
    good = lambda: save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))  # noqa: E731
    if case == "missing library":
        return [tmp_path / "nope.so", "--input", f"input={good()}"], "no such library file"
    if case == "missing input file":
        return [tiny, "--input", f"input={tmp_path / 'absent.npy'}"], "absent.npy: cannot open the file"
    if case == "wrong shape":
        x = save(tmp_path / "s.npy", np.zeros((1, 3, 16, 16), np.float32))
        return [tiny, "--input", f"input={x}"], "input 'input': expected float32[1, 3, 32, 32], got float32[1, 3, 16, 16]"
    if case == "wrong dtype float64":
        x = save(tmp_path / "d.npy", np.zeros((1, 3, 32, 32), np.float64))
        return [tiny, "--input", f"input={x}"], "expected float32[1, 3, 32, 32], got float64[1, 3, 32, 32]"
    if case == "wrong dtype float16":
        x = save(tmp_path / "h.npy", np.zeros((1, 3, 32, 32), np.float16))
        return [tiny, "--input", f"input={x}"], "got float16[1, 3, 32, 32]"
    if case == "unsupported dtype":
        x = save(tmp_path / "i.npy", np.zeros((1, 3, 32, 32), np.int32))
        return [tiny, "--input", f"input={x}"], "unsupported .npy dtype '<i4'"
    if case == "fortran order":
        x = save(tmp_path / "f.npy", np.asfortranarray(np.ones((1, 3, 32, 32), np.float32)))
        return [tiny, "--input", f"input={x}"], "Fortran-ordered"
    if case == "not an npy file":
        return [tiny, "--input", f"input={tiny}"], "not a .npy file"
    if case == "unknown input":
        return [tiny, "--input", f"image={good()}"], "unknown input 'image'; the model takes 'input' float32[1, 3, 32, 32]"
    if case == "missing input":
        return [libraries["two"], "--input", f"a={save(tmp_path / 'a.npy', np.zeros((1, 2, 6, 6), np.float32))}"], \
            "missing input 'b' float32[1, 3, 6, 6]"
    if case == "not a convc library":
        foreign = tmp_path / "foreign.so"  # a real shared object that convc did not write
        shutil.copy(Path(sys.executable).resolve(), foreign)
        return [foreign, "--input", f"input={good()}"], "not a convc library (no convc trailer"
    if case == "corrupt library":
        corrupt = tmp_path / "corrupt.so"
        data = bytearray(tiny.read_bytes())
        data[len(data) // 2] ^= 0xFF
        corrupt.write_bytes(bytes(data))
        return [corrupt, "--input", f"input={good()}"], "the library is corrupt (its checksum does not match)"
    raise AssertionError(case)


BAD_CASES = ["missing library", "missing input file", "wrong shape", "wrong dtype float64", "wrong dtype float16",
             "unsupported dtype", "fortran order", "not an npy file", "unknown input", "missing input",
             "not a convc library", "corrupt library"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_a_message_and_exit_1(runner, libraries, tmp_path, case):
    args, message = bad_case(tmp_path, libraries, case)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    result = run(runner, *args, "--output-dir", out_dir)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "convc-run: error:" in result.stderr
    assert not os.listdir(out_dir)  # no partial output


@pytest.mark.parametrize("args", [[], ["--bench", "zero"], ["--frobnicate"], ["lib.so", "--input", "noequals"]])
def test_usage_errors_exit_2(runner, args):
    result = run(runner, *args)
    assert result.returncode == 2
    assert "usage: convc-run" in result.stderr
