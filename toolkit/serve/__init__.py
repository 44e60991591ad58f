"""`toolkit serve`: a real, local Triton Inference Server serving the toolkit's model files.

The server is the `tritonserver` binary that the `nvidia-pytriton` wheel bundles (the `serve`
extra); PyTriton itself is not used. `toolkit serve` writes the python-backend model repository
(`toolkit export --format triton --runtime python`) for the requested (backend, precision) pairs
into a private workspace and starts tritonserver on it: each model `mnist_<backend>_<precision>`
runs its ONNX file with the toolkit's own backend inside Triton's python-backend stub
(toolkit.serve.stub_model), one stub process per instance (`--instances`), with Triton's dynamic
batcher in front. Clients speak the KServe v2 protocol (HTTP or gRPC); every request is checked on
its own against the input contract, and a bad one gets a one-line error (HTTP 400 / gRPC
INVALID_ARGUMENT) while the others in its batch are answered.

Life cycle: `LocalServer.start()` checks everything that can be checked first (the ports are
free, the model files exist and are what they are served as, this Python has the shared libpython
and a stub), removes what servers of killed `toolkit serve` processes left behind, then starts the
server and waits until every model is ready; `stop()` sends SIGTERM, waits, and reports whether
anything it started is still running (processes, /dev/shm regions). The kernel SIGTERMs the server
when this process dies (PR_SET_PDEATHSIG), so a killed `toolkit serve` does not leave a server
behind. The server's own output goes to its log file in the workspace: shown (its last error line)
only when it fails, or as it is written with `verbose`.

Statistics, shared-memory registration and the repository API are restricted endpoints: a client
needs the access token (HTTP header `triton-access-token`), which `ServerInfo.access_token` carries
for in-process users and `toolkit serve --token-file` writes (mode 0600) for others.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.backends import registry
from toolkit.backends.triton import ACCESS_HEADER
from toolkit.errors import CheckFailed, InputError, ToolkitError
from toolkit.files import paths
from toolkit.serve.host import (
    DEFAULT_HOST,
    SHM_PREFIX,
    check_port_free,
    check_serving_support,
    clean_crash_leftovers,
    descendants,
    end_processes,
    free_port,
    identity,
    new_workspace,
    remove_shm_segments,
    rss_bytes,
    same_process_alive,
    server_environment,
    shm_segments,
    triton_dist,
)
from toolkit.serve.plan import ServedModel, plan, repository_models, runtime_version

DEFAULT_PORTS = (8000, 8001, 8002)  # Triton's own defaults: HTTP, gRPC, metrics
DEFAULT_MAX_BATCH = 1024
# No wait by default: a request that finds the instance idle runs at once (100 µs of waiting was 618
# against 455 µs p50 at batch 1, concurrency 1, measured); requests that queue while it is busy are
# still merged into one execution.
DEFAULT_QUEUE_DELAY_US = 0
# With a client connection still open, Triton waits this long for it on shutdown (its own default
# is 30 s); in-flight requests get this long to finish.
EXIT_TIMEOUT_S = 5
STARTUP_TIMEOUT_S = 120.0
RESTRICTED = "shared-memory,model-repository,statistics"
# Error lines tritonserver logs on every machine without a GPU: not the reason for any failure.
CPU_NOISE = ("CudaDriverHelper", "NVML", "CUDA driver")


@dataclass(frozen=True)
class ServeConfig:
    pairs: tuple[tuple[str, str], ...] = (("onnxruntime", "fp32"),)
    host: str = DEFAULT_HOST
    http_port: int = DEFAULT_PORTS[0]  # 0: any free port
    grpc_port: int = DEFAULT_PORTS[1]
    metrics_port: int = DEFAULT_PORTS[2]
    max_batch: int = DEFAULT_MAX_BATCH
    max_queue_delay_us: int = DEFAULT_QUEUE_DELAY_US
    instances: int = 1  # model instances per pair (each its own stub process)
    threads: int | None = None  # per backend instance; None: every usable core
    artifacts_dir: str = str(paths.ARTIFACTS_DIR)
    checkpoint: str = str(paths.DEFAULT_CHECKPOINT)
    startup_timeout_s: float = STARTUP_TIMEOUT_S
    verbose: bool = False  # the server's own log on this process's stderr as it is written
    repository: str | None = None  # serve this python-backend repository as it is (pairs, batching, threads unused)

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
class ServerInfo:
    http_url: str
    grpc_url: str
    metrics_url: str
    models: tuple[ServedModel, ...]
    max_batch: int
    max_queue_delay_us: int
    startup_seconds: float
    pids: tuple[int, ...]  # the server's processes (tritonserver and its python-backend stubs)
    repository: str = ""  # the python-backend model repository it serves
    cleaned: tuple[str, ...] = ()  # leftovers of killed servers removed before this one started
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

def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]


class LocalServer:
    """A local Triton server serving toolkit model files. Use as a context manager, or start()/stop()."""

    def __init__(self, config: ServeConfig):
        self.config = config
        self.info: ServerInfo | None = None
        self.stop_report: StopReport | None = None
        self._process: subprocess.Popen | None = None
        self._workspace: Path | None = None
        self._identities: tuple[tuple[int, int], ...] = ()
        self._token = secrets.token_urlsafe(32)
        self.failure_log = ""  # the server log's last error line when it died on its own

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> ServerInfo:
        check_serving_support()
        cfg = self.config
        planned = plan(cfg) if cfg.repository is None else []
        given = repository_models(Path(cfg.repository)) if cfg.repository is not None else ()
        ports = []
        for port, what in ((cfg.http_port, "http"), (cfg.grpc_port, "grpc"), (cfg.metrics_port, "metrics")):
            if port:
                check_port_free(cfg.host, port, what)
                ports.append(port)
            else:
                ports.append(free_port(cfg.host))
        http_port, grpc_port, metrics_port = ports
        cleaned = clean_crash_leftovers()
        t0 = time.perf_counter()
        try:
            if cfg.repository is None:
                repository, models = self._write_repository(planned)
            else:
                self._workspace = new_workspace()
                repository, models = Path(cfg.repository).resolve(), given
            self._start_triton(repository, http_port, grpc_port, metrics_port)
        except BaseException:
            self.stop()
            raise
        pids = (self._process.pid, *descendants(self._process.pid))
        self._identities = tuple(i for i in (identity(p) for p in pids) if i is not None)
        self.info = ServerInfo(
            http_url=f"http://{cfg.host}:{http_port}", grpc_url=f"grpc://{cfg.host}:{grpc_port}",
            metrics_url=f"http://{cfg.host}:{metrics_port}/metrics", models=models, max_batch=cfg.max_batch,
            max_queue_delay_us=cfg.max_queue_delay_us, startup_seconds=time.perf_counter() - t0, pids=pids,
            access_token=self._token, repository=str(repository), cleaned=tuple(cleaned),
        )
        return self.info

    def _write_repository(self, planned: list[registry.PlannedPair]) -> tuple[Path, tuple[ServedModel, ...]]:
        from toolkit.export.triton import export_triton

        cfg = self.config
        self._workspace = new_workspace()
        models = []
        repository = self._workspace / "models"
        for pair in planned:
            result = export_triton([pair.precision], Path(pair.model_path).parent, repository, targets=[pair.backend],
                                   max_batch=cfg.max_batch, instances=cfg.instances, queue_delay_us=cfg.max_queue_delay_us,
                                   runtime="python", threads=cfg.threads, write_kubernetes=False)
            (written,) = [m for m in result.models if m.precision == pair.precision]
            models.append(ServedModel(written.name, pair.backend, pair.precision, str(pair.model_path), runtime_version(pair.backend)))
        return repository, tuple(models)

    def _start_triton(self, repository: Path, http_port: int, grpc_port: int, metrics_port: int) -> None:
        cfg = self.config
        dist = triton_dist()
        backends = self._workspace / "backends" / "python"
        backends.mkdir(parents=True)
        for source in (dist.python_backend / "libtriton_python.so", dist.python_backend / "triton_python_backend_utils.py", dist.stub):
            (backends / source.name).symlink_to(source)
        restriction = f"{RESTRICTED}:{ACCESS_HEADER}={self._token}"
        command = [
            str(dist.binary), f"--model-repository={repository}", f"--backend-directory={backends.parent}",
            f"--http-address={cfg.host}", f"--http-port={http_port}", f"--grpc-address={cfg.host}", f"--grpc-port={grpc_port}",
            f"--metrics-address={cfg.host}", f"--metrics-port={metrics_port}", "--allow-gpu-metrics=false",
            f"--exit-timeout-secs={EXIT_TIMEOUT_S}", "--strict-readiness=true", "--log-verbose=0",
            f"--backend-config=python,shm-region-prefix-name={SHM_PREFIX}{os.getpid()}-",
            f"--http-restricted-api={restriction}", f"--grpc-restricted-protocol={restriction}",
        ]
        log = self._log_path()
        with open(log, "wb") as out:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=None if cfg.verbose else out, stderr=None if cfg.verbose else subprocess.STDOUT,
                env=server_environment(dist), cwd=self._workspace, start_new_session=True, preexec_fn=_die_with_parent,
            )
        self._wait_ready(http_port)

    def _wait_ready(self, http_port: int) -> None:
        import urllib.error
        import urllib.request

        url = f"http://{self.config.host}:{http_port}/v2/health/ready"
        deadline = time.monotonic() + self.config.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ToolkitError(f"the Triton server did not start (exit code {self._process.returncode}){self._last_log_line()}",
                                   "run with --verbose to see the server's log")
            with contextlib.suppress(urllib.error.URLError, OSError):
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            time.sleep(0.1)
        raise ToolkitError(f"the Triton server was not ready within {self.config.startup_timeout_s:g}s{self._last_log_line()}",
                           "run with --verbose to see the server's log")

    def _log_path(self) -> Path:
        return self._workspace / "tritonserver.log"

    def _last_log_line(self) -> str:
        if self._workspace is None:
            return ""
        try:
            lines = [ln for ln in self._log_path().read_text(errors="replace").splitlines()
                     if ln.startswith("E") and not any(noise in ln for noise in CPU_NOISE)]
        except OSError:
            return ""
        return f"; server log: {_one_line(lines[-1])[:200]}" if lines else ""

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self, poll_s: float = 0.5) -> None:
        """Block until the server exits or this process is interrupted (KeyboardInterrupt propagates)."""
        while self.alive():
            time.sleep(poll_s)

    def stop(self) -> StopReport:
        if self.stop_report is not None:
            return self.stop_report
        t0 = time.perf_counter()
        died = self._process is not None and self._process.poll() is not None
        idents = list(self._identities)
        if self._process is not None:
            idents += [i for i in (identity(p) for p in [self._process.pid, *descendants(self._process.pid)]) if i is not None]
            if not died:
                with contextlib.suppress(OSError):
                    self._process.send_signal(signal.SIGTERM)
                try:
                    self._process.wait(timeout=EXIT_TIMEOUT_S + 15)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout=10)
        # The stubs get a moment to exit after tritonserver; a killed server leaves them (reparented
        # away from this process, so only the identities recorded at start find them) and their
        # shared-memory regions behind.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and any(same_process_alive(i) for i in idents):
            time.sleep(0.05)
        ended = end_processes(idents)
        removed = remove_shm_segments() if died or ended else []
        if self._workspace is not None:
            if died:
                code = self._process.returncode
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                self.failure_log = f" ({how}){self._last_log_line()}"
            shutil.rmtree(self._workspace, ignore_errors=True)
        self.stop_report = StopReport(
            seconds=time.perf_counter() - t0,
            leftover_processes=tuple(sorted({i[0] for i in idents if same_process_alive(i)})),
            leftover_shm=tuple(shm_segments()),
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


def _die_with_parent() -> None:
    """In the server's process before exec: SIGTERM it when this process dies (a SIGKILLed
    `toolkit serve` must not leave a server running)."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


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
        raise CheckFailed(f"the Triton server exited on its own{cleanup}{server.failure_log}", "check the machine's log (killed? out of memory?) and start it again")
    if not report.clean:
        raise CheckFailed(f"the server left processes {list(report.leftover_processes)} or shared memory {list(report.leftover_shm)} behind",
                          "stop them by their id; please report this")
    return report


__all__ = [
    "ServeConfig", "ServedModel", "ServerInfo", "StopReport", "LocalServer", "run_server", "check_serving_support",
    "free_port", "check_port_free", "rss_bytes",
]
