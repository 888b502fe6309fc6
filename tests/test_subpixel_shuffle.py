"""The sub-pixel conv that writes its phases interleaved (``schedules/cpu/blocked/shuffled.py``)
and where convc uses it (``convc/lower/fusion.py``, ``select_schedule``): the kernel against
the reference conv followed by the reference interleave, what it declines, which graphs get
it, and compiled transposed convs against onnxruntime with and without it."""
from __future__ import annotations

import numpy as np
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper

import convc
from convc.compiler import lower_to_ir, plan_schedules
from convc.ir import Op
from convc.ir.ops.conv import Algorithm, EpilogueStep, conv_reference
from convc.ir.ops.movement import InterleaveAttrs, _interleave_reference
from convc.analysis import activation_memory
from convc.inspect import format_table, layer_rows
from convc.lower.fusion import SHUFFLE, unstored_values
from convc.schedules.cpu.blocked.machine import Machine
from convc.schedules.cpu.blocked.shuffled import SUBPIXEL_SHUFFLE, ShuffledConfig, ShuffledConv
from convc.tune.task import extract_tasks
from tests.oracles import onnxruntime_outputs as ort_run
from tests.test_schedules_blocked_kernels import ADD, RELU, TARGET, problem

TANH = EpilogueStep(Op.TANH)


def shuffled(c, m, size, k, phases, *, pb=0, pe=0, bias=True, epilogue=(), ib=0, ob=0, g=1, s=1,
             operands=()) -> ShuffledConv:
    count = int(np.prod(phases))
    return ShuffledConv(problem(c, count * m, size, k, pb=pb, pe=pe, ib=ib, ob=ob, g=g, s=s, bias=bias,
                                epilogue=epilogue, operands=operands), tuple(phases))


def run_shuffled(sc: ShuffledConv, config: ShuffledConfig | None = None, seed: int = 0) -> None:
    """Build the kernel, run it on random data, compare with ``conv_reference`` followed by
    the reference interleave of the phases."""
    rng = np.random.default_rng(seed)
    p = sc.conv
    x = rng.standard_normal(p.in_shape, dtype=np.float32)
    w = rng.standard_normal(p.weight_shape, dtype=np.float32)
    b = rng.standard_normal(p.out_channels, dtype=np.float32) if p.has_bias else None
    build = SUBPIXEL_SHUFFLE.build(sc, config or SUBPIXEL_SHUFFLE.default_config(sc, Machine.from_target(TARGET)))
    assert build.func.attrs["tirx.is_scheduled"]
    lib = tvm.compile(tvm.IRModule({"main": build.func}), target=TARGET)
    out = tvm.runtime.tensor(np.full(sc.stored_shape, np.nan, np.float32))
    wp, bp = build.pack_weight(w, b)
    lib["main"](*[tvm.runtime.tensor(a) for a in (x, wp, *([bp] if b is not None else []))], out)
    phases = conv_reference(p.attrs, x, w, b)
    attrs = InterleaveAttrs(sc.phases, (0,) * p.ndim, sc.out_shape[2:])
    (ref,) = _interleave_reference(attrs, [phases])
    scale = np.sqrt(p.in_channels * p.taps)
    np.testing.assert_allclose(out.numpy().reshape(sc.out_shape), ref, rtol=1e-4, atol=1e-4 * scale)


CASES = [
    shuffled(24, 8, (6, 16), 1, (2, 2)),                                   # k2s2: one tap per phase
    shuffled(16, 6, (5, 32), 1, (2, 2), epilogue=(RELU,)),                 # 6 channels: tiles of 1, 2, 3, 6
    shuffled(12, 4, (7, 16), 2, (2, 2), pb=1, pe=0, epilogue=(TANH,)),     # taps and a zero border
    shuffled(8, 5, (48,), 2, (4,), pb=1, pe=0),                            # 1-D, four phases
    shuffled(6, 3, (3, 4, 8), 1, (2, 2, 2), bias=False),                   # 3-D, eight phases
]


@pytest.mark.parametrize("sc", CASES, ids=lambda sc: f"{sc.conv.in_size}x{sc.conv.kernel}/{sc.phases}")
def test_kernel_matches_conv_then_interleave(sc):
    run_shuffled(sc)


@pytest.mark.parametrize("config", [ShuffledConfig(1, 1, 8), ShuffledConfig(3, 2, 8), ShuffledConfig(6, 4, 8)])
def test_every_tile_in_the_space_is_exact(config):
    run_shuffled(CASES[1], config, seed=1)


def test_default_tile_fits_the_registers_and_divides_the_work():
    for sc in CASES:
        for machine in (Machine(lanes=16, registers=32), Machine(lanes=8, registers=16)):
            cfg = SUBPIXEL_SHUFFLE.default_config(sc, machine)
            assert sc.out_channels % cfg.oc_tile == 0 and sc.conv.out_size[-1] % (cfg.vec * cfg.vectors) == 0
            assert cfg.vec <= machine.lanes
            assert sc.phase_count * cfg.oc_tile * cfg.vectors + cfg.vectors < machine.registers


@pytest.mark.parametrize("sc, reason", [
    (shuffled(16, 8, (4, 16), 1, (2, 2), ib=8), "plain layouts"),
    (shuffled(16, 8, (4, 16), 1, (2, 2), g=2), "groups=2"),
    (shuffled(16, 8, (4, 32), 1, (2, 2), s=2), "strides"),
    (shuffled(16, 8, (4, 12), 1, (2, 2)), "no vector of 8"),
    (shuffled(16, 8, (4, 16), 1, (2, 2), epilogue=(ADD,), operands=((1, 32, 4, 16),)), "operands"),
    (ShuffledConv(problem(16, 10, (4, 16), 1, ib=0, ob=0), (2, 2)), "do not split into 4 phases"),
])
def test_declines_with_a_reason(sc, reason):
    assert reason in SUBPIXEL_SHUFFLE.decline(sc)


def conv_transpose_model(c, m, size, k, stride, *, pad=0, bias=True, output_padding=0, then=None, seed=0):
    """x -> ConvTranspose (-> ``then``: "conv" another conv reading it, "relu") -> y."""
    rng = np.random.default_rng(seed)
    n = len(size)
    inits = [numpy_helper.from_array(rng.standard_normal((c, m, *(k,) * n)).astype(np.float32) / 4, "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(m).astype(np.float32), "b"))
        inputs.append("b")
    nodes = [helper.make_node("ConvTranspose", inputs, ["t"], kernel_shape=[k] * n, strides=[stride] * n,
                              pads=[pad] * 2 * n, output_padding=[output_padding] * n)]
    if then == "conv":
        inits.append(numpy_helper.from_array(rng.standard_normal((m, m, *(3,) * n)).astype(np.float32) / 8, "w2"))
        nodes.append(helper.make_node("Conv", ["t", "w2"], ["y"], kernel_shape=[3] * n, pads=[1] * 2 * n))
    elif then == "relu":
        nodes.append(helper.make_node("Relu", ["t"], ["y"]))
    else:
        nodes[0].output[0] = "y"
    graph = helper.make_graph(nodes, "convt", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, *size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _shuffle_kernels(compiled) -> list[tuple[str, ...]]:
    return [nodes for symbol, nodes in compiled.kernels.items() if SUBPIXEL_SHUFFLE.name in symbol]


def _check_against_onnxruntime(model, compiled, seed=3):
    x = np.random.default_rng(seed).standard_normal(compiled.inputs[0].shape).astype(np.float32)
    (got,), (ref,) = compiled.run({"x": x}), ort_run(model, {"x": x})
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("c, m, size, k, stride, then", [
    (32, 16, (8, 16), 2, 2, None),          # the U-Net upsampling layer, as the model's output
    (16, 8, (8, 16), 2, 2, "relu"),         # the relu fuses into the kernel
    (16, 8, (32,), 4, 4, None),             # 1-D, four phases
    (8, 4, (4, 4, 8), 2, 2, None),          # 3-D
])
def test_model_with_the_shuffle_matches_onnxruntime(c, m, size, k, stride, then):
    model = conv_transpose_model(c, m, size, k, stride, then=then)
    compiled = convc.compile(model)
    (nodes,) = _shuffle_kernels(compiled)
    assert len(nodes) == 2  # the phase conv and its interleave: one kernel
    _check_against_onnxruntime(model, compiled)


def test_shuffle_is_marked_and_can_be_turned_off():
    model = conv_transpose_model(32, 16, (8, 16), 2, 2)
    _, decisions = plan_schedules(model)
    (decision,) = decisions
    assert decision.picked == Algorithm.SUBPIXEL_SHUFFLE.value and "fused with" in decision.note
    for options in ({"disable_passes": {SHUFFLE}}, {"schedule": "1x1"}):
        _, decisions = plan_schedules(model, **options)
        assert Algorithm.SUBPIXEL_SHUFFLE.value not in {d.picked for d in decisions}
    compiled = convc.compile(model, disable_passes={SHUFFLE})
    assert not _shuffle_kernels(compiled)
    _check_against_onnxruntime(model, compiled)


def test_inspect_counts_no_memory_for_the_phase_conv_output():
    """The shuffled conv's P*M-channel output never leaves the kernel; only the interleave is stored."""
    fused, _ = plan_schedules(conv_transpose_model(32, 16, (8, 16), 2, 2))
    conv, interleave = layer_rows(fused)
    assert conv.activation_bytes is None and interleave.activation_bytes == 4 * 16 * 16 * 32
    assert "in kernel" in format_table(fused)
    memory = activation_memory(fused, unstored_values(fused))
    assert memory.total_bytes == 4 * 32 * 8 * 16 + interleave.activation_bytes  # the input and the output


@pytest.mark.parametrize("c, m, size, k, stride, pad, output_padding, then", [
    (32, 16, (8, 16), 2, 2, 0, 0, "conv"),   # the interleave's output is blocked for the next conv
    (32, 16, (8, 16), 4, 2, 1, 0, None),     # phases with different offsets: four convs
    (32, 16, (8, 12), 2, 2, 0, 0, None),     # 12 positions: no vector of 8 divides them
])
def test_no_shuffle_where_it_does_not_apply(c, m, size, k, stride, pad, output_padding, then):
    model = conv_transpose_model(c, m, size, k, stride, pad=pad, output_padding=output_padding, then=then)
    compiled = convc.compile(model)
    assert not _shuffle_kernels(compiled)
    _check_against_onnxruntime(model, compiled)


def test_shuffled_convs_are_no_tuning_tasks():
    graph = lower_to_ir(conv_transpose_model(32, 16, (8, 16), 2, 2))
    assert extract_tasks(graph, TARGET) == []
    (task,) = extract_tasks(graph, TARGET, fusions=frozenset())
    assert task.problem.out_channels == 4 * 16
