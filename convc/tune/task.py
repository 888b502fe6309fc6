"""Tuning tasks: the distinct kernel-compiled convs of a model, keyed by a deterministic signature.

A task is one ``ConvProblem`` (sizes, attributes, dtype, fused epilogue, input/output
layout blocks) with at least one applicable conv kernel of the target's backend
(``convc.backend``: the blocked CPU kernels, or the CUDA kernels), or one ``FusedPair``
(an expansion and the depthwise conv reading it, computed by the backend's pair kernel,
see ``convc.lower.fusion``). Equal problems share a task; its ``count`` says how many
times the model runs it. What differs between the two kinds (the kernels searched, the
default pick, the readable form) is in ``KINDS``. The signature hashes the problem's
canonical JSON; the target (CPU model, features, cores; or GPU architecture) is kept
beside it in every record (``TargetKey``), so one database can hold several machines.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence, Union

import tvm

from convc.backend import Backend, backend, backend_of
from convc.ir import Graph, Op
from convc.ir.ops.conv import constant_weights
from convc.layout import conv_layouts, plan_layouts
from convc.lower.fusion import FUSION, FUSIONS, SHUFFLE, candidate_fusions, candidate_shuffles
from convc.schedules.cpu.blocked import ConvProblem
from convc.schedules.cpu.blocked.expand_depthwise import FusedPair
from convc.tune.encode import digest, plain

Problem = Union[ConvProblem, FusedPair]


@dataclass(frozen=True)
class TargetKey:
    """What a measurement depends on besides the problem: the target kind, the processor
    model (LLVM's CPU name, or the CUDA architecture), a hash of the CPU's feature set, the
    core count (1 on a GPU), the layout block."""

    kind: str
    cpu: str
    features: str
    cores: int
    block: int

    @staticmethod
    def of(target: tvm.target.Target) -> "TargetKey":
        if target.kind.name == "llvm":
            cpu = str(target.attrs.get("mcpu", ""))
            features = sorted(str(f) for f in tvm.target.codegen.llvm_get_cpu_features(target))
        else:
            cpu, features = str(target.attrs.get("arch", "")), []
        return TargetKey(target.kind.name, cpu, digest(features), int(target.attrs.get("num-cores", 0) or 1),
                         backend_of(target).channel_block(target))

    def describe(self) -> str:
        return f"{self.kind} {self.cpu or '?'} ({self.cores} cores, block {self.block}, features {self.features})"


def label(p: ConvProblem) -> str:
    """A short human name: '3x3/2 64>128 56x56 g1 +relu'."""
    k = "x".join(map(str, p.kernel))
    stride = "" if set(p.strides) == {1} else "/" + "x".join(map(str, p.strides))
    groups = f" g{p.groups}" if p.groups > 1 else ""
    extra = "".join(f" +{step.op.value}" for step in p.epilogue)
    batch = f" n{p.batch}" if p.batch > 1 else ""
    return f"{k}{stride} {p.in_channels}>{p.out_channels} {'x'.join(map(str, p.in_size))}{groups}{batch}{extra}"


@dataclass(frozen=True)
class TaskKind:
    """What a kind of problem brings to tuning: its ``op`` (the first key of its readable
    form), the graph nodes one use computes, the kernels searched for it on a backend and the
    pick an untuned compile makes, ``(kernel, config)``."""

    op: str
    nodes_per_use: int
    candidates: Callable[[Backend], Sequence[Any]]
    default: Callable[[Any, Backend, Any], tuple[Any, Any]]
    label: Callable[[Any], str]


def _conv_default(problem: ConvProblem, kernels: Backend, machine: Any) -> tuple[Any, Any]:
    kernel, config, _ = kernels.choose(problem, machine)
    return kernel, config


def _pair_default(pair: FusedPair, kernels: Backend, machine: Any) -> tuple[Any, Any]:
    return kernels.pair_kernel, kernels.pair_kernel.default_config(pair, machine)


def _pair_label(pair: FusedPair) -> str:
    return f"{label(pair.expand)} | dw {label(pair.depthwise)}"


KINDS: dict[type, TaskKind] = {
    ConvProblem: TaskKind("conv", 1, lambda kernels: kernels.candidates, _conv_default, label),
    FusedPair: TaskKind("expand_depthwise", 2, lambda kernels: (kernels.pair_kernel,), _pair_default, _pair_label),
}


@dataclass(frozen=True)
class Task:
    """One distinct problem of a model: ``count`` uses of it (``nodes``: the nodes they
    compute) run with the kernels of ``backend`` (default: the CPU's), estimated on
    ``machine`` (its default)."""

    problem: Problem
    nodes: tuple[str, ...]
    backend: Backend = field(default_factory=lambda: backend("llvm"), compare=False, repr=False)
    machine: Any = field(default=None, compare=False, repr=False)

    @property
    def kind(self) -> TaskKind:
        return KINDS[type(self.problem)]

    @property
    def count(self) -> int:
        return len(self.nodes) // self.kind.nodes_per_use

    @property
    def signature(self) -> str:
        return signature(self.problem)

    @property
    def label(self) -> str:
        return self.kind.label(self.problem)

    @property
    def candidates(self) -> Sequence[Any]:
        """The kernels searched for this task (those of its kind on its backend)."""
        return self.kind.candidates(self.backend)

    def kernel(self, name: str) -> Any:
        """The candidate called ``name``; KeyError when this task has none."""
        for kernel in self.candidates:
            if kernel.name == name:
                return kernel
        raise KeyError(f"no {self.kind.op} kernel named {name!r}")

    def default(self, machine: Any = None):
        """The cost model's pick: (kernel, config), what an untuned compile uses."""
        return self.kind.default(self.problem, self.backend, machine or self.machine)

    def estimate(self, machine: Any = None) -> float:
        """The cost model's seconds for the default pick (ranks tasks before measurement)."""
        machine = machine or self.machine
        kernel, config = self.default(machine)
        return kernel.estimate(self.problem, config, machine)


def describe(problem: Problem) -> dict:
    """The problem as plain JSON data, its kind's ``op`` first."""
    return {"op": KINDS[type(problem)].op, **plain(problem)}


def signature(problem: Problem) -> str:
    """The deterministic key of a problem (a hash of ``describe``)."""
    return digest(describe(problem))


def applicable(problem: ConvProblem, candidates: Sequence[Any]) -> list[Any]:
    return [k for k in candidates if k.decline(problem) is None]


def extract_tasks(graph: Graph, target: tvm.target.Target, fusions: frozenset[str] = FUSIONS) -> list[Task]:
    """The tasks of a rewritten graph (after ``convc.compiler.lower_to_ir``), in first-use order.

    A conv is a task when its weight (and bias) are constants and a conv kernel of the
    target's backend applies: exactly the convs the backend compiles with such a kernel,
    with the layouts it uses. With ``FUSION`` in the enabled ``fusions``, each pair the
    backend's pair kernel computes is one task (a ``FusedPair``), its two convs none. The
    phase convs of the shuffle kernel (``SHUFFLE``) are no tasks: they compile to that
    kernel, whatever their records say.
    """
    kernels = backend_of(target)
    machine = kernels.machine(target)
    block = kernels.channel_block(target)
    layouts = plan_layouts(graph, block)
    pairs = ({f.depthwise.name: f for f in candidate_fusions(graph, layouts, block, kernels.pair_kernel)}
             if FUSION in fusions else {})
    skipped = {f.expand.name for f in pairs.values()}
    if SHUFFLE in fusions:
        skipped |= {f.conv.name for f in candidate_shuffles(graph, layouts, kernels.shuffle_kernel)}
    nodes: dict[Problem, list[str]] = {}
    for node in graph.nodes:
        if node.name in pairs:
            fusion = pairs[node.name]
            nodes.setdefault(fusion.pair, []).extend((fusion.expand.name, fusion.depthwise.name))
            continue
        if node.op is not Op.CONV or node.name in skipped:
            continue
        if not constant_weights(graph, node):
            continue
        problem = ConvProblem.from_node(node, *conv_layouts(node, layouts, block))
        if applicable(problem, kernels.candidates):
            nodes.setdefault(problem, []).append(node.name)
    return [Task(p, tuple(names), kernels, machine) for p, names in nodes.items()]
