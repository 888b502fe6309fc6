"""The description of one convolution that the blocked CPU kernels compile.

A ``ConvProblem`` holds everything a kernel needs and nothing else: logical sizes (ONNX
order, ``(N, C, *S)``), the conv attributes, the memory blocks of the input and output
(see ``layout``), the bias and the fused epilogue.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from convc.errors import ShapeError
from convc.ir import Node, Op
from convc.ir.ops.conv import ConvAttrs, EpilogueStep, conv_output_size, split_conv_inputs


@dataclass(frozen=True)
class ConvProblem:
    """An N-d grouped conv with blocked input/output layouts and a fused epilogue.

    ``in_block``/``out_block``: channel block of the data/output layout (0: plain
    ``(N, C, *S)``; b > 0: ``(N, C//b, *S, b)``). ``operand_shapes`` are the logical
    shapes of the epilogue operands, in the order the binary steps read them.
    """

    batch: int
    in_channels: int
    out_channels: int
    groups: int
    in_size: tuple[int, ...]
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    dilations: tuple[int, ...]
    in_block: int = 0
    out_block: int = 0
    dtype: str = "float32"
    has_bias: bool = False
    epilogue: tuple[EpilogueStep, ...] = ()
    operand_shapes: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self):
        n = len(self.in_size)
        fields = {"kernel": self.kernel, "strides": self.strides, "pads_begin": self.pads_begin,
                  "pads_end": self.pads_end, "dilations": self.dilations}
        for name, value in fields.items():
            if len(value) != n:
                raise ShapeError(f"ConvProblem: {name}={value} has {len(value)} entries, "
                                 f"in_size {self.in_size} has {n}")
        g = self.groups
        if g < 1 or self.in_channels % g or self.out_channels % g:
            raise ShapeError(f"ConvProblem: channels {self.in_channels}->{self.out_channels} "
                             f"do not divide by groups {g}")
        for name, block, channels in (("in_block", self.in_block, self.in_channels),
                                      ("out_block", self.out_block, self.out_channels)):
            if block < 0 or (block and channels % block):
                raise ShapeError(f"ConvProblem: {name}={block} does not divide {channels} channels")
        if sum(step.binary for step in self.epilogue) != len(self.operand_shapes):
            raise ShapeError(f"ConvProblem: epilogue {self.epilogue} reads "
                             f"{sum(s.binary for s in self.epilogue)} operands, "
                             f"got shapes {self.operand_shapes}")
        if any(o < 1 for o in self.out_size):
            raise ShapeError(f"ConvProblem: output size {self.out_size} is empty")

    @staticmethod
    def from_node(node: Node, in_block: int, out_block: int) -> "ConvProblem":
        """The problem of an IR ``conv`` node, with the given layout blocks."""
        if node.op is not Op.CONV:
            raise ShapeError(f"ConvProblem.from_node: node {node.name!r} is {node.op}, not conv")
        attrs: ConvAttrs = node.attrs
        (x, w, *bias), operands = split_conv_inputs(attrs, node.inputs)
        return ConvProblem(
            batch=x.shape[0], in_channels=x.shape[1], out_channels=w.shape[0], groups=attrs.groups,
            in_size=tuple(x.shape[2:]), kernel=tuple(w.shape[2:]), strides=attrs.strides,
            pads_begin=attrs.pads_begin, pads_end=attrs.pads_end, dilations=attrs.dilations,
            in_block=in_block, out_block=out_block, dtype=x.dtype, has_bias=bool(bias),
            epilogue=attrs.epilogue, operand_shapes=tuple(v.shape for v in operands))

    # -- derived sizes -----------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.in_size)

    @property
    def out_size(self) -> tuple[int, ...]:
        return tuple(conv_output_size(i, k, s, pb, pe, d) for i, k, s, pb, pe, d in zip(
            self.in_size, self.kernel, self.strides, self.pads_begin, self.pads_end, self.dilations))

    @property
    def in_per_group(self) -> int:
        return self.in_channels // self.groups

    @property
    def out_per_group(self) -> int:
        return self.out_channels // self.groups

    @property
    def taps(self) -> int:
        return math.prod(self.kernel)

    @property
    def padded(self) -> bool:
        return any(self.pads_begin) or any(self.pads_end)

    def not_pointwise(self) -> str | None:
        """None for a pointwise conv (1x1 kernel, no padding), else why it is not one."""
        if self.taps != 1:
            return f"kernel {self.kernel} is not 1x1"
        if self.padded:
            return f"padded ({self.pads_begin}/{self.pads_end})"
        return None

    @property
    def in_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_channels, *self.in_size)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return (self.batch, self.out_channels, *self.out_size)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_per_group, *self.kernel)

    @property
    def attrs(self) -> ConvAttrs:
        """The IR attributes of this conv (for the reference implementation)."""
        return ConvAttrs(self.strides, self.pads_begin, self.pads_end, self.dilations,
                         self.groups, self.epilogue)

    @property
    def flops(self) -> int:
        """2 * multiply-adds of the convolution proper (bias and epilogue not counted)."""
        return 2 * self.batch * self.out_channels * math.prod(self.out_size) * self.in_per_group * self.taps
