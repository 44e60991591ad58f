"""What `toolkit serve-cluster` deploys and what it reports: the configuration (checked when made,
before anything runs), the models shipped, the replicas and where they run, the stop report."""

from __future__ import annotations

from dataclasses import dataclass, field

from toolkit.errors import InputError
from toolkit.files import paths

DEFAULT_PORT = 8000
DEFAULT_MAX_BATCH = 1024
DEPLOY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class ClusterConfig:
    pairs: tuple[tuple[str, str], ...] = (("onnxruntime", "fp32"),)
    address: str | None = None  # None: start a local cluster of `nodes` nodes
    nodes: int = 1  # local cluster only
    cpus_per_node: float = 1.0  # local cluster only
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    replicas: int = 1
    min_replicas: int | None = None  # with max_replicas: autoscaling instead of `replicas`
    max_replicas: int | None = None
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 2.0
    downscale_delay_s: float = 10.0
    replica_cpus: float = 0.5
    threads: int = 1  # per replica's backend session
    max_batch: int = DEFAULT_MAX_BATCH
    artifacts_dir: str = str(paths.ARTIFACTS_DIR)
    checkpoint: str = str(paths.DEFAULT_CHECKPOINT)
    deploy_timeout_s: float = DEPLOY_TIMEOUT_S

    def __post_init__(self):
        if not self.pairs:
            raise InputError("no (backend, precision) pair to deploy", "pass --backend and --precision")
        if not 0 <= self.port <= 65535:
            raise InputError(f"--port must be 0..65535, got {self.port}", "pass a free port, e.g. --port 8000")
        if (self.min_replicas is None) != (self.max_replicas is None):
            raise InputError("--min-replicas and --max-replicas go together", "pass both, or --replicas N")
        if self.autoscaling and not 1 <= self.min_replicas <= self.max_replicas <= 64:
            raise InputError(f"replicas must satisfy 1 <= min <= max <= 64, got {self.min_replicas}..{self.max_replicas}",
                             "pass e.g. --min-replicas 1 --max-replicas 2")
        if not 1 <= self.replicas <= 64:
            raise InputError(f"--replicas must be 1..64, got {self.replicas}", "pass e.g. --replicas 2")
        if not 0 < self.replica_cpus <= 64:
            raise InputError(f"--replica-cpus must be in (0, 64], got {self.replica_cpus}", "pass e.g. --replica-cpus 0.5")
        if not 1 <= self.max_batch <= 65536:
            raise InputError(f"--max-batch must be 1..65536, got {self.max_batch}", "pass e.g. --max-batch 1024")
        if self.threads < 1:
            raise InputError(f"--threads must be at least 1, got {self.threads}", "pass e.g. --threads 1")
        if self.address is None and not (1 <= self.nodes <= 8 and self.cpus_per_node > 0):
            raise InputError(f"--nodes must be 1..8 and --cpus-per-node positive, got {self.nodes}/{self.cpus_per_node}",
                             "pass e.g. --nodes 2 --cpus-per-node 1")

    @property
    def autoscaling(self) -> bool:
        return self.min_replicas is not None

    def replicas_text(self) -> str:
        return f"autoscaling {self.min_replicas}..{self.max_replicas}" if self.autoscaling else str(self.replicas)


@dataclass(frozen=True)
class ShippedModel:
    name: str
    backend: str
    precision: str
    path: str
    sha256: str
    size: int


@dataclass(frozen=True)
class ReplicaInfo:
    model: str
    replica: str  # Ray Serve's replica id
    node_id: str
    node: str  # head | node <id prefix>
    state: str


@dataclass
class ClusterInfo:
    http_url: str
    address: str
    started_cluster: bool
    models: tuple[ShippedModel, ...]
    replicas: tuple[ReplicaInfo, ...] = ()
    nodes: dict[str, str] = field(default_factory=dict)
    deploy_seconds: float = 0.0
    ray_version: str = ""
    temp_dir: str = ""  # a local cluster started for the deployment: its processes all name this dir


@dataclass
class ClusterStopReport:
    seconds: float
    leftover_processes: tuple[int, ...] = ()
    started_cluster: bool = False

    @property
    def clean(self) -> bool:
        return not self.leftover_processes
