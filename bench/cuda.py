"""convc's CUDA libraries against PyTorch + cuDNN, on a GPU machine.

Runs THERE, from a bundle made here by ``bench/gpu_bundle.py`` (whose launcher unpacks
it and calls this file with the runtime-only ``tvm`` and ``convc.runtime`` on the path):

    python cuda.py --jobs DIR --out results.json [--repeat 50] [--warmup 10]

For each job (network, batch, dtype) it loads the convc library with ``convc.runtime``
only (no TVM compiler there: TVM compiles the library's CUDA source with nvcc at load),
checks its output against onnxruntime's (computed here on the same network and input;
relative L2 <= 1e-4 in float32, <= 1e-2 in float16), and times it interleaved with
PyTorch running the same network with the same weights: a ``torch.nn.functional`` graph
built from the network's description (BatchNorm folded into the convs, cuDNN with
``cudnn.benchmark``, TF32 off so float32 is float32), in NCHW and channels_last memory
formats. Times are CUDA-synchronised, after a warm-up, medians of ``--repeat`` runs in
two passes. Here, back from the runs:

    python -m bench.cuda --merge results-*.json     # writes bench/RESULTS-cuda.md and .json

Importing this file needs only NumPy; PyTorch and convc's runtime are imported by ``run``.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

TOLERANCE = {"float32": 1e-4, "float16": 1e-2}  # relative L2 error vs onnxruntime
RESULTS = Path(__file__).resolve().parent / "RESULTS-cuda.md"
JOB_FILE = "job.json"  # in each job folder: {"model", "batch", "dtype", "net"}


def input_array(shape) -> np.ndarray:
    """A deterministic float32 input in [-1, 1) made of integer arithmetic only, so that
    both machines compute exactly the same array without sharing an RNG."""
    index = np.arange(math.prod(shape), dtype=np.uint64)
    hashed = (index * np.uint64(2654435761) + np.uint64(12345)) % np.uint64(1 << 16)
    return (hashed.astype(np.float32) / np.float32(1 << 15) - np.float32(1)).reshape(shape)


def rel_l2(got: np.ndarray, want: np.ndarray) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-30))


@dataclass
class Record:
    """One job's outcome (times in milliseconds, medians of each pass)."""

    model: str
    batch: int
    dtype: str
    gflop: float = 0.0
    convc_ms: list[float] = field(default_factory=list)
    torch_ms: dict[str, list[float]] = field(default_factory=dict)  # memory format -> medians
    convc_error: float | None = None
    torch_error: dict[str, float] = field(default_factory=dict)
    load_s: float | None = None
    error: str = ""

    @property
    def passed(self) -> bool:
        return self.convc_error is not None and self.convc_error <= TOLERANCE[self.dtype]


# -- PyTorch: the network from its description ---------------------------------------------
class TorchNet:
    """The network of ``graph.json`` + ``weights.npz`` as ``torch.nn.functional`` calls.

    Each Conv followed only by a BatchNormalization gets the BatchNorm folded into its
    weight and bias (in float32, before any cast), as an inference deployment would.
    """

    def __init__(self, graph: dict, weights: dict[str, np.ndarray], dtype: str, channels_last: bool,
                 device: str = "cuda"):
        import torch
        self.torch = torch
        self.graph = graph
        self.dtype = getattr(torch, dtype)
        self.device = device
        self.channels_last = channels_last
        w = {k: torch.from_numpy(np.array(v)).to(device) for k, v in weights.items()}
        nodes = [dict(n, inputs=list(n["inputs"]), outputs=list(n["outputs"]), attrs=dict(n["attrs"]))
                 for n in graph["nodes"]]
        self.nodes = self._fold_batchnorm(_constant_clip_bounds(nodes, weights), w)
        self.params = {k: self._device_param(v) for k, v in w.items()}
        self.flop = 0

    @staticmethod
    def _fold_batchnorm(nodes: list[dict], w: dict) -> list[dict]:
        readers: dict[str, int] = {}
        for n in nodes:
            for name in n["inputs"]:
                readers[name] = readers.get(name, 0) + 1
        by_output = {n["outputs"][0]: n for n in nodes}
        folded, kept = set(), []
        for n in nodes:
            source = by_output.get(n["inputs"][0]) if n["op"] == "BatchNormalization" else None
            if source is not None and source["op"] == "Conv" and readers[source["outputs"][0]] == 1:
                scale, beta, mean, var = (w[name].double() for name in n["inputs"][1:5])
                factor = scale / (var + n["attrs"].get("epsilon", 1e-5)).sqrt()
                weight = w[source["inputs"][1]].double()
                bias = w[source["inputs"][2]].double() if len(source["inputs"]) > 2 else 0 * factor
                new_w, new_b = f"{source['outputs'][0]}.folded_w", f"{source['outputs'][0]}.folded_b"
                w[new_w] = (weight * factor.reshape(-1, *[1] * (weight.dim() - 1))).float()
                w[new_b] = ((bias - mean) * factor + beta).float()
                source["inputs"] = [source["inputs"][0], new_w, new_b]
                source["outputs"] = list(n["outputs"])
                folded.add(id(n))
            kept.append(n)
        return [n for n in kept if id(n) not in folded]

    def _device_param(self, t):
        t = t.to(self.dtype) if t.is_floating_point() else t
        return t.contiguous(memory_format=self.torch.channels_last) if self.channels_last and t.dim() == 4 else t

    def input(self, array: np.ndarray):
        x = self.torch.from_numpy(array).to(self.device).to(self.dtype)
        return x.contiguous(memory_format=self.torch.channels_last) if self.channels_last else x

    def __call__(self, x):
        env = dict(self.params)
        env[self.graph["inputs"][0]["name"]] = x
        count = not self.flop
        for n in self.nodes:
            args = [env[name] if name else None for name in n["inputs"]]
            out = _TORCH_OPS[n["op"]](self.torch.nn.functional, args, n["attrs"])
            if count and n["op"] in ("Conv", "Gemm"):
                self.flop += _flop(n["op"], args, out)
            env[n["outputs"][0]] = out
        return env[self.graph["outputs"][0]]


def _constant_clip_bounds(nodes: list[dict], weights: dict[str, np.ndarray]) -> list[dict]:
    """Clip's bound inputs (constants) as attributes: read once, not synchronised every run."""
    for n in nodes:
        if n["op"] == "Clip":
            for name, key in zip(n["inputs"][1:], ("min", "max")):
                if name:
                    n["attrs"][key] = float(np.asarray(weights[name]).item())
            n["inputs"] = n["inputs"][:1]
    return nodes


def _flop(op: str, args, out) -> int:
    """Multiply-adds x 2 of a conv (N*M*prod(O) outputs, C/g*prod(K) taps) or a Gemm."""
    return 2 * out.numel() * math.prod(args[1].shape[1:]) if op == "Conv" else 2 * out.numel() * args[0].shape[1]


def _symmetric_pads(F, x, pads):
    half = len(pads) // 2
    if list(pads[:half]) == list(pads[half:]):
        return x, list(pads[:half])
    spread = [p for axis in reversed(range(half)) for p in (pads[axis], pads[half + axis])]
    return F.pad(x, spread), [0] * half


def _conv(F, args, a):
    x, w, *b = args
    x, pads = _symmetric_pads(F, x, a.get("pads", [0] * (2 * (w.dim() - 2))))
    return F.conv2d(x, w, b[0] if b else None, a.get("strides", 1), pads, a.get("dilations", 1), a.get("group", 1))


def _max_pool(F, args, a):
    x, pads = _symmetric_pads(F, args[0], a.get("pads", [0] * 2 * len(a["kernel_shape"])))
    return F.max_pool2d(x, a["kernel_shape"], a.get("strides", a["kernel_shape"]), pads)


def _gemm(F, args, a):
    x, w, *b = args
    x = x.t() if a.get("transA") else x
    w = w if a.get("transB") else w.t()
    y = F.linear(x, w) * a.get("alpha", 1.0)
    return y + a.get("beta", 1.0) * b[0] if b else y


def _clip(F, args, a):
    return args[0].clamp(a.get("min", -math.inf), a.get("max", math.inf))


def _batch_norm(F, args, a):
    x, scale, beta, mean, var = args
    return F.batch_norm(x, mean, var, scale, beta, False, 0.0, a.get("epsilon", 1e-5))


_TORCH_OPS = {
    "Conv": _conv,
    "BatchNormalization": _batch_norm,
    "Relu": lambda F, args, a: F.relu(args[0]),
    "Clip": _clip,
    "Add": lambda F, args, a: args[0] + args[1],
    "MaxPool": _max_pool,
    "GlobalAveragePool": lambda F, args, a: args[0].mean(dim=tuple(range(2, args[0].dim())), keepdim=True),
    "Flatten": lambda F, args, a: args[0].flatten(a.get("axis", 1)),
    "Gemm": _gemm,
}


# -- timing ----------------------------------------------------------------------------
def time_interleaved(fns: dict, sync, warmup: int, repeat: int, passes: int = 2) -> dict[str, list[float]]:
    """Median milliseconds of each of ``fns`` per pass, the calls interleaved (A, B, A, B, ...)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync()
    medians: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(passes):
        times: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(repeat):
            for name, fn in fns.items():
                sync()
                start = time.perf_counter()
                fn()
                sync()
                times[name].append((time.perf_counter() - start) * 1e3)
        for name in fns:
            medians[name].append(statistics.median(times[name]))
    return medians


# -- the run on the GPU machine --------------------------------------------------------
def run_job(folder: Path, nets: Path, warmup: int, repeat: int, device: str = "cuda") -> Record:
    import torch
    import tvm.runtime.vm  # noqa: F401  (runtime-only tvm does not import it by itself)
    from convc.runtime import load
    job = json.loads((folder / JOB_FILE).read_text())
    record = Record(job["model"], job["batch"], job["dtype"])
    start = time.perf_counter()
    model = load(folder / "lib.so", device=device)
    record.load_s = time.perf_counter() - start
    (spec,) = model.inputs
    reference = np.load(folder / "reference.npy")
    x = input_array(spec.shape)
    x_dev = torch.from_numpy(x).to(device).to(getattr(torch, spec.dtype))
    record.convc_error = rel_l2(model.run({spec.name: x_dev})[0], reference)
    graph = json.loads((nets / job["net"] / "graph.json").read_text())
    weights = dict(np.load(nets / job["net"] / "weights.npz"))
    fns = {"convc": lambda: model.run({spec.name: x_dev}, output="dlpack")}
    with torch.inference_mode():
        for form, channels_last in (("nchw", False), ("channels_last", True)):
            net = TorchNet(graph, weights, job["dtype"], channels_last, device)
            xt = net.input(x)
            record.torch_error[form] = rel_l2(net(xt).float().cpu().numpy(), reference)
            record.gflop = net.flop / 1e9
            fns[form] = (lambda net=net, xt=xt: net(xt))
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        medians = time_interleaved(fns, sync, warmup, repeat)
    record.convc_ms = medians.pop("convc")
    record.torch_ms = medians
    return record


def machine(device: str = "cuda") -> dict:
    import platform

    import torch
    import tvm
    return {device: torch.cuda.get_device_name(0) if device == "cuda" else platform.processor(),
            "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(), "tvm": getattr(tvm, "__version__", "?"),
            "python": sys.version.split()[0], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def run(jobs: Path, out: Path, warmup: int, repeat: int, device: str = "cuda") -> list[Record]:
    """Every job under ``jobs`` (folders with ``job.json``; networks under ``jobs/nets``).
    ``device="cpu"`` runs CPU libraries the same way: a rehearsal of the GPU run."""
    import torch
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    records = []
    for folder in sorted(p.parent for p in jobs.glob(f"*/{JOB_FILE}")):
        try:
            record = run_job(folder, jobs / "nets", warmup, repeat, device)
        except Exception as err:  # one failing job must not lose the others' results
            job = json.loads((folder / JOB_FILE).read_text())
            record = Record(job["model"], job["batch"], job["dtype"], error=f"{type(err).__name__}: {err}"[:2000])
        records.append(record)
        print(json.dumps(asdict(record)), flush=True)
        out.write_text(json.dumps({"machine": machine(device), "records": [asdict(r) for r in records]},
                                  indent=1))
    return records


# -- back here: the report --------------------------------------------------------------
HEADER = """# convc on CUDA vs PyTorch + cuDNN

Made by `python -m bench.cuda --merge ...` from runs of `bench/gpu_bundle.py`'s bundle on
a GPU machine (see bench/cuda.py for the method). PyTorch runs the same network with the
same (transfer) weights as a `torch.nn.functional` graph, BatchNorm folded, cuDNN with
`cudnn.benchmark=True`, TF32 off; "torch" is its faster memory format. Ratio = convc time /
torch time (below 1: convc faster). Error = relative L2 vs onnxruntime CPU (limits: 1e-4
float32, 1e-2 float16). Times: medians of two interleaved passes, CUDA-synchronised.
"""


def report(machine_info: dict | None, records: list[dict]) -> str:
    lines = [HEADER]
    if machine_info:
        lines.append("Machine: " + ", ".join(f"{k} {v}" for k, v in machine_info.items()) + "\n")
    lines += ["| model | batch | dtype | convc ms | torch ms (format) | ratio | convc GFLOP/s | error | ok |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in records:
        if r["error"]:
            lines.append(f"| {r['model']} | {r['batch']} | {r['dtype']} | failed: {r['error'][:120]} "
                         "| | | | | no |")
            continue
        convc = statistics.mean(r["convc_ms"])
        form, torch_ms = min(((f, statistics.mean(ms)) for f, ms in r["torch_ms"].items()), key=lambda t: t[1])
        spread = max(r["convc_ms"]) / min(r["convc_ms"]) - 1
        ok = r["convc_error"] <= TOLERANCE[r["dtype"]]
        lines.append(f"| {r['model']} | {r['batch']} | {r['dtype']} | {convc:.3f} (±{spread:.0%}) | "
                     f"{torch_ms:.3f} ({form}) | {convc / torch_ms:.2f} | {r['gflop'] / convc * 1e3:.0f} | "
                     f"{r['convc_error']:.1e} | {'yes' if ok else 'NO'} |")
    return "\n".join(lines) + "\n"


def merge(files: list[Path], md: Path, js: Path) -> None:
    """One report from the results of several runs (one per bundle part)."""
    runs = [json.loads(f.read_text()) for f in files]
    records = sorted((r for run in runs for r in run["records"]), key=lambda r: (r["model"], r["batch"], r["dtype"]))
    md.write_text(report(runs[0]["machine"] if runs else None, records))
    js.write_text(json.dumps({"machines": [run["machine"] for run in runs], "records": records}, indent=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=Path, help="the unpacked jobs of a bundle part (on the GPU machine)")
    parser.add_argument("--out", type=Path, help="where the results JSON goes")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--device", default="cuda", help="cpu: rehearse with CPU libraries")
    parser.add_argument("--merge", type=Path, nargs="+", help="results JSON files to report (here)")
    args = parser.parse_args(argv)
    if args.merge:
        merge(args.merge, RESULTS, RESULTS.with_suffix(".json"))
        return 0
    if not (args.jobs and args.out):
        parser.error("give --jobs and --out (on the GPU machine) or --merge (here)")
    records = run(args.jobs, args.out, args.warmup, args.repeat, args.device)
    print(report(machine(args.device), [asdict(r) for r in records]))
    return 0 if all(r.passed for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
