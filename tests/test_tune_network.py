"""The tuned picks timed inside the model against the defaults (``convc/tune/network.py``),
and compiles preferring those in-model records (``convc/tune/apply.py``)."""
from __future__ import annotations

import dataclasses
import time
import warnings

import onnx
import pytest

from convc.compiler import lower_to_ir
from convc.target import resolve_target
from convc.tune import Database, load_tuned
from convc.tune.measure import Timing
from convc.tune.network import NETWORK, confirm_in_network
from convc.tune.progress import Progress
from convc.tune.search import TaskSearch, trial_key
from convc.tune.task import extract_tasks
from convc.tune.tuner import tune
from convc.zoo.registry import build

FAST = Timing(repeat=2, min_repeat_ms=1)
TARGET = resolve_target("llvm")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A tiny CNN tuned for a few trials (without the in-model check), and its database."""
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    onnx.save(build("tiny", image_size=16), path)
    db = tmp_path_factory.mktemp("db") / "db"
    report = tune(str(path), str(db), trials=12, timing=FAST, progress=Progress(quiet=True), confirm=False)
    return str(path), str(db), report


def _other_pick(search: TaskSearch) -> TaskSearch:
    """``search`` as if a non-default record had measured fastest (a copy; the database is untouched)."""
    other = next(r for r in search.records if r.ok and r.trial_key != search.default_record.trial_key)
    faked = TaskSearch(search.index, search.task, search.task.backend.candidates,
                       [*search.records, dataclasses.replace(other, seconds=1e-12, time=time.time())])
    assert faked.best.trial_key == other.trial_key
    return faked


def test_a_tuned_pick_and_its_default_are_timed_in_the_model(tuned, tmp_path):
    path, db, report = tuned
    search = next(s for s in report.searches if sum(r.ok for r in s.records) >= 2)
    graph = lower_to_ir(path)
    out = Database(tmp_path / "db")
    records = confirm_in_network(graph, TARGET, [_other_pick(search)], out, search.records[0].target,
                                 search.records[0].versions, "local")
    assert len(records) == 2 == len(out.records())
    default, picked = records
    assert all(r.timing == NETWORK and r.ok and r.task == search.task.signature for r in records)
    assert default.trial_key == search.default_record.trial_key
    assert picked.trial_key != default.trial_key and picked.seconds > 1e-9  # timed for real, in the model


def test_picks_are_timed_in_groups_when_builds_would_hold_too_many_weights(tuned, tmp_path, monkeypatch):
    import convc.tune.network as network
    path, db, report = tuned
    searches = [_other_pick(s) for s in report.searches if sum(r.ok for r in s.records) >= 2][:2]
    assert len(searches) == 2
    built = []
    original = network._build
    monkeypatch.setattr(network, "_build", lambda *args: built.append(args[2]) or original(*args))
    monkeypatch.setattr(network, "BUILD_BYTES", 1)  # one pick build at a time beside the default
    records = confirm_in_network(lower_to_ir(path), TARGET, searches, Database(tmp_path / "db"),
                                 searches[0].records[0].target, searches[0].records[0].versions, "local")
    assert [len(b) if b else 0 for b in built] == [0, 1, 1]  # the default once, then each pick alone
    assert [r.task for r in records] == [s.task.signature for s in searches for _ in range(2)]


def test_no_record_when_every_pick_is_its_default(tuned, tmp_path):
    path, db, report = tuned
    unchanged = [TaskSearch(s.index, s.task, s.task.backend.candidates, [s.default_record]) for s in report.searches]
    out = Database(tmp_path / "db")
    assert confirm_in_network(lower_to_ir(path), TARGET, unchanged, out, {}, {}, "local") == []


def test_compile_prefers_the_in_model_winner(tuned, tmp_path):
    """A task with network records compiles the faster of them, whatever its cold records say;
    of a config timed in the model twice, the later time counts."""
    path, db, report = tuned
    search = next(s for s in report.searches if sum(r.ok for r in s.records) >= 2)
    best, default = search.best, search.default_record
    merged = tmp_path / "db"
    merged.mkdir()
    lines = Database(db).path.read_text().splitlines()
    lines.append(dataclasses.replace(default, timing=NETWORK, seconds=1.0).to_json())
    other = next(r for r in search.records if r.ok and r.trial_key != default.trial_key)
    lines.append(dataclasses.replace(other, timing=NETWORK, seconds=0.5, time=1.0).to_json())  # an older check
    lines.append(dataclasses.replace(other, timing=NETWORK, seconds=2.0).to_json())  # slower in the model
    (merged / Database(db).path.name).write_text("\n".join(lines) + "\n")
    graph = lower_to_ir(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        choices = load_tuned(str(merged), graph, TARGET).choices
        cold_only = load_tuned(db, graph, TARGET).choices
    kernel, config = choices[search.task.problem]
    assert (kernel.name, dataclasses.asdict(config)) == (default.candidate, default.knobs)
    kernel, config = cold_only[search.task.problem]
    assert (kernel.name, dataclasses.asdict(config)) == (best.candidate, best.knobs)


def test_tune_runs_the_check_and_says_so(tuned, tmp_path, capsys):
    path, db, report = tuned
    copy = tmp_path / "db"
    copy.mkdir()
    (copy / Database(db).path.name).write_text(Database(db).path.read_text())
    again = tune(path, str(copy), trials=12, timing=FAST, progress=Progress(quiet=False))
    assert again.trials_run == 0
    assert "in the model:" in capsys.readouterr().err
    network = [r for r in Database(copy).records() if r.timing == NETWORK]
    picked = {s.task.signature for s in report.searches if s.best.trial_key != s.default_record.trial_key}
    assert {r.task for r in network} <= picked
    assert len(network) % 2 == 0
    assert extract_tasks(lower_to_ir(path), TARGET)  # the model still lowers as before


class _Kernels:
    """Just the ``kernels`` map of a compiled model: symbol -> the nodes it computes."""

    def __init__(self, kernels):
        self.kernels = kernels


def test_scope_time_counts_each_call_once_and_needs_every_node():
    from convc.tune.network import _scope_seconds
    model = _Kernels({"pair": ("e1", "d1", "e2", "d2"), "conv": ("a", "b", "c"), "other": ("z",)})
    runs = 2
    samples = {"pair": [1.0, 1.0, 3.0, 3.0],   # 2 calls per run, median 2
               "conv": [0.5] * 6,              # 3 calls per run
               "other": [9.0, 9.0]}
    assert _scope_seconds(model, samples, {"e1"}, runs) == 2.0               # the reader's whole call
    assert _scope_seconds(model, samples, {"e1", "d1"}, runs) == 2.0         # one call, two nodes
    assert _scope_seconds(model, samples, {"e1", "d1", "e2"}, runs) == 4.0   # two calls
    assert _scope_seconds(model, samples, {"a", "c", "e1"}, runs) == 3.0     # two conv calls + one pair call
    assert _scope_seconds(model, samples, {"a", "missing"}, runs) is None


def test_readers_are_the_nodes_reading_each_output(tuned):
    from convc.tune.network import _readers
    path, _, _ = tuned
    graph = lower_to_ir(path)
    by_output = {n.output: n.name for n in graph.nodes}
    expected = {(by_output[v], n.name) for n in graph.nodes for v in n.inputs if v in by_output}
    got = {(node, reader) for node, names in _readers(graph).items() for reader in names}
    assert got == expected and expected


def _with_times(search: TaskSearch, seconds: dict[int, float]) -> TaskSearch:
    """``search`` (a copy) with the ok records at the given positions re-timed."""
    ok = [r for r in search.records if r.ok]
    timed = [dataclasses.replace(r, seconds=seconds.get(i, r.seconds)) for i, r in enumerate(ok)]
    return TaskSearch(search.index, search.task, search.task.backend.candidates, timed)


def test_network_picks_are_the_fastest_alone_that_beat_the_default(tuned):
    from convc.tune.network import network_picks
    _, _, report = tuned
    search = next(s for s in report.searches if sum(r.ok for r in s.records) >= 3)
    ok = [r for r in search.records if r.ok]
    d = next(i for i, r in enumerate(ok) if r.trial_key == search.default_record.trial_key)
    first, second = [i for i in range(len(ok)) if i != d][:2]
    keys = lambda picks: [trial_key(k, c) for k, c in picks]
    rest = {i: 2.0 for i in range(len(ok))}  # any further record: slower than the default
    both = _with_times(search, {**rest, d: 1.0, first: 0.5, second: 0.7})
    assert keys(network_picks(both, 1)) == [ok[first].trial_key]
    assert keys(network_picks(both, 5)) == [ok[first].trial_key, ok[second].trial_key]
    slower = _with_times(search, {**rest, d: 1.0, first: 0.5, second: 2.0})  # slower than the default: no pick
    assert keys(network_picks(slower, 5)) == [ok[first].trial_key]
    assert network_picks(_with_times(search, {d: 1e-12}), 3) == []  # the default is fastest


def test_several_picks_of_a_task_are_timed_against_one_default(tuned, tmp_path):
    _, _, report = tuned
    search = next(s for s in report.searches if sum(r.ok for r in s.records) >= 3)
    ok = [r for r in search.records if r.ok]
    d = next(i for i, r in enumerate(ok) if r.trial_key == search.default_record.trial_key)
    faked = _with_times(search, {i: (1.0 if i == d else 0.5) for i in range(len(ok))})
    out = Database(tmp_path / "db")
    records = confirm_in_network(lower_to_ir(tuned[0]), TARGET, [faked], out, ok[0].target, ok[0].versions,
                                 "local", picks_per_task=2)
    assert len(records) == 3 and records[0].trial_key == search.default_record.trial_key
    assert len({r.trial_key for r in records}) == 3 and all(r.timing == NETWORK for r in records)


@pytest.mark.parametrize("seconds, elapsed, expected", [
    (None, 0.0, 1),     # a trial budget: one pick per task
    (600.0, 590.0, 1),  # no room left: still the best pick
    (600.0, 300.0, 3),  # room for 3 x 10 tasks + the default at 5 s a build, and more: capped
    (600.0, 480.0, 2),  # 120 s: 23 builds, 2 per task
])
def test_picks_per_task_take_the_time_the_search_left(seconds, elapsed, expected):
    from convc.tune.network import CheckCost
    from convc.tune.tuner import Budget, _picks_per_task
    cost = CheckCost(build=5.0, per_pick=5.0)
    assert _picks_per_task(Budget(trials=None if seconds else 5, seconds=seconds), elapsed, cost, 10) == expected


def test_a_pick_is_timed_by_its_ratio_to_the_default_run_beside_it():
    from convc.tune.network import RUNS, _paired_seconds
    default, pick = _Kernels({"d": ("a",)}), _Kernels({"p": ("a",)})
    # the host slows down in the last two rounds; the pick runs 10% faster than the default beside it
    rounds = [({"d": [t] * RUNS}, {"p": [0.9 * t] * RUNS}) for t in (1.0, 2.0, 2.0)]
    other = [({"d": [t] * RUNS}, {"p": [1.2 * t] * RUNS}) for t in (1.0, 1.0, 1.0)]
    seconds = _paired_seconds(default, [(pick, rounds), (pick, other)], {"a"})
    assert seconds == pytest.approx([1.0, 0.9, 1.2])  # default: the median of all six default runs
    assert _paired_seconds(default, [(pick, rounds)], {"a", "missing"}) is None
