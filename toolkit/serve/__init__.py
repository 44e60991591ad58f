"""`toolkit serve`: a real, local Triton Inference Server in front of the toolkit's own backends.

The server is the `tritonserver` binary that the `nvidia-pytriton` wheel bundles (the `serve`
extra). Each requested (backend, precision) pair is loaded in this process as a toolkit backend
and bound to Triton as a python-backend model named `mnist_<backend>_<precision>`, with Triton's
dynamic batcher in front of it: clients speak the KServe v2 protocol (HTTP or gRPC) to Triton,
Triton batches their requests and hands each batch to the backend's `run`, which checks it
against the model's input contract like any other call.

Life cycle: `LocalServer.start()` checks everything that can be checked first (the ports are
free, the model files exist, this Python has the shared libpython the python backend needs), then
starts the server and waits until every model is ready; `stop()` closes the server and reports
whether anything it started is still running (processes, /dev/shm segments). PyTriton also asks
the kernel to SIGTERM the server when this process dies (PR_SET_PDEATHSIG), so a killed
`toolkit serve` does not leave a server behind.

Statistics and shared-memory registration are restricted endpoints (PyTriton's default): a
client needs the access token, which `ServerInfo.access_token` carries for in-process users and
`toolkit serve --token-file` writes (mode 0600) for others.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.backends import registry
from toolkit.backends.triton import model_name
from toolkit.errors import CheckFailed, InputError, ToolkitError, UnavailableError
from toolkit.files import paths
from toolkit.model import IMAGE_SHAPE, INPUT_NAME, OUTPUT_NAME, OUTPUT_SHAPE
from toolkit.serve.host import (
    DEFAULT_HOST,
    alive,
    check_port_free,
    check_serving_support,
    end_processes,
    existing_shm,
    free_port,
    identity,
    python_library_path,
    remove_shm_segments,
    rss_bytes,
    same_process_alive,
    server_blocks,
    server_processes,
    shm_segments,
)

DEFAULT_PORTS = (8000, 8001, 8002)  # Triton's own defaults: HTTP, gRPC, metrics
DEFAULT_MAX_BATCH = 1024
DEFAULT_QUEUE_DELAY_US = 100
# With a client connection still open, Triton waits this long for it on shutdown (its own default
# is 30 s); in-flight requests get this long to finish.
EXIT_TIMEOUT_S = 5
STARTUP_TIMEOUT_S = 120.0
REMOTE_BACKENDS = ("triton",)  # served pairs are in-process backends only


@dataclass(frozen=True)
class ServeConfig:
    pairs: tuple[tuple[str, str], ...] = (("onnxruntime", "fp32"),)
    host: str = DEFAULT_HOST
    http_port: int = DEFAULT_PORTS[0]  # 0: any free port
    grpc_port: int = DEFAULT_PORTS[1]
    metrics_port: int = DEFAULT_PORTS[2]
    max_batch: int = DEFAULT_MAX_BATCH
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    instances: int = 1  # model instances per pair (each its own backend object)
    threads: int | None = None  # per backend instance; None: every usable core
    artifacts_dir: str = str(paths.ARTIFACTS_DIR)
    checkpoint: str = str(paths.DEFAULT_CHECKPOINT)
    startup_timeout_s: float = STARTUP_TIMEOUT_S

    def __post_init__(self):
        if not self.pairs:
            raise InputError("no (backend, precision) pair to serve", "pass --backend and --precision")
        for port, what in ((self.http_port, "http"), (self.grpc_port, "grpc"), (self.metrics_port, "metrics")):
            if not (isinstance(port, int) and 0 <= port <= 65535):
                raise InputError(f"--{what}-port must be 0..65535, got {port}", "pass a free port, or 0 for any free one")
        given = [p for p in (self.http_port, self.grpc_port, self.metrics_port) if p]
        if len(set(given)) != len(given):
            raise InputError(f"the HTTP, gRPC and metrics ports must differ, got {self.http_port}/{self.grpc_port}/{self.metrics_port}", "pass three different ports")
        if not 1 <= self.max_batch <= 65536:
            raise InputError(f"--max-batch must be 1..65536, got {self.max_batch}", "pass e.g. --max-batch 1024")
        if not 0 <= self.max_queue_delay_us <= 10_000_000:
            raise InputError(f"--max-queue-delay-us must be 0..10,000,000, got {self.max_queue_delay_us}", "pass e.g. --max-queue-delay-us 100")
        if not 1 <= self.instances <= 64:
            raise InputError(f"--instances must be 1..64, got {self.instances}", "pass e.g. --instances 1")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}", "omit it to use every core")


@dataclass(frozen=True)
class ServedModel:
    name: str
    backend: str
    precision: str
    model_path: str
    runtime: str


@dataclass(frozen=True)
class ServerInfo:
    http_url: str
    grpc_url: str
    metrics_url: str
    models: tuple[ServedModel, ...]
    max_batch: int
    max_queue_delay_us: int
    startup_seconds: float
    pids: tuple[int, ...]  # the server's processes (tritonserver and its python-backend stubs)
    access_token: str = field(default="", repr=False)  # for the restricted endpoints (statistics, shared memory)


@dataclass(frozen=True)
class StopReport:
    seconds: float
    leftover_processes: tuple[int, ...]  # still running after stop (should be empty)
    leftover_shm: tuple[str, ...]  # /dev/shm segments of this server still present (should be empty)
    server_died: bool  # the server had exited before it was asked to stop
    ended: tuple[int, ...] = ()  # processes that outlived the server's own shutdown and were ended by pid
    removed_shm: tuple[str, ...] = ()  # segments a dead server left, removed by name

    @property
    def clean(self) -> bool:
        return not self.leftover_processes and not self.leftover_shm


# --- the server -----------------------------------------------------------------------------------

def _plan(config: ServeConfig) -> list[registry.PlannedPair]:
    for backend, _ in config.pairs:
        if backend in REMOTE_BACKENDS:
            raise InputError(f"`toolkit serve` serves in-process backends, not {backend}", "pass e.g. --backend onnxruntime")
    backends = sorted({b for b, _ in config.pairs})
    precisions = sorted({p for _, p in config.pairs})
    planned = {(p.backend, p.precision): p for p in registry.plan_pairs(backends, precisions, config.checkpoint, config.artifacts_dir)}
    out = []
    for pair in config.pairs:
        if pair not in planned:
            raise InputError(f"backend {pair[0]} does not run {pair[1]}", "see `toolkit info` for which backend runs which precision")
        if not planned[pair].available:
            raise UnavailableError(f"backend {pair[0]} is unavailable: {planned[pair].reason}")
        out.append(planned[pair])
    return out


def _infer_function(backend) -> Callable:
    """The callable Triton runs for one model instance: a dynamic batch in, logits out. `run` checks
    the batch against the input contract (a client can send anything); the error goes back to that
    client as the response."""
    from pytriton.decorators import batch

    @batch
    def infer(**inputs):
        return {OUTPUT_NAME: backend.run(inputs[INPUT_NAME])}

    return infer


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


class LocalServer:
    """A local Triton server serving toolkit backends. Use as a context manager, or start()/stop()."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.info: ServerInfo | None = None
        self.stop_report: StopReport | None = None
        self._triton = None
        self._backends: list = []
        self._pids: tuple[int, ...] = ()
        self._identities: tuple[tuple[int, int], ...] = ()
        self._log_dir: tempfile.TemporaryDirectory | None = None

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> ServerInfo:
        check_serving_support()
        cfg = self.config
        planned = _plan(cfg)
        ports = []
        for port, what in ((cfg.http_port, "http"), (cfg.grpc_port, "grpc"), (cfg.metrics_port, "metrics")):
            if port:
                check_port_free(cfg.host, port, what)
                ports.append(port)
            else:
                ports.append(free_port(cfg.host))
        http_port, grpc_port, metrics_port = ports
        t0 = time.perf_counter()
        try:
            models = self._load_backends(planned)
            self._start_triton(http_port, grpc_port, metrics_port, models)
        except BaseException:
            self.stop()
            raise
        self._pids = tuple(server_processes())
        self._identities = tuple(i for i in (identity(p) for p in self._pids) if i is not None)
        self.info = ServerInfo(
            http_url=f"http://{cfg.host}:{http_port}", grpc_url=f"grpc://{cfg.host}:{grpc_port}",
            metrics_url=f"http://{cfg.host}:{metrics_port}/metrics", models=tuple(m for m, _ in models), max_batch=cfg.max_batch,
            max_queue_delay_us=cfg.max_queue_delay_us, startup_seconds=time.perf_counter() - t0, pids=self._pids,
            access_token=self._triton.get_access_token() or "",
        )
        return self.info

    def _load_backends(self, planned: list[registry.PlannedPair]) -> list[tuple[ServedModel, list]]:
        """One loaded backend per model instance, for each pair."""
        models = []
        for pair in planned:
            instances = []
            for _ in range(self.config.instances):
                backend = registry.create_backend(pair.backend, pair.precision, pair.model_path, threads=self.config.threads)
                self._backends.append(backend)
                backend.load()  # a bad model file is refused here, before the server starts
                instances.append(backend)
            served = ServedModel(model_name(pair.backend, pair.precision), pair.backend, pair.precision,
                                 str(pair.model_path), instances[0].runtime_version())
            models.append((served, instances))
        return models

    def _start_triton(self, http_port: int, grpc_port: int, metrics_port: int, models: list[tuple[ServedModel, list]]) -> None:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig

        cfg = self.config
        self._log_dir = tempfile.TemporaryDirectory(prefix="toolkit-serve-")
        log_file = Path(self._log_dir.name) / "tritonserver.log"
        triton_config = TritonConfig(
            http_address=cfg.host, http_port=http_port, grpc_address=cfg.host, grpc_port=grpc_port,
            metrics_address=cfg.host, metrics_port=metrics_port, exit_timeout_secs=EXIT_TIMEOUT_S,
            log_verbose=0, log_file=log_file,
        )
        with python_library_path():
            self._triton = Triton(config=triton_config)
            for served, instances in models:
                self._triton.bind(
                    model_name=served.name,
                    infer_func=[_infer_function(b) for b in instances],
                    inputs=[Tensor(name=INPUT_NAME, dtype=np.float32, shape=IMAGE_SHAPE)],
                    outputs=[Tensor(name=OUTPUT_NAME, dtype=np.float32, shape=OUTPUT_SHAPE)],
                    config=ModelConfig(max_batch_size=cfg.max_batch,
                                       batcher=DynamicBatcher(max_queue_delay_microseconds=cfg.max_queue_delay_us)),
                    strict=True,
                )
            try:
                self._triton.run()
            except Exception as exc:  # noqa: BLE001 - PyTriton and tritonclient raise their own types
                raise ToolkitError(f"the Triton server did not start ({_one_line(exc)}){self._last_log_line()}",
                                   "run with --debug for the traceback") from None

    def _last_log_line(self) -> str:
        if self._log_dir is None:
            return ""
        try:
            lines = [ln for ln in (Path(self._log_dir.name) / "tritonserver.log").read_text(errors="replace").splitlines()
                     if ln.startswith("E")]
        except OSError:
            return ""
        return f"; server log: {' '.join(lines[-1].split())[:200]}" if lines else ""

    def alive(self) -> bool:
        return self._triton is not None and self._triton.is_alive()

    def wait(self, poll_s: float = 0.5) -> None:
        """Block until the server exits or this process is interrupted (KeyboardInterrupt propagates)."""
        while self.alive():
            time.sleep(poll_s)

    def stop(self) -> StopReport:
        if self.stop_report is not None:
            return self.stop_report
        t0 = time.perf_counter()
        died = self._triton is not None and not self.alive()
        pids = set(self._pids) | set(server_processes())
        idents = [i for i in (identity(p) for p in pids) if i is not None] + list(self._identities)
        live = [i[0] for i in idents if same_process_alive(i)]
        blocks = server_blocks([*live, os.getpid()])  # named without a pid: found while their owners live
        if self._triton is not None:
            with contextlib.suppress(Exception):
                self._triton.stop()
        for backend in self._backends:
            with contextlib.suppress(Exception):
                backend.close()
        self._backends = []
        # The server's processes get a moment to be reaped after Triton says it stopped.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.05)
        # A server that was killed leaves its python-backend stub (reparented away from this process,
        # so only the identities recorded at start find it) and its shared-memory segment behind.
        ended = end_processes(idents)
        removed = remove_shm_segments(blocks=blocks) if died or ended else []
        if self._log_dir is not None:
            self._log_dir.cleanup()
        self.stop_report = StopReport(
            seconds=time.perf_counter() - t0,
            leftover_processes=tuple(sorted({i[0] for i in idents if same_process_alive(i)})),
            leftover_shm=tuple(shm_segments() + existing_shm(blocks)),
            server_died=died,
            ended=tuple(ended),
            removed_shm=tuple(removed),
        )
        return self.stop_report

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_server(config: ServeConfig, on_ready: Callable[[ServerInfo], None] | None = None,
               token_file: str | os.PathLike | None = None) -> StopReport:
    """Start the server, write the access token to `token_file` (mode 0600), call `on_ready`, serve
    until Ctrl-C/SIGTERM, stop and remove the token file; the stop report says whether anything was
    left behind. A server that exits on its own is a failure."""
    from toolkit.files.store import atomic_write, check_writable_dir

    if token_file is not None:
        check_writable_dir(Path(token_file).parent, create=True)  # refused before the server starts
    server = LocalServer(config)
    try:
        info = server.start()
        if token_file is not None:
            atomic_write(token_file, lambda tmp: tmp.write_text(info.access_token + "\n", encoding="utf-8"), mode=0o600)
        if on_ready:
            on_ready(info)
        server.wait()
    except KeyboardInterrupt:
        pass  # the normal way to stop a server
    finally:
        report = server.stop()
        if token_file is not None:
            with contextlib.suppress(OSError):
                Path(token_file).unlink()
    if report.server_died:
        cleanup = f"; ended {len(report.ended)} orphaned server processes and removed {len(report.removed_shm)} shared-memory segments" if report.ended or report.removed_shm else ""
        raise CheckFailed(f"the Triton server exited on its own{cleanup}", "check the machine's log (killed? out of memory?) and start it again")
    if not report.clean:
        raise CheckFailed(f"the server left processes {list(report.leftover_processes)} or shared memory {list(report.leftover_shm)} behind",
                          "stop them by their id; please report this")
    return report


__all__ = [
    "ServeConfig", "ServedModel", "ServerInfo", "StopReport", "LocalServer", "run_server", "check_serving_support",
    "free_port", "check_port_free", "rss_bytes",
]
