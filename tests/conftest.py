"""Test-wide settings: one TVM thread per pytest worker (the suite runs with -n 2 on 2 cores);
tests marked ``gpu`` run CUDA kernels and are skipped where there is no CUDA device."""
import os

import pytest

os.environ.setdefault("TVM_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    gpu_tests = [item for item in items if "gpu" in item.keywords]
    if not gpu_tests:
        return
    from convc.runtime import cuda_missing
    reason = cuda_missing()
    if reason:
        for item in gpu_tests:
            item.add_marker(pytest.mark.skip(reason=f"gpu test: {reason}"))
