"""Whole graphs: several outputs, outputs that are inputs or constants, kernel sharing, build errors."""
from __future__ import annotations

import numpy as np
import pytest
import tvm

import convc.lower.compiler as compiler_module
import convc.lower.module as module_module
from convc.errors import CodegenError
from convc.ir import ConvAttrs, ConvTransposeAttrs, GraphBuilder, NoAttrs, Op, TensorType
from convc.ir.ops.movement import ReshapeAttrs
from convc.ir.ops.pool import PoolAttrs
from convc.lower import build, signature_of
from convc.lower.module import ModuleBuilder
from lower_check import TARGET, check

F32 = "float32"


def small_net():
    """conv -> relu -> pool, plus a residual branch; outputs include an input and a constant."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("net")
    x = b.add_input("x", TensorType((1, 3, 8, 8), F32))
    w = b.constant(rng.standard_normal((8, 3, 3, 3)).astype(F32), "w")
    y = b.emit1(Op.CONV, [x, w], ConvAttrs((1, 1), (1, 1), (1, 1), (1, 1), 1))
    r = b.emit1(Op.RELU, [y])
    p = b.emit1(Op.MAX_POOL, [r], PoolAttrs((2, 2), (2, 2), (0, 0), (0, 0), (1, 1)))
    flat = b.emit1(Op.RESHAPE, [p], ReshapeAttrs((1, 128)))
    s = b.emit1(Op.SIGMOID, [y])
    return b.build([flat, s, x, w], ["flat", "gate", "echo", "weights"])


def test_several_outputs_including_an_input_and_a_constant():
    model = check(small_net(), rtol=1e-4, atol=1e-4)
    assert [o.name for o in model.outputs] == ["flat", "gate", "echo", "weights"]
    assert [o.shape for o in model.outputs] == [(1, 128), (1, 8, 8, 8), (1, 3, 8, 8), (8, 3, 3, 3)]


def test_output_is_only_an_input():
    b = GraphBuilder("identity")
    x = b.add_input("x", TensorType((2, 3), F32))
    check(b.build([x, x], ["a", "b"]))


def test_scalar_and_bool_constants():
    b = GraphBuilder("scalars")
    x = b.add_input("x", TensorType((2, 3), F32))
    two = b.constant(np.array(2.0, F32), "two")
    mask = b.constant(np.array([True, False, True]), "mask")
    y = b.emit1(Op.WHERE, [mask, b.emit1(Op.MUL, [x, two]), x])
    check(b.build([y, two, mask], ["y", "two", "mask"]))


def test_reshape_of_an_input_is_a_view_not_a_kernel():
    b = GraphBuilder("view")
    x = b.add_input("x", TensorType((2, 6), F32))
    graph = b.build([b.emit1(Op.RESHAPE, [x], ReshapeAttrs((3, 4)))])
    builder = ModuleBuilder(graph, TARGET)
    builder.build(signature_of(graph, TARGET))
    assert builder.kernels == {}
    check(graph)


def test_identical_nodes_share_one_kernel():
    b = GraphBuilder("shared")
    x = b.add_input("x", TensorType((2, 3), F32))
    y = b.add_input("y", TensorType((2, 3), F32))
    a1 = b.emit1(Op.RELU, [x])
    a2 = b.emit1(Op.RELU, [y])
    a3 = b.emit1(Op.ADD, [a1, a2])
    a4 = b.emit1(Op.ADD, [a3, a3])
    a5 = b.emit1(Op.RELU, [b.emit1(Op.RESHAPE, [a4], ReshapeAttrs((3, 2)))])  # another type: own kernel
    graph = b.build([a5])
    builder = ModuleBuilder(graph, TARGET)
    builder.build(signature_of(graph, TARGET))
    assert sorted(len(nodes) for nodes in builder.symbols.values()) == [1, 2, 2]
    check(graph)


def test_kernels_carry_schedules():
    mod = ModuleBuilder(small_net(), TARGET).build(signature_of(small_net(), TARGET))
    funcs = [f for _, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert funcs and all(f.attrs["tirx.is_scheduled"] for f in funcs)


def test_unlowerable_op_is_a_codegen_error_naming_the_node():
    b = GraphBuilder("deconv")
    x = b.add_input("x", TensorType((1, 2, 4, 4), F32))
    w = b.constant(np.ones((2, 3, 3, 3), F32), "w")
    y = b.emit1(Op.CONV_TRANSPOSE, [x, w], ConvTransposeAttrs((2, 2), (1, 1), (1, 1), (0, 0), (1, 1)),
                name="up1")
    with pytest.raises(CodegenError, match=r"'up1'.*conv_transpose"):
        build(b.build([y]), TARGET)


def _relu_graph():
    b = GraphBuilder("relu")
    x = b.add_input("x", TensorType((4,), F32))
    return b.build([b.emit1(Op.RELU, [x], NoAttrs(), name="act")])


def test_a_failing_lowering_is_a_codegen_error_naming_the_node(monkeypatch):
    def broken(node, inputs, tables):
        raise RuntimeError("boom")
    monkeypatch.setattr(module_module, "lowering_of", lambda op: broken)
    with pytest.raises(CodegenError, match=r"node 'act' \(relu\).*boom"):
        build(_relu_graph(), TARGET)


def test_a_tvm_compile_failure_is_a_codegen_error_naming_the_kernel(monkeypatch):
    def failing_compile(mod, target):
        raise tvm.error.InternalError("in relu_0: something went wrong")
    monkeypatch.setattr(compiler_module.tvm, "compile", failing_compile)
    with pytest.raises(CodegenError, match=r"relu_0 \(nodes 'act'\).*something went wrong"):
        build(_relu_graph(), TARGET)


def test_a_target_without_schedules_is_a_codegen_error():
    with pytest.raises(CodegenError, match="no schedules for target kind 'c'"):
        build(_relu_graph(), tvm.target.Target({"kind": "c"}))
