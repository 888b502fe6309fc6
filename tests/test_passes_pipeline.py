"""The pipeline as a whole, and the rewriting driver it is built on."""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convc.ir import ConvTransposeAttrs, GraphBuilder, Op, TensorType, verify
from convc.ir.ops.normalization import BatchNormAttrs
from convc.passes import PIPELINE, Pass, run_pipeline
from convc.passes.rewrite import Rule, rewrite
from strategies import assert_equivalent, random_graphs


@settings(max_examples=150, deadline=None)
@given(random_graphs(), st.integers(0, 2**16))
def test_pipeline_preserves_semantics_and_leaves_only_plain_convs(graph, seed):
    seen = []
    after = run_pipeline(graph, dump=lambda name, g: (verify(g), seen.append(name)))
    assert seen == [p.name for p in PIPELINE]
    verify(after, rewritten=True)
    assert {n.op for n in after.nodes}.isdisjoint({Op.CONV_TRANSPOSE, Op.BATCH_NORM, Op.MATMUL})
    assert_equivalent(graph, after, seed, rtol=1e-4, atol=1e-4)


def test_pipeline_is_a_list_of_named_passes():
    names = [p.name for p in PIPELINE]
    assert len(set(names)) == len(names)
    assert {"fold_constants", "eliminate_dead_code", "fold_batchnorm", "conv_transpose_to_conv",
            "fc_to_conv"} <= set(names)
    for p in PIPELINE:
        assert isinstance(p, Pass) and p.why and "\n" not in p.why
        with pytest.raises(dataclasses.FrozenInstanceError):
            p.name = "other"


def test_deconv_then_batch_norm_becomes_one_conv_with_the_origin_chain():
    rng = np.random.default_rng(0)
    b = GraphBuilder("up")
    x = b.add_input("x", TensorType((1, 2, 3, 3), "float32"))
    w = b.constant(rng.standard_normal((2, 4, 4, 4)).astype(np.float32), "w")
    up = b.emit1(Op.CONV_TRANSPOSE, [x, w], ConvTransposeAttrs((2, 2), (1, 1), (1, 1), (1, 1), (1, 1)),
                 name="up1", origin="onnx:ConvTranspose 'up1'")
    params = [b.constant(p.astype(np.float32), "p") for p in
              (rng.standard_normal(4), rng.standard_normal(4), rng.standard_normal(4), rng.uniform(1, 2, 4))]
    y = b.emit1(Op.BATCH_NORM, [up, *params], BatchNormAttrs(), origin="onnx:BatchNormalization 'bn'")
    graph = b.build([y], ["image"])
    after = run_pipeline(graph)
    # k4 s2 p1 op1: the sub-pixel phases line up, one conv then the interleave (BN folded by subpixel)
    assert [n.op for n in after.nodes] == [Op.CONV, Op.INTERLEAVE]
    assert after.nodes[0].origin == "onnx:ConvTranspose 'up1' | subpixel"
    assert after.output_names == ("image",)
    assert_equivalent(graph, after, 0, rtol=1e-4, atol=1e-4)


def test_driver_copies_declined_nodes_and_substitutes_rewritten_values():
    b = GraphBuilder("g")
    x = b.add_input("x", TensorType((3,), "float32"))
    y = b.emit1(Op.NEG, [x], origin="onnx:Neg 'n'")
    z = b.emit1(Op.RELU, [y])
    graph = b.build([z, y], ["z", "y"])

    def neg_as_sub(ctx, node):
        zero = ctx.constant(np.zeros(3, np.float32), "zero")
        return (ctx.emit(Op.SUB, [zero, ctx.inputs(node)[0]]),)

    declined = rewrite(graph, [Rule("never", frozenset({Op.NEG}), lambda ctx, node: None, "")], "noop")
    assert [n.op for n in declined.nodes] == [Op.NEG, Op.RELU]
    after = rewrite(graph, [Rule("neg_as_sub", frozenset({Op.NEG}), neg_as_sub, "")], "demo")
    assert [n.op for n in after.nodes] == [Op.SUB, Op.RELU]
    assert after.nodes[1].inputs[0] is after.nodes[0].outputs[0] and after.outputs[1] is after.nodes[0].outputs[0]
    assert after.nodes[0].origin == "onnx:Neg 'n' | demo"
    assert after.output_names == ("z", "y")
    assert graph.nodes[0].op is Op.NEG  # the source graph is untouched
    assert_equivalent(graph, after, 0)


def test_driver_rejects_a_rewrite_of_the_wrong_type():
    b = GraphBuilder("g")
    x = b.add_input("x", TensorType((3,), "float32"))
    graph = b.build([b.emit1(Op.RELU, [x])])
    wrong = Rule("wrong", frozenset({Op.RELU}), lambda ctx, node: (ctx.constant(np.zeros(2, np.float32), "z"),), "")
    with pytest.raises(AssertionError, match="wrong|relu"):
        rewrite(graph, [wrong], "bad")


def test_disabling_subpixel_keeps_zero_insertion_with_the_same_result():
    from convc import zoo
    from convc.frontends.onnx import import_model
    from convc.ir import interpret
    graph = import_model(zoo.build("dcgan_small"))
    with_subpixel = run_pipeline(graph)
    zero_insertion = run_pipeline(graph, disable={"subpixel"})
    origins = lambda g: " ".join(n.origin for n in g.nodes)  # noqa: E731
    assert "subpixel" in origins(with_subpixel) and "subpixel" not in origins(zero_insertion)
    inputs = {"input": np.random.default_rng(0).standard_normal(graph.inputs[0].shape).astype(np.float32)}
    for a, b in zip(interpret(with_subpixel, inputs), interpret(zero_insertion, inputs)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_required_passes_cannot_be_disabled():
    from convc.errors import ConvcError
    b = GraphBuilder()
    x = b.add_input("x", TensorType((1, 2), "float32"))
    with pytest.raises(ConvcError, match="conv_transpose_to_conv"):
        run_pipeline(b.build([x]), disable={"conv_transpose_to_conv"})
