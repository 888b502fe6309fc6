"""Every non-conv op (and the plain-path conv) scheduled for CUDA by ``convc.schedules.cuda``.

No GPU here, so each case is checked twice without one:
- structure: the kernel is in the CUDA source TVM generates, its body reads ``threadIdx``,
  and nvcc compiles the whole source for sm_80 and sm_90 (one module for all cases);
- compute: the *scheduled* PrimFunc with its thread loops turned back into serial loops is
  built for llvm and compared with the NumPy reference interpreter, so a schedule that
  drops, repeats or misplaces work fails here.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from tvm import te, tirx

import convc.lower  # noqa: F401  (registers the lowerings)
from convc.ir import ConvAttrs, GraphBuilder, Graph, Op, TensorType, interpret
from convc.ir.ops.conv import EpilogueStep
from convc.ir.ops.elementwise import AlphaAttrs, CastAttrs, ClipAttrs
from convc.ir.ops.movement import (BroadcastToAttrs, ConcatAttrs, GatherAttrs, InterleaveAttrs, PadAttrs,
                                   PadMode, SliceAttrs, TransposeAttrs)
from convc.ir.ops.normalization import BatchNormAttrs, SoftmaxAttrs
from convc.ir.ops.pool import PoolAttrs, ReduceAttrs
from convc.ir.ops.resize import CoordinateMode, ResizeAttrs, ResizeMode
from convc.lower.registry import Tables, lowering_of
from convc.schedules.cuda import ScheduleContext, schedule
from convc.schedules.cuda.common import current_target, unbound_blocks
from cuda_check import serial
from lower_check import sample

F32 = "float32"
CUDA = current_target()  # CUDA sm_90 outside any ``with target:``


def _graph(name: str, op: Op, shapes, attrs=None, dtypes=None, constants=()) -> Graph:
    """One ``op`` node over inputs of ``shapes`` (and NumPy ``constants``, read as inputs)."""
    b = GraphBuilder(name)
    dtypes = dtypes or [F32] * len(shapes)
    ins = [b.add_input(f"x{i}", TensorType(s, d)) for i, (s, d) in enumerate(zip(shapes, dtypes))]
    ins += [b.constant(c, f"c{i}") for i, c in enumerate(constants)]
    return b.build([b.emit1(op, ins, attrs)])


def _conv(name, x_shape, w_shape, attrs, dtype=F32, bias=False, operands=()) -> Graph:
    """A conv whose weight is a graph *input* (the case no conv kernel takes)."""
    shapes = [x_shape, w_shape] + ([(w_shape[0],)] if bias else []) + list(operands)
    return _graph(name, Op.CONV, shapes, attrs, [dtype] * len(shapes))


_POOL = PoolAttrs((3, 3), (2, 2), (1, 1), (1, 1), (1, 1))
_RELU_ADD = (EpilogueStep(Op.ADD), EpilogueStep(Op.RELU))
CASES = {
    "relu": _graph("relu", Op.RELU, [(2, 8, 9, 9)]),
    "leaky_relu": _graph("leaky", Op.LEAKY_RELU, [(3, 70)], AlphaAttrs(0.1)),
    "clip": _graph("clip", Op.CLIP, [(2, 5, 7)], ClipAttrs(-0.5, 0.5)),
    "sigmoid": _graph("sigmoid", Op.SIGMOID, [(4, 33)]),
    "cast": _graph("cast", Op.CAST, [(4, 5)], CastAttrs("int32")),
    "add_broadcast": _graph("add", Op.ADD, [(2, 3, 4, 5), (3, 1, 5)]),
    "less_bool": _graph("less", Op.LESS, [(6, 7), (7,)]),
    "where": _graph("where", Op.WHERE, [(2, 1, 4), (3, 1), (2, 3, 4)], dtypes=["bool", F32, F32]),
    "batch_norm": _graph("bn", Op.BATCH_NORM, [(2, 3, 4)], BatchNormAttrs(1e-3),
                         constants=[np.linspace(0.5, 2, 3, dtype=F32)] * 4),
    "matmul": _graph("matmul", Op.MATMUL, [(64, 32), (32, 48)]),
    "matmul_batched": _graph("bmm", Op.MATMUL, [(2, 1, 3, 4), (5, 4, 2)]),
    "matmul_vector": _graph("gemv", Op.MATMUL, [(2, 3, 40), (40,)]),
    "max_pool": _graph("maxpool", Op.MAX_POOL, [(2, 8, 9, 9)], _POOL),
    "avg_pool": _graph("avgpool", Op.AVG_POOL, [(2, 8, 9, 9)], _POOL),
    "avg_pool_1d_ceil": _graph("avgpool1", Op.AVG_POOL, [(1, 3, 10)],
                               PoolAttrs((3,), (2,), (1,), (0,), (1,), True, True)),
    "max_pool_3d": _graph("maxpool3", Op.MAX_POOL, [(1, 2, 5, 4, 5)],
                          PoolAttrs((2, 2, 2), (2, 2, 2), (0, 1, 0), (1, 0, 0), (1, 1, 1), True)),
    "global_avg_pool": _graph("gap", Op.AVG_POOL, [(2, 16, 7, 7)], PoolAttrs((7, 7), (1, 1), (0, 0), (0, 0), (1, 1))),
    "reduce_mean_spatial": _graph("mean", Op.REDUCE_MEAN, [(2, 16, 7, 7)], ReduceAttrs((2, 3), True)),
    "reduce_sum_inner": _graph("sum", Op.REDUCE_SUM, [(6, 300)], ReduceAttrs((1,), False)),
    "reduce_max_outer": _graph("max", Op.REDUCE_MAX, [(5, 6, 7)], ReduceAttrs((0,), False)),
    "reduce_prod_all": _graph("prod", Op.REDUCE_PROD, [(3, 4)], ReduceAttrs((0, 1), False)),
    "softmax_last": _graph("softmax", Op.SOFTMAX, [(4, 1000)], SoftmaxAttrs(1)),
    "softmax_channels": _graph("softmax_c", Op.SOFTMAX, [(2, 5, 3, 4)], SoftmaxAttrs(1)),
    "transpose": _graph("transpose", Op.TRANSPOSE, [(8, 32, 33)], TransposeAttrs((2, 0, 1))),
    "broadcast_to": _graph("bcast", Op.BROADCAST_TO, [(3, 1)], BroadcastToAttrs((2, 3, 4))),
    "concat": _graph("concat", Op.CONCAT, [(2, 3, 4), (2, 1, 4)], ConcatAttrs(1)),
    "slice": _graph("slice", Op.SLICE, [(2, 6, 6)], SliceAttrs((1, 4, 5), (-1, 0, -1), (-1, -3, -2))),
    "pad_reflect": _graph("pad", Op.PAD, [(2, 3, 4, 5)], PadAttrs(PadMode.REFLECT, (0, 1, 2, 0), (1, 0, 3, 2))),
    "gather": _graph("gather", Op.GATHER, [(3, 4, 5), (3,)], GatherAttrs(1), dtypes=[F32, "int64"]),
    "resize_linear": _graph("resize", Op.RESIZE, [(1, 2, 4, 5)],
                            ResizeAttrs((1, 2, 7, 9), (1, 1, 7 / 4, 9 / 5), mode=ResizeMode.LINEAR,
                                        coordinate_mode=CoordinateMode.ALIGN_CORNERS)),
    "interleave": _graph("interleave", Op.INTERLEAVE, [(1, 4, 3, 3)], InterleaveAttrs((2, 2), (1, 0), (5, 6))),
    "conv_plain": _conv("conv", (1, 4, 6, 6), (8, 4, 3, 3), ConvAttrs((1, 1), (1, 1), (1, 1), (1, 1))),
    "conv_grouped_strided_epilogue": _conv(
        "conv_ep", (2, 4, 7, 7), (6, 2, 3, 3), ConvAttrs((2, 2), (1, 0), (1, 1), (1, 1), 2, _RELU_ADD),
        bias=True, operands=[(2, 6, 4, 3)]),
    "conv_float64_1d_dilated": _conv("conv64", (1, 3, 11), (4, 3, 3), ConvAttrs((1,), (2,), (2,), (2,)),
                                     dtype="float64"),
    # float16, as --dtype float16 networks run them
    "max_pool_f16": _graph("maxpool16", Op.MAX_POOL, [(2, 8, 9, 9)], _POOL, dtypes=["float16"]),
    "global_avg_pool_f16": _graph("gap16", Op.AVG_POOL, [(2, 16, 7, 7)],
                                  PoolAttrs((7, 7), (1, 1), (0, 0), (0, 0), (1, 1)), dtypes=["float16"]),
    "add_relu_f16": _graph("add16", Op.ADD, [(2, 3, 4, 5), (3, 1, 5)], dtypes=["float16"] * 2),
    "cast_f16_to_f32": _graph("cast16", Op.CAST, [(4, 5)], CastAttrs(F32), dtypes=["float16"]),
    # zero-size tensors: empty reductions write the identity (EMPTY: kernels that never run)
    "concat_with_empty": _graph("concat_empty", Op.CONCAT, [(2, 0), (2, 3)], ConcatAttrs(1)),
    "matmul_empty_contraction": _graph("matmul_empty", Op.MATMUL, [(3, 0), (0, 4)]),
    "reduce_sum_empty_axis": _graph("sum_empty", Op.REDUCE_SUM, [(2, 0, 4)], ReduceAttrs((1,), True)),
    "reduce_mean_empty_axis": _graph("mean_empty", Op.REDUCE_MEAN, [(0, 3)], ReduceAttrs((0,), False)),
}
EMPTY = {
    "slice_to_empty": _graph("empty_slice", Op.SLICE, [(2, 3)], SliceAttrs((0, 3), (2, 3), (1, 1))),
    "mul_empty": _graph("empty_mul", Op.MUL, [(2, 0, 4), (1, 1, 4)]),
}


def lower_node(graph: Graph) -> tuple[tirx.PrimFunc, list[np.ndarray]]:
    """The PrimFunc of the graph's single node (plain layouts, as the CUDA build lowers it)
    and the constant tables it reads after its inputs."""
    (node,) = graph.nodes
    ins = [te.placeholder(v.shape, v.dtype, f"in{i}") for i, v in enumerate(node.inputs)]
    tables = Tables()
    outs = lowering_of(node.op)(node, ins, tables)
    outs = outs if isinstance(outs, tuple) else (outs,)
    return te.create_prim_func([*ins, *tables.tensors, *outs]), tables.arrays


def scheduled(graph: Graph) -> tirx.PrimFunc:
    """The graph's single node lowered and scheduled by ``convc.schedules.cuda.schedule``."""
    (node,) = graph.nodes
    func, _ = lower_node(graph)
    with CUDA:
        return schedule(func, ScheduleContext(node.op, node.attrs, node.output.dtype))


@pytest.fixture(scope="module")
def cuda_source() -> str:
    """The CUDA source of every case's kernel, built in one module, compiled by nvcc for sm_80 and sm_90."""
    from tvm.support import nvcc
    funcs = {f"k_{name}": scheduled(graph).with_attr("global_symbol", f"k_{name}")
             for name, graph in CASES.items()}
    executable = tvm.compile(tvm.IRModule(funcs), target=CUDA)
    (device,) = [m for m in executable.mod.imports if m.kind == "cuda"]
    source = device.inspect_source()
    for arch in ("sm_80", "sm_90"):  # the same source serves both
        with CUDA:
            assert len(nvcc.compile_cuda(source, target_format="cubin", arch=arch, compiler="nvcc")) > 0
    return source


def kernel_body(source: str, symbol: str) -> str:
    match = re.search(rf'extern "C" __global__ void[^;{{]*\b{symbol}_kernel\w*\(([^)]*)\)\s*\{{', source)
    assert match, f"kernel {symbol} not in the CUDA source"
    depth, i = 1, match.end()
    while depth:
        depth += {"{": 1, "}": -1}.get(source[i], 0)
        i += 1
    return source[match.end():i]


@pytest.mark.parametrize("name", CASES)
def test_kernel_is_thread_bound_and_compiles(name, cuda_source):
    body = kernel_body(cuda_source, f"k_{name}")
    if CASES[name].outputs[0].type.size > 1:  # a one-thread kernel has no thread index to read
        assert "threadIdx.x" in body  # blockIdx.x only appears when the grid has several blocks


@pytest.mark.parametrize("name", EMPTY)
def test_kernels_of_zero_size_outputs_need_no_threads(name):
    func = scheduled(EMPTY[name])
    assert not unbound_blocks(func)
    assert not tvm.compile(tvm.IRModule({"main": func}), target=CUDA).mod.imports  # no device code


@pytest.mark.parametrize("name", [*CASES, *EMPTY])
def test_scheduled_compute_matches_interpreter(name):
    graph = {**CASES, **EMPTY}[name]
    rng = np.random.default_rng(0)
    inputs = {v.name: sample(v.shape, v.dtype, rng) for v in graph.inputs}
    if graph.nodes[0].op is Op.GATHER:
        inputs["x1"] = np.array([3, 0, 2], dtype="int64")  # in range: the lowering takes checked indices
    want = interpret(graph, inputs)
    _, tables = lower_node(graph)
    run = tvm.compile(tvm.IRModule({"main": serial(scheduled(graph))}), target="llvm")
    consts = [graph.constants[v] for v in graph.nodes[0].inputs if graph.is_constant(v)]
    args = [tvm.runtime.tensor(a) for a in [*inputs.values(), *consts, *tables]]
    outs = [tvm.runtime.tensor(np.full(w.shape, 7, w.dtype)) for w in want]  # a kernel must overwrite 7
    run(*args, *outs)
    for got, expected in zip(outs, want):
        tol = {np.dtype("float64"): 1e-12, np.dtype("float16"): 2e-3}.get(expected.dtype, 1e-5)
        np.testing.assert_allclose(got.numpy(), expected, rtol=tol, atol=tol)
