"""The CUDA target without a GPU: target names, the backend registry, schedule requests and
selection, the CLI (inspect, compile --dtype, tune) and tuning records keyed by GPU arch."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

import convc
from convc import target as target_module
from convc.backend import backend, backend_of
from convc.cli import main
from convc.compiler import plan_schedules
from convc.errors import CodegenError, ConvcError
from convc.ir import Op
from convc.passes.select_schedule import ScheduleRequest
from convc.schedules.cpu.blocked import ConvProblem
from convc.schedules.cuda import conv as cuda_conv
from convc.target import resolve_target
from convc.tune import Database, Record, extract_tasks
from convc.tune.database import versions
from convc.tune.encode import knobs, plain
from convc.tune.task import TargetKey, describe
from convc.zoo.registry import build

CUDA_NAMES = {"implicit_gemm", "direct", "depthwise", "1x1", "tensorcore"}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "mobilenet.onnx"
    onnx.save(build("mobilenet_small"), path)
    return str(path)


# -- targets --------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_86", "sm_89", "sm_90", "sm_90a"])
def test_a_named_arch_is_a_cuda_target_with_the_cpu_as_host(arch):
    target = resolve_target(f"cuda:{arch}")
    host = resolve_target("llvm")
    assert target.kind.name == "cuda" and str(target.attrs["arch"]) == arch
    assert target.host.kind.name == "llvm"
    assert str(target.host.attrs["mcpu"]) == str(host.attrs["mcpu"])


@pytest.mark.parametrize("spec", ["cuda:sm_91", "cuda:sm90", "cuda:compute_90", "cuda:volta", "cuda:sm_"])
def test_an_unknown_arch_is_a_convc_error_listing_the_known(spec):
    with pytest.raises(ConvcError, match=r"unknown CUDA architecture.*sm_80.*sm_90"):
        resolve_target(spec)


def test_plain_cuda_takes_the_local_gpu_arch_or_asks_for_one(monkeypatch):
    monkeypatch.setattr(target_module, "local_cuda_arch", lambda: "sm_86")
    assert str(resolve_target("cuda").attrs["arch"]) == "sm_86"
    monkeypatch.setattr(target_module, "local_cuda_arch", lambda: None)
    with pytest.raises(ConvcError, match=r"no CUDA device.*cuda:sm_90"):
        resolve_target("cuda")


# -- backends -------------------------------------------------------------------------
def test_the_backend_of_a_target_is_chosen_by_its_kind():
    cpu, cuda = backend_of(resolve_target("llvm")), backend_of(resolve_target("cuda:sm_90"))
    assert (cpu.kind, cpu.device, cuda.kind, cuda.device) == ("llvm", "cpu", "cuda", "cuda")
    assert set(cuda.choices) == {k.name for k in cuda_conv.CANDIDATES} <= CUDA_NAMES
    assert "im2col" in cpu.choices and "im2col" not in cuda.choices
    assert cuda.channel_block(resolve_target("cuda:sm_90")) == 0
    with pytest.raises(CodegenError, match="no schedules for target kind 'rocm'"):
        backend("rocm")


def test_the_gpu_model_follows_the_arch():
    cuda = backend("cuda")
    assert cuda.machine(resolve_target("cuda:sm_80")).arch == "sm_80"
    assert cuda.machine(resolve_target("cuda:sm_90")).arch == "sm_90"
    assert cuda.machine(resolve_target("cuda:sm_90a")).arch == "sm_90"  # the newest tabled one below


def test_schedule_requests_accept_the_targets_kernel_names():
    cuda = backend("cuda")
    request = ScheduleRequest.parse("implicit_gemm,conv1=direct", cuda.choices)
    assert request.default == "implicit_gemm" and dict(request.per_layer) == {"conv1": "direct"}
    with pytest.raises(ConvcError, match="unknown schedule 'im2col'.*implicit_gemm"):
        ScheduleRequest.parse("im2col", cuda.choices)
    with pytest.raises(ConvcError, match="unknown schedule 'implicit_gemm'"):
        ScheduleRequest.parse("implicit_gemm")  # the CPU's names by default


def test_selection_picks_cuda_kernels_by_their_estimates(model_path):
    graph, decisions = plan_schedules(model_path, "cuda:sm_90")
    convs = [n for n in graph.nodes if n.op is Op.CONV]
    assert len(decisions) == len(convs) > 0
    for node, decision in zip(convs, decisions):
        assert node.attrs.algorithm.value == decision.picked
        assert [name for name, _ in decision.verdicts] == list(backend("cuda").choices)
        estimates = {name: v for name, v in decision.verdicts if isinstance(v, float)}
        assert decision.picked in estimates
        assert estimates[decision.picked] <= min(estimates.values()) * 1.06  # the selector's margin
    assert "depthwise" in {d.picked for d in decisions}  # MobileNet's depthwise convs


def test_a_requested_cuda_kernel_is_used_where_it_applies(model_path):
    graph, decisions = plan_schedules(model_path, "cuda:sm_90", schedule="direct")
    direct = backend("cuda").by_name("direct")
    for node, decision in zip([n for n in graph.nodes if n.op is Op.CONV], decisions):
        reason = direct.decline(ConvProblem.from_node(node, 0, 0))
        if reason is None:
            assert decision.picked == "direct" and decision.note in ("requested", "")
        else:
            assert decision.picked != "direct" and reason in decision.note


# -- command line ---------------------------------------------------------------------
def test_inspect_lists_the_cuda_candidates_and_picks(model_path, capsys):
    assert main(["inspect", "--target", "cuda:sm_90", model_path]) == 0
    out = capsys.readouterr().out
    _, decisions = plan_schedules(model_path, "cuda:sm_90")
    for decision in decisions:
        assert f"{decision.node} ({decision.source}): {decision.picked}" in out
    for name in backend("cuda").choices:
        assert f"      {name} " in out
    assert "im2col" not in out.split("schedules (")[1]


@pytest.mark.parametrize("dtype", ["float64", "bfloat16", "fp16"])
def test_an_unknown_dtype_is_refused(model_path, dtype, capsys, tmp_path):
    with pytest.raises(ConvcError, match=f"--dtype '{dtype}'.*float32 or float16"):
        convc.compile(model_path, target="cuda:sm_90", dtype=dtype)
    assert main(["compile", model_path, "-o", str(tmp_path / "m.so"), "--dtype", dtype]) == 1
    assert "float32 or float16" in capsys.readouterr().err
    assert not (tmp_path / "m.so").exists()


def test_cli_compile_for_a_named_arch_writes_a_library(model_path, tmp_path, capsys):
    out = tmp_path / "m.so"
    assert main(["compile", model_path, "-o", str(out), "--target", "cuda:sm_80"]) == 0
    assert out.stat().st_size > 0 and "wrote" in capsys.readouterr().out


def test_tuning_for_cuda_without_a_gpu_or_tracker_is_a_clear_error(model_path, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("convc.tune.measure.cuda_missing", lambda: "no CUDA device (test)")
    assert main(["tune", model_path, "--target", "cuda:sm_90", "--db", str(tmp_path / "db"), "--trials", "2"]) == 1
    err = capsys.readouterr().err
    assert "needs a GPU" in err and "--rpc-tracker" in err
    assert not (tmp_path / "db").exists()


# -- tuning records ---------------------------------------------------------------------
def test_cuda_tasks_are_the_kernel_compiled_convs_keyed_by_arch(model_path):
    graph, decisions = plan_schedules(model_path, "cuda:sm_90")
    tasks = extract_tasks(graph, resolve_target("cuda:sm_90"))
    assert sum(t.count for t in tasks) == len(decisions)
    assert all(t.problem.in_block == t.problem.out_block == 0 for t in tasks)
    keys = {arch: TargetKey.of(resolve_target(f"cuda:{arch}")) for arch in ("sm_80", "sm_90")}
    assert keys["sm_80"].cpu == "sm_80" and keys["sm_90"].cpu == "sm_90" and keys["sm_90"].kind == "cuda"
    assert keys["sm_80"] != keys["sm_90"] != TargetKey.of(resolve_target("llvm"))


def _record(task, target, kernel, seconds: float) -> Record:
    config = kernel.default_config(task.problem, task.machine)
    return Record(task=task.signature, problem=describe(task.problem), target=plain(TargetKey.of(target)),
                  versions=versions(), candidate=kernel.name, config_type=type(config).__name__,
                  knobs=knobs(config), status="ok", seconds=seconds)


def test_a_cuda_tuning_record_of_the_same_arch_replaces_the_cost_models_pick(model_path, tmp_path):
    graph, decisions = plan_schedules(model_path, "cuda:sm_90")
    sm90 = resolve_target("cuda:sm_90")
    task = extract_tasks(graph, sm90)[0]
    picked = next(d.picked for d in decisions if d.node == task.nodes[0])
    other = next(k for k in backend("cuda").candidates
                 if k.name != picked and k.decline(task.problem) is None)
    db = Database(tmp_path / "db")
    db.append(_record(task, sm90, other, 1e-9))
    with pytest.warns(UserWarning, match="no record for 15 of 16"):
        _, tuned = plan_schedules(model_path, "cuda:sm_90", tuning_db=db.root)
    for decision in tuned:
        if decision.node in task.nodes:
            assert decision.picked == other.name and decision.note.startswith("tuned")
    with pytest.warns(UserWarning) as caught:
        _, untuned = plan_schedules(model_path, "cuda:sm_80", tuning_db=db.root)
    assert any("measured on another target (cuda sm_90" in str(w.message) for w in caught)
    assert all(not d.note.startswith("tuned") for d in untuned)



def test_run_on_the_wrong_device_is_a_clear_error(model_path, tmp_path, capsys):
    cpu_lib, cuda_lib, x = tmp_path / "cpu.so", tmp_path / "cuda.so", tmp_path / "x.npy"
    assert main(["compile", model_path, "-o", str(cpu_lib)]) == 0
    assert main(["compile", model_path, "-o", str(cuda_lib), "--target", "cuda:sm_90"]) == 0
    np.save(x, np.zeros((1, 3, 32, 32), np.float32))
    capsys.readouterr()
    assert main(["run", str(cpu_lib), "--input", f"input={x}", "--device", "cuda"]) == 1
    assert "compiled for cpu" in capsys.readouterr().err
    assert main(["run", str(cuda_lib), "--input", f"input={x}", "--device", "cpu"]) == 1
    assert "compiled for cuda" in capsys.readouterr().err.lower()
    assert main(["run", str(cpu_lib), "--input", f"input={x}", "--device", "cpu"]) == 0


def test_float16_applies_the_precision_pass_after_the_rewrites(model_path):
    import onnxruntime as ort
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    (expected,) = ort.InferenceSession(model_path).run(None, {"input": x})
    seen = []
    convc.compile(model_path, dtype="float16", dump_ir=lambda name, graph: seen.append(name))
    assert seen[-2:] == ["precision", "select_schedule"]
    graph, _ = plan_schedules(model_path, dtype="float16")
    assert all(str(graph.constants[v].dtype) == "float16" for v in graph.constants
               if any(n.op is Op.CONV and v is n.inputs[1] for n in graph.nodes))
    half = convc.compile(model_path, dtype="float16").run({"input": x})[0]
    full = convc.compile(model_path).run({"input": x})[0]
    error = lambda got: np.linalg.norm(got - expected) / np.linalg.norm(expected)  # noqa: E731
    assert error(full) <= 1e-5 < error(half) <= 1e-2
