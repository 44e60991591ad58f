"""Where the time goes, per node, from the runtimes' own profilers: why an int8 file is (or is not)
faster than fp32 on a CPU runtime.

- onnxruntime: its profiling JSON (`SessionOptions.enable_profiling`), the "Node" events' kernel
  times summed over the profiled calls; the node's data type is its first input's.
- OpenVINO: the CPU plugin's per-layer performance counters (`PERF_COUNT`) of the last call; the
  data type is the kernel name's suffix (`brgconv_avx512_I8` runs in int8).

Each pair is profiled on a session built like the backend's (same options, same threads) but
separate from the timed one: profiling slows the calls it watches, so these times explain the
benchmark's numbers and never replace them.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field

import numpy as np

PROFILE_CALLS = 20
PROFILED_RUNTIMES = ("onnxruntime", "openvino")
PROFILED_PRECISIONS = ("fp32", "int8", "int8-cpu")


@dataclass
class NodeTime:
    node: str
    op_type: str
    kernel: str  # onnxruntime: the execution provider; OpenVINO: the kernel (exec type)
    dtype: str  # what the node computes on: "float", "uint8", "int8", "f32", "I8", ...
    ms_per_call: float
    share: float  # of the profiled total


@dataclass
class RuntimeProfile:
    backend: str
    precision: str
    batch_size: int
    calls: int
    total_ms_per_call: float  # sum of the node times (not the end-to-end call)
    source: str
    nodes: list[NodeTime] = field(default_factory=list)
    message: str = ""  # why there is no profile

    def top(self, n: int = 6) -> list[NodeTime]:
        return sorted(self.nodes, key=lambda t: -t.ms_per_call)[:n]


def _finish(nodes: list[NodeTime]) -> float:
    total = sum(t.ms_per_call for t in nodes)
    for t in nodes:
        t.share = t.ms_per_call / total if total else 0.0
    return total


def profile_onnxruntime(backend, batch: np.ndarray, calls: int = PROFILE_CALLS) -> RuntimeProfile:
    """`backend`: an OrtCpuBackend (its model file and session options are reused)."""
    from toolkit.backends.onnxruntime import build_session
    from toolkit.model import INPUT_NAME

    with tempfile.TemporaryDirectory(prefix="toolkit-profile-") as tmp:
        so = backend.session_options()
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "ort")
        session = build_session(backend.model_path, so, backend.providers())
        session.run(None, {INPUT_NAME: batch})  # first call: allocations; its events are dropped below
        for _ in range(calls):
            session.run(None, {INPUT_NAME: batch})
        with open(session.end_profiling(), encoding="utf-8") as fh:
            events = json.load(fh)
    per_node: dict[str, list] = {}
    order = []
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        name = e["name"][: -len("_kernel_time")]
        args = e.get("args", {})
        inputs = args.get("input_type_shape") or [{}]
        dtype = next(iter(inputs[0]), "") if inputs and isinstance(inputs[0], dict) else ""
        if name not in per_node:
            per_node[name] = [args.get("op_name", ""), args.get("provider", "").replace("ExecutionProvider", ""), dtype, []]
            order.append(name)
        per_node[name][3].append(float(e.get("dur", 0)))
    nodes = []
    for name in order:
        op, provider, dtype, durs = per_node[name]
        # The first call is in the trace too: keep the last `calls` runs.
        kept = durs[-calls:]
        nodes.append(NodeTime(name, op, provider, dtype, sum(kept) / len(kept) / 1e3, 0.0))
    total = _finish(nodes)
    return RuntimeProfile(backend.name, backend.precision, len(batch), calls, total,
                          "onnxruntime profiling JSON: per-node kernel time, mean over the profiled calls", nodes)


def profile_openvino(backend, batch: np.ndarray, calls: int = PROFILE_CALLS) -> RuntimeProfile:
    """`backend`: an OpenVinoBackend (its model file and CPU plugin settings are reused)."""
    from toolkit.backends.openvino import compile_model

    compiled = compile_model(backend.model_path, {**backend.config(), "PERF_COUNT": True})
    request = compiled.create_infer_request()
    for _ in range(calls):
        request.infer({0: batch})
    nodes = []
    for p in request.profiling_info:
        if p.status.name != "EXECUTED":
            continue
        dtype = p.exec_type.rsplit("_", 1)[-1] if "_" in p.exec_type else ""
        nodes.append(NodeTime(p.node_name, p.node_type, p.exec_type, dtype, p.real_time.total_seconds() * 1e3, 0.0))
    total = _finish(nodes)
    return RuntimeProfile(backend.name, backend.precision, len(batch), 1, total,
                          "OpenVINO CPU per-layer performance counters (PERF_COUNT): real time of the last of the profiled calls", nodes)


PROFILERS = {"onnxruntime": profile_onnxruntime, "openvino": profile_openvino}


def profile_pairs(planned, images: np.ndarray, threads: int, progress=None) -> list[RuntimeProfile]:
    """Profile every available (CPU runtime, fp32/int8/int8-cpu) pair at batch len(images)."""
    from toolkit.backends import registry

    out = []
    for p in planned:
        if not p.available or p.backend not in PROFILERS or p.precision not in PROFILED_PRECISIONS:
            continue
        if progress:
            progress(f"profile {p.backend}/{p.precision} batch {len(images)}")
        try:
            backend = registry.create_backend(p.backend, p.precision, p.model_path, threads=threads)
            out.append(PROFILERS[p.backend](backend, images))
        except Exception as exc:  # noqa: BLE001 - a profile is an explanation; the benchmark stands without it
            out.append(RuntimeProfile(p.backend, p.precision, len(images), 0, 0.0, "", message=" ".join(str(exc).split())[:200]))
    return out


def profiles_from_dicts(data: list) -> list[RuntimeProfile]:
    out = []
    for raw in data or []:
        raw = dict(raw)
        raw["nodes"] = [NodeTime(**{k: v for k, v in n.items() if k in NodeTime.__dataclass_fields__}) for n in raw.get("nodes", [])]
        out.append(RuntimeProfile(**{k: v for k, v in raw.items() if k in RuntimeProfile.__dataclass_fields__}))
    return out
