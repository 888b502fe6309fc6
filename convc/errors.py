"""The error types convc raises to its users.

Every failure a user can cause (a model convc cannot read, an operator it does not
support, a wrong input at run time, a corrupt library) surfaces as a ``ConvcError``
subclass whose message names what is wrong and where.
"""
from __future__ import annotations


class ConvcError(Exception):
    """Base class of every error convc raises on bad input."""


class ModelError(ConvcError):
    """The model is malformed: unreadable file, dangling edge, bad attribute value."""


class UnsupportedOperatorError(ConvcError):
    """One or more operators of a model have no converter.

    ``ops`` maps each unsupported op type (with its domain and opset) to the names of
    the nodes that use it, so a user sees every problem of the model at once.
    """

    def __init__(self, ops: dict[str, list[str]]):
        self.ops = dict(ops)
        lines = [f"  {op}: nodes {', '.join(repr(n) for n in nodes[:5])}"
                 + (f" and {len(nodes) - 5} more" if len(nodes) > 5 else "")
                 for op, nodes in sorted(self.ops.items())]
        super().__init__("unsupported operator(s) in the model:\n" + "\n".join(lines))


class UnsupportedAttributeError(ConvcError):
    """A converter met an attribute value it does not implement."""


class ShapeError(ConvcError):
    """Shapes or dtypes do not fit an operator, or a shape is not static."""


class InputError(ConvcError):
    """The inputs given to a compiled model do not match what it was compiled for."""


class LibraryError(ConvcError):
    """A library file is missing, corrupt, or was not written by convc."""


class CodegenError(ConvcError):
    """TVM failed to lower or compile a graph that convc accepted."""
