"""Measuring one kernel config: build, check against the reference (``convc.tune.cases``), then time.

``LocalMeasurer`` runs in this process on this machine's CPU (or GPU, for a CUDA target)
with TVM's ``time_evaluator``;
``RPCMeasurer`` builds here and runs on the devices a TVM RPC tracker hands out (one
session per trial, as many trials at once as there are servers), timing remotely with the
same evaluator. Either way the output is compared with the NumPy reference on random
inputs before any time is taken: a wrong kernel gets ``wrong``, a failing one ``error``.
"""
from __future__ import annotations

import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np
import tvm

from convc.backend import backend_of
from convc.errors import ConvcError
from convc.lower.module import error_summary
from convc.runtime import cuda_missing
from convc.tune.cases import TrialCase, case_for
from convc.tune.task import Problem

# max |error| / max |reference| accepted, by the dtype the kernel computes in (float32: sums
# in another order; float16: 11-bit mantissas, float32 accumulation)
TOLERANCE = {"float32": 1e-4, "float16": 1e-2}
# TVM runtime function run before each timed run: flushes every argument but the first from the CPU caches
COLD_CACHES = "cache_flush_cpu_non_first_arg"


@dataclass(frozen=True)
class Timing:
    """How to time a kernel.

    ``cold`` (CPU): as in a network at small batch, where each layer's weights are read once
    per inference and have left the caches since: every run starts with the weight, bias,
    epilogue operands and output flushed from the caches (the input stays warm: the layer
    before just wrote it); ``cold_runs`` single runs, the median counts. Kernels that trade
    a bigger weight for fewer multiplications (Winograd) look much better with warm weights:
    3x3 256 -> 256 over 14x14, 1 thread: Winograd F(4x4) 0.82 ms warm / 1.60 ms cold,
    direct 1.37 / 1.57 ms. Otherwise (and always on a GPU): ``repeat`` rounds of at least
    ``min_repeat_ms`` each, the best counts.
    """

    repeat: int = 5
    min_repeat_ms: int = 50
    cold: bool = True
    cold_runs: int = 30

    def mode(self, target: tvm.target.Target) -> str:
        """'cold' or 'warm': how a kernel for ``target`` is timed (times of the two modes do
        not compare; a tuning record says which it holds)."""
        return "cold" if self.cold and target.kind.name == "llvm" else "warm"


@dataclass(frozen=True)
class Trial:
    problem: Problem
    kernel: Any
    config: Any


@dataclass(frozen=True)
class Outcome:
    status: str                       # 'ok' | 'wrong' | 'error'
    seconds: float | None = None
    repeats: tuple[float, ...] = ()
    error: str = ""


class Measurer(Protocol):
    device: str
    parallel: int

    def measure(self, trials: Sequence[Trial]) -> list[Outcome]: ...


def compile_trial(trial: Trial, target: tvm.target.Target):
    """(executable, pack_weight) of one trial."""
    backend = backend_of(target)
    with target:
        built = trial.kernel.build(trial.problem, trial.config)
        func = backend.finish(built.func, backend.machine(target))
        return tvm.compile(tvm.IRModule({"main": func}), target=target), built.pack_weight


def run_and_time(module, device, case: TrialCase, pack_weight, timing: Timing, mode: str = "warm") -> Outcome:
    """Run ``module["main"]`` once on ``case`` and check it; time it only when right, in
    ``mode`` (``Timing.mode``)."""
    args = [tvm.runtime.tensor(a, device) for a in case.arguments(pack_weight)]
    module["main"](*args)
    error = case.error(args[-1].numpy())
    if not error <= TOLERANCE.get(case.dtype, TOLERANCE["float32"]):
        return Outcome("wrong", error=f"output differs from the reference: max relative error {error:.3g}")
    if mode == "cold":
        evaluator = module.time_evaluator("main", device, number=1, repeat=timing.cold_runs, min_repeat_ms=0,
                                          f_preproc=COLD_CACHES)
        repeats = tuple(float(t) for t in evaluator(*args).results)
        return Outcome("ok", float(np.median(repeats)), repeats)
    evaluator = module.time_evaluator("main", device, number=1, repeat=timing.repeat,
                                      min_repeat_ms=timing.min_repeat_ms)
    repeats = tuple(float(t) for t in evaluator(*args).results)
    return Outcome("ok", min(repeats), repeats)


def device_of(target: tvm.target.Target, session: Any = tvm.runtime) -> Any:
    """The device of ``session`` (this process, or an RPC session) that runs ``target``'s code."""
    return session.cuda(0) if target.kind.name == "cuda" else session.cpu(0)


class LocalMeasurer:
    """Builds and times trials one at a time on this machine (its CPU, or its GPU for CUDA)."""

    device = "local"
    parallel = 1

    def __init__(self, target: tvm.target.Target, timing: Timing = Timing()):
        if target.kind.name == "cuda" and cuda_missing():
            raise ConvcError(f"tune: measuring CUDA kernels needs a GPU and this machine has "
                             f"{cuda_missing()}; measure on a remote one with --rpc-tracker HOST:PORT "
                             "--rpc-key KEY")
        self.target, self.timing = target, timing
        self.pack_operand = backend_of(target).pack_operand
        self.cases: dict[Problem, TrialCase] = {}

    def measure(self, trials: Sequence[Trial]) -> list[Outcome]:
        return [self._one(t) for t in trials]

    def _one(self, trial: Trial) -> Outcome:
        case = self.cases.setdefault(trial.problem, case_for(trial.problem, self.pack_operand))
        try:
            executable, pack_weight = compile_trial(trial, self.target)
            return run_and_time(executable.mod, device_of(self.target), case, pack_weight, self.timing,
                                self.timing.mode(self.target))
        except Exception as err:  # a candidate that fails to build or run is a result, not a crash
            return Outcome("error", error=error_summary(err))


class RPCMeasurer:
    """Builds trials here and runs each on a device of ``key`` from the tracker at ``host:port``."""

    def __init__(self, target: tvm.target.Target, tracker: str, key: str, timing: Timing = Timing(),
                 parallel: int | None = None, session_timeout: float = 120.0):
        from tvm import rpc
        host, _, port = tracker.rpartition(":")
        if not host or not port.isdigit():
            raise ConvcError(f"--rpc-tracker {tracker!r}: expected HOST:PORT (e.g. 127.0.0.1:9190)")
        try:
            self.tracker = rpc.connect_tracker(host, int(port))
            free = _servers_of(self.tracker.summary(), key)
        except Exception as err:
            raise ConvcError(f"cannot reach the RPC tracker at {tracker}: {error_summary(err)}") from None
        if not free:
            raise ConvcError(f"the RPC tracker at {tracker} has no server registered with key {key!r}")
        self.target, self.key, self.timing, self.session_timeout = target, key, timing, session_timeout
        self.device = f"rpc:{key}"
        self.parallel = parallel or free
        self.pack_operand = backend_of(target).pack_operand
        self.cases: dict[Problem, TrialCase] = {}
        self.lock = threading.Lock()  # the tracker connection is one socket: one request at a time
        self.tmp = tempfile.TemporaryDirectory(prefix="convc-tune-")

    def measure(self, trials: Sequence[Trial]) -> list[Outcome]:
        built = [self._build(i, t) for i, t in enumerate(trials)]
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            return list(pool.map(self._run, built))

    def _build(self, index: int, trial: Trial) -> "tuple[str, TrialCase, Any] | Outcome":
        """(library path, case, weight packer), or the error outcome of a failed build."""
        case = self.cases.setdefault(trial.problem, case_for(trial.problem, self.pack_operand))
        try:
            executable, pack_weight = compile_trial(trial, self.target)
            path = os.path.join(self.tmp.name, f"trial{index}.so")
            executable.export_library(path)
            return path, case, pack_weight
        except Exception as err:
            return Outcome("error", error=error_summary(err))

    def _run(self, built: "tuple[str, TrialCase, Any] | Outcome") -> Outcome:
        if isinstance(built, Outcome):
            return built
        path, case, pack_weight = built
        try:
            with self.lock:
                session = self.tracker.request(self.key, priority=1, session_timeout=self.session_timeout)
            session.upload(path)
            module = session.load_module(os.path.basename(path))
            return run_and_time(module, device_of(self.target, session), case, pack_weight, self.timing,
                                self.timing.mode(self.target))
        except Exception as err:
            return Outcome("error", error=f"on rpc:{self.key}: {error_summary(err)}")


def _servers_of(summary: dict, key: str) -> int:
    """Servers registered with ``key`` (the tracker lists each as "server:KEY" in "server_info")."""
    return sum(1 for server in summary.get("server_info", []) if server.get("key") == f"server:{key}")
