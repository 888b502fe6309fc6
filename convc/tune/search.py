"""Which configs of a task to measure, in what order.

The order is the cost model's, made adaptive by measurement: first the default (the
cost model's pick, what an untuned compile runs: a tuned task is never slower than it),
then the default of every other applicable candidate, cheapest estimate first (so
im2col-vs-direct is settled by measurement early), then the rest of each candidate's
``space`` (sorted best first by the candidate's own register-tile model), taken round
robin over the *promising* candidates: those whose best time so far is within
``PROMISING`` of the task's best. The others get their turn when those are exhausted.
A candidate the cost model rates ``HOPELESS`` times slower than the best estimate (the
scalar ``generic`` fallback, usually) is measured only once everything else is.
Configs already measured (records in the database) are skipped: a rerun resumes.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Iterable, Sequence

from convc.tune.database import Record
from convc.tune.encode import dumps, knobs
from convc.tune.measure import Outcome, Trial
from convc.tune.task import Task, applicable, describe

PROMISING = 1.5
HOPELESS = 4.0


def trial_key(kernel: Any, config: Any) -> tuple[str, str, str]:
    return kernel.name, type(config).__name__, dumps(knobs(config))


class TaskSearch:
    """The search state of one task: what is left to try, what was measured, the best."""

    def __init__(self, index: int, task: Task, candidates: Sequence[Any], measured: Iterable[Record] = ()):
        self.index, self.task = index, task
        self.default_kernel, self.default_config = task.default()
        self.records: list[Record] = list(measured)
        done = {r.trial_key for r in self.records}
        machine = task.machine
        estimates = {k.name: k.estimate(task.problem, k.default_config(task.problem, machine), machine)
                     for k in applicable(task.problem, candidates)}
        kernels = sorted(applicable(task.problem, candidates), key=lambda k: estimates[k.name])
        cutoff = HOPELESS * min(estimates.values(), default=0.0)
        self.hopeless = {k.name for k in kernels if estimates[k.name] > cutoff}
        first = [(self.default_kernel, self.default_config)]
        first += [(k, k.default_config(task.problem, machine)) for k in kernels if k.name not in self.hopeless]
        self.first = deque(self._fresh(first, done))
        self.queues = {k.name: deque(self._fresh(((k, c) for c in k.space(task.problem, machine)), done))
                       for k in kernels}
        self._turn = 0

    @staticmethod
    def _fresh(pairs: Iterable[tuple[Any, Any]], done: set) -> Iterable[tuple[Any, Any]]:
        """``pairs`` without the measured ones (and without repeats)."""
        for kernel, config in pairs:
            key = trial_key(kernel, config)
            if key not in done:
                done.add(key)
                yield kernel, config

    # -- state ---------------------------------------------------------------------
    @property
    def best(self) -> Record | None:
        ok = [r for r in self.records if r.ok]
        return min(ok, key=lambda r: r.seconds) if ok else None

    @property
    def default_record(self) -> Record | None:
        key = trial_key(self.default_kernel, self.default_config)
        return next((r for r in self.records if r.trial_key == key and r.ok), None)

    @property
    def trials(self) -> int:
        return len(self.records)

    @property
    def remaining(self) -> int:
        return len(self.first) + sum(len(q) for q in self.queues.values())

    @property
    def exhausted(self) -> bool:
        return self.remaining == 0

    def best_of(self, kernel: str) -> float | None:
        times = [r.seconds for r in self.records if r.ok and r.candidate == kernel]
        return min(times) if times else None

    # -- stepping ------------------------------------------------------------------
    def next(self) -> Trial | None:
        """The next config to measure, or None when the space is exhausted."""
        if self.first:
            kernel, config = self.first.popleft()
            return Trial(self.task.problem, kernel, config)
        best = self.best
        names = [n for n, q in self.queues.items() if q]
        if not names:
            return None
        hopeful = [n for n in names if n not in self.hopeless] or names
        promising = [n for n in hopeful
                     if best is None or (self.best_of(n) or 0.0) <= PROMISING * best.seconds]
        pool = promising or hopeful
        name = pool[self._turn % len(pool)]
        self._turn += 1
        kernel, config = self.queues[name].popleft()
        return Trial(self.task.problem, kernel, config)

    def add(self, record: Record) -> None:
        self.records.append(record)


def outcome_record(task: Task, trial: Trial, outcome: Outcome, target: dict, versions: dict,
                   device: str, timing: str) -> Record:
    """The database record of one measured trial, timed in mode ``timing`` ('cold' or 'warm')."""
    name, config_type, _ = trial_key(trial.kernel, trial.config)
    return Record(task=task.signature, problem=describe(task.problem), target=target, versions=versions,
                  candidate=name, config_type=config_type, knobs=knobs(trial.config), status=outcome.status,
                  seconds=outcome.seconds, repeats=outcome.repeats, error=outcome.error, device=device,
                  timing=timing)
