"""The convc command line, run as a user would (in-process through convc.cli.main)."""
import numpy as np
import onnx
import pytest

from convc import zoo
from convc.cli import main
from oracles import onnxruntime_outputs, relative_l2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model = zoo.build("tiny")
    path = root / "tiny.onnx"
    onnx.save(model, path)
    x = zoo.random_inputs(model, seed=3)["input"]
    np.save(root / "x.npy", x)
    return root, model, x


def test_compile_run_roundtrip(tiny, capsys):
    root, model, x = tiny
    assert main(["compile", str(root / "tiny.onnx"), "-o", str(root / "tiny.so")]) == 0
    assert main(["run", str(root / "tiny.so"), "--input", f"input={root / 'x.npy'}",
                 "--output", str(root / "out.npz"), "--bench", "3"]) == 0
    out = np.load(root / "out.npz")
    (want,) = onnxruntime_outputs(model, {"input": x})
    name = model.graph.output[0].name
    assert relative_l2(out[name], want) <= 1e-4
    assert "median" in capsys.readouterr().out


def test_run_profiles_every_kernel(tiny, capsys):
    root, _, _ = tiny
    assert main(["compile", str(root / "tiny.onnx"), "-o", str(root / "p.so")]) == 0
    capsys.readouterr()
    assert main(["run", str(root / "p.so"), "--input", f"input={root / 'x.npy'}", "--profile", "3"]) == 0
    text = capsys.readouterr().out
    assert "kernel time per run, median of 3 runs" in text
    rows = [line for line in text.splitlines() if line.startswith("  ") and " ms " in line]
    assert any("conv_" in row for row in rows) and all("1x " in row for row in rows)
    assert all(row.endswith(")") for row in rows)  # the library names the graph nodes of each kernel
    shares = [float(row.split("%")[0].split()[-1]) for row in rows]
    assert shares == sorted(shares, reverse=True) and abs(sum(shares) - 100) < 1
    for option in ("--profile", "--bench"):
        assert main(["run", str(root / "p.so"), "--input", f"input={root / 'x.npy'}", option, "-2"]) == 1
        assert "must be a positive integer, got -2" in capsys.readouterr().err


def test_dump_ir_prints_every_pass(tiny, capsys):
    root, _, _ = tiny
    from convc.passes import PIPELINE
    assert main(["compile", str(root / "tiny.onnx"), "-o", str(root / "d.so"), "--dump-ir"]) == 0
    text = capsys.readouterr().out
    for name in ["import", *(p.name for p in PIPELINE)]:
        assert f"after {name}" in text


def test_inspect_reports_layers_and_totals(tiny, capsys):
    root, model, _ = tiny
    assert main(["inspect", str(root / "tiny.onnx")]) == 0
    text = capsys.readouterr().out
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert "conv" in text and "peak activations" in text
    # BatchNorm folding removes the BN parameters but keeps the conv weights and biases
    reported = int(text.split("parameters:")[1].split()[0].replace(",", ""))
    assert 0 < reported <= params


@pytest.mark.parametrize("argv, message", [
    (["compile", "missing.onnx", "-o", "x.so"], "missing.onnx"),
    (["run", "missing.so"], "missing.so"),
    (["compile", "m.onnx", "-o", "x.so", "--input-shape", "input:1,3"], "NAME=D1,D2"),
])
def test_errors_are_one_line_messages(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("convc: error:") and message in err and "Traceback" not in err


def test_run_rejects_wrong_input_shape(tiny, capsys):
    root, _, _ = tiny
    assert main(["compile", str(root / "tiny.onnx"), "-o", str(root / "t2.so")]) == 0
    np.save(root / "bad.npy", np.zeros((1, 3, 8, 8), np.float32))
    assert main(["run", str(root / "t2.so"), "--input", f"input={root / 'bad.npy'}"]) == 1
    assert "input" in capsys.readouterr().err
