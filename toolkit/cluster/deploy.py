"""Deploy (backend, precision) pairs to a Ray cluster as Ray Serve deployments behind an Open
Inference Protocol v2 endpoint, and take them down again.

Order of work (everything checkable is checked before anything is deployed):
1. the configuration, each pair's model file (the backend's own load checks: a corrupt, unsafe or
   foreign file is bad input, exit 2) and its SHA-256; the HTTP port, when the endpoint is on this
   machine;
2. the cluster: the one at `address` (`auto`, `HOST:PORT` of its GCS, or `ray://HOST:PORT`; a TCP
   probe first, so an unreachable address is one line and exit 3 within seconds), or a local one of
   `nodes` nodes started for the deployment (`nodes.LocalCluster`) and stopped after it;
3. Serve's HTTP proxy on the head node at host:port, then one application: the ingress and a
   `ModelReplica` deployment per pair, `replicas` fixed or autoscaled between min and max.

`stop()` deletes the application; with a cluster it started it also shuts Serve down, disconnects
and ends every process of that cluster, and reports what (if anything) is left.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from toolkit.backends import registry
from toolkit.backends.triton import model_name
from toolkit.cluster.config import ClusterConfig, ClusterInfo, ClusterStopReport, ReplicaInfo, ShippedModel
from toolkit.cluster.nodes import LocalCluster, port_in_use
from toolkit.errors import InputError, ModelFileError, ToolkitError, UnavailableError
from toolkit.files.spec_file import refuse_another_model

APP_NAME = "toolkit"
PROBE_TIMEOUT_S = 3.0


def plan_models(cfg: ClusterConfig) -> list[ShippedModel]:
    """Each pair's model file, checked as its backend loads it, with its digest (before any deployment)."""
    refuse_another_model(cfg.artifacts_dir, "toolkit serve-cluster")
    models = []
    for backend, precision in cfg.pairs:
        spec = registry.get_spec(backend)
        if spec.reads == "endpoint":
            raise InputError(f"backend {backend} is a client of a server, not a model to deploy", "pass an in-process backend, e.g. onnxruntime")
        registry.check_precision(precision)
        path = Path(cfg.checkpoint) if spec.reads == "checkpoint" else registry.model_path_for(backend, precision, cfg.artifacts_dir)
        if not path.is_file():
            raise ModelFileError(f"model file {path} for {backend}/{precision} is missing",
                                 "run `toolkit export` (or `toolkit train` for the checkpoint) first")
        registry.check_model_file(backend, precision, path)
        data = path.read_bytes()
        models.append(ShippedModel(model_name(backend, precision), backend, precision, str(path), hashlib.sha256(data).hexdigest(), len(data)))
    return models


def parse_address(address: str) -> tuple[str, tuple[str, int] | None]:
    """(what ray.init gets, (host, port) to probe first or None for `auto`)."""
    if address == "auto":
        return "auto", None
    raw = address if "://" in address else f"gcs://{address}"
    parts = urlsplit(raw)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("ray", "gcs") or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise InputError(f"cluster address {address!r} is not auto, HOST:PORT or ray://HOST:PORT",
                         "pass e.g. --address 127.0.0.1:6379 (the head's `ray start --port`)")
    return (address if parts.scheme == "ray" else f"{parts.hostname}:{port}"), (parts.hostname, port)


def _probe(host: str, port: int, address: str) -> None:
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        raise UnavailableError(f"no Ray cluster answers at {address} ({exc.strerror or type(exc).__name__})",
                               "start one with `ray start --head`, or omit --address to start a local one") from None


def _local_host(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "0.0.0.0", "::1", "::") or host == socket.gethostname()


class ClusterDeployment:
    """The deployment's life cycle; `start()` returns ClusterInfo, `stop()` a ClusterStopReport."""

    def __init__(self, cfg: ClusterConfig, cluster: LocalCluster | None = None):
        self.cfg = cfg
        self.cluster = cluster  # a local cluster given by the caller (tests) is not stopped here
        self._own_cluster: LocalCluster | None = None
        self.info: ClusterInfo | None = None
        self.stop_report: ClusterStopReport | None = None
        self._connected = False

    # -- start -------------------------------------------------------------------------------
    def start(self) -> ClusterInfo:
        cfg = self.cfg
        models = plan_models(cfg)
        if cfg.address is None and self.cluster is None and cfg.port and _local_host(cfg.host) and port_in_use(cfg.host, cfg.port):
            raise InputError(f"port {cfg.port} on {cfg.host} is in use", "pass another --port, or stop what listens there")
        target = None
        if cfg.address is not None:
            target, probe = parse_address(cfg.address)
            if probe:
                _probe(*probe, cfg.address)
        try:
            import ray
            from ray import serve
        except ImportError:
            raise UnavailableError("Ray Serve is not installed", "install the cluster extra: pip install -e '.[cluster]'") from None
        t0 = time.perf_counter()
        try:
            if target is None:
                if self.cluster is None:
                    self._own_cluster = self.cluster = LocalCluster(cfg.nodes, cfg.cpus_per_node).start()
                target = self.cluster.address
            self._connect(ray, target)
            endpoint = _running_proxy()
            if endpoint is None:  # Serve is not running on this cluster yet: start its HTTP proxy where asked
                if cfg.port and _local_host(cfg.host) and port_in_use(cfg.host, cfg.port):
                    raise InputError(f"port {cfg.port} on {cfg.host} is in use", "pass another --port, or stop what listens there")
                serve.start(proxy_location="HeadOnly", http_options={"host": cfg.host, "port": cfg.port or _free_port(cfg.host)})
                endpoint = _running_proxy()
            # else: Serve's proxy already runs on this cluster (one per cluster); the endpoint is where it listens
            self._deploy(serve, models)
            from toolkit.cluster.app import node_names

            self.info = ClusterInfo(f"http://{endpoint[0]}:{endpoint[1]}", target, self._own_cluster is not None, tuple(models),
                                    nodes=node_names(), deploy_seconds=time.perf_counter() - t0, ray_version=ray.__version__,
                                    temp_dir=self._own_cluster.temp_dir if self._own_cluster else "")
            self.info.replicas = self.replicas()
            return self.info
        except BaseException:
            self.stop()
            raise

    def _connect(self, ray, target: str) -> None:
        for name in ("ray", "ray.serve"):
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            ray.init(address=target, log_to_driver=False, logging_level=logging.ERROR)
        except Exception as exc:  # noqa: BLE001 - Ray's connection errors, one line
            raise UnavailableError(f"could not join the Ray cluster at {target} ({' '.join(str(exc).split())[:200]})",
                                   "check the address (`ray status` on the head)") from None
        self._connected = True
        # Ray's core worker installs its own SIGTERM handler (dump and exit): put back the one that
        # turns SIGTERM into KeyboardInterrupt, so the deployment and the cluster are taken down.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _sigterm_to_interrupt)

    def _deploy(self, serve, models: list[ShippedModel]) -> None:
        from toolkit.cluster.app import ModelReplica, V2Ingress

        cfg = self.cfg
        replicas = []
        for m in models:
            options = {"name": f"replica_{m.name}", "ray_actor_options": {"num_cpus": cfg.replica_cpus}}
            if cfg.autoscaling:
                options["autoscaling_config"] = {
                    "min_replicas": cfg.min_replicas, "initial_replicas": cfg.min_replicas, "max_replicas": cfg.max_replicas,
                    "target_ongoing_requests": cfg.target_ongoing_requests, "upscale_delay_s": cfg.upscale_delay_s,
                    "downscale_delay_s": cfg.downscale_delay_s, "metrics_interval_s": 0.5, "look_back_period_s": 2.0}
            else:
                options["num_replicas"] = cfg.replicas
            data = Path(m.path).read_bytes()
            if hashlib.sha256(data).hexdigest() != m.sha256:
                raise ModelFileError(f"model file {m.path} changed while deploying", "deploy again")
            replicas.append(ModelReplica.options(**options).bind(m.backend, m.precision, Path(m.path).name, data, m.sha256, cfg.threads))
        specs = [{"name": m.name, "precision": m.precision, "sha256": m.sha256, "max_batch": cfg.max_batch,
                  "replicas": cfg.replicas_text()} for m in models]
        app = V2Ingress.bind(specs, *replicas)
        try:
            serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
            self._wait_running(serve)
        except ToolkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - a replica that failed its checks, or Serve refusing the app
            raise ToolkitError(f"the deployment failed: {_deploy_error(exc)}", "see the replica's log in the Ray session dir") from None

    def _wait_running(self, serve) -> None:
        deadline = time.monotonic() + self.cfg.deploy_timeout_s
        while True:
            status = serve.status().applications.get(APP_NAME)
            state = str(getattr(status, "status", ""))
            if state.endswith("RUNNING"):
                return
            if state.endswith("DEPLOY_FAILED") or state.endswith("UNHEALTHY"):
                raise ToolkitError(f"the deployment failed: {_deploy_error(status.message or state)}",
                                   "check the model file and the cluster's resources (`ray status`)")
            if time.monotonic() > deadline:
                raise UnavailableError(f"the deployment was not running after {self.cfg.deploy_timeout_s:.0f}s ({state})",
                                       "check the cluster's free CPUs (`ray status`) against --replicas x --replica-cpus")
            time.sleep(0.5)

    # -- what runs where ---------------------------------------------------------------------
    def replicas(self) -> tuple[ReplicaInfo, ...]:
        """Every replica of this application and the node it runs on, from Ray's actor table."""
        from ray._private import state as ray_state  # the GCS actor table; the state API needs the dashboard

        from toolkit.cluster.app import node_names

        names = node_names()
        out = []
        for actor in ray_state.actors().values():
            cls = actor.get("ActorClassName") or ""
            if not cls.startswith(f"ServeReplica:{APP_NAME}:replica_") or actor.get("State") != "ALIVE":
                continue
            node_id = (actor.get("Address") or {}).get("NodeID", "")
            out.append(ReplicaInfo(cls.split(":replica_", 1)[1], actor.get("Name", "") or actor.get("ActorID", ""), node_id,
                                   names.get(node_id, node_id[:8]), actor.get("State", "")))
        return tuple(sorted(out, key=lambda r: (r.model, r.node, r.replica)))

    def replica_states(self) -> dict[str, dict[str, int]]:
        """Ray Serve's own count of each model deployment's replicas by state (RUNNING, STARTING, ...)."""
        from ray import serve

        app = serve.status().applications.get(APP_NAME)
        if app is None:
            return {}
        return {name.split("replica_", 1)[1]: dict(d.replica_states) for name, d in app.deployments.items() if name.startswith("replica_")}

    # -- stop --------------------------------------------------------------------------------
    def stop(self) -> ClusterStopReport:
        if self.stop_report is not None:
            return self.stop_report
        t0 = time.perf_counter()
        if self._connected:
            import ray
            from ray import serve

            with contextlib.suppress(Exception):
                serve.delete(APP_NAME, _blocking=True)
            if self._own_cluster is not None:
                with contextlib.suppress(Exception):
                    serve.shutdown()
            with contextlib.suppress(Exception):
                ray.shutdown()
            self._connected = False
        left: set[int] = set()
        if self._own_cluster is not None:
            left = self._own_cluster.stop()
        self.stop_report = ClusterStopReport(time.perf_counter() - t0, tuple(sorted(left)), self._own_cluster is not None)
        return self.stop_report

    def __enter__(self) -> ClusterDeployment:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _running_proxy() -> tuple[str, int] | None:
    """(host, port) of Serve's HTTP proxy on the connected cluster, or None when Serve is not running."""
    from ray.serve.context import (
        _get_global_client,  # Serve's handle on its controller; no public getter for the port
    )

    try:
        client = _get_global_client()
    except Exception:  # noqa: BLE001 - Serve not started on this cluster
        return None
    if client is None:
        return None
    http = client.http_config
    return http.host, int(http.port)


def _sigterm_to_interrupt(signum, frame):
    raise KeyboardInterrupt


def _free_port(host: str) -> int:
    from toolkit.cluster.nodes import free_port

    return free_port(host if _local_host(host) else "127.0.0.1")


def _deploy_error(exc) -> str:
    """The useful line of Serve's multi-line failure text: the toolkit's own message when there is one."""
    text = str(exc)
    for line in text.splitlines():
        if "ToolkitError" in line or "Error:" in line and "error:" not in line.lower()[:6]:
            last = line.split("Error:", 1)[-1].strip()
            if last:
                return " ".join(last.split())[:240]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:240]


def run_cluster(cfg: ClusterConfig, on_ready=None) -> ClusterStopReport:
    """Deploy, call `on_ready(info)`, wait for Ctrl-C/SIGTERM (KeyboardInterrupt), take it down."""
    deployment = ClusterDeployment(cfg)
    deployment.start()
    try:
        if on_ready:
            on_ready(deployment.info)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        report = deployment.stop()
    return report
