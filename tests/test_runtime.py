"""CompiledModel: input checking, export/load round trip, embedded signature, bad library files."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import tvm

import convc
from convc.errors import ConvcError, InputError, LibraryError
from convc.ir import ConvAttrs, GraphBuilder, Op, TensorType, interpret
from convc.ir.ops.movement import ReshapeAttrs
from convc.lower import build
from convc.runtime import SIGNATURE_FUNCTION, TensorSpec, load
from lower_check import TARGET


def make_graph():
    rng = np.random.default_rng(0)
    b = GraphBuilder("tiny")
    x = b.add_input("x", TensorType((1, 2, 5, 5), "float32"))
    k = b.add_input("k", TensorType((3,), "int32"))
    w = b.constant(rng.standard_normal((4, 2, 3, 3)).astype("float32"), "w")
    y = b.emit1(Op.RELU, [b.emit1(Op.CONV, [x, w], ConvAttrs((1, 1), (1, 1), (1, 1), (1, 1), 1))])
    return b.build([y, b.emit1(Op.NEG, [k])], ["y", "minus_k"])


@pytest.fixture(scope="module")
def graph():
    return make_graph()


@pytest.fixture(scope="module")
def model(graph):
    return build(graph, TARGET)


@pytest.fixture(scope="module")
def library(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("lib") / "tiny.so"
    model.export_library(path)
    return path


def good_inputs():
    rng = np.random.default_rng(1)
    return {"x": rng.standard_normal((1, 2, 5, 5)).astype("float32"), "k": np.array([1, -2, 3], "int32")}


def assert_matches(outputs, graph, inputs):
    for got, want in zip(outputs, interpret(graph, inputs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_specs(model):
    assert model.inputs == (TensorSpec("x", (1, 2, 5, 5), "float32"), TensorSpec("k", (3,), "int32"))
    assert model.outputs == (TensorSpec("y", (1, 4, 5, 5), "float32"), TensorSpec("minus_k", (3,), "int32"))


def test_export_and_load_round_trip(graph, model, library):
    loaded = load(library)
    assert loaded.inputs == model.inputs and loaded.outputs == model.outputs
    assert loaded.signature.convc_version == convc.__version__
    assert loaded.signature.target == str(TARGET)
    assert_matches(loaded.run(good_inputs()), graph, good_inputs())
    assert [p.name for p in library.parent.iterdir()] == ["tiny.so"]  # no temporary left behind


def test_reexport_of_a_loaded_library(graph, library, tmp_path):
    copy = tmp_path / "again.so"
    load(library).export_library(copy)
    assert_matches(load(copy).run(good_inputs()), graph, good_inputs())


def test_signature_is_callable_through_the_bare_tvm_runtime(model, library):
    """What a C++ runner does: load the module, make a VM, call convc_signature."""
    vm = tvm.runtime.vm.VirtualMachine(tvm.runtime.load_module(str(library)), tvm.runtime.cpu())
    data = json.loads(str(vm[SIGNATURE_FUNCTION]()))
    assert data["inputs"][0] == {"name": "x", "shape": [1, 2, 5, 5], "dtype": "float32"}
    assert [o["name"] for o in data["outputs"]] == ["y", "minus_k"]


def test_benchmark(model):
    times = model.benchmark(good_inputs(), repeat=3)
    assert len(times) == 3 and all(t > 0 for t in times)


def test_inputs_need_not_be_contiguous(graph, model):
    inputs = good_inputs()
    inputs["x"] = np.asfortranarray(inputs["x"])
    assert_matches(model.run(inputs), graph, inputs)


@pytest.mark.parametrize("change,message", [
    (lambda i: i.pop("k"), r"missing input 'k' int32\[3\]"),
    (lambda i: i.update(z=np.zeros(1)), r"unknown input\(s\) 'z'.*'x' float32\[1, 2, 5, 5\]"),
    (lambda i: i.update(x=np.zeros((1, 2, 5, 4), "float32")),
     r"input 'x': expected float32\[1, 2, 5, 5\], got float32\[1, 2, 5, 4\]"),
    (lambda i: i.update(x=np.zeros((1, 2, 5, 5), "float64")),
     r"input 'x': expected float32\[1, 2, 5, 5\], got float64\[1, 2, 5, 5\]"),
    (lambda i: i.update(k=np.zeros(3, "int64")), r"input 'k': expected int32\[3\], got int64\[3\]"),
])
def test_bad_inputs(model, change, message):
    inputs = good_inputs()
    change(inputs)
    with pytest.raises(InputError, match=message):
        model.run(inputs)
    with pytest.raises(InputError, match=message):
        model.benchmark(inputs, 1)


def test_missing_file(tmp_path):
    with pytest.raises(LibraryError, match="no such library file"):
        load(tmp_path / "absent.so")


@pytest.mark.parametrize("damage", [
    lambda data: data[: len(data) // 2],  # truncated
    lambda data: data[:100] + bytes([data[100] ^ 0xFF]) + data[101:],  # one flipped byte
    lambda data: b"",
])
def test_corrupt_library(library, tmp_path, damage):
    bad = tmp_path / "bad.so"
    bad.write_bytes(damage(library.read_bytes()))
    with pytest.raises(LibraryError, match="corrupt|not a convc library"):
        load(bad)


def test_foreign_shared_object(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc")
    source = tmp_path / "foreign.c"
    source.write_text("int answer(void) { return 42; }\n")
    lib = tmp_path / "foreign.so"
    subprocess.run(["gcc", "-shared", "-fPIC", str(source), "-o", str(lib)], check=True)
    with pytest.raises(LibraryError, match="not a convc library"):
        load(lib)


def test_unknown_device(library):
    with pytest.raises(ConvcError, match="unknown device 'tpu'"):
        load(library, device="tpu")


def test_a_directory_is_not_a_library(tmp_path):
    with pytest.raises(LibraryError):
        load(tmp_path)


def test_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    model = build(make_graph(), TARGET)

    def failing(path):
        with open(path, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")
    monkeypatch.setattr(model, "_export", failing)
    with pytest.raises(OSError, match="disk full"):
        model.export_library(tmp_path / "m.so")
    assert os.listdir(tmp_path) == []


def test_export_and_load_print_no_per_constant_vm_noise(tmp_path, capfd):
    from convc import zoo
    import convc
    convc.compile(zoo.build("tiny")).export_library(tmp_path / "m.so")
    convc.load(tmp_path / "m.so")
    assert "Scope" not in capfd.readouterr().err


def test_outputs_never_share_memory_with_constants_inputs_or_each_other(tmp_path):
    """run() hands host outputs over without a copy, except where that memory outlives the call."""
    b = GraphBuilder("aliases")
    x = b.add_input("x", TensorType((2, 3), "float32"))
    c = b.constant(np.arange(6, dtype=np.float32).reshape(2, 3), "c")
    relu = b.emit1(Op.RELU, [x])
    graph = b.build([c, b.emit1(Op.RESHAPE, [c], ReshapeAttrs((3, 2))), x,
                     b.emit1(Op.RESHAPE, [x], ReshapeAttrs((3, 2))), relu, relu],
                    ["c", "c_view", "x_out", "x_view", "relu", "relu_again"])
    compiled = build(graph, TARGET)
    assert compiled.signature.aliased_outputs == (0, 1, 2, 3)
    path = tmp_path / "aliases.so"
    compiled.export_library(path)
    inputs = {"x": np.ones((2, 3), np.float32) * -1}
    for model in (compiled, load(path)):
        for form in ("numpy", "dlpack"):
            first = [np.from_dlpack(o) if form == "dlpack" else o for o in model.run(inputs, output=form)]
            for out in first:
                out[...] = 42.0
            assert_matches(model.run(inputs), graph, inputs)
            np.testing.assert_array_equal(inputs["x"], -1)
