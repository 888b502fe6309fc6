"""What ``convc tune`` prints: a status line per trial and a summary table at the end.

Each line: tasks with a measured baseline / total, trials / budget, the task and config
just measured with its time, the task's best and default, the estimated conv time of the
whole model (sum over tasks of count x best, the cost model's estimate where nothing is
measured yet) and the ETA. Wrong or failing candidates are logged on their own line.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

from convc.tune.database import Record


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3f}"


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


def knob_text(record: Record) -> str:
    return ",".join(f"{k}={v}" for k, v in record.knobs.items())


def model_time(searches) -> float:
    """Estimated conv time of the model: count x best measured (else estimated) per task."""
    total = 0.0
    for s in searches:
        best = s.best
        total += s.task.count * (best.seconds if best else s.task.estimate())
    return total


class Progress:
    """Prints to ``stream`` (stderr by default); ``quiet`` keeps only the summary."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet

    def _print(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def start(self, searches, trials: int | None, seconds: float | None, device: str) -> None:
        self.begin, self.trials_budget, self.seconds_budget = time.monotonic(), trials, seconds
        self.done_before = sum(s.trials for s in searches)
        if self.quiet:
            return
        budget = " and ".join(filter(None, [f"{trials} trials" if trials else "",
                                            f"{duration(seconds)}" if seconds else ""]))
        self._print(f"tuning {len(searches)} task(s) on {device}, budget {budget}"
                    + (f" ({self.done_before} trials already in the database)" if self.done_before else ""))
        self._print(f"{'#':>3} {'task':<34}{'count':>6}{'space':>7}  default (cost model)")
        for s in searches:
            self._print(f"{s.index:>3} {s.task.label:<34}{s.task.count:>6}{s.remaining + s.trials:>7}  "
                        f"{s.default_kernel.name}")

    def trial(self, search, record: Record, searches) -> None:
        if self.quiet:
            return
        used = sum(s.trials for s in searches)
        with_base = sum(1 for s in searches if s.best is not None)
        run = used - self.done_before
        elapsed = time.monotonic() - self.begin
        left = []
        if self.trials_budget:
            left.append(elapsed / max(run, 1) * max(self.trials_budget - used, 0))
        if self.seconds_budget:
            left.append(self.seconds_budget - elapsed)
        remaining = sum(s.remaining for s in searches)
        left.append(elapsed / max(run, 1) * remaining)
        total = f"/{self.trials_budget}" if self.trials_budget else ""
        result = f"{ms(record.seconds)} ms" if record.ok else record.status.upper()
        best, default = search.best, search.default_record
        self._print(f"[tasks {with_base}/{len(searches)} | trials {used}{total}] #{search.index} "
                    f"{search.task.label}: {record.candidate}({knob_text(record)}) {result} | best "
                    f"{ms(best.seconds if best else None)} {best.candidate if best else ''} default "
                    f"{ms(default.seconds if default else None)} | model conv est {ms(model_time(searches))} ms"
                    f" | ETA {duration(min(left))}")
        if not record.ok:
            self._print(f"    rejected {record.candidate}({knob_text(record)}): {record.error}")

    def network(self, records) -> None:
        """The in-model check of the tuned picks (``convc.tune.network``): per task, which won."""
        if not records:
            self._print("in the model: no tuned pick differs from its default")
            return
        by_task: dict[str, list] = {}
        for record in records:
            by_task.setdefault(record.task, []).append(record)
        kept = sum(1 for default, *picks in by_task.values() if min(r.seconds for r in picks) < default.seconds)
        timed = sum(len(task) - 1 for task in by_task.values())
        self._print(f"in the model: {timed} pick(s) of {len(by_task)} task(s) timed; {kept} task(s) keep their "
                    f"fastest pick there, the others fall back to the default")

    def finish(self, searches, report) -> None:
        self._print(summary(searches, report.trials_run, report.seconds))


def summary(searches, trials_run: int, seconds: float) -> str:
    """The end-of-run table: per task default vs best, and the model's conv time before/after."""
    lines = [f"{'#':>3} {'task':<34}{'count':>6}{'trials':>7}{'default ms':>12}{'best ms':>10}{'speedup':>8}"
             f"  best candidate"]
    before = after = 0.0
    for s in searches:
        best, default = s.best, s.default_record
        speedup = f"{default.seconds / best.seconds:.2f}x" if best and default else "-"
        bad = sum(1 for r in s.records if not r.ok)
        lines.append(f"{s.index:>3} {s.task.label:<34}{s.task.count:>6}{s.trials:>7}"
                     f"{ms(default.seconds if default else None):>12}{ms(best.seconds if best else None):>10}"
                     f"{speedup:>8}  {best.candidate + '(' + knob_text(best) + ')' if best else '-'}"
                     + (f"  [{bad} rejected]" if bad else ""))
        if best and default:
            before += s.task.count * default.seconds
            after += s.task.count * best.seconds
    lines.append(f"model conv time (measured tasks): default {ms(before)} ms -> tuned {ms(after)} ms; "
                 f"{trials_run} trials in {duration(seconds)}")
    return "\n".join(lines)
