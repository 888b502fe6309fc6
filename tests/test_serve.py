"""`convc serve` under the official Triton clients (tritonclient.http / tritonclient.grpc).

The server runs in a subprocess on 127.0.0.1 with ephemeral ports. Oracles: onnxruntime on
the ONNX models the libraries were compiled from. The test process never imports kserve
(it registers the same protobuf names as tritonclient.grpc; the two cannot share a process).
"""
from __future__ import annotations

import http.client
import importlib.util
import json
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import convc
from convc import cli, zoo
from convc.serve import ModelConfig, read_config, scan_repository, write_config
from convc.serve.config import RepositoryError

if importlib.util.find_spec("kserve") is None:  # found, not imported: see the module docstring
    pytest.skip("needs the serve extra (kserve)", allow_module_level=True)
httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

MAX_REQUEST_BYTES = 1 << 20
BATCH = 4
RTOL = ATOL = 1e-4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `convc serve` subprocess; `stop` sends SIGTERM and returns its exit status and log."""

    def __init__(self, repository: Path):
        self.http_port, self.grpc_port = free_port(), free_port()
        self.http_url, self.grpc_url = f"127.0.0.1:{self.http_port}", f"127.0.0.1:{self.grpc_port}"
        self.log = repository.parent / f"serve-{self.http_port}.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "convc", "serve", str(repository), "--host", "127.0.0.1",
                 "--port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                 "--max-request-bytes", str(MAX_REQUEST_BYTES)], stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, timeout: float = 90) -> None:
        client = httpclient.InferenceServerClient(self.http_url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"convc serve exited with {self.process.returncode}:\n{self.log.read_text()}")
            try:
                if client.is_server_ready():
                    grpcclient.InferenceServerClient(self.grpc_url).is_server_ready()
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.3)
        raise RuntimeError(f"convc serve not ready after {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode, self.log.read_text()


@pytest.fixture(scope="module")
def onnx_models() -> dict[str, onnx.ModelProto]:
    """tiny version 1 and 2 (different weights), and tiny compiled for batch 4."""
    return {"tiny/1": zoo.build("tiny", seed=0), "tiny/2": zoo.build("tiny", seed=1),
            "tiny4/1": zoo.build("tiny", batch=BATCH, seed=2)}


@pytest.fixture(scope="module")
def repository(tmp_path_factory, onnx_models) -> Path:
    root = tmp_path_factory.mktemp("serve") / "models"
    for key, model in onnx_models.items():
        path = tmp_path_factory.getbasetemp() / f"{key.replace('/', '_')}.onnx"
        onnx.save(model, path)
        result = subprocess.run([sys.executable, "-m", "convc", "compile", str(path), "--repo", str(root / key)],
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def server(repository):
    server = Server(repository)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def oracle(onnx_models):
    """oracle(key, x) -> onnxruntime's output for x; a batched model's input is zero-padded to its batch."""
    sessions = {k: ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
                for k, m in onnx_models.items()}

    def run(key: str, x: np.ndarray) -> np.ndarray:
        session = sessions[key]
        want = session.get_inputs()[0].shape[0]
        padded = np.concatenate([x, np.zeros((want - x.shape[0],) + x.shape[1:], x.dtype)])
        return session.run(None, {"input": padded})[0][: x.shape[0]]
    return run


def image(seed: int, n: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 32, 32)).astype(np.float32)


def infer(protocol: str, url: str, model: str, x: np.ndarray, version: str = "", binary: bool = True,
          datatype: str = "FP32", name: str = "input"):
    """One request through the official client; returns (output array, response parameters)."""
    lib = httpclient if protocol == "http" else grpcclient
    client = lib.InferenceServerClient(url)
    tensor = lib.InferInput(name, list(x.shape), datatype)
    if protocol == "http":
        tensor.set_data_from_numpy(x, binary_data=binary)
        outputs = [httpclient.InferRequestedOutput("fc", binary_data=binary)]
    else:
        tensor.set_data_from_numpy(x)
        outputs = [grpcclient.InferRequestedOutput("fc")]
    result = client.infer(model, [tensor], model_version=version, outputs=outputs)
    response = result.get_response()
    if protocol == "http":
        params = response.get("parameters", {})
    else:
        params = {k: v.int64_param for k, v in response.parameters.items()}
    return result.as_numpy("fc"), params, response


PROTOCOLS = ["http", "grpc"]


def url(server: Server, protocol: str) -> str:
    return server.http_url if protocol == "http" else server.grpc_url


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_health_and_readiness(server, protocol):
    lib = httpclient if protocol == "http" else grpcclient
    client = lib.InferenceServerClient(url(server, protocol))
    assert client.is_server_live() and client.is_server_ready()
    for model, version in [("tiny", ""), ("tiny", "1"), ("tiny", "2"), ("tiny4", ""), ("tiny4", "1")]:
        assert client.is_model_ready(model, version)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_metadata_has_real_names_shapes_datatypes(server, protocol):
    lib = httpclient if protocol == "http" else grpcclient
    client = lib.InferenceServerClient(url(server, protocol))
    for model, version, batch_dim in [("tiny", "", 1), ("tiny", "1", 1), ("tiny4", "", -1)]:
        meta = client.get_model_metadata(model, version, as_json=True) if protocol == "grpc" else \
            client.get_model_metadata(model, version)
        assert meta["name"] == model
        assert meta["versions"] == (["1", "2"] if model == "tiny" else ["1"])
        [inp], [out] = meta["inputs"], meta["outputs"]
        assert (inp["name"], inp["datatype"], [int(d) for d in inp["shape"]]) == ("input", "FP32", [batch_dim, 3, 32, 32])
        assert (out["name"], out["datatype"], [int(d) for d in out["shape"]]) == ("fc", "FP32", [batch_dim, 10])


@pytest.mark.parametrize("protocol,binary", [("http", True), ("http", False), ("grpc", True)])
@pytest.mark.parametrize("version", ["", "1", "2"])
def test_inference_matches_onnxruntime(server, oracle, protocol, binary, version):
    x = image(10)
    got, _, response = infer(protocol, url(server, protocol), "tiny", x, version=version, binary=binary)
    key = f"tiny/{version or 2}"
    np.testing.assert_allclose(got, oracle(key, x), rtol=RTOL, atol=ATOL)
    served = response["model_version"] if protocol == "http" else response.model_version
    assert served == (version or "2")


def test_versions_differ(server, oracle):
    x = image(11)
    v1, _, _ = infer("http", server.http_url, "tiny", x, version="1")
    v2, _, _ = infer("http", server.http_url, "tiny", x, version="2")
    assert not np.allclose(v1, v2)  # the versions really are different libraries


@pytest.mark.parametrize("samples", [1, 2, BATCH])
def test_batched_model_takes_1_to_batch_samples(server, oracle, samples):
    x = image(20 + samples, samples)
    for protocol in PROTOCOLS:
        got, _, _ = infer(protocol, url(server, protocol), "tiny4", x)
        assert got.shape == (samples, 10)
        np.testing.assert_allclose(got, oracle("tiny4/1", x), rtol=RTOL, atol=ATOL)


def test_concurrent_requests_are_merged_without_changing_results(server, oracle):
    inputs = [image(100 + i) for i in range(16)]
    results: list = [None] * len(inputs)
    start = threading.Barrier(len(inputs))

    def send(i: int) -> None:
        start.wait()
        results[i] = infer(PROTOCOLS[i % 2], url(server, PROTOCOLS[i % 2]), "tiny4", inputs[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for x, (got, _, _) in zip(inputs, results):
        np.testing.assert_allclose(got, oracle("tiny4/1", x), rtol=RTOL, atol=ATOL)
    assert max(params["convc_requests_in_run"] for _, params, _ in results) > 1


def percentiles(seconds: list[float]) -> str:
    ms = np.array(seconds) * 1e3
    return ", ".join(f"p{q} {np.percentile(ms, q):.2f} ms" for q in (50, 90, 99))


def test_load_8_clients_x_50_requests(server, oracle, repository):
    """8 concurrent clients (4 REST, 4 gRPC) x 50 requests; every response checked; numbers printed."""
    clients, per_client = 8, 50
    inputs = [image(200 + i) for i in range(clients)]
    expected = [oracle("tiny/2", x) for x in inputs]
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures: list[str] = []

    def client(i: int) -> None:
        protocol = PROTOCOLS[i % 2]
        lib = httpclient if protocol == "http" else grpcclient
        conn = lib.InferenceServerClient(url(server, protocol))
        tensor = lib.InferInput("input", [1, 3, 32, 32], "FP32")
        tensor.set_data_from_numpy(inputs[i])
        for _ in range(per_client):
            start = time.perf_counter()
            try:
                got = conn.infer("tiny", [tensor]).as_numpy("fc")
            except InferenceServerException as err:
                failures.append(f"client {i}: {err}")
                continue
            latencies[i].append(time.perf_counter() - start)
            if not np.allclose(got, expected[i], rtol=RTOL, atol=ATOL):
                failures.append(f"client {i}: wrong result")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    assert not failures, failures[:5]
    done = [s for per in latencies for s in per]
    assert len(done) == clients * per_client

    # the same library called directly, and one client sending sequentially, for the overhead
    direct = convc.load(repository / "tiny" / "2" / "model.so")
    direct.run({"input": inputs[0]})
    direct_s = [_timed(lambda: direct.run({"input": inputs[0]})) for _ in range(200)]
    single = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("input", [1, 3, 32, 32], "FP32")
    tensor.set_data_from_numpy(inputs[0])
    single_s = [_timed(lambda: single.infer("tiny", [tensor])) for _ in range(100)]
    print(f"\n[load] {clients} clients x {per_client} requests: {len(done) / wall:.0f} req/s over {wall:.2f} s; "
          f"latency {percentiles(done)}"
          f"\n[overhead] direct run() median {statistics.median(direct_s) * 1e3:.3f} ms; one REST client "
          f"median {statistics.median(single_s) * 1e3:.3f} ms; server overhead "
          f"{(statistics.median(single_s) - statistics.median(direct_s)) * 1e3:.3f} ms per request")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ---- bad requests: each gets a 4xx (or the gRPC equivalent) with a message; the server keeps serving


BAD_REQUESTS = {
    # name: (model, version, input array, datatype, tensor name, status, message fragment)
    "unknown model": ("nope", "", image(1), "FP32", "input", "404", "nope"),
    "unknown version": ("tiny", "7", image(1), "FP32", "input", "404", "version 7"),
    "wrong tensor name": ("tiny", "", image(1), "FP32", "image", "400", "unknown input tensor(s) 'image'"),
    "wrong shape": ("tiny", "", np.zeros((1, 3, 16, 16), np.float32), "FP32", "input", "400",
                    "has shape [1, 3, 16, 16], expected [1, 3, 32, 32]"),
    "wrong datatype": ("tiny", "", image(1).astype(np.float64), "FP64", "input", "400",
                       "has datatype FP64, expected FP32"),
    "too many samples": ("tiny4", "", image(1, BATCH + 1), "FP32", "input", "400", "with 1 to 4 samples"),
    "oversized body": ("tiny", "", np.zeros((1, 3, 300, 300), np.float32), "FP32", "input", "413",
                       "exceeds the server's limit"),
}
GRPC_STATUS = {"404": "StatusCode.NOT_FOUND", "400": "StatusCode.INVALID_ARGUMENT",
               "413": "StatusCode.RESOURCE_EXHAUSTED"}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_refused_with_a_message(server, oracle, protocol, case):
    model, version, x, datatype, name, status, message = BAD_REQUESTS[case]
    with pytest.raises(InferenceServerException) as err:
        infer(protocol, url(server, protocol), model, x, version=version, datatype=datatype, name=name)
    assert err.value.status() == (status if protocol == "http" else GRPC_STATUS[status])
    if protocol == "http" or status != "413":  # gRPC's size error comes from the gRPC library itself
        assert message in err.value.message()
    assert_still_serving(server, oracle)


def raw_post(server: Server, path: str, body: bytes, headers: dict | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    data = response.read()
    return response.status, json.loads(data) if data else {}


@pytest.mark.parametrize("path", ["/v2/models/tiny/infer", "/v2/models/tiny/versions/1/infer"])
@pytest.mark.parametrize("body,fragment", [
    (b'{"inputs": [{"name": "input", "shape": [1, 3', ""),                       # malformed JSON
    (b'{"inputs": 5}', ""),                                                      # not a V2 request
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32",
                             "data": [1.0, 2.0]}]}).encode(), "does not fit shape"),  # too little data
])
def test_malformed_request_body_is_4xx(server, oracle, path, body, fragment):
    status, reply = raw_post(server, path, body)
    assert 400 <= status < 500, (status, reply)
    assert "error" in reply or "detail" in reply
    assert fragment in json.dumps(reply)
    assert_still_serving(server, oracle)


def test_binary_header_longer_than_body_is_400(server, oracle):
    status, reply = raw_post(server, "/v2/models/tiny/infer", b'{"inputs": []}',
                             {"Inference-Header-Content-Length": "9999"})
    assert 400 <= status < 500, (status, reply)
    assert_still_serving(server, oracle)


def assert_still_serving(server: Server, oracle) -> None:
    x = image(3)
    got, _, _ = infer("http", server.http_url, "tiny", x, version="1")
    np.testing.assert_allclose(got, oracle("tiny/1", x), rtol=RTOL, atol=ATOL)


def test_clean_shutdown(repository):
    """SIGTERM: both ports close, exit status 0, no traceback in the log."""
    own = Server(repository)
    status, log = own.stop()
    assert status == 0, log
    assert "Traceback" not in log
    for port in (own.http_port, own.grpc_port):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0


# ---- the repository and its config.pbtxt, checked before anything listens


def test_config_round_trip_and_batch_dims(repository):
    text = (repository / "tiny4" / "config.pbtxt").read_text()
    assert read_config(repository / "tiny4" / "config.pbtxt") == ModelConfig("tiny4", BATCH)
    assert "dims: [ 3, 32, 32 ]" in text and "dims: [ 10 ]" in text  # batch dimension left out, as in Triton
    assert read_config(repository / "tiny" / "config.pbtxt") == ModelConfig("tiny", 0)
    assert "dims: [ 1, 3, 32, 32 ]" in (repository / "tiny" / "config.pbtxt").read_text()


def test_config_batch_must_match_library(repository, tmp_path):
    signature = convc.load(repository / "tiny" / "1" / "model.so").signature
    with pytest.raises(RepositoryError, match="do not all have leading dimension 4"):
        write_config(tmp_path, signature, max_batch_size=4)


def make_repo(root: Path, layout: dict[str, str | None]) -> Path:
    """layout: relative path -> file text (None: an empty folder)."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, text in layout.items():
        path = root / rel
        if text is None:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    return root


@pytest.mark.parametrize("layout,message", [
    ({}, "the repository has no models"),
    ({"m/1/model.so": "x"}, "m/config.pbtxt: cannot read the model configuration"),
    ({"m/config.pbtxt": 'name: "other"\n', "m/1/model.so": "x"}, "name 'other' is not the folder's name 'm'"),
    ({"m/config.pbtxt": 'name: "m"\n', "m/latest/model.so": "x"}, "no version folder with a model.so"),
])
def test_bad_repository_is_refused(tmp_path, layout, message):
    with pytest.raises(RepositoryError, match=re.escape(message)):
        scan_repository(make_repo(tmp_path / "repo", layout))


def test_serve_cli_refuses_missing_repository(tmp_path, capsys):
    assert cli.main(["serve", str(tmp_path / "absent")]) == 1
    assert "no such model repository folder" in capsys.readouterr().err


def test_compile_repo_needs_a_numeric_version(tmp_path, capsys):
    assert cli.main(["compile", "unused.onnx", "--repo", str(tmp_path / "r" / "m" / "latest")]) == 1
    assert "VERSION a positive integer" in capsys.readouterr().err


def test_server_refuses_a_config_batch_the_library_lacks(repository, tmp_path):
    repo = make_repo(tmp_path / "repo", {"m/config.pbtxt": 'name: "m"\nmax_batch_size: 4\n', "m/1": None})
    shutil.copy(repository / "tiny" / "1" / "model.so", repo / "m" / "1" / "model.so")
    result = subprocess.run([sys.executable, "-m", "convc", "serve", str(repo), "--port", str(free_port()),
                             "--grpc-port", str(free_port())], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "config max_batch_size is 4 but the library's tensors are" in result.stderr
