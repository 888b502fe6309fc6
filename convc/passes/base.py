"""The record every pass of the pipeline is: a name, a Graph -> Graph function and a reason."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from convc.ir import Graph


@dataclass(frozen=True)
class Pass:
    """One named step of the rewrite pipeline.

    ``run`` is pure: it returns a new graph (or the same one when nothing applies),
    never mutates its argument, and keeps ``output_names``. ``why`` is one line for
    ``--dump-ir`` and the docs.
    """

    name: str
    run: Callable[[Graph], Graph]
    why: str
