"""Sliding-window attributes shared by Conv and the pools: strides, dilations, auto_pad, pads."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from convc.frontends.onnx.context import Context

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@dataclass(frozen=True)
class Window:
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]


def split_same_pad(total: int, auto_pad: str) -> tuple[int, int]:
    """(begin, end) of a SAME pad: SAME_UPPER puts the odd unit at the end, SAME_LOWER at the start."""
    small, large = total // 2, total - total // 2
    return (small, large) if auto_pad == "SAME_UPPER" else (large, small)


def read_auto_pad(ctx: Context) -> str:
    auto_pad = ctx.attrs.string("auto_pad", "NOTSET")
    if auto_pad not in AUTO_PADS:
        raise ctx.malformed(f"auto_pad={auto_pad!r} is not one of {AUTO_PADS}")
    return auto_pad


def read_ints(ctx: Context, name: str, n: int, default: int) -> tuple[int, ...]:
    values = ctx.attrs.ints(name, (default,) * n)
    if len(values) != n:
        raise ctx.malformed(f"{name}={list(values)} must have {n} entries (one per spatial axis)")
    return values


def read_pads(ctx: Context, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    pads = ctx.attrs.ints("pads", (0,) * (2 * n))
    if len(pads) != 2 * n:
        raise ctx.malformed(f"pads={list(pads)} must have {2 * n} entries (begins, then ends)")
    return pads[:n], pads[n:]


def read_window(ctx: Context, in_sizes: Sequence[int], kernel: Sequence[int], *,
                dilations: bool = True) -> Window:
    """Resolve strides, dilations and (auto_pad or pads) into explicit per-side pads.

    SAME_*: the output size is ceil(i / s) and the total pad
    max((o - 1) * s + d * (k - 1) + 1 - i, 0) is split per ``split_same_pad``.
    """
    n = len(kernel)
    strides = read_ints(ctx, "strides", n, 1)
    dils = read_ints(ctx, "dilations", n, 1) if dilations else (1,) * n
    auto_pad = read_auto_pad(ctx)
    if auto_pad != "NOTSET" and ctx.attrs.has("pads"):
        raise ctx.malformed(f"auto_pad={auto_pad} and explicit pads cannot be used together")
    begin, end = read_pads(ctx, n)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        sides = [split_same_pad(max((-(-i // s) - 1) * s + d * (k - 1) + 1 - i, 0), auto_pad)
                 for i, k, s, d in zip(in_sizes, kernel, strides, dils)]
        begin, end = tuple(b for b, _ in sides), tuple(e for _, e in sides)
    if min(begin + end, default=0) < 0:
        raise ctx.malformed(f"pads {list(begin + end)} must be non-negative")
    return Window(strides, dils, begin, end)
