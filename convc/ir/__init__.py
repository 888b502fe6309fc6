"""convc's intermediate representation: graph, op rules, verifier, reference interpreter."""
from convc.ir import ops  # noqa: F401  (registers every op)
from convc.ir.graph import Graph, GraphBuilder, Node, Value
from convc.ir.interpreter import interpret
from convc.ir.op import NoAttrs, Op, OpDef, opdef
from convc.ir.ops.conv import ConvAttrs, ConvTransposeAttrs
from convc.ir.types import TensorType
from convc.ir.verify import VerificationError, verify

__all__ = ["Graph", "GraphBuilder", "Node", "Value", "interpret", "NoAttrs", "Op", "OpDef", "opdef",
           "ConvAttrs", "ConvTransposeAttrs", "TensorType", "VerificationError", "verify"]
