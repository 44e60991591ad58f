"""`toolkit serve` on a real Triton server (the one bundled in nvidia-pytriton), the gate and the load
benchmark through it over HTTP and gRPC, and the failures a client or an operator meets.

One server (the real CLI, in its own process group, on free ports) serves the module; every test
that starts a server has a hard timeout, and teardown kills what it started. The last test stops
the module's server with SIGTERM and checks that nothing it started is left: no process, no
/dev/shm segment.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from faults import fault_env
from helpers import DATA_DIR, REFERENCE, assert_one_line_error, run_cli

from toolkit.errors import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_UNAVAILABLE
from toolkit.serve.host import alive as _alive
from toolkit.serve.host import descendants as _descendants
from toolkit.serve.host import existing_shm, server_blocks

pytest.importorskip("pytriton", reason="the serve extra is not installed (pip install 'toolkit[serve]')")
pytest.importorskip("tritonclient", reason="the serve extra is not installed (pip install 'toolkit[serve]')")

MODEL = "mnist_onnxruntime_fp32"
START_TIMEOUT_S = 120


def _shm_of(pid: int) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"pytrtion{pid}-")]  # PyTriton's segments for that server


class ServeProcess:
    """`toolkit serve` as a subprocess in its own session, with its endpoints parsed from stdout."""

    def __init__(self, tmp: Path, *extra: str):
        self.token_file = tmp / "token"
        env = {**os.environ, "TOOLKIT_DATA_DIR": str(DATA_DIR)}
        env.pop("TOOLKIT_DEBUG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "toolkit", "serve", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
             "--threads", "1", "--artifacts", str(tmp / "artifacts"), "--checkpoint", str(tmp / "artifacts" / "mnist_cnn.pt"),
             "--token-file", str(self.token_file), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
        )
        self.lines: list[str] = []
        self.children: list[int] = []
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                line = self.proc.stdout.readline()
                if not line:
                    break
                self.lines.append(line.rstrip("\n"))
                if line.startswith("Ctrl-C"):
                    break
            text = "\n".join(self.lines)
            if "Ctrl-C" not in text:
                raise AssertionError(f"toolkit serve did not start: {text}\n{self.proc.stderr.read()[-2000:]}")
            self.http_url = re.search(r"HTTP\s+(\S+)", text).group(1)
            self.grpc_url = re.search(r"gRPC\s+(\S+)", text).group(1)
            self.token = self.token_file.read_text().strip()
            self.children = _descendants(self.proc.pid)  # tritonserver, its python-backend stub, ...
        except BaseException:
            self.kill()  # whatever went wrong, the server this started does not outlive the test
            raise

    def blocks(self) -> set[str]:
        """PyTriton's tensor-store blocks (/dev/shm/psm_*) mapped by the server's processes now."""
        return server_blocks([self.proc.pid, *self.children])

    def tritonserver_pid(self) -> int:
        for pid in self.children:
            try:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "tritonserver":
                    return pid
            except OSError:
                continue
        raise AssertionError("no tritonserver process under toolkit serve")

    def kill(self) -> None:
        """Teardown of last resort: SIGKILL the whole session (server included)."""
        if self.proc.poll() is None:
            with_pgid = os.getpgid(self.proc.pid)
            os.killpg(with_pgid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        for pid in self.children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _copy_artifacts(tmp: Path) -> Path:
    art = tmp / "artifacts"
    art.mkdir(parents=True, exist_ok=True)
    for name in ("mnist_cnn.pt", "mnist_cnn.fp32.onnx", "mnist_cnn.int8-cpu.onnx"):
        shutil.copy2(REFERENCE / name, art / name)
    return art


@pytest.fixture(scope="module")
def server(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("serve")
    _copy_artifacts(tmp)
    s = ServeProcess(tmp)
    try:
        yield s
    finally:
        s.kill()


@pytest.fixture(scope="module")
def in_process_logits(test_images):
    from toolkit.backends import registry

    images, _ = test_images
    with registry.create_backend("onnxruntime", "fp32", REFERENCE / "mnist_cnn.fp32.onnx", threads=1) as b:
        return np.concatenate([b.run(images[i : i + 1000]) for i in range(0, len(images), 1000)])


# --- through the server: the gate, exact logits, the load benchmark ------------------------------

@pytest.mark.timeout(300)
def test_gate_through_server_http_and_grpc(server, in_process_logits, test_images, checkpoint, data_dir):
    """All 10,000 test images through the server over HTTP (batch 1 and 1024) and gRPC (32 and 1024):
    the gate passes, top-1 agreement with the same pair in-process is 100%, same accuracy."""
    from toolkit.parity import run_gate

    _, labels = test_images
    in_process_accuracy = 100.0 * float((in_process_logits.argmax(1) == labels).mean())
    for url, sizes in ((server.http_url, (1, 1024)), (server.grpc_url, (32, 1024))):
        report = run_gate(checkpoint=checkpoint, backends=["triton"], precisions=["fp32"], batch_sizes=sizes, data_dir=data_dir,
                          endpoint={"url": url, "model": MODEL})
        (pair,) = report.pairs
        assert pair.status == "pass", (url, pair.reason)
        assert report.images == 10_000
        assert pair.agreement == 1.0 and not pair.flips
        assert pair.accuracy == in_process_accuracy
        assert pair.runtime.startswith("triton 2.")
    # And the logits themselves: what the server returns is what the same backend returns here.
    from toolkit.backends import registry

    x, _ = test_images
    for url in (server.http_url, server.grpc_url):
        with registry.create_backend("triton", "fp32", url=url, model=MODEL) as remote:
            out = np.concatenate([remote.run(x[i : i + 1024]) for i in range(0, len(x), 1024)])
        assert np.abs(out - in_process_logits).max() <= 1e-5, url
        assert np.array_equal(out.argmax(1), in_process_logits.argmax(1))


@pytest.mark.timeout(120)
def test_eval_cli_through_server(server, checkpoint, tmp_path):
    proc = run_cli("eval", "--backend", "triton", "--url", server.http_url, "--precision", "fp32", "--model", MODEL,
                   "--batch-sizes", "1024", "--checkpoint", checkpoint, "--report-dir", tmp_path / "reports", timeout=110)
    assert proc.returncode == 0, proc.stderr
    assert "triton" in proc.stdout and "pass" in proc.stdout.lower()
    assert (tmp_path / "reports" / "parity.json").is_file()


@pytest.mark.timeout(180)
def test_load_benchmark_through_server(server, data_dir):
    """A short, bounded load benchmark: every cell answered, nothing failed or wrong, the server's own
    statistics account for every request, shared memory works."""
    from toolkit.bench.load import LoadConfig
    from toolkit.bench.serving import Target, run_serving_bench

    target = Target(http_url=server.http_url, grpc_url=server.grpc_url, token=server.token, local=True)
    config = LoadConfig(concurrencies=(1, 4), batch_sizes=(1, 64), seconds=0.5, warmup_s=0.1)
    report = run_serving_bench([("onnxruntime", "fp32")], config, target, protocols=("http", "grpc", "http+shm"),
                               artifacts_dir=REFERENCE, data_dir=data_dir, threads=1)
    rows = {(c.variant, c.concurrency, c.batch_size): c for c in report.cells}
    assert set(rows) == {("in-process", 1, 1), ("in-process", 1, 64)} | {
        (f"triton {p}", c, b) for p in ("http", "grpc", "http+shm") for c in (1, 4) for b in (1, 64)}
    for key, cell in rows.items():
        assert cell.requests > 0 and cell.failed == 0 and cell.wrong == 0, (key, cell.first_error)
        assert cell.images == cell.requests * cell.batch_size
        assert cell.p50_us <= cell.p90_us <= cell.p99_us
        if key[0].startswith("triton"):
            s = cell.server
            assert s is not None, key
            # The server saw at least the timed requests (clients' warm-up requests fall before the
            # first snapshot) and never ran more executions than requests.
            assert s.requests >= cell.requests and 0 < s.executions <= s.requests, (key, s)
            assert s.inferences == s.requests * cell.batch_size
            assert s.compute_infer_us > 0


@pytest.mark.timeout(120)
def test_bench_cli_concurrency_and_short_soak(server, tmp_path, data_dir):
    from toolkit.bench.load import run_soak
    from toolkit.bench.serving import in_process_logits, mnist_test_images, server_row
    from toolkit.serve import rss_bytes

    proc = run_cli("bench", "--backend", "triton", "--url", server.http_url, "--url", server.grpc_url, "--model", MODEL,
                   "--concurrency", "1,2", "--batch-sizes", "1", "--duration", "0.3", "--threads", "1",
                   "--artifacts", REFERENCE, "--checkpoint", REFERENCE / "mnist_cnn.pt", "--out", tmp_path / "bench", timeout=110)
    assert proc.returncode == 0, proc.stderr
    assert "triton http" in proc.stdout and "triton grpc" in proc.stdout and "in-process" in proc.stdout
    assert (tmp_path / "bench" / "load.json").is_file()
    # A short soak: mixed batch sizes at concurrency 8, every response checked, server memory watched.
    images = mnist_test_images(data_dir)
    reference = in_process_logits("onnxruntime", "fp32", images, REFERENCE, REFERENCE / "mnist_cnn.pt", threads=1)
    row = server_row("onnxruntime", "fp32", server.http_url, MODEL, server.token)
    pids = {str(p): p for p in server.children if _alive(p)}
    result = run_soak(row, images, reference, 8, (1, 8, 64), 3.0, pids, rss_bytes, 64 * 1024 * 1024, warmup_s=0.2)
    assert result.cell.requests > 0 and result.cell.failed == 0 and result.cell.wrong == 0, result.cell.first_error
    assert result.passed, result.growth


# --- what clients get wrong ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.timeout(120)
def test_client_errors_are_one_line(server, checkpoint, tmp_path):
    from toolkit.backends import registry
    from toolkit.errors import InputError, UnavailableError

    common = ("--precision", "fp32", "--batch-sizes", "1024", "--checkpoint", checkpoint, "--report-dir", tmp_path)
    proc = run_cli("eval", "--backend", "triton", "--url", f"http://127.0.0.1:{_free_port()}", *common, timeout=100)
    assert_one_line_error(proc, "no Triton server answers", code=EXIT_UNAVAILABLE)
    proc = run_cli("eval", "--backend", "triton", "--url", server.http_url, "--model", "no_such_model", *common, timeout=100)
    assert_one_line_error(proc, "'no_such_model' is not served", code=EXIT_BAD_INPUT)
    # The same checks through the Python API (each CLI start costs seconds of imports).
    plan = registry.plan_pairs
    with pytest.raises(UnavailableError, match="no Triton server answers"):
        plan(["triton"], ["fp32"], checkpoint, endpoint={"url": f"grpc://127.0.0.1:{_free_port()}", "timeout_s": 5})
    with pytest.raises(InputError, match="'no_such_model' is not served"):
        plan(["triton"], ["fp32"], checkpoint, endpoint={"url": server.grpc_url, "model": "no_such_model"})
    with pytest.raises(InputError, match="scheme"):
        plan(["triton"], ["fp32"], checkpoint, endpoint={"url": "ftp://127.0.0.1:1"})
    with pytest.raises(InputError, match="--url"):
        plan(["triton"], ["fp32"], checkpoint)
    with pytest.raises(InputError, match="one --precision with --model"):
        plan(["triton"], ["fp32", "int8"], checkpoint, endpoint={"url": server.http_url, "model": MODEL})
    # A served model that is not this precision's (the toolkit's names carry it).
    with pytest.raises(InputError, match="is fp32 .*not int8-cpu"):
        plan(["triton"], ["int8-cpu"], checkpoint, endpoint={"url": server.http_url, "model": MODEL})
    # A client that skips the toolkit's own checks (raw tritonclient, unscaled 0..255 pixels) gets an
    # error response from the served backend's input check, and the server keeps serving.
    import tritonclient.http as raw

    client = raw.InferenceServerClient(server.http_url.split("://")[1])
    bad = raw.InferInput("input", [2, 1, 28, 28], "FP32")
    bad.set_data_from_numpy(np.full((2, 1, 28, 28), 255, np.float32))
    with pytest.raises(Exception, match="expected \\[0, 1\\]"):
        client.infer(MODEL, [bad])
    good = raw.InferInput("input", [2, 1, 28, 28], "FP32")
    good.set_data_from_numpy(np.zeros((2, 1, 28, 28), np.float32))
    assert client.infer(MODEL, [good]).as_numpy("logits").shape == (2, 10)
    client.close()
    # Without --backend, a server is never contacted: only in-process backends are planned.
    assert "triton" not in {p.backend for p in plan(None, ["fp32"], checkpoint, REFERENCE)}


@pytest.mark.timeout(120)
def test_model_with_another_signature_is_refused(tmp_path, checkpoint):
    """A model whose input is not (N,1,28,28) float32 is refused at load, before any batch is sent."""
    from pytriton.decorators import batch
    from pytriton.model_config import ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    from toolkit.serve.host import free_port, python_library_path

    @batch
    def double(x):
        return {"y": x * 2}

    ports = [free_port() for _ in range(3)]
    config = TritonConfig(http_address="127.0.0.1", http_port=ports[0], grpc_address="127.0.0.1", grpc_port=ports[1],
                          metrics_port=ports[2], metrics_address="127.0.0.1", exit_timeout_secs=2, log_file=tmp_path / "log")
    triton = Triton(config=config)
    try:
        triton.bind(model_name="other", infer_func=double, inputs=[Tensor(name="x", dtype=np.int32, shape=(3,))],
                    outputs=[Tensor(name="y", dtype=np.int32, shape=(3,))], config=ModelConfig(max_batch_size=8))
        with python_library_path():  # the server copies the environment when it starts
            triton.run()
        proc = run_cli("eval", "--backend", "triton", "--url", f"http://127.0.0.1:{ports[0]}", "--model", "other",
                       "--precision", "fp32", "--batch-sizes", "1024", "--checkpoint", checkpoint, "--report-dir", tmp_path,
                       timeout=100)
        assert_one_line_error(proc, "has signature x INT32 [-1, 3]", code=EXIT_BAD_INPUT)
    finally:
        triton.stop()


# --- what operators get wrong --------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_serve_refuses_bad_setups_in_one_line(tmp_path):
    art = _copy_artifacts(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_cli("serve", "--http-port", str(port), "--grpc-port", "0", "--metrics-port", "0", "--artifacts", art,
                       "--checkpoint", art / "mnist_cnn.pt", timeout=100)
    assert_one_line_error(proc, f"http port {port} on 127.0.0.1 is in use", code=EXIT_BAD_INPUT)
    proc = run_cli("serve", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--precision", "fp16",
                   "--artifacts", art, "--checkpoint", art / "mnist_cnn.pt", timeout=100)
    assert_one_line_error(proc, "mnist_cnn.fp16.onnx", "missing", code=EXIT_BAD_INPUT)
    proc = run_cli("serve", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--artifacts", art,
                   "--checkpoint", art / "mnist_cnn.pt", env=fault_env(tmp_path, hide=("pytriton",)), timeout=100)
    assert_one_line_error(proc, "pytriton", code=EXIT_UNAVAILABLE)
    proc = run_cli("serve", "--backend", "triton", "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", timeout=100)
    assert_one_line_error(proc, "in-process backends", code=EXIT_BAD_INPUT)
    assert not _shm_of(os.getpid())


@pytest.mark.timeout(180)
def test_server_killed_mid_eval_fails_the_pair(tmp_path, checkpoint):
    """The server dies while the gate runs through it: that pair fails with one line, the run ends
    (no hang), `toolkit serve` reports the death, and nothing is left running."""
    _copy_artifacts(tmp_path)
    s = ServeProcess(tmp_path)
    try:
        env = {**os.environ, "TOOLKIT_DATA_DIR": str(DATA_DIR)}
        env.pop("TOOLKIT_DEBUG", None)
        evaluation = subprocess.Popen(
            [sys.executable, "-m", "toolkit", "eval", "--backend", "triton", "--url", s.http_url, "--precision", "fp32",
             "--batch-sizes", "1", "--checkpoint", str(checkpoint), "--report-dir", str(tmp_path / "reports")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        # Kill once the gate's requests are arriving (10,000 requests at batch 1 take ~20 s).
        from toolkit.backends import registry

        with registry.create_backend("triton", "fp32", url=s.http_url, model=MODEL, token=s.token) as probe:
            deadline = time.monotonic() + 90
            while int((probe.statistics() or {}).get("inference_count", 0)) < 200 and time.monotonic() < deadline:
                time.sleep(0.2)
        assert evaluation.poll() is None, evaluation.communicate()
        blocks = s.blocks()
        assert blocks  # requests went through the tensor store
        os.kill(s.tritonserver_pid(), signal.SIGKILL)
        out, err = evaluation.communicate(timeout=90)
        assert evaluation.returncode == EXIT_CHECK_FAILED, err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: parity gate failed: triton/fp32 error"), err
        assert "Traceback" not in err
        assert s.proc.wait(timeout=60) == EXIT_CHECK_FAILED
        serve_err = s.proc.stderr.read()
        assert "exited on its own" in serve_err, serve_err
        assert not [p for p in s.children if _alive(p)]  # orphans of the killed server were ended
        assert not _shm_of(s.proc.pid) and not existing_shm(blocks)
    finally:
        s.kill()


@pytest.mark.timeout(120)
def test_sigterm_stops_the_server_cleanly(server):
    """Last in this module: SIGTERM stops `toolkit serve` within seconds, exit 0, and every process
    it started and every /dev/shm segment it made are gone; the token file is removed."""
    assert server.children and all(_alive(p) for p in [server.tritonserver_pid()])
    blocks = server.blocks()
    assert blocks  # the module's requests went through the tensor store
    t0 = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) == 0, server.proc.stderr.read()
    assert time.monotonic() - t0 < 30
    out = server.proc.stdout.read()
    assert "nothing left running" in out, out
    assert not [p for p in server.children if _alive(p)]
    assert not _shm_of(server.proc.pid) and not existing_shm(blocks)
    assert not server.token_file.exists()
