"""The in-model check (``convc.tune.network``) in a new Python process.

Run in the tuning process right after the search, the check timed every build 1.5-2x slower
than a new process did, and kept 21 of MobileNetV2's 23 tuned picks and 5 of ResNet-18's 19;
the same databases checked in a new process kept 9 and 18, and MobileNetV2 compiled with them
ran 4.06 ms against 4.48 ms (untuned: 4.45 ms; 2 threads, interleaved). The cause is not
isolated (the model run in a process after 300 trials of 1x1 convs was as fast as in a new
one), so the check gets a process of its own. A plain subprocess, not ``multiprocessing``:
that needs the caller's main module to be a file it can import again (not so in a notebook
or ``python -``).
"""
from __future__ import annotations

import pickle
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from convc.errors import ConvcError
from convc.tune.measure import LocalMeasurer, Timing
from convc.tune.network import confirm_in_network
from convc.tune.setup import prepare

RESULT = "records.pickle"  # what the check's process leaves beside its request


@dataclass(frozen=True)
class CheckRequest:
    """The check of a tune's tasks ``tasks`` (task numbers) as data a new process can take:
    ``model`` is a path or a serialized ModelProto; ``picks_per_task`` as ``confirm_in_network``'s;
    the rest as ``convc.tune.tune``'s arguments."""

    model: Any
    db: str
    target: str
    input_shapes: dict
    disable_passes: tuple[str, ...]
    dtype: str
    timing: Timing
    tasks: tuple[int, ...]
    picks_per_task: int = 1

    @staticmethod
    def of(model, **fields) -> "CheckRequest":
        """The request for ``model`` (a path or a ModelProto)."""
        return CheckRequest(model.SerializeToString() if isinstance(model, onnx.ModelProto) else model, **fields)


def check_in_fresh_process(request: CheckRequest) -> list:
    """``confirm_in_network`` on the database's records in a new process; the records it appended."""
    with tempfile.TemporaryDirectory(prefix="convc-check-") as tmp:
        path = Path(tmp) / "request.pickle"
        path.write_bytes(pickle.dumps(request))
        code = "import sys; from convc.tune.fresh import run_check_file; run_check_file(sys.argv[1])"
        done = subprocess.run([sys.executable, "-c", code, str(path)], stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            last = " | ".join(done.stderr.strip().splitlines()[-3:])
            raise ConvcError(f"tune: the in-model check failed (exit {done.returncode}): {last}")
        return pickle.loads(path.with_name(RESULT).read_bytes())


def run_check_file(path: str) -> None:
    """The new process's side: the check of the pickled request at ``path``; its records
    pickled beside it."""
    request = pickle.loads(Path(path).read_bytes())
    model = onnx.load_from_string(request.model) if isinstance(request.model, bytes) else request.model
    setup = prepare(model, request.db, request.target, request.input_shapes or None, request.disable_passes,
                    request.dtype, request.timing)
    active = [s for s in setup.searches if s.index in request.tasks]
    records = confirm_in_network(setup.graph, setup.target, active, setup.database, setup.key, setup.versions,
                                 LocalMeasurer.device, setup.fusions, request.picks_per_task)
    Path(path).with_name(RESULT).write_bytes(pickle.dumps(records))
