"""The sub-pixel interleave compiled, plain and in the blocked layout, against the interpreter."""
import numpy as np
import pytest

from tvm import te, tirx

from convc.ir import ConvAttrs, GraphBuilder, Op, TensorType
from convc.ir.ops.movement import InterleaveAttrs
from convc.layout import PLAIN, input_layouts, plan_layouts
from convc.lower.layout import logical_view, stored_placeholder
from convc.lower.registry import Tables, lowering_of
from convc.schedules.cpu import ScheduleContext
from convc.schedules.cpu.interleave import interleave_phases, interleave_unblocked
from convc.target import channel_block
from lower_check import TARGET, check

BLOCK = channel_block(TARGET)


@pytest.mark.parametrize("strides, starts, q, out, phases_as_inputs", [
    ((2, 2), (0, 0), (3, 4), (6, 8), True),
    ((2, 2), (1, 0), (3, 4), (5, 7), False),
    ((4,), (2,), (5,), (17,), True),
    ((2, 1, 3), (1, 0, 2), (2, 3, 2), (3, 3, 4), False),
])
def test_interleave_of_plain_inputs(strides, starts, q, out, phases_as_inputs):
    b = GraphBuilder("interleave")
    phases, m = int(np.prod(strides)), 3
    shapes = [(2, m, *q)] * phases if phases_as_inputs else [(2, phases * m, *q)]
    xs = [b.add_input(f"x{i}", TensorType(s, "float32")) for i, s in enumerate(shapes)]
    y = b.emit1(Op.INTERLEAVE, xs, InterleaveAttrs(strides, starts, out))
    check(b.build([y]))


@pytest.mark.skipif(not BLOCK, reason="the host target has no blocked layout")
@pytest.mark.parametrize("strides, starts, q, out, phases_as_inputs", [
    ((2, 2), (1, 1), (4, 4), (7, 7), True),      # a crop: the generic schedule
    ((2, 2), (0, 0), (4, 5), (8, 10), True),     # phases unrolled (interleave_phases)
    ((2, 2), (2, 0), (4, 3), (6, 6), False),     # one input holding every phase, cropped by a stride
    ((4,), (0,), (5,), (20,), True),
])
def test_interleave_stays_blocked_between_convs(strides, starts, q, out, phases_as_inputs):
    rng = np.random.default_rng(0)
    b = GraphBuilder("blocked")
    ndim, count = len(strides), int(np.prod(strides))
    x = b.add_input("x", TensorType((1, BLOCK, *q), "float32"))
    attrs = ConvAttrs((1,) * ndim, (0,) * ndim, (0,) * ndim, (1,) * ndim, 1)
    shapes = [(BLOCK, BLOCK)] * count if phases_as_inputs else [(count * BLOCK, BLOCK)]
    phases = [b.emit1(Op.CONV, [x, b.constant(rng.standard_normal((*s, *(1,) * ndim)).astype(np.float32), "w")],
                      attrs) for s in shapes]
    y = b.emit1(Op.INTERLEAVE, phases, InterleaveAttrs(strides, starts, out))
    z = b.emit1(Op.CONV, [y, b.constant(rng.standard_normal((BLOCK, BLOCK, *(3,) * ndim)).astype(np.float32), "w2")],
                ConvAttrs((1,) * ndim, (1,) * ndim, (1,) * ndim, (1,) * ndim, 1))
    graph = b.build([z])
    assert plan_layouts(graph, BLOCK)[y] == BLOCK
    check(graph, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not BLOCK, reason="the host target has no blocked layout")
@pytest.mark.parametrize("strides, starts, q, out, phases_as_inputs, tiled", [
    ((2, 2), (0, 0), (4, 5), (8, 10), True, True),       # tiles of the unblocking interleave
    ((2, 2), (0, 0), (3, 16), (6, 32), False, True),     # one input holding every phase
    ((2, 2), (1, 1), (4, 4), (7, 7), True, False),       # a crop: the generic schedule
    ((3, 2), (0, 2), (2, 5), (6, 8), False, True),
    ((4,), (0,), (5,), (20,), True, True),
    ((2, 1, 2), (0, 0, 0), (2, 3, 4), (4, 3, 8), True, True),
])
def test_interleave_writing_the_graph_output_reads_blocked_phases(strides, starts, q, out, phases_as_inputs,
                                                                 tiled):
    """An interleave whose result only leaves the graph reads its blocked phases and writes the
    plain output itself: no separate blocked -> plain transform is compiled."""
    rng = np.random.default_rng(3)
    b = GraphBuilder("unblocking")
    ndim, count = len(strides), int(np.prod(strides))
    x = b.add_input("x", TensorType((2, BLOCK, *q), "float32"))
    attrs = ConvAttrs((1,) * ndim, (0,) * ndim, (0,) * ndim, (1,) * ndim, 1)
    shapes = [(2 * BLOCK, BLOCK)] * count if phases_as_inputs else [(count * 2 * BLOCK, BLOCK)]
    phases = [b.emit1(Op.CONV, [x, b.constant(rng.standard_normal((*s, *(1,) * ndim)).astype(np.float32), "w")],
                      attrs) for s in shapes]
    y = b.emit1(Op.INTERLEAVE, phases, InterleaveAttrs(strides, starts, out))
    graph = b.build([y])
    layouts = plan_layouts(graph, BLOCK)
    assert layouts[y] == PLAIN and all(layouts[p] == BLOCK for p in phases)
    assert input_layouts(graph, graph.nodes[-1], layouts) == [BLOCK] * len(phases)
    model = check(graph, rtol=1e-4, atol=1e-4)
    assert not any(symbol.startswith(f"layout_{BLOCK}_to_0") for symbol in model.kernels)
    func = _unscheduled_kernel(graph.nodes[-1], layouts)
    sch = interleave_unblocked(func, ScheduleContext(Op.INTERLEAVE, graph.nodes[-1].attrs, "float32"))
    assert (sch is not None) == tiled


def _unscheduled_kernel(node, layouts):
    """The PrimFunc the module builder schedules for ``node``: stored inputs in their layouts."""
    stored = [stored_placeholder(v.shape, v.dtype, layouts[v], f"in{i}") for i, v in enumerate(node.inputs)]
    views = [logical_view(t, v.shape, layouts[v]) for t, v in zip(stored, node.inputs)]
    out = lowering_of(node.op)(node, views, Tables())
    return te.create_prim_func([*stored, out])


@pytest.mark.skipif(not BLOCK, reason="the host target has no blocked layout")
@pytest.mark.parametrize("starts, out, applies", [((0, 0), (8, 8), True), ((1, 1), (7, 7), False)])
def test_phase_loops_replace_the_division_when_the_crop_is_whole_rows(starts, out, applies):
    phases = [te.placeholder((1, 1, 4, 4, BLOCK), name=f"p{i}") for i in range(4)]
    node_attrs = InterleaveAttrs((2, 2), starts, out)

    def element(n, c, h, w, ci):
        rows, phase = ((h + starts[0]) // 2, (w + starts[1]) // 2), ((h + starts[0]) % 2) * 2 + (w + starts[1]) % 2
        value = phases[0][n, c, rows[0], rows[1], ci]
        for k in range(1, 4):
            value = tirx.Select(phase == k, phases[k][n, c, rows[0], rows[1], ci], value)
        return value
    y = te.compute((1, 1, *out, BLOCK), element, name="interleave")
    func = te.create_prim_func([*phases, y])
    sch = interleave_phases(func, ScheduleContext(Op.INTERLEAVE, node_attrs, "float32"))
    assert (sch is not None) == applies
    if applies:
        text = sch.mod["main"].script()
        assert "T.unroll(2)" in text and "T.vectorized" in text


@pytest.mark.skipif(not BLOCK, reason="the host target has no blocked layout")
@pytest.mark.parametrize("spatial", [(5, 14), (9,), (3, 4, 6), (7, 1)])
def test_blocked_values_read_plain_by_the_graph_output(spatial):
    """A conv's blocked output leaves through the tiled blocked -> plain transform."""
    rng = np.random.default_rng(1)
    b = GraphBuilder("unblock")
    x = b.add_input("x", TensorType((2, 3, *spatial), "float32"))
    w = b.constant(rng.standard_normal((2 * BLOCK, 3, *(1,) * len(spatial))).astype(np.float32), "w")
    n = len(spatial)
    y = b.emit1(Op.CONV, [x, w], ConvAttrs((1,) * n, (0,) * n, (0,) * n, (1,) * n, 1))
    graph = b.build([y])
    assert plan_layouts(graph, BLOCK)[y] == BLOCK
    check(graph, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not BLOCK, reason="the host target has no blocked layout")
@pytest.mark.parametrize("op, ceil, include_pad", [(Op.MAX_POOL, False, False), (Op.AVG_POOL, True, True),
                                                   (Op.AVG_POOL, True, False), (Op.REDUCE_MEAN, False, False)])
def test_reductions_on_blocked_values_compute_in_blocked_order(op, ceil, include_pad):
    """Pools and spatial reductions between blocked convs (their result is computed in
    (n, c/b, *s, c%b) order) match the interpreter."""
    from convc.ir.ops.pool import PoolAttrs, ReduceAttrs
    rng = np.random.default_rng(2)
    b = GraphBuilder("pools")
    x = b.add_input("x", TensorType((2, 3, 11, 10), "float32"))
    conv = ConvAttrs((1, 1), (0, 0), (0, 0), (1, 1), 1)
    y = b.emit1(Op.CONV, [x, b.constant(rng.standard_normal((BLOCK, 3, 1, 1)).astype(np.float32), "w")], conv)
    attrs = (ReduceAttrs((2, 3), True) if op is Op.REDUCE_MEAN
             else PoolAttrs((3, 3), (2, 2), (1, 1), (1, 0), (1, 1), ceil, include_pad))
    p = b.emit1(op, [y], attrs)
    z = b.emit1(Op.CONV, [p, b.constant(rng.standard_normal((BLOCK, BLOCK, 1, 1)).astype(np.float32), "w2")],
                conv)
    graph = b.build([z])
    assert plan_layouts(graph, BLOCK)[p] == BLOCK
    check(graph, rtol=1e-4, atol=1e-4)
