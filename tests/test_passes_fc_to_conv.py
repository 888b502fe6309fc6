"""fc_to_conv: every matmul with a constant operand becomes a conv (plus reshapes/transposes)."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from convc.ir import ConvAttrs, GraphBuilder, Op, TensorType, interpret, verify
from convc.ir.ops.movement import ReshapeAttrs
from convc.passes.fc_to_conv import PASS
from strategies import assert_equivalent


def ops(graph):
    return [n.op for n in graph.nodes]


@st.composite
def matmul_graphs(draw):
    """x @ W or W @ x with a constant W; ranks 1..4, broadcast batch axes on either side."""
    k = draw(st.integers(1, 4))
    batch = draw(st.lists(st.integers(1, 3), max_size=2))
    shapes = []
    for side in ("lhs", "rhs"):
        if draw(st.booleans()):
            shapes.append((k,))
            continue
        axes = draw(st.sampled_from([batch, [1] * len(batch), batch[1:], []]))
        other = draw(st.integers(1, 3))
        shapes.append((*axes, other, k) if side == "lhs" else (*axes, k, other))
    constant = draw(st.sampled_from([0, 1]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    b = GraphBuilder("mm")
    operands = [b.constant(rng.standard_normal(shape), "W") if i == constant
                else b.add_input("x", TensorType(shape, "float64")) for i, shape in enumerate(shapes)]
    y = b.emit1(Op.MATMUL, operands, origin="onnx:MatMul 'fc'")
    return b.build([y], ["y"])


@settings(max_examples=200, deadline=None)
@given(matmul_graphs(), st.integers(0, 2**16))
def test_same_outputs_and_no_constant_matmul_left(graph, seed):
    after = PASS.run(graph)
    verify(after, rewritten=True)
    assert Op.MATMUL not in ops(after)
    assert_equivalent(graph, after, seed, rtol=1e-10, atol=1e-10)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2), st.integers(1, 3), st.lists(st.integers(1, 4), min_size=1, max_size=3),
       st.integers(1, 3), st.integers(0, 2**16))
def test_flatten_then_fc_is_one_conv_over_the_map(n, c, spatial, m, seed):
    rng = np.random.default_rng(seed)
    size = c * int(np.prod(spatial))
    b = GraphBuilder("head")
    x = b.add_input("x", TensorType((n, c, *spatial), "float64"))
    flat = b.emit1(Op.RESHAPE, [x], ReshapeAttrs((n, size)))
    y = b.emit1(Op.MATMUL, [flat, b.constant(rng.standard_normal((size, m)), "W")])
    graph = b.build([y], ["y"])
    after = PASS.run(graph)
    assert ops(after) == [Op.CONV, Op.RESHAPE]
    assert after.nodes[0].inputs[0] is x
    assert_equivalent(graph, after, seed, rtol=1e-10, atol=1e-10)


def test_vgg_head_over_7x7_map_is_a_7x7_conv():
    rng = np.random.default_rng(0)
    b = GraphBuilder("vgg_head")
    x = b.add_input("x", TensorType((1, 8, 7, 7), "float32"))
    flat = b.emit1(Op.RESHAPE, [x], ReshapeAttrs((1, 8 * 7 * 7)), origin="onnx:Flatten 'flatten'")
    w = rng.standard_normal((8 * 7 * 7, 10)).astype(np.float32)  # Gemm with transB folded: [K, M]
    fc = b.emit1(Op.MATMUL, [flat, b.constant(w, "fc.weight")], name="fc", origin="onnx:Gemm 'fc'")
    y = b.emit1(Op.ADD, [fc, b.constant(rng.standard_normal(10).astype(np.float32), "fc.bias")])
    graph = PASS.run(b.build([y], ["logits"]))
    verify(graph, rewritten=True)
    assert ops(graph) == [Op.CONV, Op.RESHAPE, Op.ADD]
    conv, reshape, _ = graph.nodes
    assert conv.inputs[0] is x and conv.attrs == ConvAttrs((1, 1), (0, 0), (0, 0), (1, 1), 1)
    kernel = graph.constants[conv.inputs[1]]
    assert kernel.shape == (10, 8, 7, 7)
    # output m at (channel c, row i, column j) reads flat index c*49 + i*7 + j
    assert kernel[3, 5, 2, 6] == w[5 * 49 + 2 * 7 + 6, 3]
    assert conv.outputs[0].shape == (1, 10, 1, 1) and reshape.outputs[0].shape == (1, 10)
    assert conv.origin == "onnx:Gemm 'fc' | fc_to_conv"
    assert graph.output_names == ("logits",)


def test_fc_on_a_vector_batch_is_a_1x1_conv():
    b = GraphBuilder("fc")
    x = b.add_input("x", TensorType((4, 3), "float32"))
    w = np.arange(6, dtype=np.float32).reshape(3, 2)
    y = b.emit1(Op.MATMUL, [x, b.constant(w, "W")])
    graph = PASS.run(b.build([y]))
    assert ops(graph) == [Op.RESHAPE, Op.CONV, Op.RESHAPE]
    assert graph.nodes[0].outputs[0].shape == (4, 3, 1)
    np.testing.assert_array_equal(graph.constants[graph.nodes[1].inputs[1]], w.T.reshape(2, 3, 1))
    x_val = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(interpret(graph, {"x": x_val})[0], x_val @ w)


def test_matmul_of_two_activations_is_kept():
    b = GraphBuilder("mm")
    x = b.add_input("x", TensorType((2, 3), "float32"))
    z = b.add_input("z", TensorType((3, 4), "float32"))
    graph = b.build([b.emit1(Op.MATMUL, [x, z])])
    assert ops(PASS.run(graph)) == [Op.MATMUL]
