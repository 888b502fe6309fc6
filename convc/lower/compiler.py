"""``build``: a rewritten graph to a ``CompiledModel`` for a TVM target."""
from __future__ import annotations

import dataclasses

import tvm

import convc
from convc.errors import CodegenError
from convc.ir import Graph, Op
from convc.backend import backend_of
from convc.lower.module import ModuleBuilder, error_summary
from convc.runtime import CompiledModel, Signature, TensorSpec


def signature_of(graph: Graph, target: tvm.target.Target) -> Signature:
    """The signature a library of ``graph`` carries (outputs under the user's names)."""
    return Signature(
        inputs=tuple(TensorSpec(v.name, v.shape, v.dtype) for v in graph.inputs),
        outputs=tuple(TensorSpec(name, v.shape, v.dtype) for name, v in zip(graph.output_names, graph.outputs)),
        convc_version=convc.__version__, target=str(target), aliased_outputs=aliased_outputs(graph))


def aliased_outputs(graph: Graph) -> tuple[int, ...]:
    """The outputs whose memory outlives a call: embedded constants, model inputs, and
    reshapes of them (TVM folds even a copy of a constant back into the constant)."""
    producers = graph.producers()

    def persistent(value) -> bool:
        if graph.is_constant(value) or value in graph.inputs:
            return True
        node = producers.get(value)
        return node is not None and node.op is Op.RESHAPE and persistent(node.inputs[0])
    return tuple(i for i, value in enumerate(graph.outputs) if persistent(value))


def build(graph: Graph, target: tvm.target.Target, tuned=None) -> CompiledModel:
    """Lower ``graph`` (the output of the rewrite pipeline) and compile it for ``target``;
    ``tuned`` maps conv problems to measured (kernel, config) (``convc.tune.load_tuned``).
    The backend's device code checks run too (CUDA: nvcc compiles the generated source).

    Raises ``CodegenError`` naming the node (or kernel) when lowering or TVM fails.
    """
    backend = backend_of(target)
    signature = signature_of(graph, target)
    builder = ModuleBuilder(graph, target, backend.channel_block(target), tuned)
    with target:  # the GPU schedules read the target they build for
        mod = builder.build(signature)
        try:
            pipeline = {"relax_pipeline": backend.relax_pipeline(target)} if backend.relax_pipeline else {}
            executable = tvm.compile(mod, target=target, **pipeline)
        except Exception as err:
            culprits = [f"{symbol} (nodes {', '.join(map(repr, nodes))})"
                        for symbol, nodes in builder.symbols.items() if symbol in str(err)]
            raise CodegenError(f"TVM failed to compile graph {graph.name!r}"
                               + (f" in kernel {'; '.join(culprits)}" if culprits else "")
                               + f": {error_summary(err)}") from err
    device_code = backend.device_code(executable.mod, target)
    signature = dataclasses.replace(signature, kernels=builder.kernel_map())
    return CompiledModel(executable.mod, executable.export_library, signature, backend.device,
                         device_code=device_code)
