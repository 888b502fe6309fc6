"""Autotuning: measure every applicable conv kernel config per task, keep the best in a database.

    tasks = extract_tasks(graph, target)           # one Task per distinct conv problem
    report = tune(model, db_dir, trials=64)        # measured records appended to db_dir
    convc.compile(model, tuning_db=db_dir)         # the best record per task is compiled

See ``task`` (signatures), ``database`` (the record files), ``search`` (which configs, in
what order), ``measure`` (local and RPC timers) and ``tuner`` (the budget loop).
"""
from convc.tune.apply import Tuned, load_tuned
from convc.tune.database import Database, Record
from convc.tune.task import Task, TargetKey, extract_tasks
from convc.tune.tuner import TuneReport, tune

__all__ = ["Database", "Record", "Task", "TargetKey", "TuneReport", "Tuned", "extract_tasks", "load_tuned",
           "tune"]
