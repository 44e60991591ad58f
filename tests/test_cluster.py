"""`toolkit serve-cluster`: the toolkit's model on a real two-node Ray cluster (head + one worker,
separate `ray start` processes with 1 CPU each, on 127.0.0.1), through its Open Inference Protocol
v2 endpoint with the unchanged `triton` client backend: the full parity gate, the load benchmark,
malformed requests, autoscaling and failover when the worker node is killed. Every Ray process the
module starts is found by the cluster's own temp dir and must be gone at the end.

The request codec (`toolkit.cluster.protocol`) and the bad-input paths of the command are checked
without a cluster first.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from helpers import REFERENCE, assert_one_line_error, run_cli

from toolkit.cluster import protocol
from toolkit.cluster.deploy import ClusterConfig, parse_address
from toolkit.errors import InputError

MODEL = "mnist_onnxruntime_fp32"
FILES = dict(artifacts_dir=str(REFERENCE), checkpoint=str(REFERENCE / "mnist_cnn.pt"))
CLI_FILES = ("--artifacts", REFERENCE, "--checkpoint", REFERENCE / "mnist_cnn.pt")
FAILOVER_BOUND_S = 60.0  # measured here: see the failover test's output and the docs
SCALE_BOUND_S = 60.0


# --- the v2 codec, no cluster -----------------------------------------------------------------

def _binary_request(batch: np.ndarray, declared: int | None = None) -> tuple[bytes, str]:
    raw = batch.astype("<f4").tobytes()
    head = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": list(batch.shape),
                                   "parameters": {"binary_data_size": declared if declared is not None else len(raw)}}],
                       "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    return head + raw, str(len(head))


def test_binary_and_json_requests_give_the_same_batch():
    batch = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    body, length = _binary_request(batch)
    got, binary = protocol.parse_infer_request(body, length, 8)
    assert binary and np.array_equal(got, batch)
    doc = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [3, 1, 28, 28], "data": batch.tolist()}]}
    got, binary = protocol.parse_infer_request(json.dumps(doc).encode(), None, 8)
    assert not binary and np.array_equal(got, batch)


def test_binary_response_round_trips_through_tritonclient():
    import tritonclient.http as httpclient

    logits = np.random.default_rng(1).normal(size=(4, 10)).astype(np.float32)
    body, headers = protocol.infer_response(MODEL, "r1", logits, binary=True)
    result = httpclient.InferResult.from_response_body(body, header_length=int(headers[protocol.HEADER_LENGTH]))
    assert np.array_equal(result.as_numpy("logits"), logits)
    body, _ = protocol.infer_response(MODEL, None, logits, binary=False)
    assert np.allclose(np.asarray(json.loads(body)["outputs"][0]["data"]).reshape(4, 10), logits)


BAD_REQUESTS = [
    (b"not json", None, "not JSON"),
    (b'{"inputs": []}', None, "exactly one input"),
    (b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": []}]}', None, "unknown input"),
    (b'{"inputs": [{"name": "input", "datatype": "INT8", "shape": [1, 1, 28, 28], "data": []}]}', None, "datatype"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 28, 28], "data": []}]}', None, "shape"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [9, 1, 28, 28], "data": []}]}', None, "outside 1..8"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": [1, 2]}]}', None, "784"),
    (b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "data": ["a"]}]}', None, "not a list of numbers"),
    (b'{"inputs": [{"name": "input"}]}', "999", "does not fit"),
    (b'{"inputs": [{"name": "input"}]}', "abc", "byte count"),
]


@pytest.mark.parametrize("body,length,words", BAD_REQUESTS)
def test_malformed_requests_are_one_line_400s(body, length, words):
    with pytest.raises(protocol.V2Error) as info:
        protocol.parse_infer_request(body, length, 8)
    assert info.value.status == 400 and words.lower() in str(info.value).lower() and "\n" not in str(info.value)


def test_binary_size_must_match_the_shape():
    body, length = _binary_request(np.zeros((2, 1, 28, 28), np.float32), declared=100)
    with pytest.raises(protocol.V2Error, match="binary input"):
        protocol.parse_infer_request(body, length, 8)


def test_addresses_and_replica_settings_are_checked_before_anything_runs():
    assert parse_address("auto") == ("auto", None)
    assert parse_address("127.0.0.1:6379") == ("127.0.0.1:6379", ("127.0.0.1", 6379))
    assert parse_address("ray://h:10001") == ("ray://h:10001", ("h", 10001))
    for bad in ("http://h:1", "h", "h:x", "ray://h"):
        with pytest.raises(InputError):
            parse_address(bad)
    with pytest.raises(InputError, match="go together"):
        ClusterConfig(min_replicas=1)
    with pytest.raises(InputError, match="min <= max"):
        ClusterConfig(min_replicas=3, max_replicas=2)


# --- bad input through the command, no cluster --------------------------------------------------

def _tkray_dirs() -> set[str]:
    return {d for d in os.listdir("/tmp") if d.startswith("tkray-")}


def test_unreachable_cluster_address_is_one_line_exit_3():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    t0 = time.monotonic()
    proc = run_cli("serve-cluster", "--address", f"127.0.0.1:{port}", "--port", "0", *CLI_FILES, timeout=120)
    assert_one_line_error(proc, "no Ray cluster answers", code=3)
    assert time.monotonic() - t0 < 60


def test_a_model_file_that_fails_its_checks_stops_before_any_deployment(tmp_path):
    (tmp_path / "mnist_cnn.fp32.onnx").write_bytes(b"\x08\x07 not an onnx model")
    before = _tkray_dirs()
    proc = run_cli("serve-cluster", "--port", "0", "--artifacts", tmp_path, "--checkpoint", REFERENCE / "mnist_cnn.pt", timeout=120)
    assert_one_line_error(proc, "onnx", code=2)
    assert _tkray_dirs() <= before  # no local cluster was started


def test_a_port_in_use_is_refused_before_any_deployment():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        before = _tkray_dirs()
        proc = run_cli("serve-cluster", "--port", s.getsockname()[1], *CLI_FILES, timeout=120)
    assert_one_line_error(proc, "in use", code=2)
    assert _tkray_dirs() <= before


# --- a real two-node cluster ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster():
    pytest.importorskip("ray.serve", reason="the cluster extra (ray[serve]) is not installed")
    from toolkit.cluster.nodes import LocalCluster

    shm_before = set(os.listdir("/dev/shm"))
    c = LocalCluster(nodes=2, cpus=1.0).start()
    try:
        yield c
    finally:
        left = c.stop()
        assert not left, f"Ray processes left running: {left}"
        assert not c.processes()
        # other users of this machine (toolkit serve's PyTriton segments are named toolkit-*) are not ours
        new = {n for n in set(os.listdir("/dev/shm")) - shm_before if not n.startswith("toolkit-")}
        assert not new, f"shared memory left behind: {new}"


def _deploy(cluster, **options):
    from toolkit.cluster.deploy import ClusterDeployment

    d = ClusterDeployment(ClusterConfig(port=0, **FILES, **options), cluster=cluster)
    d.start()
    return d


@pytest.fixture(scope="module")
def fixed(cluster):
    d = _deploy(cluster, replicas=2)
    yield d
    d.stop()


def test_two_replicas_run_one_on_each_node(fixed, cluster):
    replicas = fixed.info.replicas
    assert len(replicas) == 2 and {r.node for r in replicas} == {"head", next(r.node for r in replicas if r.node != "head")}
    assert len({r.node_id for r in replicas}) == 2
    assert len(fixed.info.nodes) == 2


def test_the_gate_through_the_cluster_matches_in_process(fixed, tmp_path):
    from toolkit.bench.serving import in_process_logits, mnist_test_images
    from toolkit.files.outputs import list_output_files, load_outputs

    proc = run_cli("eval", "--backend", "triton", "--url", fixed.info.http_url, "--model", MODEL, "--precision", "fp32",
                   "--batch-sizes", "1024", "--report-dir", tmp_path / "report", "--save-outputs", tmp_path / "out", *CLI_FILES,
                   timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "PASS" in proc.stdout and "100.00" in proc.stdout
    served = load_outputs(list_output_files(tmp_path / "out")[0]).logits[1024]
    images = mnist_test_images()
    local = in_process_logits("onnxruntime", "fp32", images, REFERENCE, REFERENCE / "mnist_cnn.pt")
    assert served.shape == (10000, 10)
    assert np.array_equal(served.argmax(1), local.argmax(1))
    assert float(np.abs(served - local).max()) <= 1e-5
    parity = json.loads((tmp_path / "report" / "parity.json").read_text())
    assert "99.31" in json.dumps(parity) or "0.9931" in json.dumps(parity)


def test_the_load_benchmark_through_the_cluster(fixed, tmp_path):
    proc = run_cli("bench", "--url", fixed.info.http_url, "--model", MODEL, "--concurrency", "1,4,16", "--batch-sizes", "1,256",
                   "--duration", "1", "--out", tmp_path, *CLI_FILES, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    print(proc.stdout)
    cells = [c for c in json.loads((tmp_path / "load.json").read_text())["cells"] if c["variant"] != "in-process"]
    assert sorted((c["concurrency"], c["batch_size"]) for c in cells) == [(1, 1), (1, 256), (4, 1), (4, 256), (16, 1), (16, 256)]
    for c in cells:
        assert c["failed"] == 0 and c["wrong"] == 0 and c["requests"] > 0, c
        replicas = c["server"]["replicas"]
        assert replicas and sum(r["requests"] for r in replicas.values()) == c["server"]["requests"], c["server"]
    # at concurrency 16 Ray routes to both replicas, one per node
    for c in cells:
        if c["concurrency"] == 16:
            assert len({r["node"] for r in c["server"]["replicas"].values()}) == 2, c["server"]["replicas"]
    assert "replicas on 2 nodes served" in proc.stdout


def _post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_malformed_requests_get_one_line_and_the_endpoint_keeps_serving(fixed):
    url = f"{fixed.info.http_url}/v2/models/{MODEL}/infer"
    nan = np.full((1, 1, 28, 28), np.nan, np.float32)
    cases = [(b"{", {}), (b'{"inputs": []}', {}), (*_binary_request(np.zeros((1, 1, 28, 28), np.float32), declared=5)[:1], {}),
             (_binary_request(nan)[0], {"Inference-Header-Content-Length": _binary_request(nan)[1]}),
             (_binary_request(np.full((1, 1, 28, 28), 255, np.float32))[0],
              {"Inference-Header-Content-Length": _binary_request(np.zeros((1, 1, 28, 28)))[1]})]
    for body, headers in cases:
        status, text = _post(url, body, headers)
        assert status == 400, (status, text)
        message = json.loads(text)["error"]
        assert "\n" not in message and "Traceback" not in message and ".py" not in message and "/tmp" not in message
    status, text = _post(f"{fixed.info.http_url}/v2/models/nope/infer", b"{}")
    assert status == 404 and "unknown model" in json.loads(text)["error"]
    from toolkit.backends import registry

    with registry.create_backend("triton", "fp32", url=fixed.info.http_url, model=MODEL) as b:
        assert b.run(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)


def _replica_count(d) -> int:
    """RUNNING replicas of the model, as Ray Serve counts them."""
    return d.replica_states().get(MODEL, {}).get("RUNNING", 0)


def test_autoscaling_goes_to_two_replicas_under_load_and_back(fixed, cluster):
    from toolkit.backends import registry

    fixed.stop()
    d = _deploy(cluster, min_replicas=1, max_replicas=2, downscale_delay_s=3.0, upscale_delay_s=1.0)
    stop = threading.Event()
    errors = []

    def client():
        try:
            with registry.create_backend("triton", "fp32", url=d.info.http_url, model=MODEL) as b:
                x = np.zeros((64, 1, 28, 28), np.float32)
                while not stop.is_set():
                    b.run(x)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    try:
        assert _replica_count(d) == 1
        threads = [threading.Thread(target=client, daemon=True) for _ in range(16)]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        while _replica_count(d) < 2 and time.monotonic() - t0 < SCALE_BOUND_S:
            time.sleep(0.5)
        up_s = time.monotonic() - t0
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert _replica_count(d) == 2, f"no second replica after {up_s:.0f}s at concurrency 16: {d.replica_states()}, {errors[:1]}"
        t1 = time.monotonic()
        while _replica_count(d) > 1 and time.monotonic() - t1 < SCALE_BOUND_S:
            time.sleep(0.5)
        down_s = time.monotonic() - t1
        assert _replica_count(d) == 1, f"still 2 replicas {down_s:.0f}s after the load stopped"
        assert not errors, errors[0]
        print(f"autoscaling: 1 -> 2 replicas {up_s:.1f}s into the load, 2 -> 1 {down_s:.1f}s after it stopped")
    finally:
        d.stop()


def test_failover_when_the_worker_node_dies(cluster):
    from toolkit.backends import registry
    from toolkit.bench.load import run_cell
    from toolkit.bench.serving import in_process_logits, mnist_test_images

    d = _deploy(cluster, replicas=2)
    try:
        assert {r.node for r in d.info.replicas} != {"head"}
        images = mnist_test_images()[:2048]
        reference = in_process_logits("onnxruntime", "fp32", images, REFERENCE, REFERENCE / "mnist_cnn.pt")
        from toolkit.bench.load import LoadRow

        row = LoadRow("onnxruntime", "fp32", "triton http",
                      lambda: registry.create_backend("triton", "fp32", url=d.info.http_url, model=MODEL, timeout_s=10))
        result = {}
        load = threading.Thread(target=lambda: result.setdefault("cell", run_cell(row, images, reference, 4, (1,), 25.0, 0.3, 1e-4)))
        load.start()
        time.sleep(5)
        killed_at = time.monotonic()
        assert cluster.kill_node("worker-1") > 0
        recovered = None
        while time.monotonic() - killed_at < FAILOVER_BOUND_S:
            replicas = d.replicas()
            if len(replicas) == 2 and all(r.node == "head" for r in replicas):
                recovered = time.monotonic() - killed_at
                break
            time.sleep(0.25)
        load.join(timeout=120)
        cell = result["cell"]
        print(f"failover: {cell.failed} failed of {cell.requests + cell.failed} requests, {cell.wrong} wrong; "
              f"2 replicas on the head {recovered if recovered is None else round(recovered, 1)}s after the kill")
        assert recovered is not None, f"the lost replica was not replaced on the head within {FAILOVER_BOUND_S:.0f}s"
        assert cell.wrong == 0 and cell.requests > 0
        assert cell.failed < cell.requests  # bounded: the gap, not the run
        with registry.create_backend("triton", "fp32", url=d.info.http_url, model=MODEL) as b:
            assert np.array_equal(b.run(images[:16]).argmax(1), reference[:16].argmax(1))
    finally:
        d.stop()


def test_the_command_prints_where_replicas_run_and_sigterm_leaves_nothing(tmp_path):
    """The real command on a local one-node cluster: endpoint, replicas and nodes printed; SIGTERM
    removes the deployment and stops the cluster, with no process of it left."""
    import signal
    import subprocess
    import sys

    from helpers import DATA_DIR, ROOT

    from toolkit.cluster.nodes import end_processes, processes_naming

    pytest.importorskip("ray.serve", reason="the cluster extra (ray[serve]) is not installed")
    env = {**os.environ, "TOOLKIT_DATA_DIR": str(DATA_DIR)}
    stderr = open(tmp_path / "stderr", "w+")  # noqa: SIM115 - read after the process ends
    proc = subprocess.Popen([sys.executable, "-m", "toolkit", "serve-cluster", "--port", "0", *map(str, CLI_FILES)],
                            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=ROOT, env=env)
    lines, temp_dir = [], ""
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "temp dir" in line:
                temp_dir = line.rsplit(" ", 1)[1].strip()
            if line.startswith("ready"):
                break
        text = "".join(lines)
        assert "ready" in text, text + (tmp_path / "stderr").read_text()
        url = re.search(r"endpoint \(Open Inference Protocol v2, HTTP\): (\S+)", text).group(1)
        assert re.search(r"mnist_onnxruntime_fp32\s+\w{8}\s+head", text), text
        assert temp_dir and processes_naming(temp_dir)
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=10) as resp:
            assert resp.status == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        left = processes_naming(temp_dir)  # before the clean-up below, which is for a failed test
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        stderr.close()
        if temp_dir:  # the test failed half-way: its cluster goes regardless
            end_processes(processes_naming(temp_dir))
    err = (tmp_path / "stderr").read_text()
    assert proc.returncode == 0, err
    assert "nothing left running" in out, out + err
    assert not left and not os.path.exists(temp_dir)
