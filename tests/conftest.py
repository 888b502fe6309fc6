"""Test-wide settings: one TVM thread per pytest worker (the suite runs with -n 2 on 2 cores)."""
import os

os.environ.setdefault("TVM_NUM_THREADS", "1")
