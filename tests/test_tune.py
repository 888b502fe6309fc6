"""convc.tune: short tuning runs on the tiny zoo CNN (16x16 input) with fast timing.

Oracles: onnxruntime for the tuned model's outputs; ``conv_reference`` (via the tuner's
check) for the deliberately wrong candidate; the record files themselves for resuming.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import onnx
import pytest

import convc
from convc.cli import main
from convc.compiler import lower_to_ir, plan_schedules
from convc.schedules.cpu.blocked import CANDIDATES, KernelBuild, by_name
from convc.target import resolve_target
from convc.tune import Database, extract_tasks, load_tuned, tune
from convc.tune.database import RECORDS, merge
from convc.tune.measure import Timing
from convc.tune.progress import Progress
from convc.zoo.registry import build

FAST = Timing(repeat=2, min_repeat_ms=1)


def quiet() -> Progress:
    return Progress(quiet=True)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    onnx.save(build("tiny", image_size=16), path)
    return str(path)


@pytest.fixture(scope="module")
def tuned_db(model_path, tmp_path_factory):
    db = tmp_path_factory.mktemp("db") / "db"
    report = tune(model_path, str(db), trials=9, timing=FAST, progress=quiet(), confirm=False)
    return str(db), report


def task_count(model_path) -> int:
    return len(extract_tasks(lower_to_ir(model_path), resolve_target("llvm")))


def lines(db: str) -> list[str]:
    return (Database(db).path).read_text().splitlines()


def test_tasks_are_deduplicated_and_keyed_deterministically(model_path):
    target = resolve_target("llvm")
    first = extract_tasks(lower_to_ir(model_path), target)
    again = extract_tasks(lower_to_ir(model_path), target)
    assert [t.signature for t in first] == [t.signature for t in again]
    assert len({t.signature for t in first}) == len(first)
    assert sum(t.count for t in first) == 5  # the tiny CNN's four convs and its FC (a 1x1 conv)


def test_records_are_written_one_per_trial_defaults_first(tuned_db, model_path):
    db, report = tuned_db
    records = Database(db).records()
    assert len(records) == len(lines(db)) == report.trials_run == 9
    assert all(r.status == "ok" and r.seconds > 0 for r in records)
    for search in report.searches:
        first = search.records[0]
        assert (first.candidate, first.knobs) == (search.default_kernel.name,
                                                  dataclasses.asdict(search.default_config))
        assert search.best.seconds <= search.default_record.seconds
    assert {r.task for r in records} == {s.task.signature for s in report.searches}


def test_compile_uses_the_best_record_per_task(tuned_db, model_path):
    db, report = tuned_db
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every task has a record: nothing to warn about
        _, decisions = plan_schedules(model_path, tuning_db=db)
        model = convc.compile(model_path, tuning_db=db)
    best = {s.task.nodes[0]: s.best.candidate for s in report.searches}
    picked = {d.node: d.picked for d in decisions if d.node in best}
    assert picked == best
    assert all("tuned" in d.note for d in decisions if d.node in best)
    import onnxruntime as ort
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16), dtype=np.float32)
    expected = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"]).run(None, {"input": x})
    np.testing.assert_allclose(model.run({"input": x})[0], expected[0], rtol=1e-4, atol=1e-4)


def test_rerun_resumes_instead_of_starting_over(tuned_db, model_path, tmp_path):
    db = tmp_path / "db"
    db.mkdir()
    (db / RECORDS).write_text("\n".join(lines(tuned_db[0])) + "\n")
    assert tune(model_path, str(db), trials=9, timing=FAST, progress=quiet(), confirm=False).trials_run == 0
    report = tune(model_path, str(db), trials=12, timing=FAST, progress=quiet(), confirm=False)
    assert report.trials_run == 3
    records = Database(db).records()
    keys = [(r.task, r.trial_key) for r in records]
    assert len(records) == 12 and len(set(keys)) == 12


class WrongDirect(type(by_name("direct"))):
    """``direct`` with its weight packed negated: builds and runs, computes the wrong thing."""

    name = "wrong-direct"

    def build(self, p, config):
        built = super().build(p, config)
        return KernelBuild(built.func, lambda w, b: built.pack_weight(-w, b))


def test_a_wrong_candidate_is_rejected_and_never_used(model_path, tmp_path):
    db = str(tmp_path / "db")
    report = tune(model_path, db, trials=6, tasks="1", timing=FAST, progress=quiet(),
                  candidates=(WrongDirect(), *CANDIDATES))
    wrong = [r for r in Database(db).records() if r.candidate == "wrong-direct"]
    assert wrong and all(r.status == "wrong" and r.seconds is None for r in wrong)
    assert "differs from the reference" in wrong[0].error
    assert report.wrong == len(wrong)
    (search,) = [s for s in report.searches if s.index == 1]
    assert search.best.candidate != "wrong-direct"


def rewrite(db: str, out, change) -> None:
    out.mkdir()
    records = [json.loads(line) for line in lines(db)]
    (out / RECORDS).write_text("".join(json.dumps(change(r)) + "\n" for r in records))


@pytest.mark.parametrize("change, reason", [
    (lambda r: {**r, "target": {**r["target"], "cpu": "some-other-cpu"}}, "another target"),
    (lambda r: {**r, "versions": {**r["versions"], "convc": "0.0.1"}}, "incompatible versions"),
])
def test_records_of_another_target_or_version_are_ignored_with_a_warning(tuned_db, model_path, tmp_path,
                                                                         change, reason):
    db = tmp_path / "db"
    rewrite(tuned_db[0], db, change)
    graph = lower_to_ir(model_path)
    with pytest.warns(UserWarning) as caught:
        tuned = load_tuned(str(db), graph, resolve_target("llvm"))
    text = " ".join(str(w.message) for w in caught)
    assert reason in text and "no record for" in text
    assert tuned.choices == {} and len(tuned.missing) == task_count(model_path)


def test_knobs_of_another_kernel_version_are_ignored(tuned_db, model_path, tmp_path):
    db = tmp_path / "db"
    rewrite(tuned_db[0], db, lambda r: {**r, "knobs": {**r["knobs"], "retired_knob": 3}})
    with pytest.warns(UserWarning) as caught:
        tuned = load_tuned(str(db), lower_to_ir(model_path), resolve_target("llvm"))
    assert "knobs unknown" in " ".join(str(w.message) for w in caught)
    assert tuned.choices == {}


def test_a_torn_last_line_is_skipped_and_the_next_record_starts_a_new_line(tuned_db, tmp_path):
    db = tmp_path / "db"
    db.mkdir()
    good = lines(tuned_db[0])
    (db / RECORDS).write_text("\n".join(good) + "\n" + good[0][: len(good[0]) // 2])
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        records = Database(db).records()
    assert len(records) == len(good)
    Database(db).append(records[0])
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        assert len(Database(db).records()) == len(good) + 1


def test_merge_adds_missing_records_once(tuned_db, tmp_path, capsys):
    out = tmp_path / "merged"
    assert merge(out, [tuned_db[0]]) == (9, 0)
    assert merge(out, [tuned_db[0]]) == (0, 9)
    assert main(["db", "merge", str(out), tuned_db[0]]) == 0
    assert "merged 0 record(s)" in capsys.readouterr().out
    assert main(["db", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert all(s.task.signature in shown for s in tuned_db[1].searches)


def test_cli_errors_name_the_problem(model_path, tmp_path, capsys):
    assert main(["tune", model_path, "--db", str(tmp_path / "d")]) == 1
    assert "--trials N or --time-budget" in capsys.readouterr().err
    assert main(["tune", model_path, "--db", str(tmp_path / "d"), "--time-budget", "soon"]) == 1
    assert "--time-budget 'soon'" in capsys.readouterr().err
    assert main(["tune", model_path, "--db", str(tmp_path / "d"), "--trials", "2", "--tasks", "99"]) == 1
    assert "no task [99]" in capsys.readouterr().err
    assert main(["db", "show", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_a_killed_run_leaves_a_readable_db_and_resumes(model_path, tmp_path):
    db = tmp_path / "db"
    cmd = [sys.executable, "-m", "convc", "tune", model_path, "--db", str(db), "--trials", "500",
           "--repeat", "2", "--min-repeat-ms", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            if (db / RECORDS).exists() and len((db / RECORDS).read_bytes().splitlines()) >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "tune ended before it could be killed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a torn last line is allowed
        before = Database(db).records()
    assert len(before) >= 4
    report = tune(model_path, str(db), trials=len(before) + 2, timing=FAST, progress=quiet(), confirm=False)
    assert report.trials_run == 2
    after = Database(db).records()
    assert len({(r.task, r.trial_key) for r in after}) == len(after) == len(before) + 2


def test_cpu_trials_are_timed_cold_and_say_so(tuned_db):
    """By default every CPU trial is 30 single runs with flushed weights (the median counts)."""
    db, _ = tuned_db
    records = Database(db).records()
    assert records and all(r.timing == "cold" for r in records)
    assert all(len(r.repeats) == Timing().cold_runs and r.seconds == float(np.median(r.repeats))
               for r in records)


def test_timing_modes_never_mix(model_path, tmp_path):
    """A cold tune does not resume from warm records, and compiling prefers cold records even
    when a warm one claims to be faster."""
    db = str(tmp_path / "db")
    warm = tune(model_path, db, trials=8, timing=dataclasses.replace(FAST, cold=False), progress=quiet(), confirm=False)
    assert {r.timing for r in Database(db).records()} == {"warm"} and warm.trials_run == 8
    cold = tune(model_path, db, trials=8, timing=FAST, progress=quiet(), confirm=False)
    assert cold.trials_run == 8  # the warm records did not count as measured
    records = Database(db).records()
    for search in cold.searches:  # each task measured from its default again
        first = next((r for r in records if r.timing == "cold" and r.task == search.task.signature), None)
        if first is not None:
            assert (first.candidate, first.knobs) == (search.default_kernel.name,
                                                      dataclasses.asdict(search.default_config))
    cold_best = {}
    for r in records:
        if r.timing == "cold" and r.ok and (r.task not in cold_best or r.seconds < cold_best[r.task].seconds):
            cold_best[r.task] = r
    with open(Database(db).path, "a") as f:  # a warm record of another config, 'faster' than anything
        for task, best in cold_best.items():
            other = next((r for r in records if r.task == task and r.trial_key != best.trial_key), None)
            if other is not None:
                fake = dataclasses.replace(other, timing="warm", seconds=1e-12, time=time.time())
                f.write(fake.to_json() + "\n")
    graph = lower_to_ir(model_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuned = load_tuned(db, graph, resolve_target("llvm"))
    by_signature = {t.signature: t for t in extract_tasks(graph, resolve_target("llvm"))}
    assert len(Database(db).records()) > len(records)  # some fakes were written
    for task, best in cold_best.items():
        kernel, config = tuned.choices[by_signature[task].problem]
        assert (kernel.name, dataclasses.asdict(config)) == (best.candidate, best.knobs)


def test_a_time_budget_keeps_back_the_in_model_check(model_path, tmp_path, monkeypatch):
    import convc.tune.tuner as tuner
    from convc.tune.network import CheckCost, check_cost
    graph = lower_to_ir(model_path)
    cost = check_cost(graph, resolve_target("llvm"))
    one, three = cost.seconds(0), cost.seconds(2)
    assert 0 < one < three
    monkeypatch.setattr(tuner, "check_cost", lambda *args: CheckCost(3600.0, 0.0))
    kept_back = tune(model_path, str(tmp_path / "a"), time_budget=3600, timing=FAST, progress=quiet())
    assert kept_back.trials_run == 0  # the whole hour is the check's
    unchecked = tune(model_path, str(tmp_path / "b"), time_budget=3600, trials=3, timing=FAST, progress=quiet(),
                     confirm=False)
    assert unchecked.trials_run == 3  # no check: nothing kept back
