"""Choose the kernel (im2col, direct, 1x1, depthwise, generic; on CUDA implicit_gemm,
tensorcore, ...) of every conv.

The choice is the cost model's (the target backend's ``choose``, see ``convc.backend``), replaced by the
measured best of a tuning database (``tuned``, see ``convc.tune``) where it has one, unless
the user overrides it, globally (``--schedule im2col``) or per layer (``--schedule conv1=direct``,
by ONNX node name or IR node name). An override that does not apply to a layer is
reported and the cost model's choice kept. The pick is stored in ``ConvAttrs.algorithm``
(it never changes the result, only the code); the verdicts of every candidate are
returned for ``convc inspect``.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from convc.backend import Backend, backend as backend_of_kind
from convc.errors import ConvcError
from convc.ir import Graph, Node, Op
from convc.ir.ops.conv import Algorithm, constant_weights
from convc.layout import conv_layouts, plan_layouts
from convc.lower.fusion import (FUSION, FUSIONS, PHASE_WRITES, SHUFFLE, candidate_fusions, candidate_phase_writes,
                                candidate_shuffles)
from convc.schedules.cpu.blocked import ConvProblem

CHOICES = backend_of_kind("llvm").choices  # the CPU's kernels; a target's are ``backend_of(target).choices``


@dataclass(frozen=True)
class ScheduleRequest:
    """The user's override: one algorithm for every conv, and/or one per named layer."""

    default: str | None = None
    per_layer: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @staticmethod
    def parse(spec: str | None, choices: Sequence[str] = CHOICES) -> "ScheduleRequest":
        """'auto', 'im2col', or 'conv1=direct,conv2=im2col' (a bare name sets the default);
        ``choices`` are the kernel names of the target (default: the CPU's)."""
        default, per_layer = None, {}
        for part in filter(None, (spec or "").split(",")):
            layer, sep, name = part.rpartition("=")
            if name not in (*choices, "auto"):
                raise ConvcError(f"--schedule {part!r}: unknown schedule {name!r}; choose from "
                                 f"auto, {', '.join(choices)}")
            if sep:
                per_layer[layer] = name
            else:
                default = None if name == "auto" else name
        return ScheduleRequest(default, per_layer)


@dataclass(frozen=True)
class Decision:
    """What was picked for one conv, and why."""

    node: str
    source: str
    picked: str
    verdicts: tuple[tuple[str, "float | str"], ...]  # per candidate: estimate (s) or decline reason
    note: str = ""


def source_name(node: Node) -> str:
    """The model's name for the layer a node came from ('conv1' of "onnx:Conv 'conv1' | ...")."""
    match = re.search(r"'([^']*)'", node.origin)
    return match.group(1) if match else node.name


def select_schedules(graph: Graph, block: int, request: ScheduleRequest = ScheduleRequest(),
                     tuned: Mapping[ConvProblem, tuple[Any, Any]] | None = None,
                     backend: Backend | None = None, machine: Any = None,
                     fusions: frozenset[str] = FUSIONS) -> tuple[Graph, list[Decision]]:
    """``graph`` with every conv's ``algorithm`` set, and the decisions made.

    ``block`` is the channel block of the target's layout; ``backend`` the target's backend
    (default: the CPU's) and ``machine`` its machine model (default: the backend's default).
    ``tuned`` maps a conv's problem (or a fused pair's) to the (kernel, config) measured best
    for it. With ``FUSION`` in ``fusions``, expansions and their depthwise convs that the
    backend's pair kernel computes are marked ``expand_depthwise``; with ``SHUFFLE``, the
    phase convs the backend's shuffle kernel computes with their interleave are marked
    ``subpixel_shuffle`` (see ``convc.lower.fusion``); with ``PHASE_WRITES``, the interleaves
    whose phase convs can write into the interleaved output are marked ``in_place``."""
    backend = backend or backend_of_kind("llvm")
    layouts = plan_layouts(graph, block)
    nodes, decisions, requested = [], [], set()
    for node in graph.nodes:
        if node.op is not Op.CONV:
            nodes.append(node)
            continue
        problem = ConvProblem.from_node(node, *conv_layouts(node, layouts, block))
        model_pick, _, verdicts = backend.choose(problem, machine)
        if model_pick is None or not constant_weights(graph, node):
            decisions.append(Decision(node.name, source_name(node), "plain (no conv kernel applies)",
                                      tuple(verdicts)))
            nodes.append(node)
            continue
        wanted = request.per_layer.get(source_name(node), request.per_layer.get(node.name, request.default))
        picked, note = model_pick.name, ""
        if tuned and problem in tuned:
            picked, note = tuned[problem][0].name, "tuned (measured best in the tuning database)"
        if wanted:
            requested.add(node.name)
        if wanted and wanted != picked:
            reason = _decline(backend, wanted, problem)
            if reason is None:
                picked, note = wanted, "requested"
            else:
                note = f"requested {wanted}, which does not apply: {reason}"
        decisions.append(Decision(node.name, source_name(node), picked, tuple(verdicts), note))
        nodes.append(dataclasses.replace(node, attrs=dataclasses.replace(node.attrs,
                                                                         algorithm=Algorithm(picked))))
    graph = dataclasses.replace(graph, nodes=tuple(nodes), constants=dict(graph.constants))
    if FUSION in fusions:
        graph = _mark_fusions(graph, layouts, block, backend, requested, decisions, tuned or {})
    if SHUFFLE in fusions:
        graph = _mark_shuffles(graph, layouts, backend, requested, decisions)
    if PHASE_WRITES in fusions:
        graph = _mark_phase_writes(graph, layouts, decisions)
    return graph, decisions


def _mark_fusions(graph: Graph, layouts, block: int, backend: Backend, requested: set[str],
                  decisions: list[Decision], tuned: Mapping[Any, tuple[Any, Any]]) -> Graph:
    """``graph`` with the pairs to fuse marked (layers the user asked a kernel for excluded);
    their decisions say so, and whether ``tuned`` has the pair's config."""
    pairs = [f for f in candidate_fusions(graph, layouts, block, backend.pair_kernel)
             if not {f.expand.name, f.depthwise.name} & requested]
    partner = {**{f.expand.name: f.depthwise.name for f in pairs}, **{f.depthwise.name: f.expand.name for f in pairs}}
    graph = _mark(graph, decisions, partner, Algorithm.EXPAND_DEPTHWISE,
                  "one kernel: the expanded tensor stays in cache")
    tuned_nodes = {n for f in pairs if f.pair in tuned for n in (f.expand.name, f.depthwise.name)}
    for i, d in enumerate(decisions):
        if d.node in tuned_nodes:
            decisions[i] = dataclasses.replace(d, note=f"{d.note}; config tuned (measured best in the tuning database)")
    return graph


def _mark_shuffles(graph: Graph, layouts, backend: Backend, requested: set[str],
                   decisions: list[Decision]) -> Graph:
    """``graph`` with the phase convs the shuffle kernel computes with their interleave marked
    (layers the user asked a kernel for excluded); their decisions say so."""
    partner = {f.conv.name: f.interleave.name for f in candidate_shuffles(graph, layouts, backend.shuffle_kernel)
               if f.conv.name not in requested}
    return _mark(graph, decisions, partner, Algorithm.SUBPIXEL_SHUFFLE, "one kernel writes the phases interleaved")


def _mark_phase_writes(graph: Graph, layouts, decisions: list[Decision]) -> Graph:
    """``graph`` with the interleaves whose phase convs write into their output marked
    ``in_place``; the convs' decisions say so."""
    marked = {f.interleave.name: f for f in candidate_phase_writes(graph, layouts)}
    writer = {c.name: name for name, f in marked.items() for c in f.convs}
    for i, d in enumerate(decisions):
        if d.node in writer:
            note = f"writes its rows into {writer[d.node]!r} in place (no interleave kernel)"
            decisions[i] = dataclasses.replace(d, note="; ".join(filter(None, (d.note, note))))
    nodes = tuple(dataclasses.replace(n, attrs=dataclasses.replace(n.attrs, in_place=True))
                  if n.name in marked else n for n in graph.nodes)
    return dataclasses.replace(graph, nodes=nodes, constants=dict(graph.constants))


def _mark(graph: Graph, decisions: list[Decision], partner: dict[str, str], algorithm: Algorithm,
          why: str) -> Graph:
    """``graph`` with the conv nodes named in ``partner`` set to ``algorithm``; their decisions
    say which node they are fused with, and ``why``."""
    for i, d in enumerate(decisions):
        if d.node in partner:
            note = f"fused with {partner[d.node]!r} ({why})"
            decisions[i] = dataclasses.replace(d, picked=algorithm.value, note=note)
    nodes = tuple(dataclasses.replace(n, attrs=dataclasses.replace(n.attrs, algorithm=algorithm))
                  if n.name in partner else n for n in graph.nodes)
    return dataclasses.replace(graph, nodes=nodes, constants=dict(graph.constants))


def _decline(backend: Backend, name: str, problem: ConvProblem) -> str | None:
    try:
        return backend.by_name(name).decline(problem)
    except KeyError:
        return f"the {backend.kind} backend has no kernel {name!r}"
