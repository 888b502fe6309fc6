"""convert_precision: a float32 graph computing in float16 with the same signature.

Semantic checks run the reference interpreter on the float32 graph and on its float16
version (which the interpreter evaluates in float16 NumPy arithmetic) and compare the
outputs by relative L2 error; structural checks look at the casts and constants.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convc import zoo
from convc.compiler import lower_to_ir
from convc.errors import ConvcError
from convc.frontends.onnx import import_model
from convc.ir import ConvAttrs, GraphBuilder, Op, TensorType, interpret, verify
from convc.ir.ops.conv import EpilogueStep
from convc.ir.ops.elementwise import CastAttrs
from convc.ir.ops.movement import GatherAttrs
from convc.ir.ops.normalization import SoftmaxAttrs
from convc.ir.ops.pool import PoolAttrs
from convc.passes.precision import FLOAT, PRECISION, Compute, compute_of, convert_precision
from strategies import random_graphs, random_inputs

TOL = 1e-2
ZOO = ["tiny", "resnet_small", "mobilenet_small", "dcgan_small", "unet_small"]


def rel_l2(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


def check_narrowed(before, after, seed=0, tol=TOL):
    """``after`` verifies, keeps the signature, computes in float16 except where the registry
    says float32, and its outputs are within ``tol`` of ``before``'s."""
    verify(after)
    assert [v.type for v in after.inputs] == [v.type for v in before.inputs]
    assert [v.name for v in after.inputs] == [v.name for v in before.inputs]
    assert [v.type for v in after.outputs] == [v.type for v in before.outputs]
    assert after.output_names == before.output_names
    users = after.consumers()
    for value in after.constants:
        if value.dtype == "float32":  # kept wide on purpose only
            assert users[value] and all(compute_of(n) is FLOAT for n in users[value]), value
    for node in after.nodes:
        if node.op is not Op.CAST and compute_of(node) is not FLOAT:
            assert all(v.dtype != "float32" for v in (*node.inputs, *node.outputs)), node.name
    inputs = random_inputs(before, seed)
    for name, want, got in zip(before.output_names, interpret(before, inputs), interpret(after, inputs)):
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert rel_l2(got, want) <= tol, (name, rel_l2(got, want))


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_after_the_pipeline(name):
    graph = lower_to_ir(zoo.build(name))
    narrow = convert_precision(graph)
    verify(narrow, rewritten=True)
    check_narrowed(graph, narrow)
    convs = [n for n in narrow.nodes if n.op is Op.CONV]
    assert convs and all(v.dtype == "float16" for n in convs for v in n.inputs)
    assert not any(a.dtype == np.float32 for a in narrow.constants.values() if a.ndim == 4)  # weights
    # a cast per float32 input and output, and around each float32 op (a global average pool
    # here, between float16 convs): no round trips
    wide = sum(compute_of(n) is FLOAT for n in graph.nodes)
    assert sum(n.op is Op.CAST for n in narrow.nodes) == len(graph.inputs) + len(graph.outputs) + 2 * wide


@pytest.mark.parametrize("name", ["tiny", "mobilenet_small"])
def test_zoo_model_as_imported(name):
    """Before the pipeline: batch norms, a Gemm as matmul + add, global pooling, all present."""
    graph = import_model(zoo.build(name))
    check_narrowed(graph, convert_precision(graph))


def test_every_op_has_a_rule():
    assert set(PRECISION) == set(Op)


def conv_softmax_graph():
    """x -> conv(w, b) + relu epilogue -> softmax over channels -> out; x also feeds a reduce_mean."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("g")
    x = b.add_input("x", TensorType((1, 3, 6, 6), "float32"))
    w = b.constant(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    bias = b.constant(rng.standard_normal(4).astype(np.float32), "b")
    attrs = ConvAttrs((1, 1), (1, 1), (1, 1), (1, 1), epilogue=(EpilogueStep(Op.RELU),))
    y = b.emit1(Op.CONV, [x, w, bias], attrs, name="conv")
    s = b.emit1(Op.SOFTMAX, [y], SoftmaxAttrs(1), name="softmax")
    return b.build([s, y], ["probs", "features"])


def test_casts_sit_where_the_precision_changes():
    before = conv_softmax_graph()
    after = convert_precision(before)
    check_narrowed(before, after)
    ops = [(n.op, n.outputs[0].dtype) for n in after.nodes]
    assert ops == [(Op.CAST, "float16"), (Op.CONV, "float16"), (Op.CAST, "float32"), (Op.SOFTMAX, "float32")]
    # the features output reuses the cast the softmax reads: no second cast
    assert after.outputs[1] is after.nodes[2].output and after.outputs[0] is after.nodes[3].output
    assert {a.dtype for a in after.constants.values()} == {np.dtype(np.float16)}


def test_a_float32_input_read_only_in_float32_is_not_narrowed():
    b = GraphBuilder("g")
    x = b.add_input("x", TensorType((2, 8, 5, 5), "float32"))
    mean = b.emit1(Op.AVG_POOL, [x], PoolAttrs((5, 5), (1, 1), (0, 0), (0, 0), (1, 1)))  # 25 > 16: wide
    small = b.emit1(Op.AVG_POOL, [mean], PoolAttrs((1, 1), (1, 1), (0, 0), (0, 0), (1, 1)))  # narrow
    before = b.build([small])
    after = convert_precision(before)
    check_narrowed(before, after)
    assert [(n.op, n.outputs[0].dtype) for n in after.nodes] == [
        (Op.AVG_POOL, "float32"), (Op.CAST, "float16"), (Op.AVG_POOL, "float16"), (Op.CAST, "float32")]


def test_other_dtypes_are_left_alone():
    b = GraphBuilder("g")
    x = b.add_input("x", TensorType((4, 3), "float64"))
    idx = b.constant(np.array([2, 0], dtype=np.int64), "idx")
    x32 = b.emit1(Op.CAST, [b.emit1(Op.GATHER, [x, idx], GatherAttrs(0))], CastAttrs("float32"))
    flags = b.emit1(Op.LESS, [x32, b.constant(np.zeros((1, 3), np.float32), "zero")])
    before = b.build([x32, flags], ["as_float32", "negative"])
    after = convert_precision(before)
    check_narrowed(before, after)
    assert after.nodes[0].op is Op.GATHER and after.nodes[0].inputs[0].dtype == "float64"
    assert after.nodes[1].attrs == CastAttrs("float16")  # the cast to float32 now narrows
    assert after.outputs[1].dtype == "bool"


def test_dtype_argument():
    graph = conv_softmax_graph()
    assert convert_precision(graph, "float32") is graph
    with pytest.raises(ConvcError, match="bfloat16"):
        convert_precision(graph, "bfloat16")


@settings(max_examples=40, deadline=None)
@given(random_graphs(), st.integers(0, 2**16))
def test_random_graphs(graph, seed):
    """Random small CNNs (batch norm, transposed convs, residuals, movement, FC heads)."""
    after = convert_precision(graph)
    # tiny random graphs cancel more than real models: compare against the output's scale
    check_narrowed(graph, after, seed, tol=3e-2)


def test_registry_values_are_computes():
    for op, rule in PRECISION.items():
        assert isinstance(rule, Compute) or callable(rule), op
