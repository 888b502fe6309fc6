"""The rewrite pipeline: one linear list of named passes, run top to bottom."""
from __future__ import annotations

from typing import Callable, Collection

from convc.errors import ConvcError

from convc.ir import Graph, VerificationError, verify
from convc.passes import (conv_transpose_to_conv, eliminate_dead_code, fc_to_conv, fold_batchnorm,
                          fold_constants, fuse_epilogue, simplify, single_position, subpixel)
from convc.passes.base import Pass

PIPELINE: tuple[Pass, ...] = (
    eliminate_dead_code.PASS,
    fold_constants.PASS,
    subpixel.PASS,  # strided deconvs that pay for it; conv_transpose_to_conv takes the rest
    conv_transpose_to_conv.PASS,  # before fold_batchnorm, so a BN after a deconv folds into its conv
    fc_to_conv.PASS,
    fold_batchnorm.PASS,
    single_position.PASS,  # after fold_batchnorm: its reshape would keep a batch norm from the conv
    simplify.PASS,
    fuse_epilogue.PASS,  # last: the other rewrites match plain convs
)


# passes a user may turn off (the others are needed for the backend's invariant)
OPTIONAL = frozenset({"subpixel", "fuse_epilogue", "simplify"})


def run_pipeline(graph: Graph, *, dump: Callable[[str, Graph], None] | None = None,
                 disable: Collection[str] = ()) -> Graph:
    """Run every pass of ``PIPELINE`` in order and return the rewritten graph.

    ``disable`` names optional passes to skip (see ``OPTIONAL``; e.g. "subpixel" keeps
    every transposed conv in the zero-insertion form).

    ``dump(pass_name, graph)`` is called after each pass (``convc compile --dump-ir``).
    Each result is verified; the last one also against the post-pipeline invariant
    (no conv_transpose, no batch_norm, no matmul with a constant operand). A failure
    raises ``VerificationError`` naming the pass.
    """
    unknown = set(disable) - OPTIONAL
    if unknown:
        raise ConvcError(f"cannot disable pass(es) {sorted(unknown)}; optional passes: {sorted(OPTIONAL)}")
    for step in PIPELINE:
        if step.name in disable:
            continue
        graph = step.run(graph)
        try:
            verify(graph)
        except VerificationError as err:
            raise VerificationError(f"after pass {step.name}: {err}") from err
        if dump is not None:
            dump(step.name, graph)
    verify(graph, rewritten=True)
    return graph
