"""What a tune works on, derived from its arguments: shared by ``convc.tune.tuner`` and the
in-model check's own process (``convc.tune.fresh``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Collection, Mapping, Sequence

from convc.lower.fusion import FUSIONS, enabled_fusions
from convc.schedules.cpu.blocked import ConvProblem
from convc.target import resolve_target
from convc.tune.database import Database, iter_compatible, versions
from convc.tune.encode import plain
from convc.tune.measure import Timing
from convc.tune.search import TaskSearch
from convc.tune.task import TargetKey, Task, extract_tasks


@dataclass(frozen=True)
class Setup:
    """The model's graph after the rewrite passes, the target, the database, the target key
    and versions its records carry, the timing mode, the fusions made, and one search per
    task holding that mode's compatible records."""

    graph: Any
    target: Any
    database: Database
    key: dict
    versions: dict
    mode: str
    fusions: frozenset[str]
    searches: list[TaskSearch]


def prepare(model, db: str, target: str, input_shapes: Mapping[str, Sequence[int]] | None,
            disable_passes: Collection[str], dtype: str, timing: Timing,
            candidates: Sequence[Any] | None = None) -> Setup:
    """The ``Setup`` of a tune (arguments as ``convc.tune.tune``'s)."""
    from convc.compiler import check_dtype, convert_dtype, lower_to_ir
    tvm_target = resolve_target(target)
    check_dtype(dtype)
    fusions = enabled_fusions(disable_passes)
    graph = convert_dtype(lower_to_ir(model, input_shapes, disable_passes=set(disable_passes) - FUSIONS), dtype)
    database = Database(db)
    key, current = plain(TargetKey.of(tvm_target)), versions()
    mode = timing.mode(tvm_target)
    old = [r for r in iter_compatible(database.records(), key, current) if r.timing == mode]
    searches = [TaskSearch(i, t, searched(t, candidates), [r for r in old if r.task == t.signature])
                for i, t in enumerate(extract_tasks(graph, tvm_target, fusions))]
    return Setup(graph, tvm_target, database, key, current, mode, fusions, searches)


def searched(task: Task, candidates: Sequence[Any] | None) -> Sequence[Any]:
    """The kernels searched for ``task``: ``candidates`` for a conv when given, else its kind's."""
    return candidates if candidates and isinstance(task.problem, ConvProblem) else task.candidates
