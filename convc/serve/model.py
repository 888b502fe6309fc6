"""The KServe model class: one served library, its request checks and its batcher.

Bad requests raise ``kserve.errors.InvalidInput``, which KServe answers with HTTP 400 or
gRPC INVALID_ARGUMENT; the message names the tensor and what was expected.
"""
from __future__ import annotations

import uuid
from typing import Mapping

import numpy as np
from kserve import Model
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse

import convc
from convc.errors import ConvcError
from convc.runtime import CompiledModel, TensorSpec
from convc.serve.batcher import Batcher
from convc.serve.config import DATATYPES, RepositoryError
from convc.serve.repository import ModelVersion


class ServedLibrary:
    """A loaded library with its batch size (0: one request per run) and its run queue."""

    def __init__(self, entry: ModelVersion):
        self.entry = entry
        self.model: CompiledModel = convc.load(entry.library)
        self.batch = entry.config.max_batch_size
        specs = self.model.inputs + self.model.outputs
        if self.batch and any(not s.shape or s.shape[0] != self.batch for s in specs):
            raise RepositoryError(f"{entry.library}: config max_batch_size is {self.batch} but the library's "
                                  "tensors are " + ", ".join(s.describe() for s in specs))
        self.batcher = Batcher(self.model.run, self.batch)

    def public_shape(self, spec: TensorSpec) -> list[int]:
        """The shape clients see: the batch dimension is -1 (1..batch samples) when batching."""
        return [-1, *spec.shape[1:]] if self.batch else list(spec.shape)

    def tensor_metadata(self, specs: tuple[TensorSpec, ...]) -> list[dict]:
        return [{"name": s.name, "datatype": DATATYPES[s.dtype][0], "shape": self.public_shape(s)} for s in specs]


class ConvcModel(Model):
    """A KServe model serving one library under ``name`` (a model name or a ``registry_key``)."""

    def __init__(self, name: str, library: ServedLibrary):
        super().__init__(name)
        self.library = library
        self.ready = True

    def get_input_types(self) -> list[dict]:
        return self.library.tensor_metadata(self.library.model.inputs)

    def get_output_types(self) -> list[dict]:
        return self.library.tensor_metadata(self.library.model.outputs)

    def _arrays(self, request: InferRequest) -> tuple[dict[str, np.ndarray], int]:
        """The request's tensors checked against the signature, and the number of samples."""
        lib, where = self.library, f"model {self.library.entry.name!r} version {self.library.entry.version}"
        specs = {s.name: s for s in lib.model.inputs}
        expected = ", ".join(f"{s.name!r} {DATATYPES[s.dtype][0]}{lib.public_shape(s)}" for s in specs.values())
        given = [t.name for t in request.inputs]
        unknown = [n for n in given if n not in specs]
        missing = [n for n in specs if n not in given]
        if unknown or missing or len(set(given)) != len(given):
            problem = (f"unknown input tensor(s) {', '.join(map(repr, unknown))}" if unknown
                       else f"missing input tensor(s) {', '.join(map(repr, missing))}" if missing
                       else "an input tensor is given twice")
            raise InvalidInput(f"{where}: {problem}; it takes {expected}")
        arrays = {t.name: self._array(t, specs[t.name], where) for t in request.inputs}
        samples = {a.shape[0] for a in arrays.values()} if lib.batch else {1}
        if len(samples) != 1:
            raise InvalidInput(f"{where}: inputs disagree on the batch size: "
                               + ", ".join(f"{n!r} {a.shape[0]}" for n, a in arrays.items()))
        return arrays, samples.pop()

    def _array(self, tensor: InferInput, spec: TensorSpec, where: str) -> np.ndarray:
        want_type = DATATYPES[spec.dtype][0]
        if tensor.datatype != want_type:
            raise InvalidInput(f"{where}: input {spec.name!r} has datatype {tensor.datatype}, expected {want_type}")
        shape, batch = tuple(tensor.shape), self.library.batch
        fits = (shape == spec.shape if not batch
                else len(shape) == len(spec.shape) and shape[1:] == spec.shape[1:] and 1 <= shape[0] <= batch)
        if not fits:
            raise InvalidInput(f"{where}: input {spec.name!r} has shape {list(shape)}, expected "
                               f"{self.library.public_shape(spec)}"
                               + (f" with 1 to {batch} samples" if batch else ""))
        try:
            return np.ascontiguousarray(tensor.as_numpy(), dtype=spec.dtype)
        except (ValueError, TypeError) as err:
            raise InvalidInput(f"{where}: input {spec.name!r}: data does not fit shape {list(shape)} ({err})") from None

    def _requested(self, request: InferRequest) -> list[int]:
        names = [s.name for s in self.library.model.outputs]
        if not request.request_outputs:
            return list(range(len(names)))
        unknown = [o.name for o in request.request_outputs if o.name not in names]
        if unknown:
            raise InvalidInput(f"model {self.library.entry.name!r}: unknown output(s) {', '.join(map(repr, unknown))};"
                               f" it has {', '.join(map(repr, names))}")
        return [names.index(o.name) for o in request.request_outputs]

    async def predict(self, payload: InferRequest, headers: Mapping[str, str] | None = None) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise InvalidInput("expected an Open Inference Protocol (V2) request")
        arrays, samples = self._arrays(payload)
        wanted = self._requested(payload)
        try:
            outputs, shared = await self.library.batcher.submit(arrays, samples)
        except ConvcError as err:  # the request was checked: a failed run is the server's error
            raise InferenceError(f"model {self.library.entry.name!r}: {err}") from None
        specs = self.library.model.outputs
        infer_outputs = []
        for i in wanted:  # raw bytes: KServe re-encodes them as JSON for a REST client that asks so
            out = InferOutput(specs[i].name, list(outputs[i].shape), DATATYPES[specs[i].dtype][0])
            out.set_data_from_numpy(outputs[i], binary_data=True)
            infer_outputs.append(out)
        return InferResponse(payload.id or str(uuid.uuid4()), self.library.entry.name, infer_outputs,
                             model_version=str(self.library.entry.version),
                             parameters={"convc_requests_in_run": shared},
                             use_binary_outputs=payload.use_binary_outputs,
                             requested_outputs=payload.request_outputs)
