"""bench.tune fills a tuning database and records its time; the bench's tuned variant uses it; a
single transposed conv is also timed in the zero-insertion form on the direct kernel."""
import json

import numpy as np

from bench import tune as bench_tune
from bench.run import _transposed_rows, _tuned_rows
from bench.worker import bench_model
from bench.suites import load_model
from convc.tune.database import Database

LAYER = "layer:convt1d_k8_s4_p2_128to64_256"  # four small phase convs: a short tune


def test_tuning_is_recorded_and_the_tuned_variant_matches_onnxruntime(tmp_path, monkeypatch):
    monkeypatch.setenv("TVM_NUM_THREADS", "1")
    bench_tune.main(["--models", LAYER, "--time-budget", "8s", "--threads", "1", "--db", str(tmp_path)])
    budget = json.loads((tmp_path / bench_tune.BUDGET_FILE).read_text())
    assert budget[LAYER]["budget"] == "8s" and budget[LAYER]["threads"] == 1
    assert 0 < budget[LAYER]["seconds"] < 120
    assert any(r.ok for r in Database(tmp_path).records())

    bench_tune.main(["--models", LAYER, "--time-budget", "2s", "--threads", "1", "--db", str(tmp_path)])
    resumed = bench_tune.read_budget(tmp_path)[LAYER]
    assert resumed["seconds"] > budget[LAYER]["seconds"]  # a second run adds its time

    result = bench_model(LAYER, load_model(LAYER), 1, stock_tvm=False, tuning_db=str(tmp_path))
    assert result["rel_l2"]["tuned"] < 1e-5
    assert all(np.isfinite(p["tuned_ms"]) for p in result["passes"])
    result["tuning"] = resumed
    (row,) = _tuned_rows([result])
    assert row.startswith(f"| {LAYER} |") and "min (2s, 1 thread(s))" in row

    assert result["rel_l2"]["zero_insertion_direct"] < 1e-5  # every zero-inserted conv on `direct`
    (row,) = _transposed_rows([result])
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert len(cells) == 8 and float(cells[2]) > 0 and cells[6] != "-"  # the direct form was timed
