"""``tune``: spend a trial or time budget on a model's tasks, recording every measurement.

Budget policy: every task's default is measured first (heaviest task first), so each task
has a baseline and an untuned compile's time is known. Then each step goes to the task
with the most to gain, scored ``count x best time / (1 + trials on it)``: the end-to-end
time a task holds, discounted by how much it was already searched (returns diminish).
Tasks whose space is exhausted drop out. ``trials`` counts the records of these tasks
already in the database, so rerunning an interrupted ``tune`` finishes the same budget;
``time_budget`` is this run's wall time, the in-model check's included: the search stops
early by the check's time for one pick per task, estimated from one build and one run of the
model (``convc.tune.network.check_cost``); time the search leaves (a space exhausted
early) goes to more picks per task in the check, up to ``NETWORK_PICKS``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Collection, Mapping, Sequence

from convc.errors import ConvcError
from convc.tune.measure import LocalMeasurer, Measurer, RPCMeasurer, Timing
from convc.tune.fresh import CheckRequest, check_in_fresh_process
from convc.tune.network import CheckCost, check_cost
from convc.tune.progress import Progress
from convc.tune.search import TaskSearch, outcome_record
from convc.tune.setup import prepare

NETWORK_PICKS = 3  # the most picks per task the in-model check times (see _picks_per_task)


@dataclass(frozen=True)
class TuneReport:
    """What a ``tune`` run left: per task, its search (records, default, best)."""

    searches: tuple[TaskSearch, ...]
    trials_run: int
    seconds: float

    @property
    def wrong(self) -> int:
        return sum(1 for s in self.searches for r in s.records if r.status == "wrong")


@dataclass(frozen=True)
class Budget:
    """At most ``trials`` records per model (existing ones count) and ``seconds`` of this run."""

    trials: int | None = None
    seconds: float | None = None

    def __post_init__(self):
        if self.trials is None and self.seconds is None:
            raise ConvcError("tune: give a budget: --trials N or --time-budget DURATION")
        if (self.trials is not None and self.trials < 1) or (self.seconds is not None and self.seconds <= 0):
            raise ConvcError(f"tune: the budget must be positive (trials={self.trials}, seconds={self.seconds})")


def parse_duration(text: str) -> float:
    """'90', '90s', '20m', '1h30m' -> seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    total, number = 0.0, ""
    for ch in text.strip().lower():
        if ch.isdigit() or ch == ".":
            number += ch
        elif ch in units and number:
            total, number = total + float(number) * units[ch], ""
        else:
            raise ConvcError(f"--time-budget {text!r}: expected a duration like 90s, 20m or 1h30m")
    if number:
        total += float(number)
    if total <= 0:
        raise ConvcError(f"--time-budget {text!r}: expected a positive duration")
    return total


def select_tasks(searches: list[TaskSearch], spec: str | None) -> list[TaskSearch]:
    """``--tasks 0,3,5``: only these task numbers (as listed by the progress table)."""
    if not spec:
        return searches
    try:
        wanted = {int(part) for part in spec.split(",") if part.strip()}
    except ValueError:
        raise ConvcError(f"--tasks {spec!r}: expected task numbers, e.g. 0,3,5") from None
    unknown = sorted(wanted - {s.index for s in searches})
    if unknown:
        raise ConvcError(f"--tasks: no task {unknown} (the model has tasks 0..{len(searches) - 1})")
    return [s for s in searches if s.index in wanted]


def tune(model, db: str, target: str = "llvm", trials: int | None = None, time_budget: float | None = None,
         input_shapes: Mapping[str, Sequence[int]] | None = None, tasks: str | None = None,
         rpc_tracker: str | None = None, rpc_key: str | None = None, timing: Timing = Timing(),
         candidates: Sequence[Any] | None = None, disable_passes: Collection[str] = (),
         progress: Progress | None = None, dtype: str = "float32", confirm: bool = True) -> TuneReport:
    """Tune the convs of ``model`` (path or ModelProto) for ``target``; records go to ``db``.

    ``trials`` / ``time_budget`` (seconds) bound the work (see the module docstring);
    ``tasks`` restricts it to some task numbers ("0,3"); ``rpc_tracker`` ("HOST:PORT") with
    ``rpc_key`` measures on the tracker's devices instead of this machine (a CUDA target
    needs one of the two: a local GPU, or a tracker's). ``candidates`` are the conv kernels
    searched besides the default (default: the target backend's; tests pass a list with a
    broken one); a fused pair's task searches the backend's pair kernel. ``dtype`` is the
    precision the model will be compiled in (``convc.compile``).
    With ``confirm`` (CPU, measured here), the tuned picks are then timed inside the model
    against the defaults (``convc.tune.network``), in a new process (``convc.tune.fresh``).
    """
    budget = Budget(trials, time_budget)
    setup = prepare(model, db, target, input_shapes, disable_passes, dtype, timing, candidates)
    tvm_target, key, current, mode = setup.target, setup.key, setup.versions, setup.mode
    measurer = _measurer(tvm_target, rpc_tracker, rpc_key, timing)
    searches = setup.searches
    active = select_tasks(searches, tasks)
    progress = progress or Progress()
    progress.start(active, budget.trials, budget.seconds, measurer.device)
    start, run = time.monotonic(), 0
    check = isinstance(measurer, LocalMeasurer) and tvm_target.kind.name == "llvm" and confirm
    search_seconds, cost = budget.seconds, None
    if check and budget.seconds is not None:
        cost = check_cost(setup.graph, tvm_target, setup.fusions)
        search_seconds = budget.seconds - cost.seconds(len(active))
    while True:
        used = sum(s.trials for s in active)
        room = measurer.parallel
        if budget.trials is not None:
            room = min(room, budget.trials - used)
        if search_seconds is not None and time.monotonic() - start >= search_seconds:
            room = 0
        batch = _next_batch(active, room)
        if not batch:
            break
        outcomes = measurer.measure([trial for _, trial in batch])
        for (search, trial), outcome in zip(batch, outcomes):
            record = outcome_record(search.task, trial, outcome, key, current, measurer.device, mode)
            setup.database.append(record)
            search.add(record)
            run += 1
            progress.trial(search, record, active)
    if check:
        request = CheckRequest.of(model, db=db, target=target, input_shapes=dict(input_shapes or {}),
                                  disable_passes=tuple(disable_passes), dtype=dtype, timing=timing,
                                  tasks=tuple(s.index for s in active),
                                  picks_per_task=_picks_per_task(budget, time.monotonic() - start, cost,
                                                                 len(active)))
        progress.network(check_in_fresh_process(request))
    report = TuneReport(tuple(searches), run, time.monotonic() - start)
    progress.finish(active, report)
    return report


def _picks_per_task(budget: Budget, elapsed: float, cost: CheckCost | None, tasks: int) -> int:
    """Picks per task the in-model check times: as many (up to ``NETWORK_PICKS``) as the time
    budget has room for after the search at the check's ``cost``; one without a time budget."""
    if budget.seconds is None or cost is None or cost.per_pick <= 0:
        return 1
    room = (budget.seconds - elapsed - cost.build) / cost.per_pick
    return max(1, min(NETWORK_PICKS, int(room // max(tasks, 1))))


def _measurer(target, rpc_tracker: str | None, rpc_key: str | None, timing: Timing) -> Measurer:
    if rpc_tracker is None and rpc_key is None:
        return LocalMeasurer(target, timing)
    if not (rpc_tracker and rpc_key):
        raise ConvcError("tune: --rpc-tracker HOST:PORT and --rpc-key KEY go together")
    return RPCMeasurer(target, rpc_tracker, rpc_key, timing)


def _gain(search: TaskSearch) -> float:
    best = search.best
    seconds = best.seconds if best else search.task.estimate()
    return search.task.count * seconds / (1 + search.trials)


def _next_batch(searches: list[TaskSearch], room: int) -> list[tuple[TaskSearch, object]]:
    """Up to ``room`` trials: defaults of unmeasured tasks first, then by ``_gain``."""
    batch: list[tuple[TaskSearch, object]] = []
    pending: dict[int, int] = {}
    for _ in range(max(room, 0)):
        open_ = [s for s in searches if not s.exhausted]
        if not open_:
            break
        no_default = [s for s in open_ if s.trials + pending.get(s.index, 0) == 0]
        pool = no_default or open_
        search = max(pool, key=lambda s: _gain(s) / (1 + pending.get(s.index, 0)))
        trial = search.next()
        if trial is None:
            continue
        pending[search.index] = pending.get(search.index, 0) + 1
        batch.append((search, trial))
    return batch
