"""Phase convs writing their rows straight into the interleaved output (``write_phases``,
``convc.lower.fusion.PHASE_WRITES``): the rewritten kernel stores exactly its phases' positions,
models compiled that way match onnxruntime, and the fusion applies only where it should."""
from __future__ import annotations

import numpy as np
import pytest
import tvm

import convc
from convc.compiler import plan_schedules
from convc.inspect import format_table, layer_rows
from convc.ir.ops.conv import conv_reference
from convc.lower.fusion import PHASE_WRITES
from convc.lower.strided_output import write_phases
from convc.schedules.cpu.blocked import CANDIDATES, pack, physical_shape, unpack
from tests.oracles import onnxruntime_outputs as ort_run
from tests.test_schedules_blocked_kernels import TARGET, problem
from tests.test_subpixel_shuffle import conv_transpose_model

B = 16


@pytest.mark.parametrize("kernel_name, strides, first, phases", [
    ("1x1", (2, 2), 0, 4),     # one conv holding all four phases, phase-major channels
    ("direct", (2, 2), 3, 1),  # the last phase of four
    ("direct", (1, 2), 1, 1),  # a stride-1 axis keeps its rows
])
def test_rewritten_kernel_writes_exactly_its_phases(kernel_name, strides, first, phases):
    m = 2 * B
    k = 1 if kernel_name == "1x1" else 2
    p = problem(B, phases * m, (5, 6), k, pb=0, pe=k - 1, ib=B, ob=B, bias=True)
    kernel = next(k for k in CANDIDATES if k.name == kernel_name)
    built = kernel.build(p, kernel.default_config(p))
    lib = tvm.compile(tvm.IRModule({"main": write_phases(built.func, strides, first, m // B)}), target=TARGET)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(p.in_shape).astype(np.float32)
    w = rng.standard_normal((p.out_channels, p.in_channels, *p.kernel)).astype(np.float32)
    b = rng.standard_normal(p.out_channels).astype(np.float32)
    wp, bp = built.pack_weight(w, b)
    full = (1, m, *(q * s for q, s in zip(p.out_size, strides)))
    out = tvm.runtime.tensor(np.full(physical_shape(full, B), np.nan, np.float32))
    lib["main"](tvm.runtime.tensor(pack(x, B)), tvm.runtime.tensor(wp), tvm.runtime.tensor(bp), out)
    got = unpack(out.numpy(), B)
    ref = conv_reference(p.attrs, x, w, b)
    written = np.zeros(full, bool)
    for k in range(phases):
        r = np.unravel_index(first + k, strides)
        window = (0, slice(None), *(slice(ri, None, s) for ri, s in zip(r, strides)))
        np.testing.assert_allclose(got[window], ref[0, k * m:(k + 1) * m], rtol=1e-4, atol=1e-4)
        written[window] = True
    assert np.isnan(got[~written]).all()  # every other position untouched


def _kernels(compiled, part: str) -> list[str]:
    return [symbol for symbol in compiled.kernels if part in symbol]


@pytest.mark.parametrize("c, m, size, k, stride, pad, schedule", [
    (32, 16, (8, 16), 2, 2, 0, None),      # one conv with all phases (U-Net's upsampling layer)
    (32, 16, (8, 8), 4, 2, 1, "direct"),   # four phase convs (on direct: no Winograd)
    (16, 16, (32,), 8, 4, 2, None),        # 1-D, four phases
    (16, 16, (4, 4, 4), 2, 2, 0, None),    # 3-D, eight phases in one conv
])
def test_models_writing_phases_in_place_match_onnxruntime(c, m, size, k, stride, pad, schedule):
    model = conv_transpose_model(c, m, size, k, stride, pad=pad, then="conv")
    x = np.random.default_rng(1).standard_normal((1, c, *size)).astype(np.float32)
    (ref,) = ort_run(model, {"x": x})
    for disabled in ((), (PHASE_WRITES,)):
        compiled = convc.compile(model, schedule=schedule, disable_passes=disabled)
        in_place = not disabled
        assert bool(_kernels(compiled, "_phases")) == in_place
        assert bool(_kernels(compiled, "interleave")) != in_place
        (got,) = compiled.run({"x": x})
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_inspect_shows_the_interleave_written_in_place():
    graph, decisions = plan_schedules(conv_transpose_model(32, 16, (8, 16), 2, 2, then="conv"))
    rows = {r.op: r for r in layer_rows(graph) if r.rewritten_by.startswith("subpixel")}
    assert rows["interleave"].schedule == "in place" and rows["conv"].activation_bytes is None
    assert "in place" in format_table(graph)
    assert any("in place" in d.note for d in decisions)


@pytest.mark.parametrize("then, k, pad", [
    (None, 4, 1),     # the interleave is the model's (plain) output
    ("conv", 4, 1),   # 2x2 phases on Winograd: stores at stride 2 cost more than the interleave
])
def test_no_phase_writes_where_they_do_not_apply_or_pay(then, k, pad):
    model = conv_transpose_model(32, 16, (8, 8), k, 2, pad=pad, then=then)
    graph, decisions = plan_schedules(model)
    interleave = next(n for n in graph.nodes if n.op.value == "interleave")
    assert not interleave.attrs.in_place
    if then == "conv":
        assert "winograd" in {d.picked for d in decisions}
    compiled = convc.compile(model)
    assert _kernels(compiled, "interleave") and not _kernels(compiled, "_phases")
