"""``tensorcore``: implicit-GEMM convolution in float16 on the tensor cores (WMMA 16x16x16).

The GEMM view of an ungrouped conv: rows are the output positions ``r = (n, *o)`` in
row-major order (``N * prod(O)`` of them), columns the output channels ``m``, and the
reduction runs over ``k = c * prod(K) + tap`` (the ONNX weight's own order), so

    out[n, m, *o] = epilogue(sum_k patch[r, k] * weight[m, k] + bias[m])

``patch[r, k]`` is never stored: the shared-memory staging of a block's patch tile reads
the data through the index arithmetic, and its predicate (outside the image, past the
last row or past ``k``) gives the zeros of the padding. Rows, columns and ``k`` are padded
to whole block tiles: the weight at compile time (``pack_weight``: ``(Mpad, Kpad)``
float16, zero rows and columns), the patch by its predicate. Products accumulate in
float32 WMMA fragments; each warp stores its fragments to a shared float32 tile, from
which the bias (packed float32), the activations and the residual operands are applied
in float32 and the output is written once, as float16.

Block tile: ``warps_m x warps_n`` warps, each owning ``warp_m x warp_n`` 16x16
accumulator fragments; ``chunk`` 16-deep slices of ``k`` are staged per step, in a
two-stage software pipeline (the next step's tiles load while this step multiplies).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
from tvm import s_tir, te, tirx

from convc.schedules.cpu.blocked.problem import ConvProblem
from convc.schedules.cuda.conv.kernel import ComputeThenSchedule, Gpu, KernelBuild, Launch, WeightPacker
from convc.schedules.cuda.conv.stages import (ACC_DTYPE, ceil_to, finish, flat, multiply_add, padded_read,
                                              unravel)

FRAG = 16  # the WMMA fragment is 16x16x16
WARP = 32
PATCH, GEMM, OUT = "patch", "gemm", "out"  # the TE stages


@dataclass(frozen=True)
class TensorCoreConfig:
    """The block tile: ``warps_m x warps_n`` warps of ``warp_m x warp_n`` fragments each,
    ``chunk`` fragments of ``k`` staged in shared memory per step."""

    warp_m: int
    warp_n: int
    warps_m: int
    warps_n: int
    chunk: int

    @property
    def block_m(self) -> int:
        return FRAG * self.warp_m * self.warps_m

    @property
    def block_n(self) -> int:
        return FRAG * self.warp_n * self.warps_n

    @property
    def block_k(self) -> int:
        return FRAG * self.chunk

    @property
    def threads(self) -> int:
        return WARP * self.warps_m * self.warps_n

    @property
    def staged_bytes(self) -> int:
        """The float16 patch and weight tiles, double-buffered (rows padded by 8 against bank
        conflicts)."""
        return 2 * 2 * (self.block_m + self.block_n) * (self.block_k + 8)

    @property
    def acc_bytes(self) -> int:
        """The float32 accumulator tile (rows padded by 4)."""
        return 4 * self.block_m * (self.block_n + 4)

    def smem_bytes(self) -> int:
        return self.staged_bytes + self.acc_bytes

    def fits(self, gpu: Gpu) -> bool:
        """Each shared buffer within the 48 KB a block gets without opting in; at most 8
        fragments (64 float32 registers) of accumulators per thread; at most 8 warps."""
        return (max(self.staged_bytes, self.acc_bytes) <= gpu.smem_per_block
                and self.warp_m * self.warp_n <= 8 and self.warps_m * self.warps_n <= 8)


@dataclass(frozen=True)
class Gemm:
    """The padded GEMM sizes of a problem under a config."""

    rows: int
    cols: int
    depth: int
    rows_pad: int
    cols_pad: int
    depth_pad: int

    @staticmethod
    def of(p: ConvProblem, config: TensorCoreConfig) -> "Gemm":
        rows, cols, depth = p.batch * math.prod(p.out_size), p.out_channels, p.in_channels * p.taps
        return Gemm(rows, cols, depth, ceil_to(rows, config.block_m), ceil_to(cols, config.block_n),
                    ceil_to(depth, config.block_k))


def stages(p: ConvProblem, config: TensorCoreConfig) -> tuple[list[te.Tensor], te.Tensor]:
    """The TE stages: the PrimFunc's inputs in argument order, and its output.

    Stages: ``patch`` (the implicit patch matrix, inlined into its shared-memory staging),
    ``gemm`` (float32 accumulation) and ``out`` (bias and epilogue in float32, float16 result).
    """
    g = Gemm.of(p, config)
    out_size, kernel = list(p.out_size), list(p.kernel)
    x = te.placeholder(p.in_shape, "float16", name="data")
    w = te.placeholder((g.cols_pad, g.depth_pad), "float16", name="weight")
    bias = te.placeholder((g.cols_pad,), ACC_DTYPE, name="bias") if p.has_bias else None
    operands = [te.placeholder(shape, "float16", name=f"operand{i}") for i, shape in enumerate(p.operand_shapes)]

    def patch_body(r, k):
        n, *o = unravel(r, [p.batch] + out_size)
        c, *tap = unravel(k, [p.in_channels] + kernel)
        padding = ([r < g.rows] if g.rows_pad > g.rows else []) + ([k < g.depth] if g.depth_pad > g.depth else [])
        return padded_read(p, x, n, c, o, tap, tirx.all(*padding) if padding else None)
    patch = te.compute((g.rows_pad, g.depth_pad), patch_body, name=PATCH)
    k = te.reduce_axis((0, g.depth_pad), name="k")
    acc = te.compute((g.rows_pad, g.cols_pad), lambda i, j: te.sum(multiply_add(patch[i, k], w[j, k]), axis=k),
                     name=GEMM)

    out = te.compute(p.out_shape, lambda n, m, *o: finish(p, acc[flat((n, *o), [p.batch] + out_size), m], bias, m,
                                                            operands, (n, m, *o)), name=OUT)
    return [x, w, *([bias] if bias is not None else []), *operands], out


def pack(p: ConvProblem, config: TensorCoreConfig) -> WeightPacker:
    """The packer: weight ``(M, C, *K)`` -> ``(Mpad, Kpad)`` float16, bias -> ``(Mpad,)`` float32
    (zeros in the padding)."""
    g = Gemm.of(p, config)

    def pack_weight(weight: np.ndarray, bias: np.ndarray | None):
        packed = np.zeros((g.cols_pad, g.depth_pad), dtype=np.float16)
        packed[:g.cols, :g.depth] = np.asarray(weight).reshape(g.cols, g.depth)
        if bias is None:
            return packed, None
        packed_bias = np.zeros(g.cols_pad, dtype=np.float32)
        packed_bias[:g.cols] = np.asarray(bias, dtype=np.float32)
        return packed, packed_bias
    return pack_weight


def schedule(sch: s_tir.Schedule, p: ConvProblem, config: TensorCoreConfig, tensorize: bool = True) -> None:
    """Tile ``gemm`` into 16x16x16 WMMA fragments, warps and blocks; stage the patch and
    weight tiles in shared memory; store the accumulators through a shared float32 tile
    from which the ``out`` stage (inlined there) writes the output.

    With ``tensorize=False`` the fragments are plain local buffers and no intrinsic is
    used: the same loop nest, which an llvm build (thread loops made serial) can run.
    Importing TVM's tensor intrinsics registers all of them (about 20 s, once per process).

    The staged operands live in dynamic shared memory, the accumulator tile in static
    shared memory: in one scope, TVM's StorageRewrite may reuse the float16 staging
    buffer for the float32 tile, which then fails to lower ("tvm_access_ptr element type
    must match the source buffer").
    """
    c = config
    warps = c.warps_m * c.warps_n
    gemm = sch.get_sblock(GEMM)
    i, j, k = sch.get_loops(gemm)
    i, i_frag = sch.split(i, [None, FRAG])
    j, j_frag = sch.split(j, [None, FRAG])
    k, k_frag = sch.split(k, [None, FRAG])
    sch.reorder(i, j, k, i_frag, j_frag, k_frag)
    tile = sch.blockize(i_frag)  # one 16x16x16 fragment product
    i_block, i_warp, i_inner = sch.split(i, [None, c.warps_m, c.warp_m])
    j_block, j_warp, j_inner = sch.split(j, [None, c.warps_n, c.warp_n])
    k_step, k_inner = sch.split(k, [None, c.chunk])
    sch.reorder(i_block, j_block, i_warp, j_warp, k_step, k_inner, i_inner, j_inner)
    sch.bind(sch.fuse(i_block, j_block), "blockIdx.x")  # column blocks of a row block run together
    warp = sch.fuse(i_warp, j_warp)
    sch.bind(warp, "threadIdx.y")

    def stage(index: int, extent: int, rows_inner: bool) -> None:
        """Stage operand ``index`` (``extent`` elements per block tile) in shared memory, all
        threads copying, in vectors as wide as 16 bytes where the copy divides evenly."""
        block = sch.cache_read(tile, index, "shared.dyn")
        sch.compute_at(block, k_step)
        rows, cols = sch.get_loops(block)[-2:]
        if rows_inner:  # consecutive threads read consecutive output positions (coalesced)
            sch.reorder(cols, rows)
        vector = 1 if rows_inner else math.gcd(8, extent // (warps * WARP))
        fused = sch.fuse(*sch.get_loops(block)[-2:])
        _, ty, tx, vec = sch.split(fused, [None, warps, WARP, vector])
        sch.bind(tx, "threadIdx.x")
        sch.bind(ty, "threadIdx.y")
        if vector > 1:
            sch.vectorize(vec)
        sch.storage_align(block, 0, axis=-2, factor=16, offset=8)

    stage(0, c.block_m * c.block_k, rows_inner=True)   # the patch: a gather, one element per load
    stage(1, c.block_n * c.block_k, rows_inner=False)  # the packed weight: contiguous along k
    sch.compute_inline(sch.get_sblock(PATCH))
    scope_a, scope_b, scope_acc = FRAGMENTS if tensorize else ("local",) * 3
    frag_a = sch.cache_read(tile, 0, scope_a)
    frag_b = sch.cache_read(tile, 1, scope_b)
    sch.compute_at(frag_a, k_inner)
    sch.compute_at(frag_b, k_inner)
    acc_shared = sch.cache_write(tile, 0, "shared")
    acc_frag = sch.cache_write(tile, 0, scope_acc)
    sch.reverse_compute_at(acc_frag, warp)
    sch.reverse_compute_at(acc_shared, warp)
    init = sch.decompose_reduction(tile, k_step)
    # a software pipeline: stage the next k step while this one computes (TVM double-buffers
    # the staged tiles)
    sch.annotate(k_step, "software_pipeline_stage", [0, 0, 1])
    sch.annotate(k_step, "software_pipeline_order", [0, 1, 2])

    intrin = _wmma_intrinsics() if tensorize else {}
    for block, name in ((frag_a, "load_a"), (frag_b, "load_b"), (acc_frag, "store")):
        rows, cols = sch.get_loops(block)[-2:]
        rows, rows_frag = sch.split(rows, [None, FRAG])
        cols, cols_frag = sch.split(cols, [None, FRAG])
        sch.reorder(rows, cols, rows_frag, cols_frag)
        if tensorize:
            sch.tensorize(rows_frag, intrin[name])
    # rows of the shared accumulator tile start 4 banks apart (the epilogue reads its columns)
    sch.storage_align(sch.get_child_blocks(cols)[0], 0, axis=-2, factor=16, offset=4)
    if tensorize:
        sch.tensorize(sch.get_loops(sch.get_child_blocks(init)[0])[-2], intrin["init"])
        sch.tensorize(sch.get_loops(gemm)[-3], intrin["compute"])

    # the epilogue: ``out`` re-indexed by (row, channel) and inlined into the copy out of
    # the shared accumulator tile (predicated to the real rows and channels)
    out = sch.get_sblock(OUT)
    extents = [p.batch, *p.out_size]
    sch.transform_block_layout(out, tirx.IndexMap.from_func(
        lambda n, m, *o: (flat((n, *o), extents), m), ndim=2 + p.ndim, index_dtype="int32"))
    sch.reverse_compute_inline(out)
    rows, cols = sch.get_loops(acc_shared)[-2:]
    sch.reorder(cols, rows)  # consecutive threads write consecutive positions of one channel
    _, tx = sch.split(sch.fuse(cols, rows), [None, WARP])
    sch.bind(tx, "threadIdx.x")


FRAGMENTS = ("wmma.matrix_a", "wmma.matrix_b", "wmma.accumulator")


def _wmma_intrinsics() -> dict[str, str]:
    """TVM's WMMA intrinsics for float16 operands (the weight column-major, i.e. B
    transposed) from shared memory and float32 accumulators stored to shared memory."""
    from tvm.s_tir.tensor_intrin.cuda import get_wmma_intrin_group
    return get_wmma_intrin_group(load_scope="shared.dyn", store_scope="shared", in_dtype="float16",
                                 out_dtype="float32", trans_b=True)


class TensorCoreKernel(ComputeThenSchedule):
    """Implicit-GEMM conv on float16 tensor cores with float32 accumulation (see the module)."""

    name = "tensorcore"
    dtypes = ("float16",)
    efficiency = 0.5  # WMMA, a two-stage pipeline of synchronous copies, a saturating tile (see _efficiency)

    def _decline(self, p: ConvProblem) -> str | None:
        if p.groups != 1:
            return f"groups={p.groups}: the GEMM view needs one dense group"
        if max(math.prod(p.in_shape), math.prod(p.out_shape)) >= 2 ** 31:
            return "a tensor of 2^31 elements or more (32-bit indices)"
        return None

    def _default_config(self, p: ConvProblem, gpu: Gpu) -> TensorCoreConfig:
        """The config of the space the cost model ranks first (the space is small); among
        equals (memory-bound problems) the largest tile, which re-reads the least."""
        return min(self._space(p, gpu), key=lambda c: (self.estimate(p, c, gpu), -c.block_m * c.block_n, -c.chunk))

    def _space(self, p: ConvProblem, gpu: Gpu) -> list[TensorCoreConfig]:
        """Tiles within the GPU's limits and under twice the GEMM (padded to whole fragments)
        in each direction: larger ones only add padding."""
        g = Gemm.of(p, TensorCoreConfig(1, 1, 1, 1, 1))
        configs = []
        for warp_m, warp_n, warps_m, warps_n, chunk in itertools.product(
                (1, 2, 4), (1, 2, 4), (1, 2, 4), (1, 2), (1, 2, 4)):
            config = TensorCoreConfig(warp_m, warp_n, warps_m, warps_n, chunk)
            if config.fits(gpu) and all(block < 2 * size for block, size in (
                    (config.block_m, g.rows_pad), (config.block_n, g.cols_pad), (config.block_k, g.depth_pad))):
                configs.append(config)
        return configs

    def compute(self, p: ConvProblem, config: TensorCoreConfig) -> KernelBuild:
        inputs, out = stages(p, config)
        return KernelBuild(te.create_prim_func([*inputs, out]), pack(p, config))

    def _schedule(self, sch: s_tir.Schedule, p: ConvProblem, config: TensorCoreConfig) -> None:
        schedule(sch, p, config)

    def _peak(self, gpu: Gpu) -> float:
        return gpu.fp16_tc_peak

    def _efficiency(self, p: ConvProblem, config: TensorCoreConfig, gpu: Gpu) -> float:
        """The base efficiency, times the useful fraction of the padded GEMM, times the reuse
        of staged data: per 16-deep step a block stages (BM + BN) x 16 elements for BM x BN x 16
        products (a 64 x 64 tile saturates) and a warp loads a + b fragments for a x b
        products (2 x 2 saturates); each staging step also costs a barrier, worth about half
        a 16-deep slice."""
        g = Gemm.of(p, config)
        useful = g.rows * g.cols * g.depth / (g.rows_pad * g.cols_pad * g.depth_pad)
        block = config.block_m * config.block_n / (config.block_m + config.block_n) / 32
        warp = config.warp_m * config.warp_n / (config.warp_m + config.warp_n)
        steps = config.chunk / (config.chunk + 0.5)
        return self.efficiency * useful * min(block, 1.0) * min(warp, 1.0) * steps

    def _launch(self, p: ConvProblem, config: TensorCoreConfig) -> Launch:
        g = Gemm.of(p, config)
        blocks = (g.rows_pad // config.block_m) * (g.cols_pad // config.block_n)
        return Launch(blocks, config.threads, config.smem_bytes(), registers=64 + 8 * config.warp_m * config.warp_n)

    def _traffic(self, p: ConvProblem, config: TensorCoreConfig) -> float:
        """Every column of blocks reads the input again (its taps mostly hit L1/L2 within a
        block); the padded weight once; operands and the output once, all float16."""
        g = Gemm.of(p, config)
        col_blocks = g.cols_pad // config.block_n
        return 2 * (math.prod(p.in_shape) * col_blocks + g.cols_pad * g.depth_pad
                    + sum(math.prod(s) for s in p.operand_shapes) + math.prod(p.out_shape))


TENSOR_CORE = TensorCoreKernel()
