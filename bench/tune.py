"""Tune benchmark models with ``convc tune`` into one shared database, recording the time spent.

    python -m bench.tune --models resnet18,mobilenetv2 --time-budget 20m --threads 2

Each model is tuned in its own ``convc tune`` process (TVM_NUM_THREADS = threads, so the
kernels are measured with the thread count they will run with) into ``bench/tuning/``;
``bench/tuning/budget.json`` records per model the budget, the wall time spent and the
thread count. ``python -m bench.run`` then adds a "tuned" variant for every model that
has an entry there (compiled with ``tuning_db=bench/tuning``).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx

from bench.suites import NETWORKS, load_model

TUNING_DIR = Path(__file__).parent / "tuning"
BUDGET_FILE = "budget.json"


def read_budget(db: Path = TUNING_DIR) -> dict[str, dict]:
    """model name -> {"budget", "seconds", "threads", "date"} for the models tuned into ``db``."""
    path = db / BUDGET_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_budget(db: Path, entries: dict[str, dict]) -> None:
    tmp = db / f".{BUDGET_FILE}.tmp"
    tmp.write_text(json.dumps(entries, indent=1, sort_keys=True))
    os.replace(tmp, db / BUDGET_FILE)


def tune_model(name: str, db: Path, time_budget: str, threads: int) -> float:
    """Run ``convc tune`` on one benchmark model; the wall seconds it took."""
    env = dict(os.environ, TVM_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(load_model(name), path)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "convc.cli", "tune", str(path), "--db", str(db),
                        "--time-budget", time_budget, "--quiet"], check=True, env=env)
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(NETWORKS))
    parser.add_argument("--time-budget", default="20m", help="per model (convc tune --time-budget)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--db", default=str(TUNING_DIR))
    args = parser.parse_args(argv)
    db = Path(args.db)
    db.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        seconds = tune_model(name, db, args.time_budget, args.threads)
        entries = read_budget(db)
        previous = entries.get(name, {}).get("seconds", 0.0)  # a resumed run adds to the time spent
        entries[name] = {"budget": args.time_budget, "seconds": round(previous + seconds, 1),
                         "threads": args.threads, "date": datetime.date.today().isoformat()}
        _write_budget(db, entries)
        print(f"{name}: tuned in {seconds:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
