"""Lowering: IR graphs to TVM (TE kernels per node, a Relax ``main``), compiled to a ``CompiledModel``."""
from convc.lower import conv, elementwise, matmul, movement, pool, reduce, resize, softmax  # noqa: F401  (register)
from convc.lower.compiler import build, signature_of
from convc.lower.registry import lowering, lowering_of

__all__ = ["build", "signature_of", "lowering", "lowering_of"]
