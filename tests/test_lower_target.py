"""Target strings to TVM targets."""
from __future__ import annotations

import os

import pytest

from convc.errors import ConvcError
from convc.target import resolve_target


def test_llvm_is_the_host_cpu():
    target = resolve_target()
    assert target.kind.name == "llvm"
    assert str(target.attrs["mcpu"]) not in ("", "generic")
    assert int(target.attrs["num-cores"]) == len(os.sched_getaffinity(0))
    assert resolve_target("llvm").attrs["mcpu"] == target.attrs["mcpu"]


@pytest.mark.parametrize("spec", ["tpu", "", "llvm:foo"])
def test_unknown_targets_are_refused(spec):
    with pytest.raises(ConvcError, match="target"):
        resolve_target(spec)
