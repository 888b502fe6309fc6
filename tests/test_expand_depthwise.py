"""The fused expansion + depthwise kernel (``schedules/cpu/blocked/expand_depthwise.py``) and
where convc uses it (``convc/lower/fusion.py``, ``select_schedule``): the kernel against the
two reference convs in a row, what it declines, which graphs get it, and a compiled model
against onnxruntime."""
from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper

import convc
from convc.compiler import plan_schedules
from convc.ir.ops.conv import Algorithm, conv_reference
from convc.analysis import activation_memory
from convc.inspect import format_table, layer_rows
from convc.lower.fusion import FUSION, unstored_values
from convc.schedules.cpu.blocked import pack, unpack
from convc.schedules.cpu.blocked.expand_depthwise import (EXPAND_DEPTHWISE, ExpandDepthwiseConfig, FusedPair)
from convc.schedules.cpu.blocked.machine import Machine
from tests.oracles import onnxruntime_outputs as ort_run
from tests.test_schedules_blocked_kernels import ADD, CLIP6, RELU, TARGET, problem

B = 16


def pair(cin, ce, size, k=3, *, s=1, pb=None, pe=None, d=1, ib=B, batch=1, e_bias=True, e_epilogue=(CLIP6,),
         d_bias=True, d_epilogue=(CLIP6,)) -> FusedPair:
    expand = problem(cin, ce, size, 1, pb=0, ib=ib, ob=B, bias=e_bias, epilogue=e_epilogue, batch=batch)
    depthwise = problem(ce, ce, size, k, g=ce, s=s, pb=pb, pe=pe, d=d, ib=B, ob=B, bias=d_bias,
                        epilogue=d_epilogue, batch=batch)
    return FusedPair(expand, depthwise)


def run_pair(p: FusedPair, config: ExpandDepthwiseConfig, seed: int = 0) -> None:
    """Build the fused kernel, run it on packed random data, compare with the two convs of
    ``conv_reference`` one after the other."""
    rng = np.random.default_rng(seed)
    e, d = p.expand, p.depthwise
    x = rng.standard_normal(e.in_shape, dtype=np.float32)
    w_e = rng.standard_normal(e.weight_shape, dtype=np.float32)
    w_d = rng.standard_normal(d.weight_shape, dtype=np.float32)
    b_e = rng.standard_normal(e.out_channels, dtype=np.float32) if e.has_bias else None
    b_d = rng.standard_normal(d.out_channels, dtype=np.float32) if d.has_bias else None
    build = EXPAND_DEPTHWISE.build(p, config)
    assert build.func.attrs["tirx.is_scheduled"]
    lib = tvm.compile(tvm.IRModule({"main": build.func}), target=TARGET)
    out = tvm.runtime.tensor(np.full((d.batch, d.out_channels // B, *d.out_size, B), np.nan, np.float32))
    args = [pack(x, e.in_block), *build.pack_weight(w_e, b_e, w_d, b_d)]
    lib["main"](*[tvm.runtime.tensor(a) for a in args], out)
    ref = conv_reference(d.attrs, conv_reference(e.attrs, x, w_e, b_e), w_d, b_d)
    scale = np.sqrt(e.in_channels * d.taps)
    np.testing.assert_allclose(unpack(out.numpy(), B), ref, rtol=1e-4, atol=1e-4 * scale)


PAIRS = [
    pair(B, 6 * B, (12, 14)),                                          # MobileNet-like, stride 1
    pair(B, 6 * B, (13, 11), s=2),                                     # stride 2, odd sizes
    pair(24, 3 * B, (9, 10), ib=0),                                    # plain input (24 channels)
    pair(2 * B, 4 * B, (8, 9), 5, pb=(2, 1), pe=(1, 2), batch=2),      # 5x5, asymmetric pads, batch
    pair(B, 2 * B, (10, 10), 3, d=2, e_bias=False, d_bias=False),       # dilation, no biases
    pair(B, 3 * B, (7, 8), 3, pb=0, e_epilogue=(RELU,), d_epilogue=()),  # no padding, other epilogues
]


@pytest.mark.parametrize("index", range(len(PAIRS)))
def test_default_config_matches_reference(index):
    p = PAIRS[index]
    run_pair(p, EXPAND_DEPTHWISE.default_config(p, Machine(lanes=16, registers=32)))


@pytest.mark.parametrize("config", [
    ExpandDepthwiseConfig(band_rows=5, reg_e=5, reg_d=3, channel_blocks=1),   # bands and tiles with tails
    ExpandDepthwiseConfig(band_rows=2, reg_e=14, reg_d=1, channel_blocks=2),
    ExpandDepthwiseConfig(band_rows=7, reg_e=4, reg_d=7, channel_blocks=3),
    ExpandDepthwiseConfig(band_rows=12, reg_e=7, reg_d=4, channel_blocks=6),  # one band, all blocks
])
def test_any_config_matches_reference(config):
    run_pair(PAIRS[0], config)
    run_pair(PAIRS[1], config, seed=1)


def test_default_config_divides_and_fits():
    p = pair(B, 6 * B, (112, 112), s=2)
    machine = Machine(lanes=16, registers=32)
    config = EXPAND_DEPTHWISE.default_config(p, machine)
    assert p.depthwise.out_size[0] % config.band_rows == 0
    assert (p.expand.out_channels // B) % config.channel_blocks == 0
    assert config.channel_blocks * (config.reg_e + 1) + 2 <= machine.registers
    chunks = (p.expand.out_channels // B // config.channel_blocks) * (p.depthwise.out_size[0] // config.band_rows)
    assert chunks >= 4 * machine.cores


@pytest.mark.parametrize("change, reason", [
    (lambda p: dataclasses.replace(p, depthwise=dataclasses.replace(
        p.depthwise, epilogue=(ADD,), operand_shapes=((1, 6 * B, 12, 14),))), "operands"),
    (lambda p: dataclasses.replace(p, expand=dataclasses.replace(p.expand, strides=(2, 2))), "strided"),
    (lambda p: dataclasses.replace(p, expand=dataclasses.replace(p.expand, kernel=(3, 3), pads_begin=(1, 1),
                                                                 pads_end=(1, 1))), "not 1x1"),
    (lambda p: dataclasses.replace(p, expand=dataclasses.replace(p.expand, out_block=0),
                                   depthwise=dataclasses.replace(p.depthwise, in_block=0, out_block=0)), "blocked"),
    (lambda p: dataclasses.replace(p, depthwise=dataclasses.replace(p.depthwise, in_size=(12, 12))),
     "does not read"),
])
def test_declines(change, reason):
    assert EXPAND_DEPTHWISE.decline(PAIRS[0]) is None
    assert reason in EXPAND_DEPTHWISE.decline(change(PAIRS[0]))


# -- in a model -----------------------------------------------------------------------

def inverted_residual(cin: int = B, ce: int = 6 * B, size: int = 56, stride: int = 2, extra_reader: bool = False,
                      seed: int = 0) -> onnx.ModelProto:
    """Expansion (1x1 + Clip 0..6), depthwise 3x3 (+ Clip), projection 1x1: a MobileNetV2 block."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)
             for name, shape in (("we", (ce, cin, 1, 1)), ("be", (ce,)), ("wd", (ce, 1, 3, 3)), ("bd", (ce,)),
                                 ("wp", (cin, ce, 1, 1)))]
    inits += [numpy_helper.from_array(np.float32(v), n) for n, v in (("lo", 0.0), ("hi", 6.0))]
    nodes = [helper.make_node("Conv", ["x", "we", "be"], ["e"], name="expand"),
             helper.make_node("Clip", ["e", "lo", "hi"], ["e6"]),
             helper.make_node("Conv", ["e6", "wd", "bd"], ["dw"], name="dw", group=ce, pads=[1, 1, 1, 1],
                              strides=[stride, stride]),
             helper.make_node("Clip", ["dw", "lo", "hi"], ["dw6"]),
             helper.make_node("Conv", ["dw6", "wp"], ["y"], name="project")]
    out = -(-size // stride)
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cin, out, out])]
    if extra_reader:  # the expansion's output also leaves the graph: it must be written
        outputs.append(helper.make_tensor_value_info("e6", TensorProto.FLOAT, [1, ce, size, size]))
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                             [1, cin, size, size])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _fused_kernels(model) -> list[tuple[str, ...]]:
    return [nodes for symbol, nodes in model.kernels.items() if "expand_depthwise" in symbol]


@pytest.mark.parametrize("stride", [1, 2])
def test_model_with_fusion_matches_onnxruntime(stride):
    model = inverted_residual(stride=stride)
    compiled = convc.compile(model)
    assert len(_fused_kernels(compiled)) == 1
    x = np.random.default_rng(1).standard_normal((1, B, 56, 56)).astype(np.float32)
    (got,), (ref,) = compiled.run({"x": x}), ort_run(model, {"x": x})
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_fusion_is_marked_and_explained():
    _, decisions = plan_schedules(inverted_residual())
    picked = {d.source: d for d in decisions}
    assert picked["expand"].picked == picked["dw"].picked == Algorithm.EXPAND_DEPTHWISE.value
    assert "fused with" in picked["dw"].note and picked["project"].picked == "1x1"


def test_inspect_counts_no_memory_for_the_wide_tensor():
    """The expansion's output lives in the fused kernel's band buffer: no activation memory."""
    model = inverted_residual()
    fused, _ = plan_schedules(model)
    apart, _ = plan_schedules(model, disable_passes={FUSION})
    expanded = next(r for r in layer_rows(fused) if r.source.endswith("'expand'"))
    assert expanded.activation_bytes is None and "in kernel" in format_table(fused)
    wide = 4 * 6 * B * 56 * 56
    assert activation_memory(apart).total_bytes - activation_memory(fused, unstored_values(fused)).total_bytes == wide


@pytest.mark.parametrize("options", [
    {"disable_passes": {FUSION}},
    {"schedule": "dw=depthwise"},        # a kernel asked for by name is that kernel
    {"schedule": "expand=im2col"},
])
def test_fusion_can_be_turned_off(options):
    _, decisions = plan_schedules(inverted_residual(), **options)
    assert Algorithm.EXPAND_DEPTHWISE.value not in {d.picked for d in decisions}


def test_no_fusion_when_the_wide_tensor_is_read_elsewhere():
    model = inverted_residual(extra_reader=True)
    compiled = convc.compile(model)
    assert not _fused_kernels(compiled)
    x = np.random.default_rng(2).standard_normal((1, B, 56, 56)).astype(np.float32)
    for got, ref in zip(compiled.run({"x": x}), ort_run(model, {"x": x})):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_unknown_disabled_step_names_the_choices():
    with pytest.raises(convc.ConvcError, match="fuse_expand_depthwise"):
        convc.compile(inverted_residual(size=8), disable_passes={"fuse_everything"})


def test_one_row_bands_only_at_stride_above_one():
    run_pair(PAIRS[1], ExpandDepthwiseConfig(band_rows=1, reg_e=11, reg_d=7, channel_blocks=2))  # stride 2
    with pytest.raises(ValueError, match="need 2 rows"):
        EXPAND_DEPTHWISE.build(PAIRS[0], ExpandDepthwiseConfig(band_rows=1, reg_e=7, reg_d=7, channel_blocks=1))
    assert "output row" in EXPAND_DEPTHWISE.decline(pair(B, 2 * B, (1, 9), 3, pb=(1, 1), pe=(1, 1), ib=B))
