"""fold_batchnorm: batch norm disappears, into the conv before it or into a per-channel mul + add."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from convc.ir import ConvAttrs, GraphBuilder, Op, TensorType, verify
from convc.ir.ops.conv import EpilogueStep
from convc.ir.ops.normalization import BatchNormAttrs
from convc.passes.fold_batchnorm import PASS
from strategies import ConvCase, assert_equivalent, conv_cases


def ops(graph):
    return [n.op for n in graph.nodes]


def bn_params(rng, c):
    """gamma, beta, mean, var (var > 0)."""
    return [rng.standard_normal(c), rng.standard_normal(c), rng.standard_normal(c), rng.uniform(0.1, 3.0, c)]


def conv_bn_graph(case: ConvCase, seed: int, *, second_user: bool, constant_params: bool = True):
    """x -> conv -> batch_norm -> out, and with ``second_user`` also relu(conv) -> out2."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("conv_bn")
    x = b.add_input("x", TensorType(case.x_shape, "float64"))
    inputs = [x, b.constant(rng.standard_normal(case.w_shape), "w")]
    if case.bias:
        inputs.append(b.constant(rng.standard_normal(case.w_shape[0]), "b"))
    conv = b.emit1(Op.CONV, inputs, case.attrs, name="conv1", origin="onnx:Conv 'conv1'")
    m = case.w_shape[0]
    params = [b.constant(p, name) if constant_params else b.add_input(name, TensorType((m,), "float64"))
              for p, name in zip(bn_params(rng, m), ("gamma", "beta", "mean", "var"))]
    if not constant_params:
        params[3] = b.emit1(Op.ABS, [params[3]])  # random inputs are normal; a variance is not negative
    y = b.emit1(Op.BATCH_NORM, [conv, *params], BatchNormAttrs(1e-3), name="bn1", origin="onnx:BatchNormalization 'bn1'")
    if second_user:
        return b.build([y, b.emit1(Op.RELU, [conv])], ["out", "out2"])
    return b.build([y], ["out"])


@settings(max_examples=150, deadline=None)
@given(conv_cases(), st.integers(0, 2**16), st.booleans(), st.booleans())
def test_same_outputs_as_the_unfolded_graph(case, seed, second_user, constant_params):
    before = conv_bn_graph(case, seed, second_user=second_user, constant_params=constant_params)
    after = PASS.run(before)
    verify(after, rewritten=True)
    assert Op.BATCH_NORM not in ops(after)
    assert ops(after).count(Op.CONV) == 1
    if constant_params and not second_user:
        assert ops(after) == [Op.CONV]
    assert_equivalent(before, after, seed, rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 3), min_size=2, max_size=4), st.integers(0, 2**16))
def test_batch_norm_without_a_conv(shape, seed):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("bn")
    x = b.add_input("x", TensorType(tuple(shape), "float64"))
    consts = [b.constant(p, "p") for p in bn_params(rng, shape[1])]
    y = b.emit1(Op.BATCH_NORM, [b.emit1(Op.RELU, [x]), *consts], BatchNormAttrs(1e-5))
    before = b.build([y], ["y"])
    after = PASS.run(before)
    assert ops(after) == [Op.RELU, Op.MUL, Op.ADD]
    assert_equivalent(before, after, seed, rtol=1e-12, atol=1e-12)


def tiny(second_user: bool):
    """A 1x1 conv with 2 output channels, weights 1 and 2, bias (10, 20), then batch norm."""
    b = GraphBuilder("tiny")
    x = b.add_input("x", TensorType((1, 1, 3), "float64"))
    w = b.constant(np.array([[[1.0]], [[2.0]]]), "w")
    conv = b.emit1(Op.CONV, [x, w, b.constant(np.array([10.0, 20.0]), "b")], ConvAttrs((1,), (0,), (0,), (1,)),
                   name="conv1", origin="onnx:Conv 'conv1'")
    gamma, beta, mean, var = (b.constant(np.array(v), n) for v, n in (
        ([3.0, 0.5], "gamma"), ([1.0, -1.0], "beta"), ([2.0, 4.0], "mean"), ([4.0, 0.25], "var")))
    y = b.emit1(Op.BATCH_NORM, [conv, gamma, beta, mean, var], BatchNormAttrs(0.0), origin="onnx:BN 'bn1'")
    outs = [y, b.emit1(Op.RELU, [conv])] if second_user else [y]
    return b.build(outs)


def test_folds_into_the_sole_conv():
    # a = gamma / sqrt(var) = (1.5, 1); shift = beta - a * mean = (-2, -5)
    graph = PASS.run(tiny(second_user=False))
    (conv,) = graph.nodes
    assert conv.op is Op.CONV
    np.testing.assert_allclose(graph.constants[conv.inputs[1]].ravel(), [1.5, 2.0])
    np.testing.assert_allclose(graph.constants[conv.inputs[2]], [1.5 * 10 - 2, 20 - 5])
    assert conv.origin == "onnx:Conv 'conv1' | fold_batchnorm"


def test_conv_with_two_users_keeps_its_weights():
    graph = PASS.run(tiny(second_user=True))
    assert ops(graph) == [Op.CONV, Op.MUL, Op.ADD, Op.RELU]
    conv, mul, add, _ = graph.nodes
    np.testing.assert_array_equal(graph.constants[conv.inputs[1]].ravel(), [1.0, 2.0])
    np.testing.assert_allclose(graph.constants[mul.inputs[1]].ravel(), [1.5, 1.0])
    np.testing.assert_allclose(graph.constants[add.inputs[1]].ravel(), [-2.0, -5.0])
    assert graph.constants[mul.inputs[1]].shape == (1, 2, 1)
    assert mul.origin == "onnx:BN 'bn1' | fold_batchnorm"


def test_conv_with_an_epilogue_is_not_folded_into():
    b = GraphBuilder("g")
    x = b.add_input("x", TensorType((1, 1, 3), "float64"))
    w = b.constant(np.array([[[1.0]], [[-2.0]]]), "w")
    conv = b.emit1(Op.CONV, [x, w], ConvAttrs((1,), (0,), (0,), (1,), epilogue=(EpilogueStep(Op.RELU),)))
    params = [b.constant(np.array(v), "p") for v in ([-1.0, 2.0], [0.0, 1.0], [0.5, 0.0], [1.0, 1.0])]
    before = b.build([b.emit1(Op.BATCH_NORM, [conv, *params], BatchNormAttrs(0.0))])
    after = PASS.run(before)
    assert ops(after) == [Op.CONV, Op.MUL, Op.ADD]
    assert_equivalent(before, after, 0, rtol=1e-12, atol=1e-12)
