"""Triton's ``config.pbtxt`` for a convc library: written by ``convc compile --repo``, read by the server.

Only what convc needs is read back: ``name`` (must equal the model's folder) and
``max_batch_size``. When it is above 0, the library was compiled for that batch and
requests may carry fewer samples: the server merges requests into one run (see
``batcher.py``); its inputs and outputs are listed without the batch dimension, as
Triton does. The tensor names, shapes and dtypes always come from the library itself.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from convc.errors import ConvcError
from convc.runtime import Signature, TensorSpec

# NumPy dtype name -> (V2 protocol datatype, Triton config data_type)
DATATYPES: dict[str, tuple[str, str]] = {
    "float16": ("FP16", "TYPE_FP16"), "float32": ("FP32", "TYPE_FP32"), "float64": ("FP64", "TYPE_FP64"),
    "int8": ("INT8", "TYPE_INT8"), "int16": ("INT16", "TYPE_INT16"), "int32": ("INT32", "TYPE_INT32"),
    "int64": ("INT64", "TYPE_INT64"), "uint8": ("UINT8", "TYPE_UINT8"), "bool": ("BOOL", "TYPE_BOOL"),
}


class RepositoryError(ConvcError):
    """The model repository is malformed: a missing or inconsistent config.pbtxt or library."""


@dataclass(frozen=True)
class ModelConfig:
    """The part of config.pbtxt convc reads back."""

    name: str
    max_batch_size: int


def batch_size_of(signature: Signature) -> int:
    """The shared leading dimension of every input and output when it is above 1, else 0 (no batching)."""
    leading = {spec.shape[0] if spec.shape else 0 for spec in signature.inputs + signature.outputs}
    return leading.pop() if len(leading) == 1 and min(leading) > 1 else 0


def _tensor_block(spec: TensorSpec, batched: bool) -> str:
    dims = spec.shape[1:] if batched else spec.shape
    return (f'  {{\n    name: "{spec.name}"\n    data_type: {DATATYPES[spec.dtype][1]}\n'
            f'    dims: [ {", ".join(map(str, dims))} ]\n  }}')


def config_text(name: str, signature: Signature, max_batch_size: int) -> str:
    """config.pbtxt for a library with ``signature`` served as model ``name``."""
    batched = max_batch_size > 0
    inputs = ",\n".join(_tensor_block(s, batched) for s in signature.inputs)
    outputs = ",\n".join(_tensor_block(s, batched) for s in signature.outputs)
    return (f'name: "{name}"\nbackend: "convc"\nmax_batch_size: {max_batch_size}\n'
            f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n")


def write_config(model_dir: str | Path, signature: Signature, max_batch_size: int | None = None) -> Path:
    """Write ``model_dir/config.pbtxt``; ``max_batch_size=None`` takes ``batch_size_of(signature)``."""
    model_dir = Path(model_dir)
    batch = batch_size_of(signature) if max_batch_size is None else max_batch_size
    if batch and batch_size_of(signature) != batch:
        raise RepositoryError(f"max_batch_size {batch}: the library's inputs and outputs do not all have "
                              f"leading dimension {batch}")
    path = model_dir / "config.pbtxt"
    path.write_text(config_text(model_dir.name, signature, batch))
    return path


_FIELDS = {"name": re.compile(r'^name:\s*"([^"]*)"\s*$', re.M),
           "max_batch_size": re.compile(r"^max_batch_size:\s*(\d+)\s*$", re.M)}


def read_config(path: str | Path) -> ModelConfig:
    """Read ``name`` and ``max_batch_size`` (default 0) from a config.pbtxt."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise RepositoryError(f"{path}: cannot read the model configuration ({err.strerror}); "
                              "write it with `convc compile --repo`") from None
    name = _FIELDS["name"].search(text)
    batch = _FIELDS["max_batch_size"].search(text)
    return ModelConfig(name.group(1) if name else path.parent.name, int(batch.group(1)) if batch else 0)
