"""The ``convc tune`` and ``convc db`` subcommands (added to ``convc.cli``'s parser)."""
from __future__ import annotations

import argparse
from collections import defaultdict

from convc.tune.database import Database, TuningDatabaseError, merge
from convc.tune.progress import ms


def cmd_tune(args: argparse.Namespace) -> int:
    from convc.cli import _input_shapes
    from convc.tune.measure import Timing
    from convc.tune.progress import Progress
    from convc.tune.tuner import parse_duration, tune
    report = tune(args.model, args.db, target=args.target, trials=args.trials,
                  time_budget=parse_duration(args.time_budget) if args.time_budget else None,
                  input_shapes=_input_shapes(args.input_shape), tasks=args.tasks,
                  rpc_tracker=args.rpc_tracker, rpc_key=args.rpc_key,
                  timing=Timing(args.repeat, args.min_repeat_ms, cold=not args.warm_caches),
                  progress=Progress(quiet=args.quiet),
                  dtype=args.dtype, confirm=not args.no_network_check)
    print(f"{report.trials_run} trial(s) recorded in {args.db}; compile with --tuning-db {args.db}")
    return 0


def cmd_db_show(args: argparse.Namespace) -> int:
    db = Database(args.db)
    if not db.root.is_dir():
        raise TuningDatabaseError(f"tuning database {args.db} does not exist")
    groups = defaultdict(list)
    for record in db.records():
        groups[(record.task, record.target.get("cpu"), record.target.get("cores"),
                record.versions.get("convc"), record.versions.get("tvm"))].append(record)
    print(f"{'task':<17}{'target':<22}{'versions':<22}{'records':>8}{'wrong':>6}{'best ms':>10}  "
          f"best candidate; best per candidate (ms)")
    for (task, cpu, cores, convc_v, tvm_v), records in groups.items():
        ok = [r for r in records if r.ok]
        best = min(ok, key=lambda r: r.seconds) if ok else None
        per = {}
        for r in ok:
            per[r.candidate] = min(per.get(r.candidate, r.seconds), r.seconds)
        wrong = sum(1 for r in records if r.status == "wrong")
        knobs = ",".join(f"{k}={v}" for k, v in best.knobs.items()) if best else ""
        print(f"{task:<17}{f'{cpu} x{cores}':<22}{f'convc {convc_v} tvm {tvm_v}':<22}{len(records):>8}{wrong:>6}"
              f"{ms(best.seconds if best else None):>10}  {best.candidate + '(' + knobs + ')' if best else '-'}; "
              + " ".join(f"{name} {ms(t)}" for name, t in sorted(per.items(), key=lambda kv: kv[1])))
        print(f"{'':<17}{_problem_text(records[0].problem)}")
    return 0


def _problem_text(problem: dict) -> str:
    if "expand" in problem:  # a fused expansion + depthwise pair
        return f"expand: {_problem_text(problem['expand'])} | depthwise: {_problem_text(problem['depthwise'])}"
    keys = ("in_channels", "out_channels", "in_size", "kernel", "strides", "groups", "in_block", "out_block")
    epilogue = "+".join(str(step.get("op")) for step in problem.get("epilogue", []))
    return " ".join(f"{k}={problem.get(k)}" for k in keys) + (f" epilogue={epilogue}" if epilogue else "")


def cmd_db_merge(args: argparse.Namespace) -> int:
    added, duplicates = merge(args.out, args.inputs)
    print(f"merged {added} record(s) into {args.out} ({duplicates} duplicate(s) skipped)")
    return 0


def add_commands(sub) -> None:
    """Add ``tune`` and ``db`` to the subparsers ``sub`` of the ``convc`` command."""
    p = sub.add_parser("tune", help="measure conv kernel configs of a model; records go to a tuning database")
    p.add_argument("model", help="the .onnx file")
    p.add_argument("--db", required=True, metavar="DIR", help="the tuning database directory (created if new)")
    p.add_argument("--target", default="llvm",
                   help="llvm (this CPU; default), cuda (this GPU) or cuda:sm_XX (measured over --rpc-tracker)")
    p.add_argument("--dtype", default="float32", help="float32 (default) or float16, as for `convc compile`")
    budget = p.add_argument_group("budget (at least one)")
    budget.add_argument("--trials", type=int, metavar="N",
                        help="measurements for the whole model, those already in the database included")
    budget.add_argument("--time-budget", metavar="DURATION",
                        help="wall time of this run, the in-model check included: 90s, 20m, 1h30m")
    p.add_argument("--tasks", metavar="I,J,...", help="only these task numbers (listed when tuning starts)")
    p.add_argument("--input-shape", action="append", metavar="NAME=D1,D2,...")
    p.add_argument("--rpc-tracker", metavar="HOST:PORT", help="measure on the devices of a TVM RPC tracker")
    p.add_argument("--rpc-key", metavar="KEY", help="the device key registered with the tracker")
    p.add_argument("--repeat", type=int, default=5,
                   help="with --warm-caches: timing rounds per trial; the best counts (default 5)")
    p.add_argument("--min-repeat-ms", type=int, default=50,
                   help="with --warm-caches: length of one timing round (default 50)")
    p.add_argument("--warm-caches", action="store_true",
                   help="CPU: time with the weights in cache (rounds of --min-repeat-ms, the best counts) "
                        "instead of the default: each run with its weights, bias and output flushed from "
                        "the caches, as at small batch in a network (the median of 30 runs counts)")
    p.add_argument("--no-network-check", action="store_true",
                   help="CPU: skip timing the tuned picks inside the model against the defaults after "
                        "the search (by default a task whose tuned pick is slower there keeps its default)")
    p.add_argument("--quiet", action="store_true", help="print only the summary table")
    p.set_defaults(func=cmd_tune)

    p = sub.add_parser("db", help="read or merge tuning databases")
    db_sub = p.add_subparsers(dest="db_command", required=True)
    q = db_sub.add_parser("show", help="tasks, records, best times and candidates")
    q.add_argument("db", metavar="DIR")
    q.set_defaults(func=cmd_db_show)
    q = db_sub.add_parser("merge", help="append the records of IN... missing from OUT")
    q.add_argument("out", metavar="OUT")
    q.add_argument("inputs", nargs="+", metavar="IN")
    q.set_defaults(func=cmd_db_merge)
