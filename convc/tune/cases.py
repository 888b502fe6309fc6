"""The random test case of a tuning trial: inputs, their packed forms and the reference output.

``case_for`` picks the case class of a problem's kind (``CASES``): a conv (``ConvProblem``)
is checked against ``conv_reference``, a fused expansion + depthwise pair (``FusedPair``)
against the two reference convs one after the other. Values are drawn in float32 and
rounded to the problem's dtype; the reference is computed in float32 from the rounded values.
"""
from __future__ import annotations

from typing import Any, Callable, Union

import numpy as np

from convc.backend import OperandPacker
from convc.ir.ops.conv import conv_reference
from convc.schedules.cpu.blocked import ConvProblem, pack, pack_operand, physical_shape, unpack
from convc.schedules.cpu.blocked.expand_depthwise import FusedPair


def _drawer(seed: int, dtype: str) -> Callable[[Any], np.ndarray]:
    rng = np.random.default_rng(seed)
    return lambda shape: rng.standard_normal(shape, dtype=np.float32).astype(dtype)


def relative_error(got: np.ndarray, reference: np.ndarray) -> float:
    """max |got - reference| / max |reference|; infinite when shapes differ or ``got`` is not finite."""
    if got.shape != reference.shape or not np.all(np.isfinite(got)):
        return float("inf")
    return float(np.abs(got - reference).max() / (np.abs(reference).max() + 1e-12))


class Case:
    """A conv's case. ``pack_operand`` puts an epilogue operand in the form the target's
    kernels read (``convc.backend.Backend.pack_operand``)."""

    def __init__(self, p: ConvProblem, seed: int = 0, pack_operand: OperandPacker = pack_operand):
        draw = _drawer(seed, p.dtype)
        self.problem, self.dtype = p, p.dtype
        self.pack_operand = pack_operand
        self.x = draw(p.in_shape)
        self.w = draw(p.weight_shape).astype(np.float32)
        self.b = draw(p.out_channels).astype(np.float32) if p.has_bias else None
        self.operands = [draw(s) for s in p.operand_shapes]
        self.reference = conv_reference(p.attrs, self.x.astype(np.float32), self.w, self.b,
                                        *(o.astype(np.float32) for o in self.operands))

    def arguments(self, pack_weight) -> list[np.ndarray]:
        """The kernel's arguments in order (see ``convc.schedules.cpu.blocked.kernel``)."""
        p = self.problem
        w, b = pack_weight(self.w, self.b)
        args = [pack(self.x, p.in_block), w, *([b] if p.has_bias else [])]
        args += [self.pack_operand(o, p.out_shape, p.out_block) for o in self.operands]
        args.append(np.zeros(physical_shape(p.out_shape, p.out_block), p.dtype))
        return args

    def error(self, physical_out: np.ndarray) -> float:
        return relative_error(unpack(physical_out, self.problem.out_block).astype(np.float32), self.reference)


class PairCase:
    """A fused pair's case: the expansion's input, both weights and biases; the reference is
    the depthwise conv of the expansion's output, epilogues included (a pair has no epilogue
    operands, so ``pack_operand`` goes unused: it is there for ``case_for``'s one signature)."""

    def __init__(self, pair: FusedPair, seed: int = 0, pack_operand: OperandPacker = pack_operand):
        e, d = pair.expand, pair.depthwise
        draw = _drawer(seed, e.dtype)
        self.problem, self.dtype = pair, e.dtype
        self.x = draw(e.in_shape)
        self.weights = []
        for conv in (e, d):
            self.weights += [draw(conv.weight_shape).astype(np.float32),
                             draw(conv.out_channels).astype(np.float32) if conv.has_bias else None]
        w_e, b_e, w_d, b_d = self.weights
        self.reference = conv_reference(d.attrs, conv_reference(e.attrs, self.x.astype(np.float32), w_e, b_e),
                                        w_d, b_d)

    def arguments(self, pack_weight) -> list[np.ndarray]:
        """The pair kernel's arguments in order (see ``convc.schedules.cpu.blocked.expand_depthwise``)."""
        e, d = self.problem.expand, self.problem.depthwise
        return [pack(self.x, e.in_block), *pack_weight(*self.weights),
                np.zeros(physical_shape(d.out_shape, d.out_block), d.dtype)]

    def error(self, physical_out: np.ndarray) -> float:
        got = unpack(physical_out, self.problem.depthwise.out_block).astype(np.float32)
        return relative_error(got, self.reference)


TrialCase = Union[Case, PairCase]
CASES: dict[type, type] = {ConvProblem: Case, FusedPair: PairCase}


def case_for(problem: Any, pack_operand: OperandPacker = pack_operand, seed: int = 0) -> TrialCase:
    """The case of ``problem``'s kind."""
    return CASES[type(problem)](problem, seed=seed, pack_operand=pack_operand)
