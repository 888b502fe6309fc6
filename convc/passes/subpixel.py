"""Transposed convolution without the zeros: the sub-pixel (polyphase) decomposition.

Per spatial axis (input size i, kernel k, stride s, dilation d, pads pb/pe, output
size O; layouts as in ``convc.ir.ops.conv``), output position o receives x[j] * w[t]
whenever o + pb = s*j + d*t. Write o = s*q + r with the phase r in [0, s): tap t
contributes to phase r iff (r + pb - d*t) = 0 (mod s), and then reads x[q + e_t] with
e_t = (r + pb - d*t) / s. With g = gcd(d, s) those taps are t0, t0 + s/g, t0 + 2s/g, ...,
so each phase is a dense stride-1 convolution of the ORIGINAL input:

* sub-kernel: the flipped, channel-swapped kernel (``conv_transpose_to_conv``'s) sliced
  from k-1-t_last with step s/g; dilation d/g;
* pads: (d*t_last - r - pb) / s before, whatever makes ceil(O/s) outputs after (a
  negative pad crops the input instead);
* a phase no tap reaches, or whose window sees no data, is the bias (or zero).

The s1*...*sn phases (an axis with stride 1 has one phase: it is not split) are
interleaved by a pixel shuffle: (N, g, S, M/g, Q...) -> reshape -> transpose to
(N, g, M/g, Q1, s1, ..., Qn, sn) -> reshape (N, M, Q1*s1, ...) -> crop to O. When every
phase of every axis has the same number of taps and the same offset, the phases are
ONE conv with S*M output channels (ordered group, phase, channel so the group
structure holds); otherwise one conv per phase, concatenated. Every sub-kernel is a
slice of the weight, so constant weights fold and runtime weights stay ops.

Where the pass sits: right BEFORE ``conv_transpose_to_conv``, on the conv_transpose
nodes themselves (the issue describes matching the zero-inserted conv afterwards,
which is fragile; the result is the same). A layer is rewritten only when it pays:
some stride > 1 and fewer multiply-adds than the zero-insertion conv; the rest fall
through to zero insertion. A batch norm reading a conv_transpose alone is folded into
its weights and bias first, so it still costs nothing once the conv is sub-pixel
(``fold_batchnorm`` only sees through plain convs). Rewritten nodes carry
``| subpixel`` in their origin, which ``convc inspect`` shows with their FLOPs.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import partial

import numpy as np

from convc.analysis import node_flops
from convc.ir import ConvAttrs, ConvTransposeAttrs, Graph, Node, Op, Value, opdef
from convc.ir.ops.conv import conv_transpose_output_size
from convc.ir.ops.movement import (BroadcastToAttrs, ConcatAttrs, InterleaveAttrs, ReshapeAttrs, SliceAttrs,
                                   TransposeAttrs)
from convc.passes.conv_transpose_to_conv import _conv_kernel
from convc.passes.fold_batchnorm import _scale_shift
from convc.passes.rewrite import Rewriter, Rule, rule_pass

PASS_NAME = "subpixel"


@dataclass(frozen=True)
class AxisPhase:
    """One phase of one axis as a stride-1 conv over the original input.

    ``taps`` kernel entries of the flipped kernel, from ``first`` with step ``step``, at
    ``dilation``; the input padded by ``pad_begin``/``pad_end`` (negative: cropped).
    """

    taps: int
    first: int
    step: int
    dilation: int
    pad_begin: int
    pad_end: int

    def crop(self, size: int) -> tuple[int, int]:
        """The range of the input this phase reads (empty when it sees no data)."""
        return max(-self.pad_begin, 0), size + min(self.pad_end, 0)


@dataclass(frozen=True)
class AxisPlan:
    """The phases of one axis: phase r computes output rows s*q + r - shift, q < ``rows``.

    A phase is None where it is the bias only. The shuffled rows run from ``-shift``;
    the output is rows [0, size).
    """

    stride: int
    size: int
    rows: int
    shift: int
    phases: tuple[AxisPhase | None, ...]

    @property
    def uniform(self) -> bool:
        """Every phase has the same tap count and offset (so the same pads and crop)."""
        keys = {(p.taps, p.pad_begin) if p else None for p in self.phases}
        return None not in keys and len(keys) == 1


def axis_plan(i: int, k: int, s: int, d: int, pb: int, pe: int, output_padding: int) -> AxisPlan:
    """Split one axis of a transposed conv into its ``s`` phases.

    Phases are residues of o + shift. shift = pb mod s lines the phases up (for d = 1
    and s | k they all get the same offset: one conv serves them all); it is used
    when it costs no extra rows, else shift = 0 (phases of o itself, the fewest rows).
    """
    size = conv_transpose_output_size(i, k, s, pb, pe, d, output_padding)
    rows = -(-size // s)
    shift = pb % s if -(-(size + pb % s) // s) == rows else 0
    base = pb - shift
    g = math.gcd(d, s)
    phases = []
    for r in range(s):
        taps = [t for t in range(k) if (r + base - d * t) % s == 0]
        phase = None
        if taps:
            dilation = d // g if len(taps) > 1 else 1
            begin = (d * taps[-1] - r - base) // s
            end = rows + dilation * (len(taps) - 1) - i - begin
            phase = AxisPhase(len(taps), k - 1 - taps[-1], s // g, dilation, begin, end)
            start, stop = phase.crop(i)
            phase = phase if stop > start else None
        phases.append(phase)
    return AxisPlan(s, size, rows, shift, tuple(phases))


@dataclass(frozen=True)
class Plan:
    """The sub-pixel form of one transposed conv, and what it costs against zero insertion."""

    axes: tuple[AxisPlan, ...]
    kernel: tuple[int, ...]
    macs_per_tap: int  # N * M * C/g: the multiply-adds of one kernel tap at one output position

    def phases(self) -> list[tuple[AxisPhase | None, ...]]:
        """Every n-d phase, row-major over the axes' phase indices; None on an axis: bias only."""
        return list(itertools.product(*(axis.phases for axis in self.axes)))

    @property
    def single(self) -> bool:
        return all(axis.uniform for axis in self.axes)

    @property
    def macs(self) -> int:
        """Multiply-adds of the sub-pixel convs."""
        taps = sum(math.prod(p.taps for p in phase) for phase in self.phases() if None not in phase)
        return self.macs_per_tap * math.prod(axis.rows for axis in self.axes) * taps

    @property
    def zero_insertion_macs(self) -> int:
        return self.macs_per_tap * math.prod(axis.size for axis in self.axes) * math.prod(self.kernel)

    @property
    def profitable(self) -> bool:
        return any(axis.stride > 1 for axis in self.axes) and 0 < self.macs < self.zero_insertion_macs


def plan(attrs: ConvTransposeAttrs, x_shape: tuple[int, ...], w_shape: tuple[int, ...]) -> Plan:
    """The per-axis phases of ``conv_transpose(x, w)`` (layouts as in ``convc.ir.ops.conv``)."""
    axes = tuple(axis_plan(*args) for args in zip(x_shape[2:], w_shape[2:], attrs.strides, attrs.dilations,
                                                  attrs.pads_begin, attrs.pads_end, attrs.output_padding))
    n, c, (_, mg, *ks) = x_shape[0], x_shape[1], w_shape
    return Plan(axes, tuple(ks), n * mg * attrs.groups * (c // attrs.groups))


def macs(item: Graph | Node) -> int:
    """Multiply-adds of a node's or a graph's heavy ops (conv, conv_transpose, matmul)."""
    nodes = item.nodes if isinstance(item, Graph) else (item,)
    return sum(node_flops(n) // 2 for n in nodes if opdef(n.op).heavy)


class _Builder:
    """Emits the sub-pixel form of one conv_transpose node ``source`` (all nodes on its behalf)."""

    def __init__(self, ctx: Rewriter, source: Node, p: Plan):
        self.ctx, self.plan = ctx, p
        self.emit = partial(ctx.emit, source=source)
        a: ConvTransposeAttrs = source.attrs
        self.groups = a.groups
        self.n, self.m = a.ndim, source.output.shape[1]
        self.out = source.output.type
        self.rows = tuple(axis.rows for axis in p.axes)
        self.strides = tuple(axis.stride for axis in p.axes)
        self._crops: dict[tuple, Value] = {}  # phases reading the same input range share its slice

    def _reshape(self, v: Value, shape: tuple[int, ...]) -> Value:
        return v if v.shape == shape else self.emit(Op.RESHAPE, [v], ReshapeAttrs(shape))

    def _crop(self, x: Value, phase: tuple[AxisPhase, ...]) -> Value:
        ranges = [p.crop(i) for p, i in zip(phase, x.shape[2:])]
        if all(start == 0 and stop == i for (start, stop), i in zip(ranges, x.shape[2:])):
            return x
        key = tuple(ranges)
        if key not in self._crops:
            starts, stops = zip(*ranges)
            attrs = SliceAttrs((0, 0, *starts), (*x.shape[:2], *stops), (1,) * x.type.rank)
            self._crops[key] = self.emit(Op.SLICE, [x], attrs)
        return self._crops[key]

    def _kernel(self, wf: Value, phase: tuple[AxisPhase, ...]) -> Value:
        m, cg = wf.shape[:2]
        ends = tuple(p.first + p.step * (p.taps - 1) + 1 for p in phase)
        attrs = SliceAttrs((0, 0, *(p.first for p in phase)), (m, cg, *ends), (1, 1, *(p.step for p in phase)))
        return self.emit(Op.SLICE, [wf], attrs)

    def _conv(self, x: Value, w: Value, bias: list[Value], phase: tuple[AxisPhase, ...]) -> Value:
        attrs = ConvAttrs((1,) * self.n, tuple(max(p.pad_begin, 0) for p in phase),
                          tuple(max(p.pad_end, 0) for p in phase), tuple(p.dilation for p in phase), self.groups)
        return self.emit(Op.CONV, [self._crop(x, phase), w, *bias], attrs)

    def _block(self, phases: int) -> tuple[int, ...]:
        """(N, g, phases, M/g, Q...): the layout the shuffle reads."""
        return (self.out.shape[0], self.groups, phases, self.m // self.groups, *self.rows)

    def single_conv(self, x: Value, wf: Value, bias: list[Value]) -> Value:
        """All phases alike: one conv whose output channels are (group, phase, channel)."""
        g, mg = self.groups, self.m // self.groups
        phases = self.plan.phases()
        kernels = [self._kernel(wf, phase) for phase in phases]
        kernels = [self._reshape(k, (g, 1, mg, *k.shape[1:])) for k in kernels]
        w = self.emit(Op.CONCAT, kernels, ConcatAttrs(1))
        w = self._reshape(w, (g * len(phases) * mg, *w.shape[3:]))
        if bias:
            b = self._reshape(bias[0], (g, 1, mg))
            b = self.emit(Op.BROADCAST_TO, [b], BroadcastToAttrs((g, len(phases), mg)))
            bias = [self._reshape(b, (g * len(phases) * mg,))]
        return self._reshape(self._conv(x, w, bias, phases[0]), self._block(len(phases)))

    def phase_blocks(self, x: Value, wf: Value, bias: list[Value]) -> list[Value]:
        """Phases differ: one conv per phase (or the bias where no tap lands), as (N, g, 1, M/g, Q...)."""
        blocks = []
        for phase in self.plan.phases():
            if None in phase:
                blocks.append(self._bias_block(bias))
            else:
                y = self._conv(x, self._kernel(wf, phase), bias, phase)
                blocks.append(self._reshape(y, self._block(1)))
        return blocks

    def conv_per_phase(self, x: Value, wf: Value, bias: list[Value]) -> Value:
        """The phase blocks concatenated, for the shuffle of grouped layers."""
        return self.emit(Op.CONCAT, self.phase_blocks(x, wf, bias), ConcatAttrs(2))

    def _bias_block(self, bias: list[Value]) -> Value:
        g, mg = self.groups, self.m // self.groups
        if bias:
            b = self._reshape(bias[0], (1, g, 1, mg) + (1,) * self.n)
        else:
            b = self.ctx.constant(np.zeros((1,) * (self.n + 4), dtype=self.out.dtype), "zeros")
        return self.emit(Op.BROADCAST_TO, [b], BroadcastToAttrs(self._block(1)), fold=False)

    def shuffle(self, y: Value) -> Value:
        """(N, g, S, M/g, Q...) -> (N, M, O...): phase r of axis a lands on rows s_a*q + r - shift_a."""
        n, s = self.n, self.strides
        y = self._reshape(y, (*y.shape[:2], *s, *y.shape[3:]))
        perm = (0, 1, 2 + n, *itertools.chain.from_iterable((3 + n + a, 2 + a) for a in range(n)))
        y = self.emit(Op.TRANSPOSE, [y], TransposeAttrs(perm))
        y = self._reshape(y, (self.out.shape[0], self.m, *(q * st for q, st in zip(self.rows, s))))
        if y.shape == self.out.shape:
            return y
        starts = tuple(axis.shift for axis in self.plan.axes)
        ends = tuple(c + o for c, o in zip(starts, self.out.shape[2:]))
        return self.emit(Op.SLICE, [y], SliceAttrs((0, 0, *starts), (*self.out.shape[:2], *ends), (1,) * (n + 2)))

    def interleave(self, phases: list[Value]) -> Value:
        """Ungrouped layers: the phases (channel order (phase, channel)) interleave in one op."""
        starts = tuple(axis.shift for axis in self.plan.axes)
        flat = [self._reshape(y, (y.shape[0], y.shape[1] * y.shape[2] * y.shape[3], *y.shape[4:]))
                for y in phases]
        return self.emit(Op.INTERLEAVE, flat, InterleaveAttrs(self.strides, starts, self.out.shape[2:]))

    def build(self, x: Value, w: Value, bias: list[Value]) -> Value:
        wf = _conv_kernel(self.ctx, w, self.groups)
        if self.groups == 1:
            if self.plan.single:
                return self.interleave([self.single_conv(x, wf, bias)])
            return self.interleave(self.phase_blocks(x, wf, bias))
        y = self.single_conv(x, wf, bias) if self.plan.single else self.conv_per_phase(x, wf, bias)
        return self.shuffle(y)


def _plan_of(node: Node) -> Plan | None:
    x, w = node.inputs[:2]
    p = plan(node.attrs, x.shape, w.shape)
    return p if p.profitable else None


def _feeds_batch_norm(ctx: Rewriter, node: Node) -> bool:
    """``node``'s output is read by one batch norm alone (which will absorb it)."""
    users = ctx.graph.consumers().get(node.output, [])
    return (len(users) == 1 and users[0].op is Op.BATCH_NORM and users[0].inputs[0] is node.output
            and ctx.sole_user(node.output, users[0]))


def as_subpixel(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    p = _plan_of(node)
    if p is None or _feeds_batch_norm(ctx, node):
        return None
    x, w, *bias = ctx.inputs(node)
    return (_Builder(ctx, node, p).build(x, w, bias),)


def batch_norm_into_subpixel(ctx: Rewriter, node: Node) -> tuple[Value] | None:
    """BN(conv_transpose(x, w, b)) = conv_transpose(x, w * a, a * b + shift), per output channel."""
    ct = ctx.producer(ctx.inputs(node)[0])
    if ct is None or ct.op is not Op.CONV_TRANSPOSE or not ctx.sole_user(node.inputs[0], node):
        return None
    p = _plan_of(ct)
    if p is None:
        return None
    scale, shift = _scale_shift(ctx, node)
    x, w, *bias = ct.inputs
    c, mg, *ks = w.shape
    g = ct.attrs.groups
    grouped = ctx.emit(Op.RESHAPE, [w], ReshapeAttrs((g, c // g, mg, *ks)), source=ct)
    per_channel = ctx.emit(Op.RESHAPE, [scale], ReshapeAttrs((g, 1, mg) + (1,) * len(ks)), source=ct)
    w = ctx.emit(Op.RESHAPE, [ctx.emit(Op.MUL, [grouped, per_channel], source=ct)], ReshapeAttrs(w.shape),
                 source=ct)
    b = ctx.emit(Op.ADD, [ctx.emit(Op.MUL, [bias[0], scale]), shift]) if bias else shift
    return (_Builder(ctx, ct, p).build(x, w, [b]),)


RULES = (
    Rule("conv_transpose_as_subpixel_convs", frozenset({Op.CONV_TRANSPOSE}), as_subpixel,
         "each output phase is a dense conv of the input: no multiplications by inserted zeros"),
    Rule("batch_norm_into_subpixel", frozenset({Op.BATCH_NORM}), batch_norm_into_subpixel,
         "a BN after a deconv is a per-channel scale of its weights, folded before the phases split"),
)

PASS = rule_pass(PASS_NAME, "strided transposed convs become s^n stride-1 phase convs and a pixel shuffle",
                 RULES)
