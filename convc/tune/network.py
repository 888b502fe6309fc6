"""The tuned picks checked inside the model: a task keeps its tuned pick where the model runs
faster with it than with the cost model's default, and falls back to the default elsewhere.

A kernel timed alone runs again and again on the same input, split over the cores the same
way each time, so each core finds its part of the input in its own cache. In the network
the layer before wrote that input, split its own way: a kernel whose threads each read all
of the input (channel tiles outer) then fetches half of it from the other core. Tuned 1x1
configs of MobileNetV2 won alone and lost in the network (576 -> 96 over 14x14, 2 threads:
0.081 vs 0.089 ms alone with cold weights, 0.105 vs 0.079 ms in the model), which made the
tuned model slower than the untuned one. A pick also changes how its output lies in the
cores' caches for the kernels reading it: MobileNetV2's 96 -> 24 1x1 conv with channel tiles
outer ran faster itself (0.117 -> 0.096 ms) and made the fused pair reading its output slower
(0.187 -> 0.244 ms; 2 threads, in the model).

After the search, ``confirm_in_network`` compiles the model with the cost model's picks, and
once more per pick with only that pick changed: per task, the configs that ran fastest alone
and faster than the default, at most ``picks_per_task`` of them (the fastest alone is often
not the fastest in the model: 14 of MobileNetV2's 23 lost to their default there). It times
them with the VM's per-kernel timing (``CompiledModel.kernel_times``) and appends, per task,
a ``timing="network"`` record of the default and one per pick: the seconds per model run of
the task's kernels and of the kernels reading their outputs (readers without a kernel of
their own, such as reshapes, left out), in the all-default build and in the pick's build.
Each pick build runs beside the default build, the two back to back, in each of ``ROUNDS``
rounds, and its time is the default's times the median over the rounds of its ratio to the
default run beside it: this host's speed drifts by several percent within seconds, and when
every build took one turn per round (70 builds: 4 s a round) two checks of the same
database kept picks that made MobileNetV2 4% faster and 1% slower than untuned.
``convc.tune.apply`` prefers a task's network records, so of them the one that runs fastest
in the model is compiled.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import tvm

from convc.ir import Graph
from convc.lower.fusion import FUSIONS
from convc.tune.database import Database, Record
from convc.tune.measure import Outcome, Trial
from convc.tune.search import TaskSearch, outcome_record, trial_key

NETWORK = "network"  # the timing mode of a record measured inside the model
ROUNDS = 6           # rounds: in each, every pick build runs beside the default build
RUNS = 15            # model runs per build per round
PAUSE = 0.05         # seconds of idle before each pair of runs
BUILD_BYTES = 2 << 30  # builds held at once: as many as fit this many bytes of weights (the default included)


def _build(graph: Graph, target: tvm.target.Target, tuned: dict | None, fusions: frozenset[str]):
    from convc.compiler import choose_kernels
    from convc.lower import build
    planned, _ = choose_kernels(graph, target, tuned, fusions=fusions)
    return build(planned, target, tuned)


def _inputs(model) -> dict[str, np.ndarray]:
    """Random inputs (floats standard-normal, integers zero: always valid indices)."""
    rng = np.random.default_rng(0)

    def draw(spec):
        values = rng.standard_normal(spec.shape) if np.dtype(spec.dtype).kind == "f" else np.zeros(spec.shape)
        return values.astype(spec.dtype)
    return {spec.name: draw(spec) for spec in model.inputs}


def _readers(graph: Graph) -> dict[str, set[str]]:
    """node name -> the names of the nodes reading its output."""
    consumers = graph.consumers()
    return {node.name: {reader.name for reader in consumers.get(node.output, [])} for node in graph.nodes}


def _scope_seconds(model, samples: dict[str, list[float]], scope: set[str], runs: int) -> float | None:
    """Seconds per model run of the kernel calls computing any node of ``scope`` (a call
    computing several nodes, as a fused pair's does, counts once); None when a node of
    ``scope`` has no kernel of its own."""
    total, covered = 0.0, set()
    for symbol, values in samples.items():
        nodes = model.kernels.get(symbol, ())
        hit = scope.intersection(nodes)
        if not hit:
            continue
        nodes_per_call = len(nodes) / (len(values) / runs)
        total += statistics.median(values) * math.ceil(len(hit) / nodes_per_call - 1e-9)
        covered |= hit
    return total if covered == scope else None


def network_picks(search: TaskSearch, count: int) -> list[tuple[Any, Any]]:
    """The (kernel, config) pairs of ``search`` worth timing in the model: the ``count``
    fastest alone that are not the default and ran faster than it (all when it failed or was
    not measured), fastest first."""
    from convc.tune.apply import decode_record
    default_key = trial_key(search.default_kernel, search.default_config)
    default = search.default_record
    picks, seen = [], {default_key}
    for record in sorted((r for r in search.records if r.ok), key=lambda r: r.seconds):
        if len(picks) == count or (default is not None and record.seconds >= default.seconds):
            break
        choice = decode_record(record, search.task)
        if choice is not None and record.trial_key not in seen:
            seen.add(record.trial_key)
            picks.append(choice)
    return picks


def confirm_in_network(graph: Graph, target: tvm.target.Target, searches: Sequence[TaskSearch],
                       database: Database, key: dict, versions: dict, device: str,
                       fusions: frozenset[str] = FUSIONS, picks_per_task: int = 1) -> list[Record]:
    """Time up to ``picks_per_task`` tuned picks per task (``network_picks``) inside the model
    (compiled with the enabled ``fusions``), each pick in a build of its own, and append the
    network records (see the module docstring); returns them. The pick builds are timed in
    groups against the default build, as many at once as ``BUILD_BYTES`` of weights allow."""
    picks = {search: network_picks(search, picks_per_task) for search in searches}
    picks = {search: choices for search, choices in picks.items() if choices}
    if not picks:
        return []
    default = _build(graph, target, None, fusions)
    inputs = _inputs(default)
    readers = _readers(graph)
    computed = {node for nodes in default.kernels.values() for node in nodes}  # views have no kernel
    weight_bytes = sum(array.nbytes for array in graph.constants.values())
    records = []
    for group in _groups(list(picks.items()), max(1, BUILD_BYTES // max(weight_bytes, 1) - 1)):
        builds = {(search, i): _build(graph, target, {search.task.problem: choice}, fusions)
                  for search, choices in group for i, choice in enumerate(choices)}
        rounds = _paired_rounds(default, builds, inputs)
        for search, choices in group:
            scope = set(search.task.nodes).union(*(readers.get(n, set()) & computed for n in search.task.nodes))
            seconds = _paired_seconds(default, [(builds[search, i], rounds[search, i]) for i in range(len(choices))],
                                      scope)
            if seconds is None:
                continue
            timed = [(search.default_kernel, search.default_config), *choices]
            for (k, c), t in zip(timed, seconds):
                record = outcome_record(search.task, Trial(search.task.problem, k, c), Outcome("ok", t, (t,)),
                                        key, versions, device, NETWORK)
                database.append(record)
                records.append(record)
    return records


def _paired_rounds(default, builds: dict, inputs: dict) -> dict[Any, list[tuple[dict, dict]]]:
    """Per pick build: ``ROUNDS`` pairs of kernel times (symbol -> seconds of each call over
    ``RUNS`` runs), the default build's and the pick's, run back to back (the order alternating
    from round to round), after a warm-up run of each."""
    for model in (default, *builds.values()):
        model.kernel_times(inputs, 2)
    rounds: dict[Any, list[tuple[dict, dict]]] = {name: [] for name in builds}
    for turn in range(ROUNDS):
        for name, model in builds.items():
            time.sleep(PAUSE)
            times = {runner is default: runner.kernel_times(inputs, RUNS)
                     for runner in ((model, default) if turn % 2 else (default, model))}
            rounds[name].append((times[True], times[False]))
    return rounds


def _paired_seconds(default, picks: list[tuple[Any, list[tuple[dict, dict]]]], scope: set[str]) -> list[float] | None:
    """Seconds per model run of ``scope`` in the default build (the median over every round of
    the task's picks) and in each pick's build (that times the median over its rounds of its
    ratio to the default run beside it); None when a node of the scope has no kernel."""
    base, ratios = [], []
    for model, rounds in picks:
        pairs = [(_scope_seconds(default, d, scope, RUNS), _scope_seconds(model, p, scope, RUNS)) for d, p in rounds]
        if any(d is None or p is None or d <= 0 for d, p in pairs):
            return None
        base += [d for d, _ in pairs]
        ratios.append(statistics.median(p / d for d, p in pairs))
    default_seconds = statistics.median(base)
    return [default_seconds, *(default_seconds * r for r in ratios)]


def _groups(picks: list, size: int) -> list[list]:
    """``picks`` ((task search, its choices) pairs) in groups of at most ``size`` choices, a
    task's choices in one group; a task with more choices than ``size`` makes a group of its
    own."""
    groups, current, held = [], [], 0
    for search, choices in picks:
        if current and held + len(choices) > size:
            groups.append(current)
            current, held = [], 0
        current.append((search, choices))
        held += len(choices)
    return groups + ([current] if current else [])


@dataclass(frozen=True)
class CheckCost:
    """What ``confirm_in_network`` costs: ``build`` seconds for the default build, then
    ``per_pick`` seconds per pick (its build and its rounds beside the default)."""

    build: float
    per_pick: float

    def seconds(self, picks: int) -> float:
        return self.build + picks * self.per_pick


def check_cost(graph: Graph, target: tvm.target.Target, fusions: frozenset[str] = FUSIONS) -> CheckCost:
    """The ``CheckCost`` of the model, estimated from one build of it and one run, both timed here."""
    start = time.monotonic()
    model = _build(graph, target, None, fusions)
    build = time.monotonic() - start
    inputs = _inputs(model)
    model.kernel_times(inputs, 1)  # the first run pays for setting up
    start = time.monotonic()
    model.kernel_times(inputs, 1)
    run = time.monotonic() - start
    return CheckCost(build, build + 2 * run + ROUNDS * (PAUSE + 2 * RUNS * run))
