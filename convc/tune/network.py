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
once more per task whose tuned pick differs from its default with only that pick changed;
it runs them all interleaved with the VM's per-kernel timing (``CompiledModel.kernel_times``)
and appends, per such task, a ``timing="network"`` record of the default and one of the
pick: the seconds per model run of the task's kernels and of the kernels reading their
outputs (readers without a kernel of their own, such as reshapes, left out), in the
all-default build and in the pick's build. ``convc.tune.apply`` prefers a
task's network records, so of the two the one that runs faster in the model is compiled.
"""
from __future__ import annotations

import math
import statistics
import time
from typing import Any, Sequence

import numpy as np
import tvm

from convc.ir import Graph
from convc.lower.fusion import FUSIONS
from convc.tune.database import Database, Record
from convc.tune.measure import Outcome, Trial
from convc.tune.search import TaskSearch, outcome_record

NETWORK = "network"  # the timing mode of a record measured inside the model
ROUNDS = 6           # interleaved rounds of the builds
RUNS = 15            # model runs per build per round
PAUSE = 0.05         # seconds of idle before each round, so the other build's spinning threads sleep
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


def confirm_in_network(graph: Graph, target: tvm.target.Target, searches: Sequence[TaskSearch],
                       database: Database, key: dict, versions: dict, device: str,
                       fusions: frozenset[str] = FUSIONS) -> list[Record]:
    """Time the tasks whose tuned pick differs from their default inside the model (compiled
    with the enabled ``fusions``), each pick in a build of its own, and append the network
    records (see the module docstring); returns them. The pick builds are timed in groups
    against the default build, as many at once as ``BUILD_BYTES`` of weights allow."""
    from convc.tune.apply import decode_record
    picks: dict[Any, tuple[TaskSearch, Any, Any]] = {}
    for search in searches:
        best = search.best
        choice = decode_record(best, search.task) if best is not None else None
        if choice is not None and (choice[0].name, choice[1]) != (search.default_kernel.name, search.default_config):
            picks[search.task.problem] = (search, *choice)
    if not picks:
        return []
    default = _build(graph, target, None, fusions)
    inputs = _inputs(default)
    readers = _readers(graph)
    computed = {node for nodes in default.kernels.values() for node in nodes}  # views have no kernel
    weight_bytes = sum(array.nbytes for array in graph.constants.values())
    per_group = max(1, min(len(picks), BUILD_BYTES // max(weight_bytes, 1) - 1))
    problems = list(picks)
    records = []
    for first in range(0, len(problems), per_group):
        group = problems[first:first + per_group]
        builds = {"default": default}
        builds.update((p, _build(graph, target, {p: picks[p][1:]}, fusions)) for p in group)
        samples = _interleaved_kernel_times(builds, inputs)
        for problem in group:
            search, kernel, config = picks[problem]
            scope = set(search.task.nodes).union(*(readers.get(n, set()) & computed for n in search.task.nodes))
            seconds = [_scope_seconds(builds[name], samples[name], scope, ROUNDS * RUNS)
                       for name in ("default", problem)]
            if None in seconds:
                continue
            for (k, c), t in zip(((search.default_kernel, search.default_config), (kernel, config)), seconds):
                record = outcome_record(search.task, Trial(search.task.problem, k, c), Outcome("ok", t, (t,)),
                                        key, versions, device, NETWORK)
                database.append(record)
                records.append(record)
    return records


def check_seconds(graph: Graph, target: tvm.target.Target, picks: int, fusions: frozenset[str] = FUSIONS) -> float:
    """The seconds ``confirm_in_network`` will take for ``picks`` tasks whose pick differs from
    the default, estimated from one build of the model and one run of it, both timed here."""
    start = time.monotonic()
    model = _build(graph, target, None, fusions)
    build = time.monotonic() - start
    inputs = _inputs(model)
    model.kernel_times(inputs, 1)  # the first run pays for setting up
    start = time.monotonic()
    model.kernel_times(inputs, 1)
    run = time.monotonic() - start
    return (picks + 1) * (build + 2 * run + ROUNDS * (PAUSE + RUNS * run))


def _interleaved_kernel_times(builds: dict, inputs: dict) -> dict[Any, dict[str, list[float]]]:
    """Per build: kernel symbol -> seconds of each call over ``ROUNDS`` rounds of ``RUNS`` runs,
    the builds taking turns each round (after a warm-up run of each)."""
    samples: dict[Any, dict[str, list[float]]] = {name: {} for name in builds}
    for model in builds.values():
        model.kernel_times(inputs, 2)
    for _ in range(ROUNDS):
        for name, model in builds.items():
            time.sleep(PAUSE)
            for symbol, values in model.kernel_times(inputs, RUNS).items():
                samples[name].setdefault(symbol, []).extend(values)
    return samples
