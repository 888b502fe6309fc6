"""Running compiled models: ``CompiledModel`` and ``load``.

A convc library is one shared object written by TVM's ``export_library``: the Relax VM
executable, its kernels and the weights. It carries its own signature: the VM
function ``convc_signature`` takes no argument and returns a JSON string (input and
output names, shapes and dtypes, the convc version, the target). A C++ program using
only the TVM runtime reads it the same way it runs ``main``: load the module, call its
``vm_load_executable`` and the executable's ``vm_initialization``, then call the VM
function ``convc_signature``.

``export_library`` appends a trailer to the file (a magic string and the SHA-256 of
everything before it). The dynamic loader ignores trailing bytes, and ``load`` checks
the trailer before handing the file to the loader: a truncated or damaged file, or a
shared object that convc did not write, is refused with ``LibraryError`` instead of
being mapped into the process (where a damaged ELF file can crash it).

Only ``tvm.runtime`` is imported here, so a deployment without TVM's compiler can load
and run libraries.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tvm.runtime

from convc.errors import ConvcError, InputError, LibraryError

SIGNATURE_FUNCTION = "convc_signature"
LIBRARY_FORMAT = "convc-library/1"
TRAILER_MAGIC = b"\0CONVC-LIBRARY-SHA256\0"
_TRAILER_SIZE = len(TRAILER_MAGIC) + hashlib.sha256().digest_size


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: its name, static shape and dtype (a NumPy name)."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def describe(self) -> str:
        return f"{self.name!r} {self.dtype}{list(self.shape)}"


@dataclass(frozen=True)
class Signature:
    """What a library computes and for which target; stored in the library as JSON."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    convc_version: str
    target: str

    def to_json(self) -> str:
        specs = lambda ts: [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in ts]  # noqa: E731
        return json.dumps({"format": LIBRARY_FORMAT, "convc_version": self.convc_version,
                           "target": self.target, "inputs": specs(self.inputs), "outputs": specs(self.outputs)})

    @staticmethod
    def from_json(text: str) -> "Signature":
        data = json.loads(text)
        if data.get("format") != LIBRARY_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {LIBRARY_FORMAT!r}")
        specs = lambda ts: tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in ts)  # noqa: E731
        return Signature(specs(data["inputs"]), specs(data["outputs"]), data["convc_version"], data["target"])


# device name -> TVM device; "cuda" joins here with the GPU backend
_DEVICES: dict[str, Callable[[], Any]] = {"cpu": lambda: tvm.runtime.cpu(0)}


def _device(name: str):
    if name not in _DEVICES:
        raise ConvcError(f"unknown device {name!r}; supported: {', '.join(sorted(_DEVICES))}")
    return _DEVICES[name]()


class CompiledModel:
    """A compiled model ready to run: ``run``, ``benchmark``, ``export_library``.

    Made by ``convc.lower.build`` (from a TVM executable) or by ``load`` (from a file).
    """

    def __init__(self, module: Any, export: Callable[[str], None], device: str = "cpu"):
        """Wrap a Relax VM executable ``module``; ``export(path)`` writes its shared object."""
        self._device = _device(device)
        self._vm = tvm.runtime.vm.VirtualMachine(module, self._device)
        self._main = self._vm["main"]
        self._export = export
        self.signature = Signature.from_json(str(self._vm[SIGNATURE_FUNCTION]()))

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.signature.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.signature.outputs

    def _arguments(self, inputs: Mapping[str, np.ndarray]) -> list:
        expected = {s.name for s in self.inputs}
        unknown = sorted(set(inputs) - expected)
        if unknown:
            raise InputError(f"unknown input(s) {', '.join(map(repr, unknown))}; the model takes "
                             + ", ".join(s.describe() for s in self.inputs))
        args = []
        for spec in self.inputs:
            if spec.name not in inputs:
                raise InputError(f"missing input {spec.describe()}")
            array = np.asarray(inputs[spec.name])
            if array.dtype != np.dtype(spec.dtype) or array.shape != spec.shape:
                raise InputError(f"input {spec.name!r}: expected {spec.dtype}{list(spec.shape)}, "
                                 f"got {array.dtype.name}{list(array.shape)}")
            args.append(tvm.runtime.tensor(np.require(array, requirements="C"), self._device))
        return args

    def _call(self, args: Sequence) -> list:
        try:
            return list(self._main(*args))
        except Exception as err:  # a TVM runtime failure: never a raw traceback
            raise ConvcError(f"running the model failed: {str(err).strip().splitlines()[-1]}") from err

    def run(self, inputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """Run on named NumPy inputs; return the outputs in the model's output order."""
        return [out.numpy() for out in self._call(self._arguments(inputs))]

    def benchmark(self, inputs: Mapping[str, np.ndarray], repeat: int) -> list[float]:
        """Seconds per run for ``repeat`` runs, after one warm-up run."""
        args = self._arguments(inputs)
        self._call(args)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            self._call(args)
            self._device.sync()
            times.append(time.perf_counter() - start)
        return times

    def export_library(self, path: str | os.PathLike) -> None:
        """Write the library to ``path`` atomically (a temporary file, then a rename)."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".so", dir=path.parent or ".")
        os.close(fd)
        try:
            with _without_vm_scope_noise():
                self._export(tmp)
            with open(tmp, "rb") as f:
                digest = hashlib.sha256(f.read()).digest()
            with open(tmp, "ab") as f:
                f.write(TRAILER_MAGIC + digest)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# TVM's VM logs one line per constant when it saves or loads an executable; nothing a user
# can act on, so convc drops exactly those lines (anything else TVM prints passes through).
_VM_SCOPE_NOISE = ("Warning: Scope Saving", "Warning: Scope Loaded")


@contextlib.contextmanager
def _without_vm_scope_noise():
    """Capture the process's stderr (fd 2, where TVM's C++ logging writes) around a call and
    re-emit it without the VM's per-constant scope lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = [line for line in text.splitlines(keepends=True)
                    if not any(noise in line for noise in _VM_SCOPE_NOISE)]
            if kept:
                sys.stderr.write("".join(kept))


def _check_trailer(path: Path) -> None:
    data = path.read_bytes()
    body, trailer = data[:-_TRAILER_SIZE], data[-_TRAILER_SIZE:]
    if len(data) < _TRAILER_SIZE or not trailer.startswith(TRAILER_MAGIC):
        raise LibraryError(f"{path}: not a convc library (no convc trailer; was it written by "
                           "CompiledModel.export_library?)")
    if hashlib.sha256(body).digest() != trailer[len(TRAILER_MAGIC):]:
        raise LibraryError(f"{path}: the library is corrupt (its checksum does not match)")


def load(path: str | os.PathLike, device: str = "cpu") -> CompiledModel:
    """Load a library written by ``CompiledModel.export_library``.

    Raises ``LibraryError`` when the file is missing, damaged or not a convc library.
    """
    path = Path(path)
    if not path.is_file():
        raise LibraryError(f"{path}: no such library file")
    _check_trailer(path)
    try:
        with _without_vm_scope_noise():
            module = tvm.runtime.load_module(str(path))
        return CompiledModel(module, lambda tmp: _copy_library(path, tmp), device)
    except ConvcError:
        raise
    except Exception as err:
        raise LibraryError(f"{path}: not a loadable convc library ({str(err).strip().splitlines()[-1]})") from err


def _copy_library(source: Path, tmp: str) -> None:
    """Re-export a loaded library: its bytes without the trailer (``export_library`` adds one)."""
    _check_trailer(source)
    Path(tmp).write_bytes(source.read_bytes()[:-_TRAILER_SIZE])
