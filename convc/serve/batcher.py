"""One queue per served library: runs never overlap, and requests merge into one run when they fit.

A library compiled for batch B (config ``max_batch_size: B``) takes requests of 1..B
samples along the leading axis. The batcher takes queued requests in arrival order while
their samples fit in B, concatenates them, pads the rest of the batch with zeros, runs
once and hands each request its own slice of every output. Every sample of a CNN is
computed independently of the others in its batch, so merging changes no result. A
library with ``max_batch_size: 0`` runs each request on its own.
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np

RunFn = Callable[[Mapping[str, np.ndarray]], list[np.ndarray]]


@dataclass
class _Request:
    inputs: Mapping[str, np.ndarray]
    samples: int
    future: asyncio.Future = field(repr=False)


class Batcher:
    """Serialises ``run`` calls for one library and merges requests up to ``batch`` samples (0: no merging)."""

    def __init__(self, run: RunFn, batch: int, max_delay_s: float = 0.002):
        self._run = run
        self._batch = batch
        self._max_delay_s = max_delay_s
        self._pending: deque[_Request] = deque()
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, inputs: Mapping[str, np.ndarray], samples: int) -> tuple[list[np.ndarray], int]:
        """Outputs for ``inputs`` (``samples`` along the leading axis when batching) and how many
        requests shared the run."""
        if self._worker is None:
            self._wakeup = asyncio.Event()
            self._worker = asyncio.get_running_loop().create_task(self._work())
        request = _Request(inputs, samples, asyncio.get_running_loop().create_future())
        self._pending.append(request)
        self._wakeup.set()
        return await request.future

    async def _work(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                if self._batch and sum(r.samples for r in self._pending) < self._batch:
                    await asyncio.sleep(self._max_delay_s)  # let requests sent together arrive together
                group = self._take_group()
                try:
                    results = await asyncio.get_running_loop().run_in_executor(None, self._run_group, group)
                except Exception as err:  # a failed run fails each request of it, never the worker
                    for r in group:
                        r.future.done() or r.future.set_exception(err)
                    continue
                for r, outputs in zip(group, results):
                    r.future.done() or r.future.set_result((outputs, len(group)))

    def _take_group(self) -> list[_Request]:
        group = [self._pending.popleft()]
        if self._batch:
            used = group[0].samples
            while self._pending and used + self._pending[0].samples <= self._batch:
                used += self._pending[0].samples
                group.append(self._pending.popleft())
        return group

    def _run_group(self, group: list[_Request]) -> list[list[np.ndarray]]:
        if not self._batch:
            return [self._run(group[0].inputs)]
        merged = {}
        for name, first in group[0].inputs.items():
            parts = [r.inputs[name] for r in group]
            filled = sum(p.shape[0] for p in parts)
            parts.append(np.zeros((self._batch - filled,) + first.shape[1:], first.dtype))
            merged[name] = np.concatenate(parts)
        outputs = self._run(merged)
        bounds = np.cumsum([0] + [r.samples for r in group])
        return [[out[lo:hi] for out in outputs] for lo, hi in zip(bounds[:-1], bounds[1:])]
