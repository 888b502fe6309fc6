"""The ``convc`` command line: compile, run, inspect, demo, serve."""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from convc.errors import ConvcError, InputError
from convc.tune.cli import add_commands as add_tune_commands


def parse_shape_spec(spec: str) -> tuple[str, tuple[int, ...]]:
    """'input=1,3,224,224' -> ('input', (1, 3, 224, 224))."""
    name, sep, dims = spec.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, tuple(int(d) for d in dims.split(","))
    except ValueError:
        raise InputError(f"--input-shape {spec!r}: expected NAME=D1,D2,... (e.g. input=1,3,224,224)") from None


def _input_shapes(specs: Sequence[str] | None) -> dict[str, tuple[int, ...]] | None:
    return dict(parse_shape_spec(s) for s in specs) if specs else None


def _print_ir(pass_name: str, graph) -> None:
    print(f"// ---- after {pass_name} ----\n{graph}\n")


def cmd_compile(args: argparse.Namespace) -> int:
    import convc
    version_dir = _version_dir(args.repo) if args.repo else None
    model = convc.compile(args.model, target=args.target, input_shapes=_input_shapes(args.input_shape),
                          dump_ir=_print_ir if args.dump_ir else None, schedule=args.schedule,
                          disable_passes=args.disable_pass or (), tuning_db=args.tuning_db, dtype=args.dtype)
    if version_dir:
        _write_repository_entry(model, version_dir, args.max_batch_size)
    else:
        model.export_library(args.output)
        print(f"wrote {args.output}")
    return 0


def _version_dir(repo: str) -> Path:
    version_dir = Path(repo)
    if not version_dir.name.isdigit() or int(version_dir.name) < 1 or not version_dir.parent.name:
        raise InputError(f"--repo {repo}: expected REPO/NAME/VERSION with VERSION a positive integer "
                         "(e.g. models/resnet/1)")
    return version_dir


def _write_repository_entry(model, version_dir: Path, max_batch_size: int | None) -> None:
    """REPO/NAME/VERSION/model.so and REPO/NAME/config.pbtxt (Triton's layout)."""
    from convc.serve.config import write_config
    from convc.serve.repository import LIBRARY_NAME
    version_dir.mkdir(parents=True, exist_ok=True)
    model.export_library(version_dir / LIBRARY_NAME)
    config = write_config(version_dir.parent, model.signature, max_batch_size)
    print(f"wrote {version_dir / LIBRARY_NAME} and {config}")


def _read_inputs(specs: Sequence[str]) -> dict[str, np.ndarray]:
    inputs = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name:
            raise InputError(f"--input {spec!r}: expected NAME=FILE.npy")
        try:
            inputs[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"--input {name}: cannot read {path!r} as a .npy array: {err}") from None
    return inputs


def _write_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(target)


def cmd_run(args: argparse.Namespace) -> int:
    import convc
    model = convc.load(args.library, device=args.device)
    inputs = _read_inputs(args.input or [])
    outputs = model.run(inputs)
    named = {spec.name: out for spec, out in zip(model.outputs, outputs)}
    if args.output:
        _write_npz(args.output, named)
        print(f"wrote {args.output}")
    else:
        for name, out in named.items():
            print(f"{name}: {out.dtype}{list(out.shape)} min {out.min():.6g} max {out.max():.6g} "
                  f"mean {out.mean():.6g}")
    if args.bench:
        times = model.benchmark(inputs, repeat=args.bench)
        print(f"latency over {len(times)} runs: median {statistics.median(times) * 1e3:.3f} ms, "
              f"min {min(times) * 1e3:.3f} ms")
    if args.profile:
        print(format_profile(model, model.kernel_times(inputs, args.profile), args.profile))
    return 0


def format_profile(model, times: dict[str, list[float]], runs: int) -> str:
    """Per kernel, slowest first: ms per run (median call x calls per run), share, calls, the
    graph nodes it computes (from the library's signature; libraries of older convc lack them)."""
    rows = sorted(((statistics.median(v) * len(v) / runs, symbol, len(v) // runs) for symbol, v in times.items()),
                  reverse=True)
    total = sum(row[0] for row in rows)
    lines = [f"kernel time per run, median of {runs} runs: {total * 1e3:.3f} ms"]
    for per_run, symbol, calls in rows:
        nodes = ", ".join(model.kernels.get(symbol, ()))
        lines.append(f"  {per_run * 1e3:8.3f} ms {100 * per_run / total:5.1f}%  {calls}x {symbol}"
                     + (f"  ({nodes})" if nodes else ""))
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    from convc.compiler import plan_schedules
    from convc.inspect import format_report
    graph, decisions = plan_schedules(args.model, args.target, _input_shapes(args.input_shape), args.schedule,
                                      tuning_db=args.tuning_db, dtype=args.dtype)
    print(format_report(graph, decisions))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from convc.serve.server import serve
    serve(args.repository, host=args.host, http_port=args.port, grpc_port=args.grpc_port,
          max_request_bytes=args.max_request_bytes)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from convc.demo import run_demo
    return run_demo(Path(args.workdir))


SCHEDULE_HELP = ("conv kernels: auto (the cost model; default), im2col, direct, winograd, 1x1, depthwise, narrow "
                 "or generic for every conv (CUDA: implicit_gemm, direct, depthwise, 1x1, tensorcore), "
                 "or per layer: conv1=direct,conv2=im2col")
TARGET_HELP = "llvm (this CPU; default), cuda (this machine's GPU) or cuda:sm_80, cuda:sm_90, ... (no GPU needed)"
DTYPE_HELP = "precision of the computation: float32 (default) or float16 (weights converted at compile time)"


TUNING_DB_HELP = "use the best measured kernel per conv from this `convc tune` database"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="convc", description="A compiler for convolutional networks.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="compile an ONNX model to a shared library")
    p.add_argument("model", help="the .onnx file")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", help="the library to write (.so)")
    out.add_argument("--repo", metavar="REPO/NAME/VERSION",
                     help="write REPO/NAME/VERSION/model.so and REPO/NAME/config.pbtxt for `convc serve`")
    p.add_argument("--max-batch-size", type=int, metavar="N",
                   help="with --repo: config max_batch_size (default: the leading dimension shared by every "
                        "input and output when above 1, else 0: no batching)")
    p.add_argument("--target", default="llvm", help=TARGET_HELP)
    p.add_argument("--dtype", default="float32", help=DTYPE_HELP)
    p.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,...",
                   help="fix a symbolic input shape; repeat per input")
    p.add_argument("--dump-ir", action="store_true", help="print the IR after import and after every pass")
    p.add_argument("--schedule", metavar="SPEC", help=SCHEDULE_HELP)
    p.add_argument("--disable-pass", action="append", metavar="PASS",
                   help="skip an optional rewrite (subpixel, fuse_epilogue, simplify) or a kernel fusion: "
                        "expansions with their depthwise convs (fuse_expand_depthwise), sub-pixel convs "
                        "with their pixel shuffle (fuse_subpixel_shuffle), phase convs writing into their "
                        "interleaved output (write_phases_in_place); repeatable")
    p.add_argument("--tuning-db", metavar="DIR", help=TUNING_DB_HELP)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="run a compiled library on .npy inputs")
    p.add_argument("library")
    p.add_argument("--input", action="append", metavar="NAME=FILE.npy", help="one per model input")
    p.add_argument("--output", metavar="OUT.npz", help="write the outputs, keyed by output name")
    p.add_argument("--bench", type=int, metavar="N", default=0, help="also time N runs")
    p.add_argument("--profile", type=int, metavar="N", default=0,
                   help="also time every kernel over N runs (the VM's per-kernel timing), slowest first")
    p.add_argument("--device", help="cpu or cuda (default: the device the library was compiled for)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("inspect", help="per-layer table: shapes, parameters, FLOPs, memory, rewrites, schedules")
    p.add_argument("model")
    p.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,...")
    p.add_argument("--target", default="llvm", help=TARGET_HELP)
    p.add_argument("--dtype", default="float32", help=DTYPE_HELP)
    p.add_argument("--schedule", metavar="SPEC", help=SCHEDULE_HELP)
    p.add_argument("--tuning-db", metavar="DIR", help=TUNING_DB_HELP)
    p.set_defaults(func=cmd_inspect)

    add_tune_commands(sub)

    p = sub.add_parser("serve", help="serve a model repository over the V2 inference protocol (REST + gRPC)")
    p.add_argument("repository", help="Triton layout: REPO/<model>/config.pbtxt, REPO/<model>/<version>/model.so")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default: every interface)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC port (default 8001)")
    p.add_argument("--max-request-bytes", type=int, default=64 << 20, metavar="N",
                   help="refuse larger requests (default 64 MiB)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="compile and run a bundled example CNN, check it against onnxruntime")
    p.add_argument("--workdir", default="convc-demo", help="where to write the example model and library")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConvcError as err:
        print(f"convc: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
