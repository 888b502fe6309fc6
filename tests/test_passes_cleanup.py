"""fold_constants, eliminate_dead_code and simplify: semantics on random graphs, and tiny cases."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from convc.ir import ConvAttrs, GraphBuilder, Op, TensorType, interpret, verify
from convc.ir.ops.movement import ReshapeAttrs, SliceAttrs, TransposeAttrs
from convc.passes import eliminate_dead_code, fold_constants, simplify
from strategies import assert_equivalent, random_graphs

PASSES = {p.name: p for p in (fold_constants.PASS, eliminate_dead_code.PASS, simplify.PASS)}


def ops(graph):
    return [n.op for n in graph.nodes]


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(sorted(PASSES)), random_graphs(), st.integers(0, 2**16))
def test_same_outputs_on_random_graphs(name, graph, seed):
    after = PASSES[name].run(graph)
    verify(after)
    assert_equivalent(graph, after, seed)


def test_fold_constants_evaluates_constant_subgraphs():
    b = GraphBuilder("g")
    x = b.add_input("x", TensorType((2,), "float32"))
    c = b.emit1(Op.ADD, [b.constant(np.array([1.0, 2.0], np.float32), "c1"),
                         b.constant(np.array([10.0, 20.0], np.float32), "c2")], fold=False)
    y = b.emit1(Op.MUL, [x, c])
    graph = fold_constants.PASS.run(b.build([y], ["y"]))
    assert ops(graph) == [Op.MUL]
    np.testing.assert_array_equal(graph.constants[graph.nodes[0].inputs[1]], [11.0, 22.0])
    assert graph.output_names == ("y",)


def test_fold_constants_can_make_an_output_constant():
    b = GraphBuilder("g")
    b.add_input("x", TensorType((2,), "float32"))
    y = b.emit1(Op.NEG, [b.constant(np.array([1.0, 2.0], np.float32), "c")], fold=False)
    graph = fold_constants.PASS.run(b.build([y], ["y"]))
    assert graph.nodes == () and graph.output_names == ("y",)
    np.testing.assert_array_equal(interpret(graph, {"x": np.zeros(2, np.float32)})[0], [-1.0, -2.0])


def test_dead_code_drops_unread_nodes_and_constants_but_keeps_inputs():
    b = GraphBuilder("g")
    x = b.add_input("x", TensorType((2,), "float32"))
    unused = b.add_input("unused", TensorType((3,), "float32"))
    b.emit1(Op.ADD, [x, b.constant(np.ones(2, np.float32), "dead_const")])
    b.emit1(Op.RELU, [unused])
    y = b.emit1(Op.SIGMOID, [x])
    graph = eliminate_dead_code.PASS.run(b.build([y]))
    assert ops(graph) == [Op.SIGMOID]
    assert [v.name for v in graph.inputs] == ["x", "unused"] and not graph.constants


def test_simplify_collapses_chains_and_drops_identities():
    b = GraphBuilder("g")
    x = b.add_input("x", TensorType((2, 3, 4), "float32"))
    y = b.emit1(Op.RESHAPE, [x], ReshapeAttrs((6, 4)))
    y = b.emit1(Op.RESHAPE, [y], ReshapeAttrs((24,)))
    y = b.emit1(Op.RESHAPE, [y], ReshapeAttrs((4, 6)))  # three reshapes -> one
    z = b.emit1(Op.TRANSPOSE, [x], TransposeAttrs((1, 2, 0)))
    z = b.emit1(Op.TRANSPOSE, [z], TransposeAttrs((2, 0, 1)))  # cancels
    z = b.emit1(Op.SLICE, [z], SliceAttrs((0, 0, 0), (2, 3, 4), (1, 1, 1)))  # whole tensor
    w = b.emit1(Op.TRANSPOSE, [x], TransposeAttrs((1, 0, 2)))
    w = b.emit1(Op.TRANSPOSE, [w], TransposeAttrs((0, 2, 1)))  # composes to (1, 2, 0)
    graph = simplify.PASS.run(b.build([y, z, w], ["y", "z", "w"]))
    assert ops(graph) == [Op.RESHAPE, Op.TRANSPOSE]
    assert graph.nodes[0].inputs[0] is x and graph.nodes[0].attrs.shape == (4, 6)
    assert graph.outputs[1] is x
    assert graph.nodes[1].attrs.perm == (1, 2, 0)
    assert graph.output_names == ("y", "z", "w")
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    yv, zv, wv = interpret(graph, {"x": data})
    np.testing.assert_array_equal(wv, data.transpose(1, 0, 2).transpose(0, 2, 1))
    np.testing.assert_array_equal(zv, data)


def test_simplify_keeps_a_real_slice():
    b = GraphBuilder("g")
    x = b.add_input("x", TensorType((4,), "float32"))
    y = b.emit1(Op.SLICE, [x], SliceAttrs((3,), (-1,), (-1,)))  # reversal, same shape
    assert ops(simplify.PASS.run(b.build([y]))) == [Op.SLICE]


def fc_head(*, bias_users: int = 1, conv_bias: bool = True):
    """conv (N, M, 1, 1) -> reshape (N, M) -> + c[M], as fc_to_conv leaves a Gemm with a bias."""
    b = GraphBuilder("g")
    x = b.add_input("x", TensorType((2, 3, 1, 1), "float32"))
    inputs = [x, b.constant(np.arange(6, dtype=np.float32).reshape(2, 3, 1, 1), "w")]
    if conv_bias:
        inputs.append(b.constant(np.array([1.0, 2.0], np.float32), "b"))
    conv = b.emit1(Op.CONV, inputs, ConvAttrs((1, 1), (0, 0), (0, 0), (1, 1)), origin="onnx:Gemm 'fc'")
    flat = b.emit1(Op.RESHAPE, [conv], ReshapeAttrs((2, 2)))
    y = b.emit1(Op.ADD, [b.constant(np.array([10.0, 20.0], np.float32), "c"), flat])
    return b.build([y, flat][:bias_users], ["y", "flat"][:bias_users])


def test_simplify_moves_an_fc_bias_into_the_conv():
    for conv_bias in (True, False):
        before = fc_head(conv_bias=conv_bias)
        graph = simplify.PASS.run(before)
        assert ops(graph) == [Op.CONV, Op.RESHAPE]
        np.testing.assert_array_equal(graph.constants[graph.nodes[0].inputs[2]],
                                      [11.0, 22.0] if conv_bias else [10.0, 20.0])
        assert graph.nodes[0].origin == "onnx:Gemm 'fc' | simplify"
        assert_equivalent(before, graph, 0)


def test_simplify_keeps_the_bias_add_when_the_product_has_another_user():
    assert ops(simplify.PASS.run(fc_head(bias_users=2))) == [Op.CONV, Op.RESHAPE, Op.ADD]
