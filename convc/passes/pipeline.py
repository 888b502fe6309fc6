"""The rewrite pipeline: one linear list of named passes, run top to bottom."""
from __future__ import annotations

from typing import Callable

from convc.ir import Graph, VerificationError, verify
from convc.passes import (conv_transpose_to_conv, eliminate_dead_code, fc_to_conv, fold_batchnorm,
                          fold_constants, fuse_epilogue, simplify, subpixel)
from convc.passes.base import Pass

PIPELINE: tuple[Pass, ...] = (
    eliminate_dead_code.PASS,
    fold_constants.PASS,
    subpixel.PASS,  # strided deconvs that pay for it; conv_transpose_to_conv takes the rest
    conv_transpose_to_conv.PASS,  # before fold_batchnorm, so a BN after a deconv folds into its conv
    fc_to_conv.PASS,
    fold_batchnorm.PASS,
    simplify.PASS,
    fuse_epilogue.PASS,  # last: the other rewrites match plain convs
)


def run_pipeline(graph: Graph, *, dump: Callable[[str, Graph], None] | None = None) -> Graph:
    """Run every pass of ``PIPELINE`` in order and return the rewritten graph.

    ``dump(pass_name, graph)`` is called after each pass (``convc compile --dump-ir``).
    Each result is verified; the last one also against the post-pipeline invariant
    (no conv_transpose, no batch_norm, no matmul with a constant operand). A failure
    raises ``VerificationError`` naming the pass.
    """
    for step in PIPELINE:
        graph = step.run(graph)
        try:
            verify(graph)
        except VerificationError as err:
            raise VerificationError(f"after pass {step.name}: {err}") from err
        if dump is not None:
            dump(step.name, graph)
    verify(graph, rewritten=True)
    return graph
