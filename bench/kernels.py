"""Times every applicable blocked conv kernel on ResNet-50's distinct conv shapes.

    python bench/kernels.py [--threads 1 2] [--only direct,im2col] [--layers l4,fc] [--generic] [--block 8]
                            [--mcpu znver3]

Batch 1, float32, the host's blocked layout (``convc.target.channel_block``: 16 with
AVX-512, 8 with AVX2; the stem reads the plain 3-channel input), plus the FC heads of
ResNet-50/18 as 1x1 convs on a 1x1 map and two MobileNetV2 depthwise layers.
Each thread count runs in its own subprocess (TVM_NUM_THREADS is read at import).
Prints GFLOP/s and the fraction of the host's FMA peak (``Machine.from_target``, per
thread used). Every kernel's output is checked against ``conv_reference`` before it is timed.
``--mcpu`` compiles for another CPU the host can run (``znver3`` on an AVX-512 host: AVX2
code with 16 vector registers, block 8, and the AVX2 machine model).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# (label, in, out, spatial, kernel, stride, pad, groups, plain input)
LAYERS = [
    ("stem 7x7/2", 3, 64, 224, 7, 2, 3, 1, True),
    ("l1 1x1 64>64", 64, 64, 56, 1, 1, 0, 1, False),
    ("l1 3x3 64", 64, 64, 56, 3, 1, 1, 1, False),
    ("l1 1x1 64>256", 64, 256, 56, 1, 1, 0, 1, False),
    ("l1 1x1 256>64", 256, 64, 56, 1, 1, 0, 1, False),
    ("l2 1x1 256>128", 256, 128, 56, 1, 1, 0, 1, False),
    ("l2 3x3/2 128", 128, 128, 56, 3, 2, 1, 1, False),
    ("l2 1x1/2 256>512", 256, 512, 56, 1, 2, 0, 1, False),
    ("l2 1x1 128>512", 128, 512, 28, 1, 1, 0, 1, False),
    ("l2 1x1 512>128", 512, 128, 28, 1, 1, 0, 1, False),
    ("l2 3x3 128", 128, 128, 28, 3, 1, 1, 1, False),
    ("l3 1x1 512>256", 512, 256, 28, 1, 1, 0, 1, False),
    ("l3 3x3/2 256", 256, 256, 28, 3, 2, 1, 1, False),
    ("l3 1x1/2 512>1024", 512, 1024, 28, 1, 2, 0, 1, False),
    ("l3 1x1 256>1024", 256, 1024, 14, 1, 1, 0, 1, False),
    ("l3 1x1 1024>256", 1024, 256, 14, 1, 1, 0, 1, False),
    ("l3 3x3 256", 256, 256, 14, 3, 1, 1, 1, False),
    ("l4 1x1 1024>512", 1024, 512, 14, 1, 1, 0, 1, False),
    ("l4 3x3/2 512", 512, 512, 14, 3, 2, 1, 1, False),
    ("l4 1x1/2 1024>2048", 1024, 2048, 14, 1, 2, 0, 1, False),
    ("l4 1x1 512>2048", 512, 2048, 7, 1, 1, 0, 1, False),
    ("l4 1x1 2048>512", 2048, 512, 7, 1, 1, 0, 1, False),
    ("l4 3x3 512", 512, 512, 7, 3, 1, 1, 1, False),
    ("fc as 1x1 2048>1000", 2048, 1000, 1, 1, 1, 0, 1, False),
    ("fc as 1x1 512>1000", 512, 1000, 1, 1, 1, 0, 1, False),
    ("mbv2 dw 3x3 96/2", 96, 96, 112, 3, 2, 1, 96, False),
    ("mbv2 dw 3x3 192", 192, 192, 28, 3, 1, 1, 192, False),
]


def _problem(block, c, m, size, k, s, pad, g, plain_input):
    from convc.schedules.cpu.blocked import ConvProblem
    return ConvProblem(1, c, m, g, (size, size), (k, k), (s, s), (pad, pad), (pad, pad), (1, 1),
                       0 if plain_input else block, block if m % block == 0 else 0, has_bias=True)


def _time(fn, args, budget: float = 0.4, rounds: int = 10) -> float:
    """Seconds per call: the fastest of ``rounds`` rounds after a warm-up (the machine is
    shared, and other processes only ever slow a round down)."""
    fn(*args)
    start = time.perf_counter()
    fn(*args)
    calls = max(1, int(budget / rounds / max(time.perf_counter() - start, 1e-6)))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn(*args)
        times.append((time.perf_counter() - start) / calls)
    return min(times)


def worker(threads: int, only: set[str] | None, generic: bool, block: int | None, layers: list[str],
           mcpu: str) -> None:
    os.environ["TVM_NUM_THREADS"] = str(threads)
    import numpy as np
    import tvm

    from convc.ir.ops.conv import conv_reference
    from convc.schedules.cpu.blocked import CANDIDATES, choose, pack, physical_shape, unpack
    from convc.schedules.cpu.blocked.machine import Machine
    from convc.schedules.cpu.tasks import one_task_per_core
    from convc.target import channel_block, resolve_target

    target = resolve_target("llvm")
    if mcpu:
        target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": int(target.attrs["num-cores"])})
    machine = Machine.from_target(target)
    block = channel_block(target) if block is None else block
    rng = np.random.default_rng(0)
    for label, *shape in LAYERS:
        if layers and not any(part in label for part in layers):
            continue
        p = _problem(block, *shape)
        picked = choose(p, machine)[0].name
        x = rng.standard_normal(p.in_shape, dtype=np.float32)
        w = rng.standard_normal(p.weight_shape, dtype=np.float32)
        b = rng.standard_normal(p.out_channels, dtype=np.float32)
        ref = conv_reference(p.attrs, x, w, b)
        for kernel in CANDIDATES:
            if kernel.decline(p) or (only and kernel.name not in only) or (kernel.name == "generic" and not generic):
                continue
            config = kernel.default_config(p, machine)
            build = kernel.build(p, config)
            func = one_task_per_core(build.func, machine.cores)  # as convc compiles it
            lib = tvm.compile(tvm.IRModule({"main": func}), target=target)
            wp, bp = build.pack_weight(w, b)
            out = tvm.runtime.tensor(np.zeros(physical_shape(p.out_shape, p.out_block), np.float32))
            args = [tvm.runtime.tensor(a) for a in (pack(x, p.in_block), wp, bp)] + [out]
            lib["main"](*args)
            err = float(np.abs(unpack(out.numpy(), p.out_block) - ref).max() / (np.abs(ref).max() + 1e-9))
            seconds = _time(lib["main"], args)
            gflops = p.flops / seconds / 1e9
            print(json.dumps({"label": label, "block": block, "kernel": kernel.name, "picked": kernel.name == picked,
                              "threads": threads, "ms": seconds * 1e3, "gflops": gflops,
                              "peak_pct": 100 * gflops * 1e9 / (machine.peak_flops_per_core * threads),
                              "estimate_ms": kernel.estimate(p, config, machine) * 1e3, "rel_err": err}),
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--only", default="", help="comma-separated kernel names")
    parser.add_argument("--generic", action="store_true", help="also time the (slow) generic kernel")
    parser.add_argument("--layers", default="", help="comma-separated parts of layer labels to run")
    parser.add_argument("--mcpu", default="", help="LLVM CPU to compile for (default: the host's)")
    parser.add_argument("--block", type=int, help="channel block (default: the host's channel_block)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    only = set(filter(None, opts.only.split(","))) or None
    if opts.worker:
        worker(opts.worker, only, opts.generic, opts.block, list(filter(None, opts.layers.split(","))),
               opts.mcpu)
        return
    print(f"{'layer':<22}{'blk':>4} {'kernel':<10}{'thr':>4}{'ms':>9}{'GFLOP/s':>9}{'% peak':>8}{'est ms':>8}  pick")
    for threads in opts.threads:
        cmd = [sys.executable, __file__, "--worker", str(threads), "--only", opts.only, "--layers", opts.layers,
               "--mcpu", opts.mcpu]
        cmd += ["--generic"] if opts.generic else []
        cmd += ["--block", str(opts.block)] if opts.block is not None else []
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "TVM_NUM_THREADS": str(threads)})
        for line in proc.stdout:
            r = json.loads(line)
            flag = "*" if r["picked"] else ""
            bad = "" if r["rel_err"] < 1e-4 else f"  WRONG (rel err {r['rel_err']:.1e})"
            print(f"{r['label']:<22}{r['block']:>4} {r['kernel']:<10}{r['threads']:>4}{r['ms']:>9.3f}"
                  f"{r['gflops']:>9.1f}{r['peak_pct']:>7.0f}%{r['estimate_ms']:>8.3f}  {flag}{bad}", flush=True)
        if proc.wait():
            raise SystemExit(f"worker for {threads} thread(s) failed with exit code {proc.returncode}")


if __name__ == "__main__":
    main()
