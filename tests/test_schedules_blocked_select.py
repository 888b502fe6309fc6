"""The cost model's choices on known shapes, and what it reports for each candidate."""
from __future__ import annotations

import math

import pytest
import tvm

from convc.errors import ConvcError
from convc.ir import GraphBuilder, Op, TensorType
from convc.ir.ops.conv import ConvAttrs, EpilogueStep
from convc.schedules.cpu.blocked import CANDIDATES, ConvProblem, by_name, choose
from convc.schedules.cpu.blocked.machine import Machine, host_machine
from convc.schedules.cpu.blocked.tiled import balance, vectors
from tests.test_schedules_blocked_kernels import problem


def target(mcpu: str) -> tvm.target.Target:
    return tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": 2})


# the two x86 machines the project runs on, each with its own channel block
AVX2 = Machine.from_target(target("znver3"))
AVX512 = Machine.from_target(target("emeraldrapids"))
MACHINES = [(AVX2, 8), (AVX512, 16)]
MACHINE_IDS = ["avx2-b8", "avx512-b16"]

def known(b: int) -> list:
    """(label, problem with block ``b``, the kernels the model may pick)."""
    fc_block = b if 1000 % b == 0 else 0
    return [
        ("resnet 3x3", problem(64, 64, (56, 56), 3, ib=b, ob=b), {"winograd"}),
        ("resnet 3x3 stride 2 on 28x28", problem(256, 256, (28, 28), 3, s=2, ib=b, ob=b), {"direct"}),
        ("resnet 3x3 stride 2 on 14x14", problem(512, 512, (14, 14), 3, s=2, ib=b, ob=b), {"direct"}),
        ("resnet 1x1", problem(256, 64, (56, 56), 1, ib=b, ob=b), {"1x1"}),
        ("resnet 1x1 projection", problem(512, 1024, (28, 28), 1, s=2, ib=b, ob=b), {"1x1"}),
        ("fc head", problem(2048, 1000, (1, 1), 1, ib=b, ob=fc_block), {"1x1"}),
        ("mobilenet depthwise", problem(32, 32, (112, 112), 3, g=32, ib=b, ob=b), {"depthwise"}),
        ("resnet stem", problem(3, 64, (224, 224), 7, s=2, ib=0, ob=b), {"direct", "im2col"}),
        ("3 channels per group", problem(6, 9, (11, 13), 3, g=3, ib=0, ob=0), {"generic"}),
    ]


KNOWN = [(machine, label, p, expected) for machine, b in MACHINES for label, p, expected in known(b)]


@pytest.mark.parametrize("machine,label,p,expected", KNOWN,
                         ids=[f"{m.lanes * 32}bit-{label}" for m, label, _, _ in KNOWN])
def test_choice_on_known_shapes(machine, label, p, expected):
    kernel, config, verdicts = choose(p, machine)
    assert kernel.name in expected
    assert config == kernel.default_config(p, machine)
    assert [name for name, _ in verdicts] == [k.name for k in CANDIDATES]
    chosen = dict(verdicts)[kernel.name]
    assert all(isinstance(v, str) or v >= chosen for _, v in verdicts)
    assert verdicts == choose(p, machine)[2]  # deterministic


def test_machine_from_target():
    assert (AVX512.lanes, AVX512.registers, AVX512.cores) == (16, 32, 2)
    assert (AVX2.lanes, AVX2.registers) == (8, 16)
    assert AVX512.peak_flops_per_core == 2 * AVX2.peak_flops_per_core == 16 * 2 * 2 * AVX512.clock_hz
    sse = Machine.from_target(tvm.target.Target({"kind": "llvm", "mcpu": "x86-64"}))
    assert (sse.lanes, sse.registers, sse.cores) == (4, 16, 1)
    assert host_machine().lanes in (4, 8, 16)
    with pytest.raises(ConvcError, match="llvm target"):
        Machine.from_target(tvm.target.Target({"kind": "cuda", "arch": "sm_90"}))


def test_defaults_to_the_host_machine():
    p = problem(64, 64, (56, 56), 3)
    kernel = by_name("direct")
    assert kernel.default_config(p) == kernel.default_config(p, host_machine())
    assert kernel.estimate(p, kernel.default_config(p)) == kernel.estimate(p, kernel.default_config(p),
                                                                           host_machine())
    assert choose(p)[:2] == choose(p, host_machine())[:2]


RESNET = [(c, m, size, k, s) for c, m, size, k, s in [
    (64, 64, 56, 3, 1), (64, 256, 56, 1, 1), (256, 64, 56, 1, 1), (128, 128, 56, 3, 2), (128, 128, 28, 3, 1),
    (512, 128, 28, 1, 1), (256, 256, 14, 3, 1), (1024, 256, 14, 1, 1), (512, 512, 14, 3, 2),
    (512, 512, 7, 3, 1), (2048, 512, 7, 1, 1), (512, 2048, 7, 1, 1)]]


@pytest.mark.parametrize("machine,b", MACHINES, ids=MACHINE_IDS)
@pytest.mark.parametrize("c,m,size,k,s", RESNET)
def test_register_tiles_fit_the_machine(machine, b, c, m, size, k, s):
    """ResNet tiles: accumulators + a weight row + a broadcast fit the registers, divide the
    row or keep both FMA ports busy past their latency, and give every core enough chunks.
    (A guarded tail costs more than a few idle FMA slots: on 7x7 maps with AVX2's 16
    registers, 8 channels x 7 positions measured 70 GFLOP/s against 68 for 16 x 4.)"""
    p = problem(c, m, (size, size), k, s=s, ib=b, ob=b)
    kernel = by_name("1x1" if k == 1 else "direct")
    cfg = kernel.default_config(p, machine)
    v = vectors(cfg.oc_tile, cfg.vec_block, machine)
    assert v * cfg.reg_n + v + 2 <= machine.registers
    width = p.out_size[-1]
    assert width % cfg.reg_n == 0 or v * cfg.reg_n >= machine.fma_latency * machine.fma_ports
    assert balance(p, cfg, machine) >= 0.95


@pytest.mark.parametrize("machine,b", MACHINES, ids=MACHINE_IDS)
@pytest.mark.parametrize("c", [512, 2048])
def test_fc_head_tiles_output_channels(machine, b, c):
    """An FC on a 1x1 map is a matrix-vector product: several vector accumulators per tile
    (no single latency-bound chain) and a parallel chunk per core at least."""
    p = problem(c, 1000, (1, 1), 1, ib=b, ob=b if 1000 % b == 0 else 0)
    cfg = by_name("1x1").default_config(p, machine)
    assert cfg.reg_n == 1
    assert vectors(cfg.oc_tile, cfg.vec_block, machine) >= 4
    assert p.out_channels // cfg.oc_tile >= 4 * machine.cores
    assert math.isclose(balance(p, cfg, machine), 1.0, rel_tol=0.1)


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


@pytest.mark.parametrize("machine,b", MACHINES, ids=MACHINE_IDS)
@pytest.mark.parametrize("size", [7, 14, 28, 56, 112])
def test_im2col_patch_tiles_fill_the_row(machine, b, size):
    """A patch tile of several register tiles covers whole rows (a ragged one ran 3x slower)."""
    p = problem(2 * b, 4 * b, (size, size), 3, s=2, ib=b, ob=b)
    cfg = by_name("im2col").default_config(p, machine)
    assert cfg.row_tiles == 1 or p.out_size[-1] % (cfg.reg_n * cfg.row_tiles) == 0
