"""The Ray Serve application: one `ModelReplica` deployment per (backend, precision) pair and one
`V2Ingress` (FastAPI) in front of them that speaks the Open Inference Protocol v2 over HTTP.

Ray does the distributed part: it places the replicas on the cluster's nodes, routes each request
to one of them, restarts a replica whose node dies and scales the replica count. This module only
says what a replica is: one toolkit backend session on the model file, whose bytes travel as the
deployment's init argument (Ray ships them to each node) and are checked against their SHA-256
before the replica serves.

The ingress answers metadata, config and health itself and sends each inference to a replica; it
counts what every replica served (requests, images, compute time, node) so the statistics endpoint
can say which replicas and nodes served a benchmark cell. It runs on the head node (Ray's built-in
`node:__internal_head__` resource), beside Serve's controller and HTTP proxy, so a failing worker
node takes only replicas with it.

This module imports Ray and FastAPI at the top: only `toolkit.cluster.deploy` imports it, inside a
function, after checking the cluster extra is installed.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations (Request) at runtime.
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections import defaultdict

import numpy as np
import ray
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from ray import serve

from toolkit.cluster import protocol
from toolkit.errors import ToolkitError

SERVER_NAME = "toolkit-ray-serve"
INGRESS_MAX_ONGOING = 512

api = FastAPI()


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:240] or type(exc).__name__


@serve.deployment(max_ongoing_requests=4, health_check_period_s=2, health_check_timeout_s=10, graceful_shutdown_timeout_s=2)
class ModelReplica:
    """One backend session on one copy of the model file."""

    def __init__(self, backend: str, precision: str, file_name: str, model_bytes: bytes, sha256: str, threads: int):
        digest = hashlib.sha256(model_bytes).hexdigest()
        if digest != sha256:
            raise ToolkitError(f"the model file {file_name} arrived with SHA-256 {digest[:12]}, expected {sha256[:12]}",
                               "redeploy; the file changed in transit")
        from toolkit.backends import registry

        self._dir = tempfile.mkdtemp(prefix="toolkit-replica-")
        path = os.path.join(self._dir, os.path.basename(file_name))
        with open(path, "wb") as fh:
            fh.write(model_bytes)
        self.backend = registry.create_backend(backend, precision, path, threads=threads)
        self.backend.load()
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.node = ray.get_runtime_context().get_node_id()
        self._lock = threading.Lock()  # one session, one batch at a time

    def infer(self, batch: np.ndarray) -> dict:
        t0 = time.perf_counter_ns()
        try:
            with self._lock:
                logits = self.backend.run(batch)
        except ToolkitError as exc:
            return {"error": _one_line(exc)}
        return {"logits": logits, "replica": self.replica, "node": self.node, "compute_ns": time.perf_counter_ns() - t0}

    def whoami(self) -> dict:
        return {"replica": self.replica, "node": self.node, "pid": os.getpid()}

    def __del__(self):
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()
        shutil.rmtree(getattr(self, "_dir", ""), ignore_errors=True)


class _ModelStats:
    """Cumulative counts in the shape of Triton's statistics (the `triton` client reads them), plus
    the same counts per replica."""

    def __init__(self):
        self.requests = self.images = self.total_ns = self.compute_ns = 0
        self.replicas: dict[str, dict] = defaultdict(lambda: {"node": "", "requests": 0, "images": 0, "compute_infer_ns": 0})

    def record(self, images: int, total_ns: int, result: dict) -> None:
        self.requests += 1
        self.images += images
        self.total_ns += total_ns
        self.compute_ns += result["compute_ns"]
        r = self.replicas[result["replica"]]
        r["node"] = result["node"]
        r["requests"] += 1
        r["images"] += images
        r["compute_infer_ns"] += result["compute_ns"]

    def as_triton(self, name: str, nodes: dict[str, str]) -> dict:
        routed = max(0, self.total_ns - self.compute_ns)  # proxy -> ingress -> replica and back
        return {
            "name": name, "version": "1", "inference_count": self.images, "execution_count": self.requests,
            "inference_stats": {"success": {"count": self.requests, "ns": self.total_ns},
                                "queue": {"count": self.requests, "ns": routed},
                                "compute_input": {"count": self.requests, "ns": 0},
                                "compute_infer": {"count": self.requests, "ns": self.compute_ns},
                                "compute_output": {"count": self.requests, "ns": 0}},
            "ray_serve_replicas": {rid: {**r, "node_name": nodes.get(r["node"], r["node"][:8])} for rid, r in self.replicas.items()},
        }


def _error(status: int, message: str) -> Response:
    return Response(content=protocol.error_body(message), status_code=status, media_type="application/json")


def node_names() -> dict[str, str]:
    """Ray node id -> 'head' or 'worker <id prefix>' for every node Ray knows, dead ones too."""
    names = {}
    for n in ray.nodes():
        head = "node:__internal_head__" in (n.get("Resources") or {})
        names[n["NodeID"]] = "head" if head else f"worker {n['NodeID'][:8]}"
    return names


@serve.deployment(max_ongoing_requests=INGRESS_MAX_ONGOING, ray_actor_options={"num_cpus": 0, "resources": {"node:__internal_head__": 0.001}},
                  graceful_shutdown_timeout_s=2)
@serve.ingress(api)
class V2Ingress:
    """`models`: one dict per served model (name, precision, sha256, max_batch, replicas), in the
    order of `handles` (the ModelReplica deployments)."""

    def __init__(self, models: list[dict], *handles):
        self.models = {m["name"]: {**m, "handle": h} for m, h in zip(models, handles, strict=True)}
        self.stats = {m["name"]: _ModelStats() for m in models}

    def _model(self, name: str) -> dict | None:
        return self.models.get(name)

    @api.get("/v2/health/live")
    def live(self):
        return Response(status_code=200)

    @api.get("/v2/health/ready")
    def ready(self):
        return Response(status_code=200)

    @api.get("/v2")
    def server_metadata(self):
        return JSONResponse({"name": SERVER_NAME, "version": f"ray-serve {ray.__version__}",
                             "extensions": ["binary_tensor_data", "statistics", "model_configuration"]})

    @api.get("/v2/models/{name}")
    def metadata(self, name: str):
        if name not in self.models:
            return _error(404, f"Request for unknown model: '{name[:80]}' is not found")
        return JSONResponse(protocol.model_metadata(name))

    @api.get("/v2/models/{name}/ready")
    def model_ready(self, name: str):
        return Response(status_code=200 if name in self.models else 404)

    @api.get("/v2/models/{name}/config")
    def config(self, name: str):
        m = self._model(name)
        if m is None:
            return _error(404, f"Request for unknown model: '{name[:80]}' is not found")
        return JSONResponse(protocol.model_config(name, m["precision"], m["max_batch"], m["sha256"], m["replicas"]))

    @api.get("/v2/models/{name}/stats")
    def statistics(self, name: str):
        if name not in self.models:
            return _error(404, f"Request for unknown model: '{name[:80]}' is not found")
        return JSONResponse({"model_stats": [self.stats[name].as_triton(name, node_names())]})

    @api.post("/v2/models/{name}/infer")
    async def infer(self, name: str, request: Request):
        m = self._model(name)
        if m is None:
            return _error(404, f"Request for unknown model: '{name[:80]}' is not found")
        body = await request.body()
        header_length = request.headers.get(protocol.HEADER_LENGTH)
        try:
            batch, binary = protocol.parse_infer_request(body, header_length, m["max_batch"])
        except protocol.V2Error as exc:
            return _error(exc.status, str(exc))
        t0 = time.perf_counter_ns()
        try:
            result = await m["handle"].infer.remote(batch)
        except Exception as exc:  # noqa: BLE001 - a replica lost with its node, or restarting: the client may retry
            return _error(503, f"no replica of {name} answered ({type(exc).__name__}); retry")
        if "error" in result:
            return _error(400, result["error"])
        self.stats[name].record(len(batch), time.perf_counter_ns() - t0, result)
        content, headers = protocol.infer_response(name, protocol.request_id(body, header_length), result["logits"], binary)
        return Response(content=content, headers=headers, media_type=headers["content-type"])
