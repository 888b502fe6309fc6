"""Tuning tasks: the distinct kernel-compiled convs of a model, keyed by a deterministic signature.

A task is one ``ConvProblem`` (sizes, attributes, dtype, fused epilogue, input/output
layout blocks) with at least one applicable conv kernel of the target's backend
(``convc.backend``: the blocked CPU kernels, or the CUDA kernels). Convs of equal problems
share a task; its ``count`` says how many convs of the model run it. The signature
hashes the problem's canonical JSON; the target (CPU model, features, cores; or GPU
architecture) is kept beside it in every record (``TargetKey``), so one database can hold
several machines.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import tvm

from convc.backend import Backend, backend, backend_of
from convc.ir import Graph, Op
from convc.ir.ops.conv import constant_weights
from convc.layout import conv_layouts, plan_layouts
from convc.lower.fusion import FUSION, FUSIONS, SHUFFLE, candidate_fusions, candidate_shuffles
from convc.schedules.cpu.blocked import ConvProblem
from convc.tune.encode import digest, plain


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


@dataclass(frozen=True)
class Task:
    """One distinct conv problem of a model: ``count`` convs (``nodes``) run it, with the
    kernels of ``backend`` (default: the CPU's) estimated on ``machine`` (its default)."""

    problem: ConvProblem
    nodes: tuple[str, ...]
    backend: Backend = field(default_factory=lambda: backend("llvm"), compare=False, repr=False)
    machine: Any = field(default=None, compare=False, repr=False)

    @property
    def count(self) -> int:
        return len(self.nodes)

    @property
    def signature(self) -> str:
        return signature(self.problem)

    @property
    def label(self) -> str:
        return label(self.problem)

    def default(self, machine: Any = None):
        """The cost model's pick: (kernel, config), what an untuned compile uses."""
        kernel, config, _ = self.backend.choose(self.problem, machine or self.machine)
        return kernel, config

    def estimate(self, machine: Any = None) -> float:
        """The cost model's seconds for the default pick (ranks tasks before measurement)."""
        machine = machine or self.machine
        kernel, config = self.default(machine)
        return kernel.estimate(self.problem, config, machine)


def describe(problem: ConvProblem) -> dict:
    """The problem as plain JSON data (``op`` first: every task is a conv today)."""
    return {"op": "conv", **plain(problem)}


def signature(problem: ConvProblem) -> str:
    """The deterministic key of a problem (a hash of ``describe``)."""
    return digest(describe(problem))


def label(p: ConvProblem) -> str:
    """A short human name: '3x3/2 64>128 56x56 g1 +relu'."""
    k = "x".join(map(str, p.kernel))
    stride = "" if set(p.strides) == {1} else "/" + "x".join(map(str, p.strides))
    groups = f" g{p.groups}" if p.groups > 1 else ""
    extra = "".join(f" +{step.op.value}" for step in p.epilogue)
    batch = f" n{p.batch}" if p.batch > 1 else ""
    return f"{k}{stride} {p.in_channels}>{p.out_channels} {'x'.join(map(str, p.in_size))}{groups}{batch}{extra}"


def applicable(problem: ConvProblem, candidates: Sequence[Any]) -> list[Any]:
    return [k for k in candidates if k.decline(problem) is None]


def extract_tasks(graph: Graph, target: tvm.target.Target, fusions: frozenset[str] = FUSIONS) -> list[Task]:
    """The tasks of a rewritten graph (after ``convc.compiler.lower_to_ir``), in first-use order.

    A conv is a task when its weight (and bias) are constants and a conv kernel of the
    target's backend applies: exactly the convs the backend compiles with such a kernel,
    with the layouts it uses. The convs the enabled ``fusions`` compute in a fused kernel (all
    of them by default: the pairs of the backend's pair kernel, the phase convs of its shuffle
    kernel, see ``convc.lower.fusion``) are not tasks: they compile to the fused kernel,
    whatever their records say.
    """
    kernels = backend_of(target)
    machine = kernels.machine(target)
    block = kernels.channel_block(target)
    layouts = plan_layouts(graph, block)
    fused = set()
    if FUSION in fusions:
        for f in candidate_fusions(graph, layouts, block, kernels.pair_kernel):
            fused |= {f.expand.name, f.depthwise.name}
    if SHUFFLE in fusions:
        fused |= {f.conv.name for f in candidate_shuffles(graph, layouts, kernels.shuffle_kernel)}
    nodes: dict[ConvProblem, list[str]] = {}
    for node in graph.nodes:
        if node.op is not Op.CONV or node.name in fused:
            continue
        if not constant_weights(graph, node):
            continue
        problem = ConvProblem.from_node(node, *conv_layouts(node, layouts, block))
        if applicable(problem, kernels.candidates):
            nodes.setdefault(problem, []).append(node.name)
    return [Task(p, tuple(names), kernels, machine) for p, names in nodes.items()]

