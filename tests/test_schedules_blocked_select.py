"""The cost model's choices on known shapes, and what it reports for each candidate."""
from __future__ import annotations

import pytest

from convc.ir import GraphBuilder, Op, TensorType
from convc.ir.ops.conv import ConvAttrs, EpilogueStep
from convc.schedules.cpu.blocked import CANDIDATES, ConvProblem, choose
from tests.test_schedules_blocked_kernels import problem

KNOWN = [
    ("resnet 3x3", problem(64, 64, (56, 56), 3), {"direct", "im2col"}),
    ("resnet 3x3 stride 2", problem(128, 128, (56, 56), 3, s=2), {"direct", "im2col"}),
    ("resnet 1x1", problem(256, 64, (56, 56), 1), {"1x1"}),
    ("resnet 1x1 projection", problem(512, 1024, (28, 28), 1, s=2), {"1x1"}),
    ("mobilenet depthwise", problem(32, 32, (112, 112), 3, g=32), {"depthwise"}),
    ("resnet stem", problem(3, 64, (224, 224), 7, s=2, ib=0), {"direct", "im2col"}),
    ("3 channels per group", problem(6, 9, (11, 13), 3, g=3, ib=0, ob=0), {"generic"}),
]


@pytest.mark.parametrize("label,p,expected", KNOWN, ids=[k[0] for k in KNOWN])
def test_choice_on_known_shapes(label, p, expected):
    kernel, config, verdicts = choose(p)
    assert kernel.name in expected
    assert config == kernel.default_config(p)
    assert [name for name, _ in verdicts] == [k.name for k in CANDIDATES]
    chosen = dict(verdicts)[kernel.name]
    assert all(isinstance(v, str) or v >= chosen for _, v in verdicts)


def test_declines_give_reasons():
    p = problem(64, 64, (56, 56), 3)
    verdicts = dict(choose(p)[2])
    assert "not 1x1" in verdicts["1x1"]
    assert "depthwise" in verdicts["depthwise"]
    assert isinstance(verdicts["generic"], float)


def test_from_node_reads_the_conv():
    gb = GraphBuilder()
    x = gb.add_input("x", TensorType((1, 16, 9, 9), "float32"))
    w = gb.add_input("w", TensorType((32, 8, 3, 3), "float32"))
    b = gb.add_input("b", TensorType((32,), "float32"))
    r = gb.add_input("r", TensorType((32, 1, 1), "float32"))
    attrs = ConvAttrs((2, 2), (1, 0), (1, 2), (1, 1), 2, (EpilogueStep(Op.ADD), EpilogueStep(Op.RELU)))
    (y,) = gb.emit(Op.CONV, [x, w, b, r], attrs, name="conv0")
    node = gb.nodes[-1]
    p = ConvProblem.from_node(node, 8, 8)
    assert (p.in_channels, p.out_channels, p.groups, p.kernel) == (16, 32, 2, (3, 3))
    assert p.has_bias and p.operand_shapes == ((32, 1, 1),) and p.out_shape == y.shape
    assert p.flops == 2 * 32 * y.shape[2] * y.shape[3] * 8 * 9
