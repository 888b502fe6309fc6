"""Every non-conv op lowered and run once or more, against the NumPy reference interpreter."""
from __future__ import annotations

import numpy as np
import pytest
import tvm

from convc.ir import GraphBuilder, NoAttrs, Op, TensorType, interpret
from convc.ir.ops.elementwise import AlphaAttrs, CastAttrs, ClipAttrs, HardSigmoidAttrs
from convc.ir.ops.movement import (BroadcastToAttrs, ConcatAttrs, GatherAttrs, PadAttrs, PadMode,
                                   ReshapeAttrs, SliceAttrs, TransposeAttrs)
from convc.ir.ops.normalization import BatchNormAttrs, SoftmaxAttrs
from convc.ir.ops.pool import PoolAttrs
from convc.ir.ops.resize import CoordinateMode, NearestMode, ResizeAttrs, ResizeMode
from lower_check import check

F32 = "float32"


def unary_graph(op, attrs, shape=(2, 3, 4, 5), dtype=F32):
    b = GraphBuilder(str(op))
    x = b.add_input("x", TensorType(shape, dtype))
    return b.build([b.emit1(op, [x], attrs)])


UNARY = [
    (Op.RELU, NoAttrs()), (Op.LEAKY_RELU, AlphaAttrs(0.1)), (Op.ELU, AlphaAttrs(0.7)),
    (Op.SIGMOID, NoAttrs()), (Op.TANH, NoAttrs()), (Op.HARD_SIGMOID, HardSigmoidAttrs(0.3, 0.4)),
    (Op.HARD_SWISH, NoAttrs()), (Op.CLIP, ClipAttrs(-0.5, 0.5)), (Op.CLIP, ClipAttrs(max=0.2)),
    (Op.EXP, NoAttrs()), (Op.NEG, NoAttrs()), (Op.ABS, NoAttrs()), (Op.FLOOR, NoAttrs()),
    (Op.CEIL, NoAttrs()),
]


@pytest.mark.parametrize("op,attrs", UNARY, ids=lambda v: str(v) if isinstance(v, Op) else "")
def test_unary(op, attrs):
    check(unary_graph(op, attrs))


@pytest.mark.parametrize("op", [Op.LOG, Op.SQRT, Op.RECIPROCAL])
def test_unary_positive_domain(op):
    x = np.random.default_rng(0).uniform(0.5, 3, (3, 7)).astype(F32)
    check(unary_graph(op, NoAttrs(), (3, 7)), {"x": x})


@pytest.mark.parametrize("src,dst", [(F32, "int32"), ("int64", F32), (F32, "bool"), ("bool", F32),
                                     ("int32", "int8")])
def test_cast(src, dst):
    check(unary_graph(Op.CAST, CastAttrs(dst), (4, 5), src))


def test_not():
    check(unary_graph(Op.NOT, NoAttrs(), (9,), "bool"))


def binary_graph(op, a_shape, b_shape, dtype=F32, b_dtype=None):
    b = GraphBuilder(str(op))
    x = b.add_input("a", TensorType(a_shape, dtype))
    y = b.add_input("b", TensorType(b_shape, b_dtype or dtype))
    return b.build([b.emit1(op, [x, y])])


@pytest.mark.parametrize("op", [Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.MAXIMUM, Op.MINIMUM, Op.PRELU,
                                Op.EQUAL, Op.LESS, Op.GREATER])
def test_binary_broadcast(op):
    check(binary_graph(op, (2, 3, 4, 5), (3, 1, 5)))


def test_integer_div_truncates_toward_zero():
    a = np.array([[7, -7, 9, -9]], dtype="int32")
    b = np.array([[2], [-4]], dtype="int32")
    check(binary_graph(Op.DIV, (1, 4), (2, 1), "int32"), {"a": a, "b": b})


def test_pow():
    rng = np.random.default_rng(0)
    inputs = {"a": rng.uniform(0.5, 2, (3, 4)).astype(F32), "b": rng.uniform(-2, 2, (4,)).astype(F32)}
    check(binary_graph(Op.POW, (3, 4), (4,)), inputs)


@pytest.mark.parametrize("op", [Op.AND, Op.OR])
def test_logical(op):
    check(binary_graph(op, (4, 1), (1, 6), "bool"))


def test_where_broadcasts_three_ways():
    b = GraphBuilder("where")
    c = b.add_input("c", TensorType((2, 1, 4), "bool"))
    x = b.add_input("x", TensorType((3, 1), F32))
    y = b.add_input("y", TensorType((2, 3, 4), F32))
    check(b.build([b.emit1(Op.WHERE, [c, x, y])]))


def test_batch_norm():
    rng = np.random.default_rng(0)
    b = GraphBuilder("bn")
    x = b.add_input("x", TensorType((2, 3, 4), F32))
    params = [b.constant(rng.uniform(0.5, 2, 3).astype(F32), n) for n in ("scale", "bias", "mean", "var")]
    check(b.build([b.emit1(Op.BATCH_NORM, [x, *params], BatchNormAttrs(1e-3))]))


@pytest.mark.parametrize("a_shape,b_shape", [((3, 4), (4, 5)), ((2, 3, 4), (4, 6)), ((4,), (4, 3)),
                                             ((2, 3, 4), (4,)), ((2, 1, 3, 4), (5, 4, 2)), ((5,), (5,))])
def test_matmul_between_inputs(a_shape, b_shape):
    check(binary_graph(Op.MATMUL, a_shape, b_shape), rtol=1e-4, atol=1e-5)


POOLS = [  # kernel, strides, pads_begin, pads_end, dilations, ceil_mode, count_include_pad, shape
    ((3,), (2,), (1,), (0,), (1,), False, False, (1, 2, 9)),
    ((2, 2), (2, 2), (0, 0), (0, 0), (1, 1), False, False, (1, 3, 6, 6)),
    ((3, 3), (2, 2), (1, 1), (1, 1), (1, 1), True, False, (2, 2, 8, 7)),
    ((3, 3), (2, 2), (1, 0), (0, 1), (1, 1), True, True, (1, 2, 8, 7)),
    ((2, 3), (1, 2), (1, 1), (1, 2), (2, 1), False, True, (1, 3, 7, 9)),
    ((2, 2, 2), (2, 2, 2), (0, 1, 0), (1, 0, 0), (1, 1, 1), True, True, (1, 2, 5, 4, 5)),
    ((5, 6), (1, 1), (0, 0), (0, 0), (1, 1), False, False, (1, 4, 5, 6)),  # global
]


@pytest.mark.parametrize("op", [Op.MAX_POOL, Op.AVG_POOL])
@pytest.mark.parametrize("case", POOLS, ids=lambda c: f"{len(c[0])}d-ceil{int(c[5])}-inc{int(c[6])}")
def test_pool(op, case):
    *fields, shape = case
    check(unary_graph(op, PoolAttrs(*fields), shape))


@pytest.mark.parametrize("op", [Op.REDUCE_SUM, Op.REDUCE_MEAN, Op.REDUCE_MAX, Op.REDUCE_MIN, Op.REDUCE_PROD])
@pytest.mark.parametrize("axes,keepdims", [((1,), True), ((0, 2), False), ((2, 3), True), ((0, 1, 2, 3), False)])
def test_reduce(op, axes, keepdims):
    from convc.ir.ops.pool import ReduceAttrs
    x = np.random.default_rng(0).uniform(0.5, 1.5, (2, 3, 4, 3)).astype(F32)
    check(unary_graph(op, ReduceAttrs(axes, keepdims), (2, 3, 4, 3)), {"x": x}, rtol=1e-5, atol=1e-5)


def test_integer_reduce_mean():
    from convc.ir.ops.pool import ReduceAttrs
    check(unary_graph(Op.REDUCE_MEAN, ReduceAttrs((1,), True), (2, 7), "int32"))


@pytest.mark.parametrize("axis", [0, 1, 3])
def test_softmax(axis):
    check(unary_graph(Op.SOFTMAX, SoftmaxAttrs(axis), (2, 3, 4, 5)))


def test_reshape_and_transpose():
    b = GraphBuilder("move")
    x = b.add_input("x", TensorType((2, 3, 4), F32))
    y = b.emit1(Op.TRANSPOSE, [x], TransposeAttrs((2, 0, 1)))
    z = b.emit1(Op.RESHAPE, [y], ReshapeAttrs((4, 6)))
    check(b.build([z, y]))


def test_broadcast_to():
    check(unary_graph(Op.BROADCAST_TO, BroadcastToAttrs((2, 3, 4)), (3, 1)))


def test_concat():
    b = GraphBuilder("concat")
    x = b.add_input("x", TensorType((2, 3, 4), F32))
    y = b.add_input("y", TensorType((2, 1, 4), F32))
    c = b.constant(np.arange(16, dtype=F32).reshape(2, 2, 4), "c")
    check(b.build([b.emit1(Op.CONCAT, [x, y, c, x], ConcatAttrs(1))]))


@pytest.mark.parametrize("attrs", [
    SliceAttrs((0, 1, 0), (2, 5, 6), (1, 2, 3)),
    SliceAttrs((1, 4, 5), (-1, 0, -1), (-1, -3, -2)),  # negative steps, through index 0
    SliceAttrs((0, 2, 3), (1, 3, 4), (1, 1, 1)),
])
def test_slice(attrs):
    check(unary_graph(Op.SLICE, attrs, (2, 6, 6)))


@pytest.mark.parametrize("mode", list(PadMode))
def test_pad(mode):
    attrs = PadAttrs(mode, (0, 1, 2, 0), (1, 0, 3, 2), value=1.5)
    check(unary_graph(Op.PAD, attrs, (2, 3, 4, 5)))


def test_wrap_pad_larger_than_the_axis():
    check(unary_graph(Op.PAD, PadAttrs(PadMode.WRAP, (0, 5), (0, 7)), (2, 3)))


@pytest.mark.parametrize("axis,indices", [(0, [[2, 0], [1, 1]]), (1, [3, 0, 2]), (2, 1)])
def test_gather(axis, indices):
    b = GraphBuilder("gather")
    x = b.add_input("x", TensorType((3, 4, 5), F32))
    idx = b.add_input("idx", TensorType(np.shape(indices), "int64"))
    graph = b.build([b.emit1(Op.GATHER, [x, idx], GatherAttrs(axis))])
    rng = np.random.default_rng(0)
    check(graph, {"x": rng.standard_normal((3, 4, 5)).astype(F32), "idx": np.array(indices, dtype="int64")})


RESIZES = [
    ResizeAttrs((1, 2, 8, 10), (1, 1, 2, 2.5)),
    ResizeAttrs((1, 2, 3, 3), (1, 1, 0.75, 0.6), nearest_mode=NearestMode.CEIL,
                coordinate_mode=CoordinateMode.ASYMMETRIC),
    ResizeAttrs((1, 2, 7, 9), (1, 1, 7 / 4, 9 / 5), mode=ResizeMode.LINEAR),
    ResizeAttrs((1, 2, 7, 9), (1, 1, 7 / 4, 9 / 5), mode=ResizeMode.LINEAR,
                coordinate_mode=CoordinateMode.ALIGN_CORNERS),
    ResizeAttrs((1, 2, 6, 3), (1, 1, 1.5, 0.6), mode=ResizeMode.LINEAR,
                coordinate_mode=CoordinateMode.PYTORCH_HALF_PIXEL),
    ResizeAttrs((1, 2, 8, 8), (1, 1, 2, 1.6), mode=ResizeMode.CUBIC),
    ResizeAttrs((1, 2, 8, 8), (1, 1, 2, 1.6), mode=ResizeMode.CUBIC, exclude_outside=True,
                cubic_coeff_a=-0.5, coordinate_mode=CoordinateMode.HALF_PIXEL_SYMMETRIC),
    ResizeAttrs((1, 2, 6, 6), (1, 1, 1.5, 1.2), mode=ResizeMode.LINEAR,
                coordinate_mode=CoordinateMode.TF_CROP_AND_RESIZE, extrapolation_value=-3.0,
                roi_start=(0, 0, -0.2, 0.1), roi_end=(1, 1, 0.9, 1.3)),
    ResizeAttrs((1, 2, 4, 5), (1, 1, 1, 1)),  # identity
]


@pytest.mark.parametrize("attrs", RESIZES, ids=lambda a: f"{a.mode.value}-{a.coordinate_mode.value}")
def test_resize(attrs):
    check(unary_graph(Op.RESIZE, attrs, (1, 2, 4, 5)), rtol=1e-5, atol=1e-5)


def test_resize_3d():
    check(unary_graph(Op.RESIZE, ResizeAttrs((1, 1, 4, 6, 3), (1, 1, 2, 2, 1), mode=ResizeMode.LINEAR),
                      (1, 1, 2, 3, 3)))


def test_resize_downsample_to_one_sample_is_not_an_identity():
    # a 2 -> 1 nearest downsample picks sample 0 with weight 1: identity-looking, yet it resizes
    attrs = ResizeAttrs((1, 1, 1, 2), (1, 1, 0.6, 0.6))
    check(unary_graph(Op.RESIZE, attrs, (1, 1, 2, 4)))


def test_resize_downsample_to_one_sample_align_corners():
    attrs = ResizeAttrs((1, 1, 1, 2), (1, 1, 0.6, 0.6), mode=ResizeMode.LINEAR,
                        coordinate_mode=CoordinateMode.ALIGN_CORNERS)
    check(unary_graph(Op.RESIZE, attrs, (1, 1, 2, 4)))


# Zero-size tensors: kernels that never run must still build, and reductions over an empty
# axis must write the reducer's identity (0 for a sum, 1 for a product, NaN for a mean).
def _zero_size_slice():
    return unary_graph(Op.SLICE, SliceAttrs((0, 3), (2, 3), (1, 1)), (2, 3))


def _zero_size_elementwise():
    b = GraphBuilder("empty_mul")
    x = b.add_input("x", TensorType((2, 0, 4), F32))
    y = b.add_input("y", TensorType((1, 1, 4), F32))
    return b.build([b.emit1(Op.ABS, [b.emit1(Op.MUL, [x, y])])])


def _zero_size_concat():
    b = GraphBuilder("empty_concat")
    x = b.add_input("x", TensorType((2, 3), F32))
    e = b.emit1(Op.SLICE, [x], SliceAttrs((0, 3), (2, 3), (1, 1)))
    return b.build([b.emit1(Op.CONCAT, [e, x, e], ConcatAttrs(1))])


def _zero_size_matmul():  # an empty contraction: every output element is 0
    return binary_graph(Op.MATMUL, (3, 0), (0, 4))


ZERO_SIZE = {"slice": _zero_size_slice, "elementwise": _zero_size_elementwise, "concat": _zero_size_concat,
             "matmul": _zero_size_matmul}


@pytest.mark.parametrize("make", ZERO_SIZE.values(), ids=list(ZERO_SIZE))
def test_zero_size_tensors(make):
    check(make())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's mean of an empty slice
@pytest.mark.parametrize("op", [Op.REDUCE_SUM, Op.REDUCE_PROD, Op.REDUCE_MEAN])
@pytest.mark.parametrize("shape,axes,keepdims", [((2, 0, 4), (1,), True), ((2, 0, 4), (0, 1, 2), False),
                                                 ((0, 3), (1,), False), ((2, 0, 4), (0, 2), True)])
def test_reduce_with_zero_size_tensors(op, shape, axes, keepdims):
    from convc.ir.ops.pool import ReduceAttrs
    check(unary_graph(op, ReduceAttrs(axes, keepdims), shape))


def test_int64_constant_indices():
    b = GraphBuilder("gather_const")
    x = b.add_input("x", TensorType((5, 3), F32))
    idx = b.constant(np.array([4, 0, 2], dtype="int64"), "idx")
    check(b.build([b.emit1(Op.GATHER, [x, idx], GatherAttrs(0))]))


def test_float64_constant_operand():
    b = GraphBuilder("mul_const")
    x = b.add_input("x", TensorType((2, 3), "float64"))
    check(b.build([b.emit1(Op.MUL, [x, b.constant(np.array(0.5), "half")])]), rtol=1e-12, atol=1e-12)


def test_reshape_to_zero_size():
    check(unary_graph(Op.RESHAPE, ReshapeAttrs((3, 4, 0)), (0, 3, 4)))


def test_reshape_kernel():
    # the kernel a reshape uses where a Relax view cannot express it (see test_reshape_to_zero_size)
    from tvm import te
    from convc.lower import lowering_of
    graph = unary_graph(Op.RESHAPE, ReshapeAttrs((4, 6)), (2, 3, 4))
    x = te.placeholder((2, 3, 4), F32, "x")
    y = lowering_of(Op.RESHAPE)(graph.nodes[0], [x], None)
    func = tvm.compile(te.create_prim_func([x, y]), target="llvm")
    data = np.arange(24, dtype=F32).reshape(2, 3, 4)
    out = tvm.runtime.tensor(np.zeros((4, 6), F32))
    func(tvm.runtime.tensor(data), out)
    np.testing.assert_array_equal(out.numpy(), interpret(graph, {"x": data})[0])
