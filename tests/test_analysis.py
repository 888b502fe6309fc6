"""FLOP, parameter and memory accounting, checked against hand-computed values."""
import numpy as np

from convc.analysis import activation_memory, node_flops, node_params
from convc.ir import ConvAttrs, GraphBuilder, Op, TensorType
from convc.ir.ops.movement import ReshapeAttrs


def test_conv_flops_and_params():
    b = GraphBuilder()
    x = b.add_input("x", TensorType((1, 64, 56, 56), "float32"))
    w = b.constant(np.zeros((64, 64, 3, 3), np.float32), "w")
    y = b.emit1(Op.CONV, [x, w], ConvAttrs((1, 1), (1, 1), (1, 1), (1, 1), 1))
    g = b.build([y])
    # 2 * (64 * 56 * 56 outputs) * (64 * 3 * 3 MACs each)
    assert node_flops(g.nodes[0]) == 2 * 64 * 56 * 56 * 64 * 9 == 231_211_008
    assert node_params(g, g.nodes[0]) == 64 * 64 * 9


def test_peak_memory_reuses_dead_buffers_and_aliases_reshapes():
    b = GraphBuilder()
    x = b.add_input("x", TensorType((1000,), "float32"))         # 4000 B
    a = b.emit1(Op.RELU, [x])                                     # 4000 B, x dies after
    r = b.emit1(Op.RESHAPE, [a], ReshapeAttrs((10, 100)))        # alias of a
    c = b.emit1(Op.SIGMOID, [r])                                  # 4000 B, a dies after
    d = b.emit1(Op.TANH, [c])                                     # 4000 B
    mem = activation_memory(b.build([d]))
    assert mem.total_bytes == 4 * 4000
    assert mem.peak_bytes == 2 * 4000  # never more than a producer and its consumer


def test_unstored_values_take_no_memory():
    b = GraphBuilder()
    x = b.add_input("x", TensorType((1000,), "float32"))         # 4000 B
    a = b.emit1(Op.RELU, [x])                                     # kept in a fused kernel
    c = b.emit1(Op.SIGMOID, [a])                                  # 4000 B
    g = b.build([c])
    stored = activation_memory(g)
    assert (stored.total_bytes, stored.peak_bytes) == (3 * 4000, 2 * 4000)
    mem = activation_memory(g, unstored={a})
    assert (mem.total_bytes, mem.peak_bytes) == (2 * 4000, 4000)  # x and c never live together
