"""The ``tensorcore`` kernel: float16 implicit GEMM on WMMA tensor cores, float32 accumulation.

No GPU here, so the kernel is checked in three ways without one:
- compute: the unscheduled PrimFunc and the weight packer, built for llvm, against the IR's
  NumPy reference conv (float64 on the float16-rounded data and weights);
- schedule: the same loop nest scheduled without the tensor intrinsics (fragments as local
  buffers, thread loops made serial) built for llvm, against the same reference;
- code: the tensorized kernel built for sm_80 and sm_90 has the WMMA calls and shared
  memory in its CUDA source, and nvcc compiles it.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import tvm
from tvm import s_tir, tirx

from convc.ir import Op
from convc.ir.ops.conv import EpilogueStep, conv_reference
from convc.ir.ops.elementwise import ClipAttrs
from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cuda.conv.kernel import Gpu
from convc.schedules.cuda.conv.tensorcore import TENSOR_CORE, TensorCoreConfig, schedule
from cuda_check import serial

TOL = 1e-2  # relative L2 error of float16 storage with float32 accumulation


def problem(c, m, size, kernel, stride=1, pads=None, dilation=1, batch=1, bias=False, epilogue=(),
            operand_shapes=(), dtype="float16", groups=1) -> ConvProblem:
    n = len(size)
    pb, pe = pads if pads is not None else ((kernel // 2,) * n, (kernel // 2,) * n)
    return ConvProblem(batch=batch, in_channels=c, out_channels=m, groups=groups, in_size=tuple(size),
                       kernel=(kernel,) * n, strides=(stride,) * n, pads_begin=tuple(pb), pads_end=tuple(pe),
                       dilations=(dilation,) * n, dtype=dtype, has_bias=bias, epilogue=tuple(epilogue),
                       operand_shapes=tuple(operand_shapes))


RESIDUAL_RELU = (EpilogueStep(Op.ADD), EpilogueStep(Op.RELU))
CASES = {
    # sizes that are no multiple of 16 anywhere; bias, residual and relu fused
    "3x3_ragged_residual": problem(20, 24, (9, 11), 3, batch=2, bias=True, epilogue=RESIDUAL_RELU,
                                   operand_shapes=((2, 24, 9, 11),)),
    "3x3_stride2_asymmetric": problem(16, 32, (13, 10), 3, stride=2, pads=((1, 0), (0, 2))),
    "7x7_stem": problem(3, 16, (30, 30), 7, stride=2, pads=((3, 3), (3, 3)), bias=True,
                        epilogue=(EpilogueStep(Op.RELU),)),
    "1x1": problem(32, 40, (8, 8), 1, pads=((0, 0), (0, 0))),
    "fc_on_a_1x1_map": problem(48, 10, (1, 1), 1, pads=((0, 0), (0, 0)), bias=True),
    "3d": problem(5, 18, (4, 5, 6), 3, stride=2, pads=((1, 0, 1), (1, 1, 0)), batch=2),
    # per-channel scale (a broadcast operand), then clip; 1-D, dilated
    "1d_dilated_scale_clip": problem(12, 20, (37,), 3, dilation=2, pads=((2,), (1,)), bias=True,
                                     epilogue=(EpilogueStep(Op.MUL), EpilogueStep(Op.CLIP, ClipAttrs(-1.0, 1.0))),
                                     operand_shapes=((1, 20, 1),)),
}


def data(p: ConvProblem, seed: int = 0):
    """float16 data and operands, float32 weight and bias (what the graph holds)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(p.in_shape).astype(np.float16)
    w = (rng.standard_normal(p.weight_shape) / math.sqrt(p.in_per_group * p.taps)).astype(np.float32)
    b = rng.standard_normal(p.out_channels).astype(np.float32) if p.has_bias else None
    operands = [rng.standard_normal(s).astype(np.float16) for s in p.operand_shapes]
    return x, w, b, operands


def reference(p: ConvProblem, x, w, b, operands) -> np.ndarray:
    """The IR's conv in float64 on what the kernel sees: data, weight and operands rounded to float16."""
    f64 = [None if a is None else a.astype(np.float16).astype(np.float64) for a in (x, w)]
    bias = None if b is None else b.astype(np.float64)
    return conv_reference(p.attrs, *f64, bias, *[o.astype(np.float64) for o in operands])


def run_on_llvm(func: tirx.PrimFunc, p: ConvProblem, pack_weight, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    x, w, b, operands = data(p, seed)
    packed_w, packed_b = pack_weight(w, b)
    assert packed_w.dtype == np.float16 and (packed_b is None or packed_b.dtype == np.float32)
    args = [x, packed_w, *([packed_b] if b is not None else []), *operands,
            np.full(p.out_shape, 7, np.float16)]  # the kernel must overwrite every 7
    run = tvm.compile(tvm.IRModule({"main": func}), target="llvm")
    tensors = [tvm.runtime.tensor(a) for a in args]
    run(*tensors)
    return tensors[-1].numpy().astype(np.float64), reference(p, x, w, b, operands)


def rel_l2(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.linalg.norm(got - want) / np.linalg.norm(want))


def configs(p: ConvProblem) -> list[TensorCoreConfig]:
    """The default config and the space's largest block tile (other paddings, other warps)."""
    space = TENSOR_CORE.space(p)
    return [space[0], max(space, key=lambda c: (c.block_m * c.block_n, c.chunk))]


@pytest.mark.parametrize("name", CASES)
def test_compute_and_packing_match_reference(name):
    p = CASES[name]
    for config in configs(p):
        build = TENSOR_CORE.compute(p, config)
        got, want = run_on_llvm(build.func, p, build.pack_weight)
        assert rel_l2(got, want) <= TOL, (name, config)


@pytest.mark.parametrize("name", ["3x3_ragged_residual", "7x7_stem", "1d_dilated_scale_clip"])
def test_untensorized_schedule_matches_reference(name):
    p = CASES[name]
    for config in configs(p):
        build = TENSOR_CORE.compute(p, config)
        sch = s_tir.Schedule(build.func)
        schedule(sch, p, config, tensorize=False)
        got, want = run_on_llvm(serial(sch.mod["main"]), p, build.pack_weight)
        assert rel_l2(got, want) <= TOL, (name, config)


def cuda_source(p: ConvProblem, config: TensorCoreConfig, arch: str) -> str:
    """The CUDA source of the tensorized kernel for ``arch``, after nvcc compiled it."""
    from tvm.support import nvcc
    target = tvm.target.Target({"kind": "cuda", "arch": arch}, host={"kind": "llvm"})
    executable = tvm.compile(tvm.IRModule({"main": TENSOR_CORE.build(p, config).func}), target=target)
    (device,) = [m for m in executable.mod.imports if m.kind == "cuda"]
    source = device.inspect_source()
    with target:
        assert len(nvcc.compile_cuda(source, target_format="cubin", arch=arch, compiler="nvcc")) > 0
    return source


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize("name", ["3x3_ragged_residual", "7x7_stem"])
def test_cuda_kernel_uses_tensor_cores_and_compiles(name, arch):
    p = CASES[name]
    source = cuda_source(p, TENSOR_CORE.default_config(p, Gpu.from_arch(arch)), arch)
    for call in ("wmma::fill_fragment", "wmma::load_matrix_sync", "wmma::mma_sync", "wmma::store_matrix_sync"):
        assert call in source, call
    assert re.search(r"wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float>", source)
    assert "__shared__" in source and "blockIdx.x" in source and "threadIdx.y" in source
    assert re.search(r"\*\((uint4|uint2|half4)\*\)\(weight_ptr", source)  # the packed weight: 8/16-byte loads


def test_every_tile_shape_of_the_space_tensorizes():
    p = CASES["3x3_stride2_asymmetric"]
    shapes = {(c.warp_m, c.warp_n, c.warps_m, c.warps_n) for c in TENSOR_CORE.space(p)}
    assert len(shapes) >= 8
    for warp_m, warp_n, warps_m, warps_n in sorted(shapes):
        func = TENSOR_CORE.build(p, TensorCoreConfig(warp_m, warp_n, warps_m, warps_n, 2)).func
        assert "tvm_mma_sync" in func.script()


def test_declines():
    ok = CASES["1x1"]
    assert TENSOR_CORE.decline(ok) is None
    assert "float16" in TENSOR_CORE.decline(problem(32, 40, (8, 8), 1, dtype="float32"))
    assert "groups=2" in TENSOR_CORE.decline(problem(32, 64, (8, 8), 3, groups=2))
    blocked = ConvProblem(**{**ok.__dict__, "in_block": 8, "out_block": 8})
    assert "blocked layout" in TENSOR_CORE.decline(blocked)


def test_space_and_estimate():
    p = problem(64, 64, (56, 56), 3)
    for arch in ("sm_80", "sm_90"):
        gpu = Gpu.from_arch(arch)
        space = TENSOR_CORE.space(p, gpu)
        assert space[0] == TENSOR_CORE.default_config(p, gpu) and len(set(space)) == len(space) > 10
        assert all(c.fits(gpu) for c in space)
        seconds = TENSOR_CORE.estimate(p, space[0], gpu)
        assert p.flops / gpu.fp16_tc_peak < seconds < 1e-3
    # faster on the faster part; a 4x larger problem takes longer
    assert TENSOR_CORE.estimate(p, space[0], Gpu.from_arch("sm_90")) < TENSOR_CORE.estimate(
        p, TENSOR_CORE.default_config(p, Gpu.from_arch("sm_80")), Gpu.from_arch("sm_80"))
    big = problem(64, 64, (112, 112), 3)
    assert TENSOR_CORE.estimate(big, TENSOR_CORE.default_config(big)) > TENSOR_CORE.estimate(
        p, TENSOR_CORE.default_config(p))


@pytest.mark.gpu
@pytest.mark.parametrize("name", CASES)
def test_runs_on_the_gpu(name):
    p = CASES[name]
    device = tvm.runtime.cuda(0)
    arch = "sm_" + device.compute_version.replace(".", "")
    config = TENSOR_CORE.default_config(p, Gpu.from_arch(arch) if arch in ("sm_80", "sm_90") else None)
    build = TENSOR_CORE.build(p, config)
    target = tvm.target.Target({"kind": "cuda", "arch": arch}, host={"kind": "llvm"})
    run = tvm.compile(tvm.IRModule({"main": build.func}), target=target)
    x, w, b, operands = data(p)
    packed_w, packed_b = build.pack_weight(w, b)
    args = [x, packed_w, *([packed_b] if b is not None else []), *operands, np.full(p.out_shape, 7, np.float16)]
    tensors = [tvm.runtime.tensor(a, device) for a in args]
    run(*tensors)
    assert rel_l2(tensors[-1].numpy().astype(np.float64), reference(p, x, w, b, operands)) <= TOL


def test_chosen_for_float16_convs_only():
    from convc.schedules.cuda.conv import by_name, choose
    assert by_name("tensorcore") is TENSOR_CORE
    for arch in ("sm_80", "sm_90"):
        kernel, config, verdicts = choose(problem(64, 128, (28, 28), 3), Gpu.from_arch(arch))
        assert kernel is TENSOR_CORE and config == TENSOR_CORE.default_config(problem(64, 128, (28, 28), 3),
                                                                               Gpu.from_arch(arch))
        kernel, _, verdicts = choose(problem(64, 128, (28, 28), 3, dtype="float32"), Gpu.from_arch(arch))
        assert kernel is not TENSOR_CORE and isinstance(dict(verdicts)["tensorcore"], str)
