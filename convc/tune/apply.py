"""Using a tuning database at compile time: the best valid record of each task.

A record counts when it was measured for this target (same CPU model, features, cores,
layout block; or same GPU architecture) with compatible versions, its candidate exists and applies to the task,
and its knobs decode into the candidate's current config class. Others are ignored with
one warning per reason; tasks without a usable record keep the cost model's choice.
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any

import tvm

from convc.ir import Graph
from convc.lower.fusion import FUSIONS
from convc.tune.database import Database, Record, TuningDatabaseError, compatible, versions
from convc.tune.encode import decode_config, plain
from convc.tune.network import NETWORK
from convc.tune.task import Problem, TargetKey, Task, extract_tasks


@dataclass(frozen=True)
class Tuned:
    """The tuned kernel and config per problem (a conv's, or a fused pair's), and the tasks
    left to the cost model."""

    choices: dict[Problem, tuple[Any, Any]]
    missing: tuple[Task, ...]


def decode_record(record: Record, task: Task) -> tuple[Any, Any] | None:
    """The (kernel, config) a record holds for ``task``; None when this convc has no such
    kernel, it does not apply, or its knobs do not decode."""
    try:
        kernel = task.kernel(record.candidate)
    except KeyError:
        return None
    if kernel.decline(task.problem) is not None:
        return None
    config = decode_config(kernel.default_config(task.problem, task.machine), record.config_type, record.knobs)
    return None if config is None else (kernel, config)


def load_tuned(db: str, graph: Graph, target: tvm.target.Target, fusions: frozenset[str] = FUSIONS) -> Tuned:
    """The best usable record per task of ``graph`` (after the rewrite passes) in ``db``;
    ``fusions``: the fusions the compile makes (their convs are no tasks, see ``extract_tasks``)."""
    database = Database(db)
    if not database.root.is_dir():
        raise TuningDatabaseError(f"tuning database {db} does not exist (create one with `convc tune`)")
    key, current = plain(TargetKey.of(target)), versions()
    tasks = {t.signature: t for t in extract_tasks(graph, target, fusions)}
    ignored: Counter[str] = Counter()
    best: dict[str, list[Record]] = {}
    for record in database.records():
        if record.task not in tasks or not record.ok:
            continue
        if record.target != key:
            ignored[f"measured on another target ({_target_text(record.target)}; this is "
                    f"{_target_text(key)})"] += 1
        elif not compatible(record.versions, current):
            ignored[f"written by incompatible versions ({record.versions}; these are {current})"] += 1
        else:
            best.setdefault(record.task, []).append(record)
    choices, missing = {}, []
    for signature, task in tasks.items():
        for record in sorted(_one_timing(best.get(signature, [])), key=lambda r: r.seconds):
            choice = decode_record(record, task)
            if choice is not None:
                choices[task.problem] = choice
                break
            ignored[f"candidate or knobs unknown to this convc ({record.candidate} {record.config_type})"] += 1
        else:
            missing.append(task)
    for reason, count in ignored.items():
        warnings.warn(f"tuning database {db}: ignored {count} record(s) {reason}", stacklevel=2)
    if missing:
        names = "; ".join(f"{t.label} (nodes {', '.join(t.nodes)})" for t in missing)
        warnings.warn(f"tuning database {db}: no record for {len(missing)} of {len(tasks)} task(s), "
                      f"which keep the cost model's choice: {names}", stacklevel=2)
    return Tuned(choices, tuple(missing))


# timing modes, most telling first: inside the model (convc.tune.network), then alone with
# cold caches (what ``convc tune`` uses on a CPU by default), then the others
TIMING_PREFERENCE = (NETWORK, "cold")


def _one_timing(records: list[Record]) -> list[Record]:
    """The records of a task's most telling timing mode (times of different modes do not
    compare); of in-model records, the latest per config (each check times both picks anew)."""
    for mode in TIMING_PREFERENCE:
        chosen = [r for r in records if r.timing == mode]
        if chosen:
            return _latest_per_config(chosen) if mode == NETWORK else chosen
    return records


def _latest_per_config(records: list[Record]) -> list[Record]:
    latest = {}
    for record in sorted(records, key=lambda r: r.time):
        latest[record.trial_key] = record
    return list(latest.values())


def _target_text(key: dict) -> str:
    return f"{key.get('kind')} {key.get('cpu')}, {key.get('cores')} cores, block {key.get('block')}"
