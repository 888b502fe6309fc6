"""Measure this machine's FP32 FMA peak with bench/peak.c (built with the system C compiler)."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("peak.c")


def measure_peak(threads: int, seconds: float = 0.5, repeats: int = 3) -> float:
    """Best of ``repeats`` runs, in GFLOP/s, with ``threads`` threads."""
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "peak"
        subprocess.run(["cc", "-O3", "-funroll-loops", "-march=native", "-pthread", str(SOURCE), "-o", str(exe)], check=True)
        runs = [float(subprocess.run([str(exe), str(threads), str(seconds)], check=True, capture_output=True,
                                     text=True).stdout) for _ in range(repeats)]
    return max(runs)


if __name__ == "__main__":
    for n in (1, 2):
        print(f"{n} thread(s): {measure_peak(n):.1f} GFLOP/s")
