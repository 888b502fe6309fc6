"""The tuning database: a directory of append-only JSON-lines files, one record per line.

Each measurement is one line of ``DIR/records.jsonl``, written with a single ``write`` on
a file opened for appending and ``fsync``'d before the next trial: a killed run loses at
most the trial in flight, and readers skip a torn last line (or any line that does not
parse). Records are never rewritten; ``merge`` concatenates databases, dropping duplicates.
Text, sorted keys, one record per line: the files diff, grep and merge like source.

A record holds the task signature and its readable problem, the target key, the convc /
TVM / record-format versions, the candidate and its knobs, and the outcome: ``ok`` with the
measured seconds (the best of ``repeats`` timings), ``wrong`` (output differs from the
reference; never used) or ``error`` (build or run failed; never used).
"""
from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import tvm

import convc
from convc.errors import ConvcError
from convc.tune.encode import dumps

FORMAT = 1
RECORDS = "records.jsonl"


class TuningDatabaseError(ConvcError):
    """A tuning database directory cannot be read or written."""


def versions() -> dict:
    """The versions a record depends on: its format, convc (kernels and knobs) and TVM (codegen)."""
    return {"format": FORMAT, "convc": convc.__version__, "tvm": tvm.__version__}


@dataclass(frozen=True)
class Record:
    """One measured (task, target, candidate, knobs)."""

    task: str                 # task signature (convc.tune.task.signature)
    problem: dict             # the readable problem the signature hashes
    target: dict              # convc.tune.task.TargetKey fields
    versions: dict
    candidate: str            # kernel name ('direct', 'im2col', ...)
    config_type: str          # the config class name
    knobs: dict               # its fields
    status: str               # 'ok' | 'wrong' | 'error'
    seconds: float | None = None
    repeats: tuple[float, ...] = ()
    error: str = ""
    device: str = "local"     # 'local' or 'rpc:KEY'
    time: float = field(default_factory=time.time)
    timing: str = "warm"      # 'cold' or 'warm' caches (convc.tune.measure.Timing); older records: warm

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.seconds is not None

    @property
    def trial_key(self) -> tuple[str, str, str]:
        """What makes two records the same trial (for resuming and merging)."""
        return self.candidate, self.config_type, dumps(self.knobs)

    def to_json(self) -> str:
        return dumps({**asdict(self), "repeats": list(self.repeats)})

    @staticmethod
    def from_json(line: str) -> "Record":
        data = json.loads(line)
        data["repeats"] = tuple(data.get("repeats", ()))
        return Record(**data)


def read_records(path: Path) -> tuple[list[Record], int]:
    """The records of one file and the number of unreadable lines skipped (a torn last line)."""
    records, bad = [], 0
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        raise TuningDatabaseError(f"tuning database {path}: cannot read: {err}") from None
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(Record.from_json(line))
        except (ValueError, TypeError):
            bad += 1
    return records, bad


class Database:
    """A tuning database directory (created on first write)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise TuningDatabaseError(f"tuning database {self.root} is not a directory")

    @property
    def path(self) -> Path:
        return self.root / RECORDS

    def files(self) -> list[Path]:
        """Every records file of the directory (``records.jsonl``, and ``*.jsonl`` copied in)."""
        return sorted(self.root.glob("*.jsonl")) if self.root.is_dir() else []

    def records(self, warn: bool = True) -> list[Record]:
        """All records, in file then line order; unreadable lines are skipped with a warning."""
        out, bad = [], 0
        for path in self.files():
            records, skipped = read_records(path)
            out.extend(records)
            bad += skipped
        if bad and warn:
            warnings.warn(f"tuning database {self.root}: skipped {bad} unreadable line(s) "
                          "(a run killed mid-write leaves at most one)", stacklevel=2)
        return out

    def append(self, record: Record) -> None:
        """Append one record durably (one write, then fsync)."""
        self.extend([record])

    def extend(self, records: Iterable[Record]) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as err:
            raise TuningDatabaseError(f"tuning database {self.root}: cannot write: {err}") from None
        try:
            self._terminate_torn_line(fd)
            for record in records:
                os.write(fd, (record.to_json() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _terminate_torn_line(self, fd: int) -> None:
        """After a crash mid-line, start the next record on a line of its own."""
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            os.write(fd, b"\n")


def merge(out: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> tuple[int, int]:
    """Append to ``out`` every record of ``inputs`` it lacks; (records added, duplicates skipped)."""
    target = Database(out)
    seen = {r.to_json() for r in target.records()}
    added: list[Record] = []
    duplicates = 0
    for path in inputs:
        source = Database(path)
        if not source.root.is_dir():
            raise TuningDatabaseError(f"tuning database {source.root} does not exist")
        for record in source.records():
            key = record.to_json()
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            added.append(record)
    if added:
        target.extend(added)
    return len(added), duplicates


def iter_compatible(records: Iterable[Record], target: dict, current: dict | None = None) -> Iterator[Record]:
    """The records measured for ``target`` with versions compatible with ``current``."""
    current = current or versions()
    return (r for r in records if r.target == target and compatible(r.versions, current))


def compatible(theirs: dict, ours: dict) -> bool:
    """Same record format, same convc version, same TVM major.minor."""
    def minor(v):
        return ".".join(str(v).split(".")[:2])
    return (theirs.get("format") == ours["format"] and theirs.get("convc") == ours["convc"]
            and minor(theirs.get("tvm")) == minor(ours["tvm"]))
