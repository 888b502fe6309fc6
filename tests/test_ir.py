"""The IR's own invariants: builder, verifier, interpreter input checks, printer."""
import dataclasses

import numpy as np
import pytest

from convc.errors import InputError, ShapeError
from convc.ir import ConvAttrs, Graph, GraphBuilder, Node, Op, TensorType, Value, interpret, verify
from convc.ir import VerificationError
from convc.ir.ops.movement import ReshapeAttrs


def conv_graph():
    b = GraphBuilder("g")
    x = b.add_input("x", TensorType((1, 2, 5, 5), "float32"))
    w = b.constant(np.ones((3, 2, 3, 3), np.float32), "w")
    y = b.emit1(Op.CONV, [x, w], ConvAttrs((1, 1), (1, 1), (1, 1), (1, 1), 1))
    r = b.emit1(Op.RELU, [y])
    return b.build([r], ["out"])


def test_builder_infers_types_and_verify_accepts():
    g = conv_graph()
    verify(g)
    assert g.nodes[0].output.type == TensorType((1, 3, 5, 5), "float32")
    assert g.output_names == ("out",)


def test_builder_folds_constant_subgraphs():
    b = GraphBuilder()
    c = b.constant(np.arange(6, dtype=np.int64), "c")
    r = b.emit1(Op.RESHAPE, [c], ReshapeAttrs((2, 3)))
    assert b.is_constant(r) and not b.nodes
    np.testing.assert_array_equal(b.const_value(r), np.arange(6).reshape(2, 3))


def test_shape_inference_rejects_bad_conv():
    b = GraphBuilder()
    x = b.add_input("x", TensorType((1, 4, 5, 5), "float32"))
    w = b.constant(np.ones((3, 3, 3, 3), np.float32), "w")
    with pytest.raises(ShapeError, match="input channels"):
        b.emit(Op.CONV, [x, w], ConvAttrs((1, 1), (0, 0), (0, 0), (1, 1), 1))


def test_verify_catches_wrong_output_type():
    g = conv_graph()
    node = g.nodes[0]
    bad_out = Value(node.output.name, TensorType((1, 3, 4, 4), "float32"))
    bad = dataclasses.replace(g, nodes=(dataclasses.replace(node, outputs=(bad_out,)), g.nodes[1]))
    with pytest.raises(VerificationError, match="infers"):
        verify(bad)


def test_verify_catches_use_before_definition():
    g = conv_graph()
    swapped = dataclasses.replace(g, nodes=(g.nodes[1], g.nodes[0]))
    with pytest.raises(VerificationError, match="not defined before use"):
        verify(swapped)


def test_verify_rewritten_rejects_conv_transpose():
    from convc.ir import ConvTransposeAttrs
    b = GraphBuilder()
    x = b.add_input("x", TensorType((1, 2, 3, 3), "float32"))
    w = b.constant(np.ones((2, 1, 2, 2), np.float32), "w")
    y = b.emit1(Op.CONV_TRANSPOSE, [x, w], ConvTransposeAttrs((2, 2), (0, 0), (0, 0), (0, 0), (1, 1), 1))
    g = b.build([y])
    verify(g)
    with pytest.raises(VerificationError, match="rewritten away"):
        verify(g, rewritten=True)


def test_interpreter_checks_inputs():
    g = conv_graph()
    with pytest.raises(InputError, match="missing input 'x'"):
        interpret(g, {})
    with pytest.raises(InputError, match=r"expected f32\[1,2,5,5\]"):
        interpret(g, {"x": np.zeros((1, 2, 5, 4), np.float32)})


def test_interpreter_matches_hand_computed_conv():
    g = conv_graph()
    x = np.ones((1, 2, 5, 5), np.float32)
    (y,) = interpret(g, {"x": x})
    # all-ones 3x3x2 kernel over an all-ones map padded by one: 18 inside, 12 on edges, 8 at corners
    assert y[0, 0, 2, 2] == 18 and y[0, 0, 0, 2] == 12 and y[0, 0, 0, 0] == 8


def test_printer_shows_ops_and_types():
    text = str(conv_graph())
    assert "conv(%x, %w)" in text and "f32[1,3,5,5]" in text and "return out=" in text
