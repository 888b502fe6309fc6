"""The fp32 CUDA conv kernels without a GPU.

(a) Each kernel's TE compute and weight packing, built for the CPU, against the NumPy
reference ``conv_reference`` (this checks all index arithmetic: patch gather, padding,
tile padding, groups, the flat output domain, the epilogue). (b) Each scheduled kernel
built for CUDA sm_80 and sm_90: the source has the kernel with the promised shared memory,
thread bindings and vector loads, and nvcc compiles it. (c) ``choose`` on textbook shapes.
"""
from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import tvm
from tvm.support import nvcc

from convc.errors import ConvcError
from convc.ir import Op
from convc.ir.ops.conv import EpilogueStep, conv_reference
from convc.ir.ops.elementwise import ClipAttrs
from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cuda.conv import CANDIDATES, GPUS, Gpu, by_name, choose

LLVM = tvm.target.Target({"kind": "llvm"})
ARCHS = ("sm_80", "sm_90")

RELU = EpilogueStep(Op.RELU)
CLIP6 = EpilogueStep(Op.CLIP, ClipAttrs(0.0, 6.0))
TANH = EpilogueStep(Op.TANH)
ADD = EpilogueStep(Op.ADD)
MUL = EpilogueStep(Op.MUL)


def problem(c, m, size, k, *, g=1, s=1, pb=None, pe=None, d=1, bias=False, epilogue=(), operands=(),
            batch=1, dtype="float32") -> ConvProblem:
    """A conv problem; ``operands`` entries "out" (the output's shape) or "channel" ((1, M, 1..))."""
    n = len(size)
    tup = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * n  # noqa: E731
    pb = tup(k // 2 if pb is None and isinstance(k, int) else (0 if pb is None else pb))
    p = ConvProblem(batch, c, m, g, tuple(size), tup(k), tup(s), pb, tup(pb if pe is None else pe), tup(d),
                    dtype=dtype, has_bias=bias)
    shapes = {"out": p.out_shape, "channel": (1, m) + (1,) * n}
    return dataclasses.replace(p, epilogue=tuple(epilogue), operand_shapes=tuple(shapes[o] for o in operands))


CASES: dict[str, ConvProblem] = {
    "3x3 s1 bias relu": problem(5, 12, (9, 10), 3, bias=True, epilogue=(RELU,)),
    "3x3 s2 residual": problem(6, 9, (11, 9), 3, s=2, bias=True, epilogue=(ADD, RELU), operands=("out",)),
    "7x7 s2 stem": problem(3, 8, (19, 17), 7, s=2, bias=True),
    "1x1 residual": problem(16, 20, (6, 7), 1, bias=True, epilogue=(ADD, RELU), operands=("out",)),
    "1x1 aligned": problem(16, 8, (8, 8), 1, epilogue=(MUL,), operands=("channel",)),
    "1x1 s2": problem(8, 6, (9, 8), 1, s=2),
    "grouped": problem(8, 12, (7, 9), 3, g=4, bias=True),
    "depthwise clip": problem(6, 6, (10, 11), 3, g=6, bias=True, epilogue=(CLIP6,)),
    "depthwise x2 s2": problem(4, 8, (9, 9), 3, g=4, s=2, epilogue=(ADD,), operands=("out",)),
    "depthwise 1-D x3": problem(3, 9, (37,), 5, g=3, s=2, bias=True),
    "depthwise 3-D": problem(4, 4, (4, 5, 6), 3, g=4, d=(1, 2, 1), pb=(1, 2, 1)),
    "dilated": problem(4, 6, (12, 11), 3, pb=2, d=2),
    "1-D": problem(5, 7, (23,), 5, s=2, pb=2, pe=1),
    "3-D": problem(3, 4, (5, 6, 7), 3),
    "asymmetric pads batch 2": problem(3, 5, (8, 9), (3, 2), pb=(1, 0), pe=(0, 1), batch=2),
    "last conv 3 channels": problem(16, 3, (12, 12), 3, bias=True, epilogue=(TANH,)),
}

KERNELS = [k.name for k in CANDIDATES if k.name != "tensorcore"]
APPLICABLE = [(name, case) for case, p in CASES.items() for name in KERNELS if by_name(name).decline(p) is None]


def _random_inputs(p: ConvProblem, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(p.in_shape, dtype=np.float32)
    w = rng.standard_normal(p.weight_shape, dtype=np.float32)
    b = rng.standard_normal(p.out_channels, dtype=np.float32) if p.has_bias else None
    ops = [rng.standard_normal(s, dtype=np.float32) for s in p.operand_shapes]
    return x, w, b, ops


def _check_compute_on_cpu(name: str, p: ConvProblem, config) -> None:
    kernel = by_name(name)
    built = kernel.compute(p, config)
    lib = tvm.compile(tvm.IRModule({"main": built.func}), target=LLVM)
    x, w, b, ops = _random_inputs(p)
    wp, bp = built.pack_weight(w, b)
    out = tvm.runtime.tensor(np.full(p.out_shape, np.nan, np.float32))
    args = [x, wp, *([bp] if b is not None else []), *ops]
    lib["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in args], out)
    ref = conv_reference(p.attrs, x, w, b, *ops)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-4, atol=1e-4 * math.sqrt(p.in_per_group * p.taps))


def test_every_case_has_a_gemm_and_the_fallback():
    for case, p in CASES.items():
        names = {name for name, c in APPLICABLE if c == case}
        assert {"implicit_gemm", "direct"} <= names, case


@pytest.mark.parametrize("name,case", APPLICABLE, ids=[f"{n}-{c}" for n, c in APPLICABLE])
def test_compute_matches_reference(name, case):
    p = CASES[case]
    _check_compute_on_cpu(name, p, by_name(name).default_config(p))


@pytest.mark.parametrize("name", KERNELS)
def test_other_configs_match_reference(name):
    """The smallest and largest tiles of the space on the case with the oddest sizes that fits."""
    case = next(c for c in ("grouped", "depthwise x2 s2", "1x1 s2") if by_name(name).decline(CASES[c]) is None)
    p = CASES[case]
    space = by_name(name).space(p)
    for config in {space[-1], space[len(space) // 2]} - {space[0]}:
        _check_compute_on_cpu(name, p, config)


FLOAT16_CASES = ("3x3 s2 residual", "1x1 residual", "depthwise clip", "grouped")
FLOAT16 = [(name, case) for case in FLOAT16_CASES for name in KERNELS
           if by_name(name).decline(dataclasses.replace(CASES[case], dtype="float16")) is None]


@pytest.mark.parametrize("name,case", FLOAT16, ids=[f"{n}-{c}" for n, c in FLOAT16])
def test_float16_accumulates_in_float32(name, case):
    """float16 data, weights packed to float16, float32 accumulation: the error is the
    output's float16 rounding (rel. L2 ~2e-4), not a float16 sum's."""
    p = dataclasses.replace(CASES[case], dtype="float16")
    built = by_name(name).compute(p, by_name(name).default_config(p))
    lib = tvm.compile(tvm.IRModule({"main": built.func}), target=LLVM)
    x, w, b, ops = _random_inputs(p)
    x, b, ops = x.astype(np.float16), None if b is None else b.astype(np.float16), [o.astype(np.float16) for o in ops]
    wp, bp = built.pack_weight(w, b)
    assert wp.dtype == np.float16
    out = tvm.runtime.tensor(np.full(p.out_shape, np.nan, np.float16))
    lib["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in [x, wp, *([bp] if b is not None else []), *ops]],
                out)
    as32 = lambda a: None if a is None else a.astype(np.float32)  # noqa: E731
    ref = conv_reference(CASES[case].attrs, as32(x), as32(w.astype(np.float16)), as32(b), *map(as32, ops))
    assert np.linalg.norm(out.numpy().astype(np.float32) - ref) <= 1e-3 * np.linalg.norm(ref)


# -- (b) CUDA code generation ----------------------------------------------------------
CUDA_CASES = {
    "implicit_gemm": ("3x3 s2 residual", "3-D"),
    "1x1": ("1x1 aligned", "1x1 s2"),
    "depthwise": ("depthwise clip", "depthwise 3-D"),
    "direct": ("last conv 3 channels", "1-D"),
}


def _cuda_source(func, arch: str) -> str:
    target = tvm.target.Target({"kind": "cuda", "arch": arch}, host={"kind": "llvm"})
    executable = tvm.compile(tvm.IRModule({"main": func}), target=target)
    (device,) = [m for m in executable.mod.imports if m.kind == "cuda"]
    return device.inspect_source()


def _nvcc(source: str, arch: str) -> bytes:
    with tvm.target.Target({"kind": "cuda", "arch": arch}):
        return nvcc.compile_cuda(source, target_format="cubin", arch=arch, compiler="nvcc")


def _promised_vectors(name: str, p: ConvProblem, config) -> list[str]:
    """Vector types the kernel's source must contain for this config."""
    if name in ("implicit_gemm", "1x1"):
        lanes = max(config.thread_m, config.thread_n, by_name(name)._patch_vector(p, config))
        return [f"float{min(lanes, 4)}"] if lanes > 1 else []
    return []


@pytest.mark.parametrize("name,case", [(n, c) for n, cs in CUDA_CASES.items() for c in cs])
def test_cuda_source_and_nvcc(name, case):
    p = CASES[case]
    kernel = by_name(name)
    for arch in ARCHS:
        config = kernel.default_config(p, Gpu.from_arch(arch))
        built = kernel.build(p, config)
        assert built.func.attrs["tirx.is_scheduled"]
        source = _cuda_source(built.func, arch)
        assert "__global__" in source and "threadIdx.x" in source
        if kernel._launch(p, config).blocks > 1:
            assert "blockIdx." in source
        if name != "depthwise" or config.stage:
            assert "__shared__" in source, f"{name} promises shared memory"
        for vector in _promised_vectors(name, p, config):
            assert vector in source, f"{name} {config} promises {vector} loads"
        assert len(_nvcc(source, arch)) > 0


@pytest.mark.parametrize("name", ["implicit_gemm", "1x1"])
def test_double_buffered_tiles(name):
    """stages=2 (TVM's software pipeline on the reduction loop): twice the shared memory of
    one stage; nvcc compiles it."""
    p = problem(24, 16, (6, 6), 3 if name == "implicit_gemm" else 1)
    kernel = by_name(name)
    single = kernel.space(p)[0]
    double = next(c for c in kernel.space(p) if c.stages == 2 and dataclasses.replace(c, stages=1) == single)
    sources = {c.stages: _cuda_source(kernel.build(p, c).func, "sm_80") for c in (single, double)}

    def shared_floats(source):
        arrays = re.findall(r"__shared__ alignas\(\d+\) float(\d?) \w+\[(\d+)\]", source)
        return sum(int(n) * (int(lanes) if lanes else 1) for lanes, n in arrays)
    assert shared_floats(sources[2]) == 2 * shared_floats(sources[1]) > 0
    assert len(_nvcc(sources[2], "sm_80")) > 0


@pytest.mark.parametrize("name", KERNELS)
def test_float16_cuda_source_and_nvcc(name):
    case = next(c for c in FLOAT16_CASES if by_name(name).decline(CASES[c]) is None)
    p = dataclasses.replace(CASES[case], dtype="float16")
    source = _cuda_source(by_name(name).build(p, by_name(name).default_config(p)).func, "sm_80")
    assert "half" in source and "__shared__" in source
    assert len(_nvcc(source, "sm_80")) > 0


def test_pointwise_loads_input_rows_as_vectors():
    p = CASES["1x1 aligned"]
    config = next(c for c in by_name("1x1").space(p) if by_name("1x1")._patch_vector(p, c) > 1)
    source = _cuda_source(by_name("1x1").build(p, config).func, "sm_90")
    lanes = by_name("1x1")._patch_vector(p, config)
    assert f"*(float{lanes}*)(data_ptr" in source


def test_depthwise_without_staging_reads_global_directly():
    p = CASES["depthwise clip"]
    config = next(c for c in by_name("depthwise").space(p) if not c.stage)
    source = _cuda_source(by_name("depthwise").build(p, config).func, "sm_80")
    assert "__shared__" not in source and "threadIdx.y" in source


# -- (c) selection and the GPU table -----------------------------------------------------
def _textbook(c, m, size, k, **kw):
    return problem(c, m, (size, size), k, **kw)


TEXTBOOK = {
    "ResNet 3x3 64->64 @56": (_textbook(64, 64, 56, 3), "implicit_gemm"),
    "ResNet 1x1 256->64 @56": (_textbook(256, 64, 56, 1), "1x1"),
    "MobileNet depthwise 3x3 @112": (_textbook(96, 96, 112, 3, g=96), "depthwise"),
    "U-Net last 3x3 64->1 @256": (_textbook(64, 1, 256, 3), "direct"),
}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("case", TEXTBOOK)
def test_choose_textbook_shapes(case, arch):
    p, expected = TEXTBOOK[case]
    gpu = Gpu.from_arch(arch)
    kernel, config, verdicts = choose(p, gpu)
    assert kernel is not None and kernel.name == expected, verdicts
    assert config == kernel.default_config(p, gpu)
    seconds = dict(verdicts)
    assert seconds[expected] >= p.flops / gpu.fp32_peak  # never faster than the peak
    reasons = {name: v for name, v in verdicts if isinstance(v, str)}
    if p.taps > 1:
        assert "not 1x1" in reasons["1x1"]
    if p.groups == 1:
        assert "not depthwise" in reasons["depthwise"]


def test_choose_float16_grouped_falls_back_to_a_simt_kernel():
    kernel, _, verdicts = choose(problem(32, 32, (14, 14), 3, g=8, dtype="float16"))
    assert kernel is not None and kernel.name in KERNELS, verdicts


def test_choose_declines_with_reasons():
    kernel, config, verdicts = choose(problem(4, 4, (8, 8), 3, dtype="float64"))
    assert kernel is None and config is None
    assert all(isinstance(v, str) and "float64" in v for _, v in verdicts)
    blocked = dataclasses.replace(problem(8, 8, (8, 8), 3), in_block=8, out_block=8)
    assert all("blocked" in by_name(name).decline(blocked) for name in KERNELS)


@pytest.mark.parametrize("arch", sorted(GPUS))
def test_every_config_fits_the_gpu(arch):
    gpu = Gpu.from_arch(arch)
    for p in (CASES["grouped"], CASES["depthwise clip"], TEXTBOOK["ResNet 3x3 64->64 @56"][0]):
        for kernel in CANDIDATES:
            if kernel.name == "tensorcore" or kernel.decline(p):
                continue
            space = kernel.space(p, gpu)
            assert space[0] == kernel.default_config(p, gpu) and len(set(space)) == len(space)
            for config in space:
                launch = kernel._launch(p, config)
                assert launch.threads <= gpu.threads_per_block and launch.smem_bytes <= gpu.smem_per_block
                assert 0 < launch.utilisation(gpu) <= 1


def test_gpu_table():
    assert {"sm_80", "sm_86", "sm_89", "sm_90"} <= set(GPUS)
    h100 = Gpu.from_target(tvm.target.Target({"kind": "cuda", "arch": "sm_90"}))
    assert h100.sms == 132 and h100.fp32_peak > Gpu.from_arch("sm_80").fp32_peak
    with pytest.raises(ConvcError, match="sm_80"):
        Gpu.from_arch("sm_70")
    with pytest.raises(ConvcError, match="cuda"):
        Gpu.from_target(LLVM)
