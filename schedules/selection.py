"""Choosing a conv kernel among a backend's candidates by their analytical estimates."""
from __future__ import annotations

from typing import Any, Sequence

Verdict = tuple[str, "float | str"]

MARGIN = 0.05


def choose_among(candidates: Sequence[Any], p, machine) -> tuple[Any, Any, list[Verdict]]:
    """The candidate with the lowest estimate on ``machine`` with its default config, and for
    every candidate its name with its estimate in seconds or the reason it declined.
    (None, None, verdicts) when every candidate declines (e.g. float64).

    The estimates rank, they do not predict to the percent: a later candidate (backends list
    the simpler, faster-compiling kernels first) wins only by more than ``MARGIN``.
    """
    verdicts: list[Verdict] = []
    best: tuple[float, Any, Any] | None = None
    for kernel in candidates:
        reason = kernel.decline(p)
        if reason is not None:
            verdicts.append((kernel.name, reason))
            continue
        config = kernel.default_config(p, machine)
        seconds = kernel.estimate(p, config, machine)
        verdicts.append((kernel.name, seconds))
        if best is None or seconds < best[0] * (1 - MARGIN):
            best = (seconds, kernel, config)
    if best is None:
        return None, None, verdicts
    return best[1], best[2], verdicts
