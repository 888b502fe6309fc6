"""The tuned picks checked inside the model: a task keeps its tuned pick where it is faster
there than the cost model's default, and falls back to the default where it is not.

A kernel timed alone runs again and again on the same input, split over the cores the same
way each time, so each core finds its part of the input in its own cache. In the network
the layer before wrote that input, split its own way: a kernel whose threads each read all
of the input (channel tiles outer) then fetches half of it from the other core. Tuned 1x1
configs of MobileNetV2 won alone and lost in the network (576 -> 96 over 14x14, 2 threads:
0.081 vs 0.089 ms alone with cold weights, 0.105 vs 0.079 ms in the model), which made the
tuned model slower than the untuned one.

After the search, ``confirm_in_network`` compiles the model with the cost model's picks and
with the database's best, runs the two interleaved with the VM's per-kernel timing
(``CompiledModel.kernel_times``) and appends, for every task whose tuned pick is not its
default, a ``timing="network"`` record of each of the two: its median seconds per call in
the model. ``convc.tune.apply`` prefers a task's network records, so the faster of the two
in the model is compiled. A fused pair's task (``convc.tune.task``) is timed by its fused
kernel's calls; a task whose nodes share a kernel with nodes of other tasks in either build
is left as it is.
"""
from __future__ import annotations

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
ROUNDS = 6           # interleaved rounds of the two builds
RUNS = 15            # model runs per build per round
PAUSE = 0.05         # seconds of idle before each round, so the other build's spinning threads sleep


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


def _per_node(model, times: dict[str, list[float]]) -> dict[str, tuple[frozenset, float]]:
    """node name -> (the nodes its kernel computes, median seconds per call)."""
    found = {}
    for symbol, samples in times.items():
        nodes = frozenset(model.kernels.get(symbol, ()))
        for node in nodes:
            found[node] = (nodes, statistics.median(samples))
    return found


def _task_seconds(per_node: dict, nodes: tuple[str, ...]) -> float | None:
    """Mean seconds per call of a task's nodes (a fused pair's two nodes: its kernel's time
    per call); None where a kernel computes nodes of other tasks too or a node has no kernel
    of its own."""
    if not all(n in per_node and per_node[n][0] <= set(nodes) for n in nodes):
        return None
    return float(np.mean([per_node[n][1] for n in nodes]))


def confirm_in_network(graph: Graph, target: tvm.target.Target, searches: Sequence[TaskSearch],
                       database: Database, key: dict, versions: dict, device: str,
                       fusions: frozenset[str] = FUSIONS) -> list[Record]:
    """Time the tasks whose tuned pick differs from their default inside the model (compiled
    with the enabled ``fusions``) and append the network records (see the
    module docstring); returns them."""
    from convc.tune.apply import decode_record
    picks: dict[Any, tuple[TaskSearch, Any, Any]] = {}
    for search in searches:
        best = search.best
        choice = decode_record(best, search.task) if best is not None else None
        if choice is not None and (choice[0].name, choice[1]) != (search.default_kernel.name, search.default_config):
            picks[search.task.problem] = (search, *choice)
    if not picks:
        return []
    builds = {"default": _build(graph, target, None, fusions),
              "tuned": _build(graph, target, {p: (k, c) for p, (_, k, c) in picks.items()}, fusions)}
    inputs = _inputs(builds["default"])
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in builds}
    for name, model in builds.items():  # warm-up
        model.kernel_times(inputs, 2)
    for _ in range(ROUNDS):
        for name, model in builds.items():
            time.sleep(PAUSE)
            for symbol, values in model.kernel_times(inputs, RUNS).items():
                samples[name].setdefault(symbol, []).extend(values)
    per_node = {name: _per_node(builds[name], samples[name]) for name in builds}
    records = []
    for search, kernel, config in picks.values():
        seconds = [_task_seconds(per_node[name], search.task.nodes) for name in builds]
        if None in seconds:
            continue
        for (k, c), t in zip(((search.default_kernel, search.default_config), (kernel, config)), seconds):
            record = outcome_record(search.task, Trial(search.task.problem, k, c), Outcome("ok", t, (t,)),
                                    key, versions, device, NETWORK)
            database.append(record)
            records.append(record)
    return records
