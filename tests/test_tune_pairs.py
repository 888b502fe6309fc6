"""Tuning the fused expansion + depthwise kernel: a fused pair is one tuning task.

Oracles: the two reference convs one after the other (the tuner's check, and ``run_pair``
for configs of the space), onnxruntime for a model compiled with a pair record.
"""
from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np
import pytest

import convc
from convc.compiler import lower_to_ir, plan_schedules
from convc.schedules.cpu.blocked.expand_depthwise import (EXPAND_DEPTHWISE, ExpandDepthwise, ExpandDepthwiseConfig,
                                                         FusedPair, PairBuild)
from convc.schedules.cpu.blocked.machine import Machine
from convc.tune import Database, load_tuned, tune
from convc.tune.cli import _problem_text
from convc.tune.measure import LocalMeasurer, Timing, Trial
from convc.tune.network import NETWORK, confirm_in_network
from convc.tune.progress import Progress
from convc.tune.search import TaskSearch
from convc.tune.task import describe, extract_tasks
from tests.oracles import onnxruntime_outputs as ort_run
from tests.test_expand_depthwise import B, PAIRS, TARGET, inverted_residual, pair, run_pair

FAST = Timing(repeat=2, min_repeat_ms=1, cold_runs=3)
AVX512 = Machine(lanes=16, registers=32, cores=2)


def block(size: int = 16, stride: int = 1):
    return inverted_residual(cin=B, ce=3 * B, size=size, stride=stride)


def test_a_fused_pair_is_one_task_and_its_convs_none():
    graph = lower_to_ir(block())
    pair_task, project = extract_tasks(graph, TARGET)
    assert isinstance(pair_task.problem, FusedPair) and pair_task.count == 1
    assert len(pair_task.nodes) == 2 and pair_task.candidates == (EXPAND_DEPTHWISE,)
    assert pair_task.default() == (EXPAND_DEPTHWISE, EXPAND_DEPTHWISE.default_config(pair_task.problem,
                                                                                     pair_task.machine))
    assert pair_task.estimate() > 0 and "dw 3x3" in pair_task.label
    assert describe(pair_task.problem)["op"] == "expand_depthwise"
    assert project.problem.kernel == (1, 1) and project.problem.out_channels == B
    unfused = extract_tasks(graph, TARGET, fusions=frozenset())
    assert len(unfused) == 3 and all(t.count == 1 for t in unfused)


@pytest.mark.parametrize("index", range(len(PAIRS)))
def test_space_starts_with_the_default_and_holds_valid_distinct_configs(index):
    p = PAIRS[index]
    space = EXPAND_DEPTHWISE.space(p, AVX512)
    assert space[0] == EXPAND_DEPTHWISE.default_config(p, AVX512)
    assert len(space) == len(set(space)) > 1
    d, blocks = p.depthwise, p.expand.out_channels // B
    for config in space[1:]:
        assert d.out_size[0] % config.band_rows == 0 and blocks % config.channel_blocks == 0
        assert config.band_rows >= (2 if d.strides[0] == 1 else 1)
        assert config.reg_e * config.channel_blocks + config.channel_blocks + 2 <= AVX512.registers
    changed = [sum(a != b for a, b in zip(dataclasses.astuple(c), dataclasses.astuple(space[0]))) for c in space]
    assert changed == sorted(changed)  # one knob changed before two


@pytest.mark.parametrize("index", [0, 1, 3])
def test_configs_of_the_space_match_the_reference(index):
    space = EXPAND_DEPTHWISE.space(PAIRS[index], AVX512)
    for config in (space[1], space[len(space) // 2], space[-1]):
        run_pair(PAIRS[index], config)


class WrongPair(ExpandDepthwise):
    """The fused kernel with its depthwise weight packed negated: builds, runs, is wrong."""

    name = "expand_depthwise"

    def build(self, p, config):
        built = super().build(p, config)
        return PairBuild(built.func, lambda we, be, wd, bd: built.pack_weight(we, be, -wd, bd))


def test_a_wrong_pair_kernel_is_rejected():
    p = pair(B, 3 * B, (8, 8))
    config = EXPAND_DEPTHWISE.default_config(p, AVX512)
    measurer = LocalMeasurer(TARGET, FAST)
    good, bad = measurer.measure([Trial(p, EXPAND_DEPTHWISE, config), Trial(p, WrongPair(), config)])
    assert good.status == "ok" and good.seconds > 0
    assert bad.status == "wrong" and bad.seconds is None and "differs from the reference" in bad.error


@pytest.fixture(scope="module")
def pair_db(tmp_path_factory):
    db = tmp_path_factory.mktemp("pairs") / "db"
    model = block()
    report = tune(model, str(db), trials=8, timing=FAST, progress=Progress(quiet=True), confirm=False)
    return model, str(db), report


def test_tuning_measures_pair_configs_default_first(pair_db):
    _, db, report = pair_db
    (search,) = [s for s in report.searches if isinstance(s.task.problem, FusedPair)]
    records = [r for r in Database(db).records() if r.task == search.task.signature]
    assert len(records) > 1 and all(r.status == "ok" and r.candidate == "expand_depthwise" for r in records)
    assert records[0].knobs == dataclasses.asdict(search.default_config)
    assert len({tuple(sorted(r.knobs.items())) for r in records}) == len(records)
    assert records[0].problem["op"] == "expand_depthwise"
    assert "depthwise:" in _problem_text(records[0].problem)


def test_compile_builds_the_pair_with_its_best_record(pair_db, monkeypatch):
    model, db, report = pair_db
    (search,) = [s for s in report.searches if isinstance(s.task.problem, FusedPair)]
    # make a non-default config the best, so the test sees which one is built
    other = next(r for r in search.records if r.knobs != dataclasses.asdict(search.default_config))
    Database(db).append(dataclasses.replace(other, seconds=other.seconds / 100))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # both tasks have records
        choices = load_tuned(db, lower_to_ir(model), TARGET).choices
    assert choices[search.task.problem] == (EXPAND_DEPTHWISE, ExpandDepthwiseConfig(**other.knobs))
    built = []
    original = ExpandDepthwise.build
    monkeypatch.setattr(ExpandDepthwise, "build", lambda self, p, c: built.append(c) or original(self, p, c))
    compiled = convc.compile(model, tuning_db=db)
    assert built == [ExpandDepthwiseConfig(**other.knobs)]
    _, decisions = plan_schedules(model, tuning_db=db)
    notes = {d.source: d.note for d in decisions}
    assert "config tuned" in notes["expand"] and "config tuned" in notes["dw"]
    x = np.random.default_rng(1).standard_normal((1, B, 16, 16)).astype(np.float32)
    (got,), (ref,) = compiled.run({"x": x}), ort_run(model, {"x": x})
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


def test_a_pair_without_record_keeps_its_default_and_is_named(tmp_path, pair_db):
    model, _, _ = pair_db
    db = tmp_path / "db"
    tune(model, str(db), trials=1, timing=FAST, progress=Progress(quiet=True), confirm=False, tasks="1")
    with pytest.warns(UserWarning, match=r"no record for 1 of 2 task\(s\).*dw 3x3"):
        tuned = load_tuned(str(db), lower_to_ir(model), TARGET)
    assert [type(t.problem) for t in tuned.missing] == [FusedPair]


def test_a_pair_pick_is_timed_in_the_model_against_its_default(pair_db, tmp_path):
    model, _, report = pair_db
    (search,) = [s for s in report.searches if isinstance(s.task.problem, FusedPair)]
    other = next(r for r in search.records if r.trial_key != search.default_record.trial_key)
    faked = TaskSearch(search.index, search.task, search.task.candidates,
                       [*search.records, dataclasses.replace(other, seconds=1e-12, time=time.time())])
    out = Database(tmp_path / "db")
    records = confirm_in_network(lower_to_ir(model), TARGET, [faked], out, other.target, other.versions, "local")
    assert [r.trial_key for r in records] == [search.default_record.trial_key, other.trial_key]
    assert all(r.timing == NETWORK and r.task == search.task.signature and r.seconds > 1e-9 for r in records)
