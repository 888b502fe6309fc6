"""The compile driver: ONNX model -> IR -> rewrite pipeline -> TVM library."""
from __future__ import annotations

import os
from typing import Callable, Collection, Mapping, Sequence

import onnx

from convc.backend import backend_of
from convc.errors import ConvcError, ShapeError
from convc.frontends.onnx import import_model
from convc.ir import Graph, verify
from convc.ir.types import FLOAT_DTYPES
from convc.lower import build
from convc.lower.fusion import FUSIONS, enabled_fusions
from convc.passes import run_pipeline
from convc.passes.pipeline import OPTIONAL
from convc.passes.select_schedule import Decision, ScheduleRequest, select_schedules
from convc.runtime import CompiledModel
from convc.target import resolve_target
from convc.tune.apply import load_tuned

ModelLike = str | os.PathLike | onnx.ModelProto
DumpFn = Callable[[str, Graph], None]
DTYPES = ("float32", "float16")  # the precision convs and activations compute in


def check_io_dtypes(graph: Graph) -> None:
    """Compiled models take and return float tensors only."""
    for kind, names, values in (("input", [v.name for v in graph.inputs], graph.inputs),
                                ("output", graph.output_names, graph.outputs)):
        for name, value in zip(names, values):
            if value.dtype not in FLOAT_DTYPES:
                raise ShapeError(f"model {kind} {name!r} has dtype {value.dtype}; convc compiles models "
                                 f"whose inputs and outputs are {', '.join(FLOAT_DTYPES)}")


def lower_to_ir(model: ModelLike, input_shapes: Mapping[str, Sequence[int]] | None = None,
                dump_ir: DumpFn | None = None, disable_passes: Collection[str] = ()) -> Graph:
    """Import ``model`` and run the rewrite pipeline; the graph the backend will see."""
    graph = import_model(model, input_shapes)
    verify(graph)
    check_io_dtypes(graph)
    if dump_ir is not None:
        dump_ir("import", graph)
    return run_pipeline(graph, dump=dump_ir, disable=disable_passes)


def check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ConvcError(f"--dtype {dtype!r}: convc computes in {' or '.join(DTYPES)}")


def convert_dtype(graph: Graph, dtype: str, dump_ir: DumpFn | None = None) -> Graph:
    """``graph`` computing in ``dtype``: unchanged for float32; for float16 the weights are
    converted now and activations computed in float16 (``convc.passes.precision``)."""
    check_dtype(dtype)
    if dtype == "float32":
        return graph
    from convc.passes.precision import convert_precision
    graph = convert_precision(graph, dtype)
    if dump_ir is not None:
        dump_ir("precision", graph)
    return graph


def plan_schedules(model: ModelLike, target: str = "llvm",
                   input_shapes: Mapping[str, Sequence[int]] | None = None, schedule: str | None = None,
                   dump_ir: DumpFn | None = None, disable_passes: Collection[str] = (),
                   tuning_db: str | os.PathLike | None = None,
                   dtype: str = "float32") -> tuple[Graph, list[Decision]]:
    """The rewritten graph with a kernel chosen for every conv, and the decisions."""
    graph, decisions, _ = _plan(model, target, input_shapes, schedule, dump_ir, disable_passes, tuning_db,
                                dtype)
    return graph, decisions


def _plan(model, target, input_shapes, schedule, dump_ir, disable_passes, tuning_db, dtype):
    tvm_target = resolve_target(target)
    backend = backend_of(tvm_target)
    request = ScheduleRequest.parse(schedule, backend.choices)
    check_dtype(dtype)  # before the import: a typo costs nothing
    unknown = set(disable_passes) - OPTIONAL - FUSIONS
    if unknown:
        raise ConvcError(f"cannot disable {sorted(unknown)}; optional steps: {sorted(OPTIONAL | FUSIONS)}")
    passes = set(disable_passes) - FUSIONS
    graph = convert_dtype(lower_to_ir(model, input_shapes, dump_ir, passes), dtype, dump_ir)
    fusions = enabled_fusions(disable_passes)
    tuned = load_tuned(os.fspath(tuning_db), graph, tvm_target, fusions).choices if tuning_db is not None else None
    graph, decisions = choose_kernels(graph, tvm_target, tuned, request, fusions)
    if dump_ir is not None:
        dump_ir("select_schedule", graph)
    return graph, decisions, tuned


def choose_kernels(graph: Graph, tvm_target, tuned=None, request: ScheduleRequest = ScheduleRequest(),
                   fusions: frozenset[str] = FUSIONS) -> tuple[Graph, list[Decision]]:
    """``select_schedules`` with the target's backend, layout block and machine model."""
    backend = backend_of(tvm_target)
    return select_schedules(graph, backend.channel_block(tvm_target), request, tuned, backend,
                            backend.machine(tvm_target), fusions=fusions)


def compile(model: ModelLike, target: str = "llvm",
            input_shapes: Mapping[str, Sequence[int]] | None = None,
            dump_ir: DumpFn | None = None, schedule: str | None = None,
            disable_passes: Collection[str] = (), tuning_db: str | os.PathLike | None = None,
            dtype: str = "float32") -> CompiledModel:
    """Compile an ONNX model (path or ModelProto) for ``target``: "llvm" (this CPU),
    "cuda:sm_90" (a GPU of that architecture; no GPU needed to build) or "cuda" (this
    machine's GPU).

    ``input_shapes`` fixes symbolic input dimensions (``{"input": (1, 3, 224, 224)}``).
    ``dump_ir(pass_name, graph)`` is called after the import and after every pass.
    ``schedule`` overrides the cost model's kernel choice: "im2col", "direct", ... for
    every conv, or "conv1=direct,conv2=im2col" per layer (see ``select_schedule``).
    ``disable_passes`` skips optional rewrites (e.g. {"subpixel"}: zero-insertion deconvs;
    {"fuse_expand_depthwise"}: every expansion and depthwise conv in kernels of their own).
    ``tuning_db`` is a directory written by ``convc tune``: each conv uses the best record
    of its task (warnings name the tasks without one and the records ignored as measured
    for another target or by incompatible versions).
    ``dtype`` is the precision of the computation: "float32" (default) or "float16"
    (weights converted at compile time; see ``convc.passes.precision``).
    Returns a ``CompiledModel``; its ``run`` takes and returns NumPy arrays (NCHW, as
    in the ONNX model) and ``export_library`` writes a self-contained shared library.
    """
    graph, _, tuned = _plan(model, target, input_shapes, schedule, dump_ir, disable_passes, tuning_db, dtype)
    return build(graph, resolve_target(target), tuned)
