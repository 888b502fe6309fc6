"""convc tune --rpc-tracker on loopback: TVM's own tracker and two servers on 127.0.0.1.

Every process is started in its own session and killed (with its forked session workers)
when the module's tests end, pass or fail.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import onnx
import pytest

pytest.importorskip("tornado")  # TVM's tracker needs it (the dev extra installs it)

from tvm import rpc  # noqa: E402

from convc.errors import ConvcError  # noqa: E402
from convc.tune import Database, tune  # noqa: E402
from convc.tune.measure import Timing  # noqa: E402
from convc.tune.progress import Progress  # noqa: E402
from convc.zoo.registry import build  # noqa: E402

KEY = "convc-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def servers(port: int) -> int:
    summary = rpc.connect_tracker("127.0.0.1", port).summary()
    return sum(1 for s in summary["server_info"] if s["key"] == f"server:{KEY}")


@pytest.fixture(scope="module")
def tracker():
    port = free_port()
    procs = [start(["tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                    "--port-end", str(port + 1)])]
    try:
        for _ in range(2):
            server_port = free_port()
            procs.append(start(["tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(server_port),
                                "--port-end", str(server_port + 1), "--tracker", f"127.0.0.1:{port}",
                                "--key", KEY]))
        deadline = time.monotonic() + 90
        while True:
            try:
                if servers(port) == 2:
                    break
            except Exception:  # the tracker is not listening yet
                pass
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                pytest.fail("the RPC tracker and its two servers did not come up")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this test created for it
            except ProcessLookupError:
                pass
            proc.wait()


def test_tuning_through_the_tracker_measures_on_its_servers(tracker, tmp_path):
    model = tmp_path / "tiny.onnx"
    onnx.save(build("tiny", image_size=16), model)
    report = tune(str(model), str(tmp_path / "db"), trials=6, rpc_tracker=tracker, rpc_key=KEY,
                  timing=Timing(repeat=2, min_repeat_ms=1), progress=Progress(quiet=True))
    records = Database(tmp_path / "db").records()
    assert report.trials_run == len(records) == 6
    assert all(r.device == f"rpc:{KEY}" and r.status == "ok" and r.seconds > 0 for r in records)


def test_an_unknown_key_or_tracker_is_a_convc_error(tracker, tmp_path):
    model = tmp_path / "tiny.onnx"
    onnx.save(build("tiny", image_size=16), model)
    with pytest.raises(ConvcError, match="no server registered with key 'nobody'"):
        tune(str(model), str(tmp_path / "db"), trials=1, rpc_tracker=tracker, rpc_key="nobody")
    with pytest.raises(ConvcError, match="expected HOST:PORT"):
        tune(str(model), str(tmp_path / "db"), trials=1, rpc_tracker="localhost", rpc_key=KEY)
