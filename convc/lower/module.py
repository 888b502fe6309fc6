"""A graph as a Relax module: one ``call_tir`` per node, weights as embedded constants.

Each node is lowered to TE by its registered lowering, made into a PrimFunc, scheduled
by the CPU schedule candidates and added once per distinct (op, attrs, input types):
nodes that compute the same function share one kernel. Reshape is a Relax view. The
module also gets ``convc_signature``, a function of no arguments returning the
library's signature as JSON.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tvm
from tvm import relax, te

from convc.errors import CodegenError, ConvcError
from convc.ir import Graph, Node, Op, Value
from convc.lower.registry import Tables, lowering_of
from convc.runtime import SIGNATURE_FUNCTION, Signature
from convc.schedules import cpu
from convc.schedules.cpu import ScheduleContext

# target kind -> the scheduler of its kernels; "cuda" joins here with convc.schedules.cuda
SCHEDULERS = {"llvm": cpu.schedule}


def _relax_type(value: Value) -> relax.TensorType:
    return relax.TensorType(value.shape, value.dtype)


class _Kernel:
    """A PrimFunc added to the module, and the constant tables its calls pass along."""

    def __init__(self, gvar: relax.GlobalVar, tables: list[np.ndarray]):
        self.gvar = gvar
        self.tables = [relax.const(t) for t in tables]


class ModuleBuilder:
    """Builds the Relax module of one graph (see the module docstring)."""

    def __init__(self, graph: Graph, target: tvm.target.Target):
        if target.kind.name not in SCHEDULERS:
            raise CodegenError(f"no schedules for target kind {target.kind.name!r}")
        self.schedule = SCHEDULERS[target.kind.name]
        self.graph = graph
        self.bb = relax.BlockBuilder()
        self.env: dict[Value, relax.Expr] = {}
        self.kernels: dict[Any, _Kernel] = {}
        self.symbols: dict[str, list[str]] = {}  # kernel symbol -> names of the nodes using it

    def value(self, value: Value) -> relax.Expr:
        if value not in self.env:  # only constants are bound lazily
            self.env[value] = relax.const(np.require(self.graph.constants[value], requirements="C"))
        return self.env[value]

    def kernel(self, node: Node) -> _Kernel:
        key = (node.op, node.attrs, tuple(v.type for v in node.inputs))
        try:
            hash(key)
        except TypeError:  # unhashable attrs: a kernel of its own
            key = node
        if key not in self.kernels:
            placeholders = [te.placeholder(v.shape, v.dtype, f"in{i}") for i, v in enumerate(node.inputs)]
            tables = Tables()
            outs = node_outputs(lowering_of(node.op)(node, placeholders, tables))
            func = te.create_prim_func([*placeholders, *tables.tensors, *outs])
            func = self.schedule(func, ScheduleContext(node.op, node.attrs, node.outputs[0].dtype))
            symbol = f"{node.op}_{len(self.kernels)}"
            gvar = self.bb.add_func(func.with_attr("global_symbol", symbol), symbol)
            self.kernels[key] = _Kernel(gvar, tables.arrays)
            self.symbols[symbol] = []
        kernel = self.kernels[key]
        self.symbols[kernel.gvar.name_hint].append(node.name)
        return kernel

    def emit(self, node: Node) -> None:
        args = [self.value(v) for v in node.inputs]
        if node.op is Op.RESHAPE:
            self.env[node.output] = self.bb.emit(relax.op.reshape(args[0], node.output.shape))
            return
        kernel = self.kernel(node)
        types = [_relax_type(v) for v in node.outputs]
        call = relax.call_tir(kernel.gvar, [*args, *kernel.tables], types if len(types) > 1 else types[0])
        result = self.bb.emit(call)
        if len(node.outputs) == 1:
            self.env[node.output] = result
        else:
            for i, out in enumerate(node.outputs):
                self.env[out] = self.bb.emit(relax.TupleGetItem(result, i))

    def build(self, signature: Signature) -> tvm.IRModule:
        params = [relax.Var(v.name, _relax_type(v)) for v in self.graph.inputs]
        self.env.update(zip(self.graph.inputs, params))
        with self.bb.function("main", params):
            with self.bb.dataflow():
                for node in self.graph.nodes:
                    check_lowerable(node)
                    try:
                        self.emit(node)
                    except ConvcError:
                        raise
                    except Exception as err:
                        raise CodegenError(f"lowering node {node.name!r} ({node.op}) failed: "
                                           f"{error_summary(err)}") from err
                outputs = self.bb.emit_output(relax.Tuple([self.value(v) for v in self.graph.outputs]))
            self.bb.emit_func_output(outputs)
        with self.bb.function(SIGNATURE_FUNCTION, []):
            self.bb.emit_func_output(tvm.ir.StringImm(signature.to_json()))
        return self.bb.get()


def node_outputs(result) -> tuple[te.Tensor, ...]:
    """A lowering's result as a tuple of output tensors, each computed (never a bare input)."""
    outs = result if isinstance(result, (tuple, list)) else (result,)
    return tuple(_copy(t) if isinstance(t.op, te.PlaceholderOp) else t for t in outs)


def _copy(tensor: te.Tensor) -> te.Tensor:
    return te.compute(tensor.shape, lambda *i: tensor[i], name="copy")


def check_lowerable(node: Node) -> None:
    if lowering_of(node.op) is None and node.op is not Op.RESHAPE:
        raise CodegenError(f"node {node.name!r}: no lowering for op {node.op} "
                           "(the rewrite passes turn it into supported ops first)")


def error_summary(err: BaseException) -> str:
    """The last non-empty line of an error's text: where TVM states what went wrong."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__
