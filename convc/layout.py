"""The graph's channel layout: which activations live in the blocked NCHW[c] layout.

The CPU backend stores a 4-D/5-D/3-D activation ``(N, C, *S)`` either plainly or blocked
as ``(N, C/b, *S, b)`` with ``b`` the SIMD width, so that conv kernels read and write
whole vectors of channels; a tensor whose channels that width does not divide takes half
of it where that divides them and is at least 8 lanes (``block_of``). A conv whose output
channels fill such blocks writes the blocked layout; ops that work per channel and
position (activations, residual adds, pools, spatial reductions, channel concats,
spatial resizes, pads and slices, sub-pixel interleaves) keep their input's layout; every other op reads plain
tensors. So blocked values flow from conv to conv, and the only layout transforms sit
where the network leaves the conv world (the input before the stem conv is read plain
by the conv itself; the head's reshape or the graph outputs read plain copies).
"""
from __future__ import annotations

from typing import Callable

from convc.ir import Graph, Node, Op, Value
from convc.ir.ops.conv import split_conv_inputs
from convc.ir.ops.elementwise import BINARY, COMPARISONS, LOGICAL, UNARY

PLAIN = 0

Layouts = dict[Value, int]


# the narrowest channel block a value is stored in when the target's block does not divide
# its channels (half of an AVX-512 register: 8 lanes)
MIN_BLOCK = 8


def block_of(value: Value, block: int) -> int:
    """The channel block ``value`` is stored in when blocked: the target's ``block`` where it
    divides the channels, else the largest smaller power of two of at least ``MIN_BLOCK`` that
    does, else 0 (plain). Half-block tensors (MobileNetV2's 24 channels with 16-lane vectors)
    use vectors of half width, still better than a plain tensor, which the next conv reads
    one scalar per channel plane at a time."""
    if value.type.rank < 3 or value.dtype != "float32":
        return PLAIN
    b = block
    while b and value.shape[1] % b:
        b = b // 2 if b // 2 >= MIN_BLOCK else PLAIN
    return b


def _operands_follow(graph: Graph, node: Node, layouts: Layouts, block: int, inputs) -> bool:
    """Every non-constant input has the output's shape and is blocked; constants may broadcast."""
    out = node.output
    for value in inputs:
        if graph.is_constant(value):
            continue
        if value.shape != out.shape or layouts.get(value, PLAIN) != block:
            return False
    return True


def _conv(graph: Graph, node: Node, layouts: Layouts, block: int) -> int:
    _, operands = split_conv_inputs(node.attrs, node.inputs)
    if any(not graph.is_constant(v) and v.shape != node.output.shape for v in operands):
        return PLAIN
    return block_of(node.output, block)


def _elementwise(graph: Graph, node: Node, layouts: Layouts, block: int) -> int:
    block = block_of(node.output, block)
    return block if block and _operands_follow(graph, node, layouts, block, node.inputs) else PLAIN


def _first_input(graph: Graph, node: Node, layouts: Layouts, block: int) -> int:
    have = layouts.get(node.inputs[0], PLAIN)
    return have if have and have == block_of(node.output, block) else PLAIN


def _spatial_reduce(graph: Graph, node: Node, layouts: Layouts, block: int) -> int:
    if node.attrs.keepdims and min(node.attrs.axes) >= 2:
        return _first_input(graph, node, layouts, block)
    return PLAIN


def _concat(graph: Graph, node: Node, layouts: Layouts, block: int) -> int:
    block = block_of(node.output, block) if node.attrs.axis == 1 else PLAIN
    return block if block and all(layouts.get(v, PLAIN) == block for v in node.inputs) else PLAIN


def _spatial_resize(graph: Graph, node: Node, layouts: Layouts, block: int) -> int:
    same = node.output.shape[:2] == node.inputs[0].shape[:2]
    return _first_input(graph, node, layouts, block) if same else PLAIN


def _spatial_pad(graph: Graph, node: Node, layouts: Layouts, block: int) -> int:
    a = node.attrs
    if any(a.pads_begin[:2]) or any(a.pads_end[:2]):
        return PLAIN
    return _first_input(graph, node, layouts, block)


def _interleave(graph: Graph, node: Node, layouts: Layouts, block: int) -> int:
    """Blocked phases interleave into a blocked output when the output's channels fill whole
    blocks (then every phase's channel range starts on a block boundary)."""
    block = block_of(node.output, block)
    return block if block and all(layouts.get(v, PLAIN) == block for v in node.inputs) else PLAIN


def _spatial_slice(graph: Graph, node: Node, layouts: Layouts, block: int) -> int:
    a, x = node.attrs, node.inputs[0]
    whole = all(a.starts[i] == 0 and a.steps[i] == 1 and a.ends[i] == x.shape[i] for i in (0, 1))
    return _first_input(graph, node, layouts, block) if whole else PLAIN


Rule = Callable[[Graph, Node, Layouts, int], int]
ELEMENTWISE_OPS = (set(UNARY) | set(BINARY)) - set(COMPARISONS) - set(LOGICAL) - {Op.CAST}
RULES: dict[Op, Rule] = {
    Op.CONV: _conv,
    **{op: _elementwise for op in ELEMENTWISE_OPS},
    Op.MAX_POOL: _first_input,
    Op.AVG_POOL: _first_input,
    **{op: _spatial_reduce for op in (Op.REDUCE_MEAN, Op.REDUCE_MAX, Op.REDUCE_MIN, Op.REDUCE_SUM)},
    Op.CONCAT: _concat,
    Op.RESIZE: _spatial_resize,
    Op.PAD: _spatial_pad,
    Op.INTERLEAVE: _interleave,
    Op.SLICE: _spatial_slice,
}


POINTWISE_COPY_CHANNELS = 4  # output channels, in channel blocks, from which a pointwise conv
                             # reads a plain input through a blocked copy (see conv_layouts)


def conv_layouts(node: Node, layouts: Layouts, block: int) -> tuple[int, int]:
    """The (input, output) layouts of a conv's kernel. The input is read in the layout it
    has, except that a plain, blockable input is read through a blocked copy (made once per
    value, shared by all its readers, e.g. the phases of a sub-pixel conv) by every ungrouped
    conv with taps, and by a pointwise conv with enough output channels. Kernels reading a
    plain input fetch one scalar per channel plane per step (and the ``narrow`` and
    ``winograd`` kernels need a blocked one), which costs more than the copy: 3x3/2
    256 -> 256 over 28x28: 1.71 ms plain vs 1.47 + 0.07 ms blocked; the four 2x2 phases of a
    4x4/2 transposed conv 256 -> 128 over 16x16: 4 x 0.455 vs 4 x 0.41 + 0.02 ms; pointwise
    128 -> 256 over 32x32: 524 us plain vs 399 + 31 us blocked. A pointwise conv with few
    output channels reads the input once or twice and is better off plain (64 -> 32 over
    28x28: 36 us plain vs 39 us blocked); all measured on 1 thread."""
    x, w = node.inputs[0], node.inputs[1]
    have = layouts.get(x, PLAIN)
    pointwise = all(k == 1 for k in w.shape[2:])
    copy = block_of(x, block)
    wide = w.shape[0] >= POINTWISE_COPY_CHANNELS * block
    if have == PLAIN and copy and (wide or not pointwise) and node.attrs.groups == 1:
        have = copy
    return have, layouts[node.output]


# Ops that can read blocked inputs while writing a plain output: where their result only
# leaves the graph, they write it plain themselves instead of a separate transform pass.
UNBLOCKING_OPS = frozenset({Op.INTERLEAVE})


def _unblock_graph_outputs(graph: Graph, layouts: Layouts) -> None:
    """A blocked result of an ``UNBLOCKING_OPS`` node that no node reads is a graph output
    wanted plain: the node writes it plain (e.g. a sub-pixel interleave reading blocked phases
    writes the model's plain output in one pass)."""
    consumed = {v for node in graph.nodes for v in node.inputs}
    for node in graph.nodes:
        if node.op in UNBLOCKING_OPS and len(node.outputs) == 1 and node.output not in consumed:
            layouts[node.output] = PLAIN


def input_layouts(graph: Graph, node: Node, layouts: Layouts) -> list[int]:
    """The layouts a (non-conv-kernel) node reads its inputs in: constants plain; activations
    in their own layout when the node writes blocked or is an ``UNBLOCKING_OPS`` node, else plain."""
    keep = bool(layouts[node.outputs[0]]) or node.op in UNBLOCKING_OPS
    return [PLAIN if graph.is_constant(v) or not keep else layouts.get(v, PLAIN) for v in node.inputs]


def plan_layouts(graph: Graph, block: int) -> Layouts:
    """The layout (0 = plain, else the channel block) of every graph input and node output.

    ``block`` 0 disables the blocked layout. Constants are not listed: the backend packs
    them for each reader at compile time.
    """
    layouts: Layouts = {v: PLAIN for v in graph.inputs}
    for node in graph.nodes:
        rule = RULES.get(node.op)
        chosen = rule(graph, node, layouts, block) if rule and block else PLAIN
        for value in node.outputs:
            layouts[value] = chosen if len(node.outputs) == 1 else PLAIN
    _unblock_graph_outputs(graph, layouts)
    return layouts
