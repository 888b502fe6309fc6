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
import functools
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tvm.runtime
import tvm.runtime.vm  # runtime-only tvm (no compiler library) does not import it by itself
import tvm_ffi

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
    aliased_outputs: tuple[int, ...] = ()  # outputs whose memory outlives a call (constants,
                                           # inputs): ``run`` hands out copies of those
    kernels: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (kernel symbol, graph nodes it computes)

    def to_json(self) -> str:
        specs = lambda ts: [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in ts]  # noqa: E731
        return json.dumps({"format": LIBRARY_FORMAT, "convc_version": self.convc_version,
                           "target": self.target, "inputs": specs(self.inputs), "outputs": specs(self.outputs),
                           "aliased_outputs": list(self.aliased_outputs),
                           "kernels": {symbol: list(nodes) for symbol, nodes in self.kernels}})

    @staticmethod
    def from_json(text: str) -> "Signature":
        data = json.loads(text)
        if data.get("format") != LIBRARY_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {LIBRARY_FORMAT!r}")
        specs = lambda ts: tuple(TensorSpec(t["name"], tuple(t["shape"]), t["dtype"]) for t in ts)  # noqa: E731
        kernels = tuple((symbol, tuple(nodes)) for symbol, nodes in data.get("kernels", {}).items())
        return Signature(specs(data["inputs"]), specs(data["outputs"]), data["convc_version"], data["target"],
                         tuple(data.get("aliased_outputs", ())), kernels)

    @property
    def device(self) -> str:
        """The device the library runs on ("cpu", "cuda"), from its target's kind."""
        try:
            kind = json.loads(self.target)["kind"]
        except (ValueError, TypeError, KeyError):  # not a JSON target: its kind leads
            kind = self.target.split()[0] if self.target else ""
        return DEVICE_OF_KIND.get(kind, kind)


# TVM target kind -> the device name its libraries run on
DEVICE_OF_KIND = {"llvm": "cpu", "cuda": "cuda"}


@dataclass(frozen=True)
class _Device:
    """A device name's TVM device, and whether this machine has one."""

    make: Callable[[], Any]
    missing: str  # why there is none, when there is none ("" when it exists)


def cuda_missing() -> str:
    """Why this machine cannot run CUDA code ("" when it can)."""
    try:
        if tvm.runtime.cuda(0).exist:
            return ""
    except Exception:  # a TVM built without its CUDA runtime, or no driver
        pass
    return "no CUDA device (no GPU, driver or CUDA runtime found on this machine)"


# device name -> TVM device
_DEVICES: dict[str, Callable[[], _Device]] = {
    "cpu": lambda: _Device(lambda: tvm.runtime.cpu(0), ""),
    "cuda": lambda: _Device(lambda: tvm.runtime.cuda(0), cuda_missing()),
}


def _check_device_name(name: str) -> None:
    if name not in _DEVICES:
        raise ConvcError(f"unknown device {name!r}; supported: {', '.join(sorted(_DEVICES))}")


def _device(name: str):
    """The TVM device called ``name``; ``ConvcError`` when this machine has none."""
    _check_device_name(name)
    device = _DEVICES[name]()
    if device.missing:
        raise ConvcError(f"cannot run on device {name!r}: {device.missing}")
    return device.make()


# the byte alignment TVM's kernels assume of tensor data (tvm::runtime::kAllocAlignment)
ALIGNMENT = 64
OUTPUT_FORMS = ("numpy", "dlpack")


class CompiledModel:
    """A compiled model ready to run: ``run``, ``benchmark``, ``export_library``.

    Made by ``convc.lower.build`` (from a TVM executable) or by ``load`` (from a file).
    The Relax VM is created on the first run, so a model built for a GPU this machine
    lacks can still be exported; running it raises ``ConvcError`` ("no CUDA device").
    """

    def __init__(self, module: Any, export: Callable[[str], None], signature: Signature,
                 device: str | None = None, vm: Any = None, device_code: Any = None,
                 kernels: Mapping[str, Sequence[str]] | None = None):
        """Wrap a Relax VM executable ``module`` computing ``signature``; ``export(path)``
        writes its shared object. ``device`` ("cpu", "cuda") defaults to the signature
        target's; another one is a ``ConvcError``. ``vm``: a VM of ``module`` already on
        that device. ``kernels``: the symbol of every kernel with the names of the graph
        nodes it computes (default: the signature's, which libraries written since it was
        added carry). What a build in this process knows besides (None after ``load``):
        ``device_code``, its ``convc.backend.DeviceCode``."""
        device = device or signature.device
        _check_device_name(device)
        if device != signature.device:
            raise ConvcError(f"the library was compiled for {signature.device} (target {signature.target}); "
                             f"it cannot run on device {device!r}"
                             + (f": load it with device={signature.device!r}" if signature.device in _DEVICES
                                else ""))
        self.signature = signature
        self.device = device
        self.device_code = device_code
        self.kernels = {symbol: tuple(nodes) for symbol, nodes in (kernels or dict(signature.kernels)).items()}
        self._module = module
        self._export = export
        self._vm = vm
        self._tvm_device = None
        self._staging = _Staging()

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        return self.signature.inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return self.signature.outputs

    def _session(self):
        """(TVM device, VM ``main``), created on first use."""
        if self._tvm_device is None:
            self._tvm_device = _device(self.device)
        if self._vm is None:
            try:
                self._vm = tvm.runtime.vm.VirtualMachine(self._module, self._tvm_device)
            except Exception as err:
                raise ConvcError(f"cannot start the model on {self.device}: {_last_line(err)}") from err
        return self._tvm_device, self._vm["main"]

    def device_inputs(self, inputs: Mapping[str, Any]) -> list:
        """The named inputs as the device tensors the model is called with, in its input
        order (see ``run`` for what is passed without a copy)."""
        device, _ = self._session()
        expected = {s.name for s in self.inputs}
        unknown = sorted(set(inputs) - expected)
        if unknown:
            raise InputError(f"unknown input(s) {', '.join(map(repr, unknown))}; the model takes "
                             + ", ".join(s.describe() for s in self.inputs))
        args = []
        for spec in self.inputs:
            if spec.name not in inputs:
                raise InputError(f"missing input {spec.describe()}")
            args.append(_argument(spec, inputs[spec.name], device, self._staging))
        return args

    def _call(self, args: Sequence) -> list:
        _, main = self._session()
        try:
            return list(main(*args))
        except Exception as err:  # a TVM runtime failure: never a raw traceback
            raise ConvcError(f"running the model failed: {_last_line(err)}") from err

    def run(self, inputs: Mapping[str, Any], output: str = "numpy") -> list:
        """Run on named inputs; return the outputs in the model's output order.

        An input is a NumPy array or any DLPack producer (an object with ``__dlpack__``: a
        PyTorch tensor, a CuPy or JAX array, ...) of the input's exact shape and dtype. Data
        in host memory is passed to a CPU model without a copy when it is C-contiguous and
        64-byte aligned (else copied), and copied to a GPU; data in device memory must be
        on the model's device and contiguous, and is passed without a copy when aligned.
        ``output="numpy"`` returns NumPy arrays; ``output="dlpack"`` returns the output
        tensors on the model's device without a copy (``tvm.runtime.Tensor``, DLPack
        producers: ``torch.from_dlpack(t)``, ``np.from_dlpack(t)`` for a CPU model).
        """
        if output not in OUTPUT_FORMS:
            raise ConvcError(f"run(output={output!r}): choose from {', '.join(OUTPUT_FORMS)}")
        args = self.device_inputs(inputs)
        outs = self._call(args)
        keep = _shared_outputs(outs, args, self.signature.aliased_outputs)
        if output == "dlpack":  # never hand out memory the model or the next call reuses
            return [out.copyto(out.device) if i in keep else out for i, out in enumerate(outs)]
        return [out.numpy() if i in keep or not _is_host(out.device) else np.from_dlpack(out)
                for i, out in enumerate(outs)]

    def benchmark(self, inputs: Mapping[str, Any], repeat: int) -> list[float]:
        """Seconds per run for ``repeat`` runs, after one warm-up run."""
        _check_runs("benchmark", repeat)
        args = self.device_inputs(inputs)
        device, _ = self._session()
        self._call(args)
        device.sync()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            self._call(args)
            device.sync()
            times.append(time.perf_counter() - start)
        return times

    def kernel_times(self, inputs: Mapping[str, Any], runs: int) -> dict[str, list[float]]:
        """Seconds of every call of every kernel over ``runs`` runs on ``inputs``, by kernel
        symbol (``kernels`` names the graph nodes each computes; the VM's own builtins are
        left out). Each call is timed by the VM's instrumentation, the device synchronised
        after it; a few microseconds of callback overhead land outside the kernel times."""
        _check_runs("kernel_times", runs)
        device, main = self._session()
        args = self.device_inputs(inputs)
        times: dict[str, list[float]] = {}
        started: dict[str, float] = {}

        def instrument(func, symbol, before_run, ret_value, *_args):
            if before_run:
                started[symbol] = time.perf_counter()
            elif not symbol.startswith("vm.builtin."):
                device.sync()
                times.setdefault(symbol, []).append(time.perf_counter() - started[symbol])
            return 0
        self._vm.set_instrument(instrument)
        try:
            for _ in range(runs):
                self._call(args)
        finally:
            self._vm.set_instrument(None)
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


def _shared_outputs(outs: Sequence, args: Sequence, aliased: Sequence[int]) -> set[int]:
    """The outputs that must be copied before they are handed out: those the signature marks
    as persistent memory, and any whose memory is an input's or an earlier output's."""
    seen = {arg.data_ptr() for arg in args}
    shared = set(aliased)
    for i, out in enumerate(outs):
        if out.data_ptr() in seen or not out.is_contiguous():
            shared.add(i)
        seen.add(out.data_ptr())
    return shared


class _Staging(threading.local):
    """Per thread, one reusable tensor per input for the inputs that must be copied (not
    aligned, not contiguous, or on the host for a GPU model): a fresh allocation per call
    cost more than the copy itself (~60 us for a 200 KB input, mostly page faults)."""

    def __init__(self):
        self.tensors: dict[str, Any] = {}

    def copy(self, name: str, array: np.ndarray, device) -> Any:
        tensor = self.tensors.get(name)
        if (tensor is None or tuple(tensor.shape) != array.shape or str(tensor.dtype) != _dtype_name(array.dtype)
                or tensor.device != device):
            tensor = self.tensors[name] = tvm.runtime.empty(array.shape, _dtype_name(array.dtype), device)
        if _is_host(device):  # NumPy's copy into a view of the tensor: 3x faster than copyfrom
            np.copyto(np.from_dlpack(tensor), array)
        else:
            tensor.copyfrom(np.require(array, requirements="C"))
        return tensor


def _check_runs(what: str, runs: int) -> None:
    if not isinstance(runs, int) or runs < 1:
        raise ConvcError(f"{what}: the number of runs must be a positive integer, got {runs!r}")


def _argument(spec: TensorSpec, value: Any, device, staging: _Staging) -> Any:
    """One input as a TVM tensor on ``device``, without a copy where the value allows."""
    if hasattr(value, "__dlpack__") and not isinstance(value, np.ndarray) and not _on_host(value):
        return _device_tensor(spec, value, device)
    try:  # host data, as a NumPy view of it
        array = np.from_dlpack(value) if hasattr(value, "__dlpack__") else np.asarray(value)
    except (BufferError, RuntimeError, TypeError, ValueError) as err:
        raise InputError(f"input {spec.name!r}: cannot read the {type(value).__name__}: {_last_line(err)}") from None
    _check_type(spec, _dtype_name(array.dtype), array.shape, "")
    if _is_host(device) and _compact(array) and array.ctypes.data % ALIGNMENT == 0:
        try:
            return tvm.runtime.from_dlpack(array)
        except (BufferError, RuntimeError, TypeError, ValueError):
            pass  # e.g. a read-only array: copied below
    return staging.copy(spec.name, array, device)


def _device_tensor(spec: TensorSpec, value: Any, device) -> Any:
    """A DLPack producer's device memory, used in place when it is on ``device``, contiguous
    and aligned."""
    try:  # any layout and alignment here; checked below
        tensor = tvm_ffi.from_dlpack(value, require_alignment=0, require_contiguous=False)
    except Exception as err:
        raise InputError(f"input {spec.name!r}: cannot read the {type(value).__name__} through DLPack: "
                         f"{_last_line(err)}") from None
    _check_type(spec, str(tensor.dtype), tuple(tensor.shape), f" ({type(value).__name__} on {tensor.device})")
    if tensor.device.dlpack_device_type() != device.dlpack_device_type() or tensor.device.index != device.index:
        raise InputError(f"input {spec.name!r}: the tensor is on {tensor.device}, the model runs on {device}")
    if not tensor.is_contiguous():
        raise InputError(f"input {spec.name!r}: the {type(value).__name__} is not contiguous "
                         "(make it contiguous first, e.g. .contiguous())")
    if tensor.data_ptr() % ALIGNMENT:  # TVM's kernels assume aligned data
        return tensor.copyto(device)
    return tensor


def _is_host(device) -> bool:
    return device.dlpack_device_type() == _HOST_DEVICE_TYPE


_HOST_DEVICE_TYPE = tvm.runtime.cpu().dlpack_device_type()


@functools.lru_cache(maxsize=None)
def _dtype_name(dtype: np.dtype) -> str:
    """``dtype.name``, which NumPy builds anew on every access (~5 us, per input per run)."""
    return dtype.name


def _on_host(value: Any) -> bool:
    """Whether a DLPack producer's data is in host memory (then it is read as a NumPy view)."""
    try:
        return int(value.__dlpack_device__()[0]) == int(_HOST_DEVICE_TYPE)
    except Exception:  # no or a broken __dlpack_device__: let from_dlpack say what is wrong
        return False


def _compact(array: np.ndarray) -> bool:
    """Non-empty, at least 1-d, with exactly the row-major strides TVM checks for."""
    if array.ndim == 0 or array.size == 0:
        return False
    strides, step = [], array.itemsize
    for dim in reversed(array.shape):
        strides.append(step)
        step *= dim
    return tuple(reversed(strides)) == array.strides


def _check_type(spec: TensorSpec, dtype: str, shape: tuple, where: str) -> None:
    if dtype != spec.dtype or tuple(shape) != spec.shape:
        raise InputError(f"input {spec.name!r}: expected {spec.dtype}{list(spec.shape)}, "
                         f"got {dtype}{list(shape)}{where}")


def _last_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


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


def load(path: str | os.PathLike, device: str | None = None) -> CompiledModel:
    """Load a library written by ``CompiledModel.export_library``, to run on ``device``
    ("cpu", "cuda"; default: the device the library was compiled for).

    Raises ``LibraryError`` when the file is missing, damaged or not a convc library, and
    ``ConvcError`` when it was compiled for another device than ``device``, or for CUDA on
    a machine without a CUDA device.
    """
    path = Path(path)
    if device is not None:
        _check_device_name(device)
    if not path.is_file():
        raise LibraryError(f"{path}: no such library file")
    _check_trailer(path)
    if device != "cpu":
        nvcc_without_nvrtc()
    try:
        with _without_vm_scope_noise():
            module = tvm.runtime.load_module(str(path))
        reader = tvm.runtime.vm.VirtualMachine(module, tvm.runtime.cpu(0))  # reads the signature only
        signature = Signature.from_json(str(reader[SIGNATURE_FUNCTION]()))
    except Exception as err:
        if "load_from_bytes.cuda" in str(err):
            raise ConvcError(f"{path}: the library was compiled for CUDA and this machine has "
                             f"{cuda_missing() or 'no CUDA runtime'}") from None
        raise LibraryError(f"{path}: not a loadable convc library ({_last_line(err)})") from err
    vm = reader if (device or signature.device) == "cpu" else None
    return CompiledModel(module, lambda tmp: _copy_library(path, tmp), signature, device, vm)


def nvcc_without_nvrtc() -> None:
    """Have TVM compile CUDA code with nvcc when NVRTC's Python bindings (``cuda-bindings``)
    are missing (TVM's default is NVRTC). A CUDA library built on a machine without a GPU
    driver carries CUDA source, which TVM compiles when the library is loaded."""
    if importlib.util.find_spec("cuda") is None or importlib.util.find_spec("cuda.bindings") is None:
        os.environ.setdefault("TVM_CUDA_COMPILE_MODE", "nvcc")


def _copy_library(source: Path, tmp: str) -> None:
    """Re-export a loaded library: its bytes without the trailer (``export_library`` adds one)."""
    _check_trailer(source)
    Path(tmp).write_bytes(source.read_bytes()[:-_TRAILER_SIZE])
