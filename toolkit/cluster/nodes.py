"""A Ray cluster of several nodes on this machine, for `toolkit serve-cluster` without --address and
for the tests: a head node and worker nodes, each its own `ray start` (its own raylet, its own CPU
count), all under one dedicated temp dir.

Ray's own `ray stop` ends every Ray process of the user on the machine; other Ray users (another
toolkit, a test running beside) share it, so this module ends only the processes it owns: those
whose command line names this cluster's temp dir, and everything they started (their descendants,
found from /proc). A worker node can be killed on its own (`kill_node`) to show failover.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import ToolkitError, UnavailableError
from toolkit.serve.host import descendants

NODE_START_TIMEOUT_S = 90.0
OBJECT_STORE_BYTES = 100_000_000  # per node; Ray's minimum is 75 MB and the model is ~100 KB
# The head's health checks of other nodes (Ray's defaults: every 3 s, 5 misses): a dead worker node
# is declared dead after ~3 s instead of ~15 s, so its replicas are replaced sooner.
HEALTH_ENV = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3",
              "RAY_health_check_initial_delay_ms": "1000"}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _ray_cli() -> str:
    candidate = Path(sys.executable).with_name("ray")
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("ray")
    if not found:
        raise UnavailableError("the `ray` command is not installed", "install the cluster extra: pip install -e '.[cluster]'")
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _with_descendants(roots: set[int]) -> set[int]:
    out = set(roots)
    for pid in roots:
        out.update(descendants(pid))
    return out


def processes_naming(text: str) -> set[int]:
    """Every process whose command line contains `text`, and their descendants (not this one)."""
    roots = {int(e) for e in os.listdir("/proc") if e.isdigit() and int(e) != os.getpid() and text in _cmdline(int(e))}
    return _with_descendants(roots) - {os.getpid()}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def end_processes(pids: set[int], grace_s: float = 3.0) -> set[int]:
    """SIGTERM, then SIGKILL after `grace_s`; returns the pids still alive after that."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 3.0)):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        pids = {p for p in pids if _alive(p)}
        if not pids:
            break
    return pids


@dataclass
class Node:
    name: str  # head | worker-1 ...
    node_manager_port: int
    cpus: float


@dataclass
class LocalCluster:
    """`nodes` Ray nodes on 127.0.0.1 (the first is the head), `cpus` CPUs each."""

    nodes: int = 1
    cpus: float = 1.0
    temp_dir: str = ""
    address: str = ""  # host:port of the head's GCS, once started
    members: list[Node] = field(default_factory=list)
    _own_temp: bool = False

    def start(self) -> LocalCluster:
        if not 1 <= self.nodes <= 8:
            raise ToolkitError(f"--nodes must be 1..8, got {self.nodes}", "pass e.g. --nodes 2")
        if not self.temp_dir:
            # short: Ray's Unix socket paths live under it and must stay under ~107 bytes
            self.temp_dir = tempfile.mkdtemp(prefix="tkray-", dir="/tmp")
            self._own_temp = True
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        try:
            self._start_node("head", ["--head", "--port", str(port), "--ray-client-server-port", str(free_port()),
                                      "--include-dashboard", "false"])
            for i in range(1, self.nodes):
                self.add_worker(f"worker-{i}")
        except BaseException:
            self.stop()
            raise
        return self

    def add_worker(self, name: str) -> Node:
        return self._start_node(name, ["--address", self.address])

    def _start_node(self, name: str, role: list[str]) -> Node:
        node = Node(name, free_port(), self.cpus)
        cmd = [_ray_cli(), "start", *role, "--node-ip-address", "127.0.0.1", "--num-cpus", f"{self.cpus:g}",
               "--node-manager-port", str(node.node_manager_port), "--object-store-memory", str(OBJECT_STORE_BYTES),
               "--disable-usage-stats", "--temp-dir", self.temp_dir]
        env = {**os.environ, **HEALTH_ENV, "RAY_USAGE_STATS_ENABLED": "0"}
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=NODE_START_TIMEOUT_S, env=env)
        except subprocess.TimeoutExpired:
            raise UnavailableError(f"Ray node {name} did not start within {NODE_START_TIMEOUT_S:.0f}s",
                                   "check that the machine is not overloaded") from None
        if proc.returncode != 0:
            last = next((ln for ln in reversed((proc.stderr or proc.stdout).splitlines()) if ln.strip()), "no output")
            raise UnavailableError(f"Ray node {name} failed to start ({' '.join(last.split())[:200]})", "see `ray start --help`")
        self.members.append(node)
        return node

    def node_processes(self, name: str) -> set[int]:
        """The processes of one node: its raylet (found by its own port) and what that started."""
        node = next(n for n in self.members if n.name == name)
        raylets = {p for p in processes_naming(self.temp_dir)
                   if f"--node_manager_port={node.node_manager_port}" in _cmdline(p) and "raylet" in _cmdline(p)}
        return _with_descendants(raylets)

    def kill_node(self, name: str) -> int:
        """SIGKILL one worker node's processes (a machine failing); returns how many were killed."""
        if name == "head":
            raise ToolkitError("the head node holds the cluster's state; kill a worker node")
        pids = self.node_processes(name)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.members = [n for n in self.members if n.name != name]
        return len(pids)

    def processes(self) -> set[int]:
        return processes_naming(self.temp_dir) if self.temp_dir else set()

    def stop(self) -> set[int]:
        """End every process of this cluster; returns any still alive (should be none)."""
        left = end_processes(self.processes()) if self.temp_dir else set()
        if self._own_temp and not left:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        self.members = []
        return left

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
