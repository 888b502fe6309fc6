"""NumPy broadcasting in TE: read an input at an output index."""
from __future__ import annotations

from typing import Sequence

from tvm import te


def broadcast_read(tensor: te.Tensor, out_index: Sequence) -> object:
    """``tensor`` at ``out_index`` of a broadcast result (right-aligned, size-1 axes pinned to 0)."""
    rank = len(tensor.shape)
    index = list(out_index)[len(out_index) - rank:] if rank else []
    return tensor[tuple(0 if int(d) == 1 else i for i, d in zip(index, tensor.shape))]
