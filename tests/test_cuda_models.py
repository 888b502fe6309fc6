"""Every model of the test suite compiled for CUDA sm_80 and sm_90.

Without a GPU: each conv runs the kernel ``select_schedule`` picked (its symbol in the
generated CUDA source, with shared memory and thread bindings), nvcc compiled the source
for the arch (a cubin of that SM version holding every kernel), the library exports and
carries the CUDA code, and running or loading it says there is no CUDA device.
On a GPU (``gpu`` marker): outputs against onnxruntime on the CPU, and PyTorch tensors
through DLPack.
"""
from __future__ import annotations

import re
import struct

import numpy as np
import onnxruntime as ort
import pytest

import convc
from convc import zoo
from convc.backend import backend
from convc.compiler import plan_schedules
from convc.errors import ConvcError
from convc.ir import Op
from convc.lower import build
from convc.runtime import cuda_missing
from convc.target import resolve_target
from convc.tune import extract_tasks
from convc.tune.cases import Case

MODELS = ["resnet_small", "mobilenet_small", "dcgan_small", "unet_small", "vgg_small", "tiny"]
ARCHS = ["sm_80", "sm_90"]


class Built:
    """One model compiled for one arch, with what select_schedule decided."""

    def __init__(self, name: str, arch: str, dtype: str, directory):
        self.model = zoo.build(name)
        self.graph, self.decisions = plan_schedules(self.model, f"cuda:{arch}", dtype=dtype)
        self.compiled = build(self.graph, resolve_target(f"cuda:{arch}"))
        self.library = directory / f"{name}_{arch}_{dtype}.so"
        self.compiled.export_library(self.library)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    cache: dict[tuple[str, str, str], Built] = {}
    directory = tmp_path_factory.mktemp("cuda")

    def get(name: str, arch: str, dtype: str = "float32") -> Built:
        if (name, arch, dtype) not in cache:
            cache[(name, arch, dtype)] = Built(name, arch, dtype, directory)
        return cache[(name, arch, dtype)]
    return get


def kernel_bodies(source: str) -> dict[str, str]:
    """Each ``__global__`` function defined in CUDA ``source``: its name -> its body."""
    bodies = {}
    for match in re.finditer(r'__global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\([^)]*\)\s*\{', source):
        depth, i = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(source[i], 0)
            i += 1
        bodies[match.group(1)] = source[match.end():i - 1]
    return bodies


def conv_kernels(built: Built) -> list[tuple[str, str, list[str]]]:
    """(node, picked kernel, its symbol, the CUDA kernels of the symbol) for every conv."""
    symbol_of = {node: symbol for symbol, nodes in built.compiled.kernels.items() for node in nodes}
    names = kernel_bodies(built.compiled.device_code.source)
    out = []
    for decision in built.decisions:
        symbol = symbol_of[decision.node]
        out.append((decision.node, decision.picked, symbol,
                    [n for n in names if re.fullmatch(rf"{symbol}_kernel\d*", n)]))
    return out


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", MODELS)
def test_every_conv_runs_the_selected_kernel(builds, name, arch):
    built = builds(name, arch)
    convs = [n for n in built.graph.nodes if n.op is Op.CONV]
    assert len(built.decisions) == len(convs) > 0
    bodies = kernel_bodies(built.compiled.device_code.source)
    grids = 0
    for node, picked, symbol, kernels in conv_kernels(built):
        assert picked in {"implicit_gemm", "direct", "depthwise", "1x1", "tensorcore"}, (node, picked)
        assert symbol.startswith(f"conv_{picked}_"), (node, picked, symbol)
        assert kernels, f"{node}: no CUDA kernel of {symbol}"
        code = "".join(bodies[k] for k in kernels)
        assert "__shared__" in code, f"{node} ({picked}): no shared-memory staging"
        assert "threadIdx." in code, f"{node} ({picked}): threads not bound"
        grids += "blockIdx." in code  # absent only where the grid is one block
    assert grids > 0


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", MODELS)
def test_nvcc_compiled_every_kernel_for_the_arch(builds, name, arch):
    built = builds(name, arch)
    code = built.compiled.device_code
    assert (code.kind, code.arch, code.format) == ("cuda", arch, "cubin")
    assert code.binary[:4] == b"\x7fELF"
    e_flags = struct.unpack_from("<I", code.binary, 48)[0]  # a cubin's ELF flags carry its SM version
    assert (e_flags >> 8) & 0xFF == int(arch.removeprefix("sm_"))
    for name_ in kernel_bodies(code.source):
        assert name_.encode() in code.binary, f"{name_} missing from the cubin"


@pytest.mark.parametrize("name", MODELS)
def test_the_exported_library_carries_the_cuda_code(builds, name):
    built = builds(name, "sm_90")
    data = built.library.read_bytes()
    for _, _, _, kernels in conv_kernels(built):
        assert all(k.encode() in data for k in kernels)
    assert built.compiled.signature.device == "cuda"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", ["tiny", "mobilenet_small"])
def test_float16_convs_run_on_tensor_cores(builds, name, arch):
    built = builds(name, arch, "float16")
    fp32 = builds(name, arch)
    assert built.compiled.signature.inputs == fp32.compiled.signature.inputs  # float32 in and out
    assert built.compiled.signature.outputs == fp32.compiled.signature.outputs
    bodies = kernel_bodies(built.compiled.device_code.source)
    picks = {picked for _, picked, _, _ in conv_kernels(built)}
    assert "tensorcore" in picks
    for node, picked, symbol, kernels in conv_kernels(built):
        code = "".join(bodies[k] for k in kernels)
        assert "half" in code, f"{node} ({picked}) does not compute in float16"
        if picked == "tensorcore":
            assert "wmma::mma_sync" in code or "mma.sync" in code, f"{node}: no tensor-core MMA"
    e_flags = struct.unpack_from("<I", built.compiled.device_code.binary, 48)[0]
    assert (e_flags >> 8) & 0xFF == int(arch.removeprefix("sm_"))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cuda_trials_get_arguments_of_the_kernels_shapes_and_dtypes(dtype):
    target = resolve_target("cuda:sm_90")
    graph, _ = plan_schedules(zoo.build("resnet_small"), "cuda:sm_90", dtype=dtype)
    tasks = extract_tasks(graph, target)
    assert any(t.problem.operand_shapes for t in tasks)  # a residual add among them
    for task in tasks:
        if not task.problem.operand_shapes and task is not tasks[0]:
            continue
        kernel, config = task.default()
        with target:
            built = kernel.build(task.problem, config)
        args = Case(task.problem, pack_operand=backend("cuda").pack_operand).arguments(built.pack_weight)
        assert [(a.shape, str(a.dtype)) for a in args] == \
            [(tuple(int(d) for d in p.shape), str(p.dtype)) for p in built.func.params]


@pytest.mark.skipif(not cuda_missing(), reason="checks the behaviour on a machine without a CUDA device")
def test_without_a_gpu_running_or_loading_says_so(builds):
    built = builds("tiny", "sm_90")
    x = zoo.random_inputs(built.model)
    with pytest.raises(ConvcError, match="no CUDA device"):
        built.compiled.run(x)
    for device in (None, "cuda", "cpu"):
        with pytest.raises(ConvcError, match="compiled for CUDA.*no CUDA device"):
            convc.load(built.library, device=device)


# -- on a GPU ---------------------------------------------------------------------------
def rel_l2(got, expected) -> float:
    return float(np.linalg.norm(got.astype(np.float64) - expected) / np.linalg.norm(expected))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("float16", 1e-2)])
@pytest.mark.parametrize("name", MODELS)
def test_outputs_match_onnxruntime_on_the_gpu(name, dtype, tolerance, tmp_path):
    model = zoo.build(name)
    inputs = zoo.random_inputs(model, seed=1)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, inputs)
    compiled = convc.compile(model, target="cuda", dtype=dtype)
    compiled.export_library(tmp_path / "m.so")
    for runner in (compiled, convc.load(tmp_path / "m.so", device="cuda")):
        for got, want in zip(runner.run(inputs), expected):
            assert rel_l2(got, want) <= tolerance


@pytest.mark.gpu
def test_torch_cuda_tensors_pass_through_dlpack():
    torch = pytest.importorskip("torch")
    model = zoo.build("tiny")
    x = zoo.random_inputs(model, seed=2)["input"]
    compiled = convc.compile(model, target="cuda")
    expected = compiled.run({"input": x})[0]
    tensor = torch.from_numpy(x).cuda()
    (argument,) = compiled.device_inputs({"input": tensor})
    assert argument.data_ptr() == tensor.data_ptr()  # no copy
    (out,) = compiled.run({"input": tensor}, output="dlpack")
    result = torch.from_dlpack(out)
    assert result.is_cuda and np.allclose(result.cpu().numpy(), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(convc.InputError, match="float64"):
        compiled.run({"input": tensor.double()})
