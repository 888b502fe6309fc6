"""fuse_epilogue: bias, activations and residual ops move into the conv; results unchanged."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from convc.ir import ConvAttrs, GraphBuilder, Op, TensorType, verify
from convc.ir.ops.conv import EpilogueStep
from convc.ir.ops.elementwise import AlphaAttrs, ClipAttrs
from convc.passes.fuse_epilogue import PASS
from strategies import assert_equivalent

UNARY = [(Op.RELU, None), (Op.CLIP, ClipAttrs(0.0, 6.0)), (Op.SIGMOID, None), (Op.TANH, None),
         (Op.LEAKY_RELU, AlphaAttrs(0.1)), (Op.HARD_SWISH, None), (Op.ELU, AlphaAttrs(1.0))]
STEPS = ["unary", "bias", "residual", "residual_left", "scale", "sub_left", "sub_right", "second_user"]


def chain_graph(steps, seed, with_bias):
    """x -> conv -> steps...; returns the graph and how many steps must fuse."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("chain")
    x = b.add_input("x", TensorType((1, 4, 5, 5), "float64"))
    skip = b.add_input("skip", TensorType((1, 4, 5, 5), "float64"))
    inputs = [x, b.constant(rng.standard_normal((4, 4, 3, 3)), "w")]
    if with_bias:
        inputs.append(b.constant(rng.standard_normal(4), "b"))
    y = b.emit1(Op.CONV, inputs, ConvAttrs((1, 1), (1, 1), (1, 1), (1, 1), 1))
    extra_outputs = []
    for step in steps:
        if step == "unary":
            op, attrs = UNARY[rng.integers(len(UNARY))]
            y = b.emit1(op, [y], attrs)
        elif step == "bias":
            y = b.emit1(Op.ADD, [y, b.constant(rng.standard_normal((4, 1, 1)), "c")])
        elif step == "residual":
            y = b.emit1(Op.ADD, [y, skip])
        elif step == "residual_left":
            y = b.emit1(Op.ADD, [skip, y])
        elif step == "scale":
            y = b.emit1(Op.MUL, [b.constant(rng.standard_normal((1, 4, 1, 1)), "s"), y])
        elif step == "sub_left":
            y = b.emit1(Op.SUB, [y, skip])
        elif step == "sub_right":  # skip - conv: not an epilogue of the conv
            y = b.emit1(Op.SUB, [skip, y])
        elif step == "second_user":  # a second reader of the conv's output stops fusion
            extra_outputs.append(y)
            y = b.emit1(Op.RELU, [y])
    return b.build([y, *extra_outputs], ["out", *[f"extra{i}" for i in range(len(extra_outputs))]])


@settings(max_examples=120, deadline=None)
@given(st.lists(st.sampled_from(STEPS), min_size=1, max_size=5), st.integers(0, 2**16), st.booleans())
def test_fused_graph_computes_the_same(steps, seed, with_bias):
    before = chain_graph(steps, seed, with_bias)
    after = PASS.run(before)
    verify(after)
    assert_equivalent(before, after, seed, rtol=1e-9, atol=1e-9)
    prefix = []
    for step in steps:  # the steps up to the first unfusable one are absorbed
        if step in ("sub_right", "second_user"):
            break
        prefix.append(step)
    leading_biases = len(prefix) - len("".join("b" if s == "bias" else "x" for s in prefix).lstrip("b"))
    convs = [n for n in after.nodes if n.op is Op.CONV]
    assert len(convs) == 1
    assert len(convs[0].attrs.epilogue) == len(prefix) - leading_biases


def test_residual_block_becomes_one_conv():
    rng = np.random.default_rng(0)
    b = GraphBuilder("block")
    x = b.add_input("x", TensorType((1, 8, 6, 6), "float32"))
    attrs = ConvAttrs((1, 1), (1, 1), (1, 1), (1, 1), 1)
    w = b.constant(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), "w")
    bias = b.constant(rng.standard_normal((1, 8, 1, 1)).astype(np.float32), "bias")
    y = b.emit1(Op.CONV, [x, w], attrs)
    y = b.emit1(Op.ADD, [y, bias])
    y = b.emit1(Op.ADD, [y, x])
    y = b.emit1(Op.RELU, [y])
    before = b.build([y])
    after = PASS.run(before)
    assert [n.op for n in after.nodes] == [Op.CONV]
    (conv,) = after.nodes
    assert conv.attrs.epilogue == (EpilogueStep(Op.ADD), EpilogueStep(Op.RELU))
    assert conv.inputs[0] is x and conv.inputs[-1] is x and conv.inputs[2].shape == (8,)
    assert_equivalent(before, after, 1)


def test_activation_on_a_broadcast_is_not_fused():
    b = GraphBuilder("bcast")
    x = b.add_input("x", TensorType((1, 2, 1, 1), "float32"))
    other = b.add_input("o", TensorType((1, 2, 3, 3), "float32"))
    w = b.constant(np.ones((2, 2, 1, 1), np.float32), "w")
    y = b.emit1(Op.CONV, [x, w], ConvAttrs((1, 1), (0, 0), (0, 0), (1, 1), 1))
    y = b.emit1(Op.ADD, [y, other])  # broadcasts the conv's output: not an epilogue
    after = PASS.run(b.build([y]))
    assert [n.op for n in after.nodes] == [Op.CONV, Op.ADD]


def test_activation_after_subpixel_interleave_fuses_into_every_phase():
    from convc.ir import ConvTransposeAttrs
    from convc.passes import run_pipeline
    rng = np.random.default_rng(5)
    b = GraphBuilder("deconv_relu")
    x = b.add_input("x", TensorType((1, 8, 5, 5), "float32"))
    w = b.constant(rng.standard_normal((8, 16, 4, 4)).astype(np.float32), "w")
    y = b.emit1(Op.CONV_TRANSPOSE, [x, w], ConvTransposeAttrs((2, 2), (1, 1), (1, 1), (0, 0), (1, 1)))
    before = b.build([b.emit1(Op.RELU, [y])])
    after = run_pipeline(before)
    convs = [n for n in after.nodes if n.op is Op.CONV]
    assert Op.RELU not in {n.op for n in after.nodes} and Op.INTERLEAVE in {n.op for n in after.nodes}
    assert convs and all(n.attrs.epilogue == (EpilogueStep(Op.RELU),) for n in convs)
    assert_equivalent(before, after, 5, rtol=1e-4, atol=1e-4)
