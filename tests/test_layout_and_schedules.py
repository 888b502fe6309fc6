"""The graph's layout plan, kernel selection and its overrides, end to end through compile."""
import numpy as np
import pytest

import convc
from convc import zoo
from convc.compiler import lower_to_ir, plan_schedules
from convc.errors import ConvcError
from convc.ir import ConvAttrs, GraphBuilder, Op, TensorType
from convc.ir.ops.normalization import SoftmaxAttrs
from convc.ir.ops.movement import ConcatAttrs
from convc.layout import PLAIN, block_of, conv_layouts, plan_layouts
from convc.lower.compiler import signature_of
from convc.lower.fusion import FUSION
from convc.lower.module import ModuleBuilder
from convc.target import channel_block, resolve_target
from lower_check import check
from convc.passes.select_schedule import ScheduleRequest
from oracles import onnxruntime_outputs, relative_l2


def test_resnet_activations_stay_blocked_from_stem_to_head():
    graph = lower_to_ir(zoo.build("resnet_small"))
    layouts = plan_layouts(graph, 8)
    assert all(layouts[v] == PLAIN for v in graph.inputs)
    body = [n for n in graph.nodes if n.op in (Op.CONV, Op.MAX_POOL, Op.REDUCE_MEAN) and n.output.shape[1] % 8 == 0]
    assert body and all(layouts[n.output] == 8 for n in body)
    assert layouts[graph.outputs[0]] == PLAIN


def test_block_zero_means_plain_everywhere():
    graph = lower_to_ir(zoo.build("resnet_small"))
    assert set(plan_layouts(graph, 0).values()) == {PLAIN}


def test_ops_outside_the_conv_world_read_plain_values():
    b = GraphBuilder()
    x = b.add_input("x", TensorType((1, 8, 4, 4), "float32"))
    w = b.constant(np.ones((8, 8, 1, 1), np.float32), "w")
    y = b.emit1(Op.CONV, [x, w], ConvAttrs((1, 1), (0, 0), (0, 0), (1, 1), 1))
    s = b.emit1(Op.SOFTMAX, [y], SoftmaxAttrs(1))
    layouts = plan_layouts(b.build([s]), 8)
    assert layouts[y] == 8 and layouts[s] == PLAIN


@pytest.mark.parametrize("shape, block, stored", [
    ((1, 32, 4, 4), 16, 16),
    ((1, 24, 4, 4), 16, 8),    # half a 16-lane block
    ((1, 40, 4), 16, 8),
    ((1, 24, 4, 4), 8, 8),
    ((1, 12, 4, 4), 16, PLAIN),  # no block of 8 or more divides 12
    ((1, 12, 4, 4), 8, PLAIN),   # half of 8 is below the narrowest block
    ((1, 32, 4, 4), 0, PLAIN),   # blocking disabled
    ((1, 32), 16, PLAIN),        # no spatial axes
])
def test_block_of_a_value(shape, block, stored):
    b = GraphBuilder()
    assert block_of(b.add_input("x", TensorType(shape, "float32")), block) == stored


def test_values_of_half_block_channels_stay_blocked_and_mix_correctly():
    """24-channel values are stored in blocks of 8 beside 32-channel ones in blocks of 16; a
    concat of inputs in different blocks falls back to plain; the whole graph still computes
    what the interpreter does."""
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    x = b.add_input("x", TensorType((1, 32, 6, 6), "float32"))
    conv = ConvAttrs((1, 1), (1, 1), (1, 1), (1, 1), 1)
    weight = lambda o, i, name: b.constant((rng.standard_normal((o, i, 3, 3)) / (3 * i ** 0.5)).astype(np.float32), name)
    narrow = b.emit1(Op.CONV, [x, weight(24, 32, "w1")], conv)
    again = b.emit1(Op.CONV, [narrow, weight(24, 24, "w2")], conv)
    residual = b.emit1(Op.ADD, [again, narrow])
    mixed = b.emit1(Op.CONCAT, [x, residual], ConcatAttrs(1))       # 32 (block 16) + 24 (block 8)
    same = b.emit1(Op.CONCAT, [residual, narrow], ConcatAttrs(1))   # 48 channels from two blocks of 8
    out = b.emit1(Op.CONV, [mixed, weight(16, 56, "w3")], conv)
    graph = b.build([out, same])
    layouts = plan_layouts(graph, 16)
    assert (layouts[narrow], layouts[again], layouts[residual]) == (8, 8, 8)
    assert layouts[mixed] == PLAIN and layouts[same] == PLAIN and layouts[out] == 16
    check(graph, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel, groups, channels, blocks_out, blocked_read", [
    (1, 1, 32, 4, True),    # pointwise: reads a blocked copy of the plain input
    (1, 1, 32, 1, False),   # ... unless it has few output channels
    (3, 1, 32, 4, True),    # a conv with taps reads a blocked copy too
    (3, 1, 32, 1, True),    # ... whatever its output channels
    (1, 2, 32, 4, False),   # grouped
    (1, 1, 12, 4, False),   # the channels fill no whole block
])
def test_convs_read_plain_inputs_through_one_blocked_copy(kernel, groups, channels, blocks_out, blocked_read):
    target = resolve_target("llvm")
    block = channel_block(target)
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    x = b.add_input("x", TensorType((1, channels, 6, 5), "float32"))
    attrs = ConvAttrs((1, 1), (0, 0), (0, 0), (1, 1), groups)
    outs = [b.emit1(Op.CONV, [x, b.constant(rng.standard_normal((blocks_out * block, channels // groups, kernel, kernel))
                                            .astype(np.float32), f"w{i}")], attrs) for i in range(2)]
    graph = b.build(outs)
    layouts = plan_layouts(graph, block)
    for node in graph.nodes:
        assert conv_layouts(node, layouts, block) == ((block if blocked_read else PLAIN), block)
    builder = ModuleBuilder(graph, target, block)
    builder.build(signature_of(graph, target))
    copies = [s for s in builder.symbols if s.startswith(f"layout_0_to_{block}")]
    assert len(copies) == (1 if blocked_read else 0)  # one copy, shared by both convs
    check(graph, rtol=1e-4, atol=1e-4)


def test_cost_model_picks_per_shape():
    _, decisions = plan_schedules(zoo.build("mobilenet_small"), disable_passes={FUSION})
    picked = {d.picked for d in decisions}
    assert "depthwise" in picked and "1x1" in picked
    _, fused = plan_schedules(zoo.build("mobilenet_small"))  # its expansions and depthwise convs in one kernel
    assert "expand_depthwise" in {d.picked for d in fused}


@pytest.mark.parametrize("spec", ["im2col", "direct", "generic"])
def test_global_override_is_honoured_where_it_applies_and_still_correct(spec):
    model = zoo.build("resnet_small")
    graph, decisions = plan_schedules(model, schedule=spec)
    for d in decisions:
        applies = dict(d.verdicts)[spec]
        assert (d.picked == spec) == isinstance(applies, float), d
    inputs = zoo.random_inputs(model, seed=4)
    (want,) = onnxruntime_outputs(model, inputs)
    (got,) = convc.compile(model, schedule=spec).run(inputs)
    assert relative_l2(got, want) <= 1e-4


def test_per_layer_override_by_onnx_name():
    graph, decisions = plan_schedules(zoo.build("resnet_small"), schedule="stem.conv=im2col")
    by_source = {d.source: d for d in decisions}
    assert by_source["stem.conv"].picked == "im2col" and by_source["stem.conv"].note == "requested"


def test_override_that_does_not_apply_is_reported():
    _, decisions = plan_schedules(zoo.build("resnet_small"), schedule="depthwise")
    assert decisions and all(d.picked != "depthwise" and "does not apply" in d.note for d in decisions)


@pytest.mark.parametrize("spec", ["fft", "conv1=fft"])
def test_unknown_schedule_is_a_clear_error(spec):
    with pytest.raises(ConvcError, match="unknown schedule"):
        ScheduleRequest.parse(spec)


def test_every_kernel_candidate_is_an_algorithm_choice():
    from convc.ir.ops.conv import Algorithm
    from convc.schedules.cpu.blocked import CANDIDATES
    assert {k.name for k in CANDIDATES} <= {a.value for a in Algorithm}
