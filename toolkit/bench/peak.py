"""How close to the machine: this CPU's measured peak per data type, the model's operation count,
and each benchmark cell's share of that peak (a roofline's compute ceiling).

The model's cost is counted from the ONNX graph itself: 2 operations (multiply + add) per
multiply-accumulate of every convolution and matrix product, with the shapes from ONNX shape
inference at batch 1. Bias additions, ReLU, pooling, reshapes and (de)quantization are not counted
(they are a few percent of the arithmetic, and the peak GEMM does none of them either).

The peak is measured on this machine, once per benchmark run, with the threads the benchmark gives
every backend: a large matrix product per data type, timed call by call for a short window, and
the *fastest* call's rate taken (other processes only ever slow a call down, so the fastest call
is the best estimate of what the cores can do). Several paths are measured per data type and the
best one is the peak; each path's figure is kept:

- fp32: onnxruntime `MatMul` (MLAS, the kernels the onnxruntime backend runs) and `torch.mm`
  (PyTorch's BLAS; on some CPUs it does not use the widest vector units);
- int8: onnxruntime `MatMulInteger` with uint8 activations and int8 weights (u8s8, MLAS's VNNI
  kernels where the CPU has VNNI) and `torch._int_mm` (int8 x int8 -> int32, oneDNN);
- bf16 (only where the CPU has bf16 instructions): `torch.mm` on bfloat16 tensors.

What the peak does not include: memory bandwidth (the operands fit in the caches and are reused
~1,000 times; a convolution with 25 input values per output cannot reuse that much), the fixed
cost of a call (a batch-1 call is dominated by it), and the layers that are not matrix products.
So 100% is not reachable by this model; the figure says how far each backend is from the cores'
arithmetic limit, not from its own best.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PEAK_GEMM_SIZE = 768  # n for the n x n x n probes: 0.9 G operations per call (operands fit in L2+L3)
PEAK_SECONDS = 0.2  # timed window per path
PEAK_MIN_CALLS = 3
# Counted node types: operations per output element = 2 x (reduction length).
CONV_OPS = ("Conv", "ConvInteger", "QLinearConv")
MATMUL_OPS = ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul")
# Which peak a precision's cells are held against (fp16 files compute in fp32 on CPUs without
# fp16 arithmetic units; OpenVINO and onnxruntime convert them).
PEAK_DTYPE_FOR_PRECISION = {"fp32": "fp32", "fp16": "fp32", "int8": "int8", "int8-cpu": "int8", "bf16": "bf16"}
VNNI_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni", "avx512vnni")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")


# --- the model's operation count ------------------------------------------------------------------

@dataclass(frozen=True)
class LayerOps:
    node: str
    op_type: str
    macs: int  # multiply-accumulates per image


@dataclass(frozen=True)
class ModelOps:
    """Operations per image (2 x MACs of convolutions and matrix products), from an ONNX graph."""

    model_path: str
    ops_per_image: int
    layers: list[LayerOps] = field(default_factory=list)
    counted: str = "2 x multiply-accumulates of Conv/ConvInteger/QLinearConv/Gemm/MatMul/MatMulInteger/QLinearMatMul; bias, activation, pooling and (de)quantization not counted"


def _dims(value_info) -> list[int] | None:
    shape = value_info.type.tensor_type.shape
    dims = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
    return None if any(d is None for d in dims) else dims


def count_model_ops(model_path: str | Path) -> ModelOps:
    """Count the model's operations per image from its ONNX graph (batch fixed to 1)."""
    import onnx

    from toolkit.files.onnx_file import load_checked

    model = load_checked(model_path, spec=None)  # any model's file (planning checked it against its spec)
    graph = model.graph
    for vi in list(graph.input) + list(graph.output):
        dim0 = vi.type.tensor_type.shape.dim[0]
        dim0.Clear()
        dim0.dim_value = 1
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes: dict[str, list[int]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = _dims(vi)
        if dims is not None:
            shapes[vi.name] = dims
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
    layers = []
    for node in inferred.graph.node:
        if node.op_type in CONV_OPS:
            weight = node.input[3] if node.op_type == "QLinearConv" else node.input[1]
            out = shapes.get(node.output[0])
            w = shapes.get(weight)
            if out is None or w is None:
                raise ValueError(f"{model_path}: no static shape for {node.op_type} {node.name!r}")
            # Each output element reduces over (input channels / group) x kernel window = prod(w[1:]).
            macs = int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in MATMUL_OPS:
            a = shapes.get(node.input[0])
            out = shapes.get(node.output[0])
            if out is None or a is None:
                raise ValueError(f"{model_path}: no static shape for {node.op_type} {node.name!r}")
            trans_a = any(at.name == "transA" and at.i for at in node.attribute)
            k = a[-2] if trans_a else a[-1]
            macs = int(np.prod(out)) * int(k)
        else:
            continue
        layers.append(LayerOps(node.name, node.op_type, macs))
    return ModelOps(str(model_path), 2 * sum(layer.macs for layer in layers), layers)


# --- the machine's peak ---------------------------------------------------------------------------

@dataclass(frozen=True)
class PathRate:
    dtype: str
    path: str  # what ran, e.g. "onnxruntime MatMulInteger u8s8 1024^3"
    ops_per_second: float | None  # fastest call; None when the path is unavailable
    median_ops_per_second: float | None = None
    calls: int = 0
    message: str = ""


@dataclass(frozen=True)
class Peak:
    dtype: str  # "fp32" | "int8" | "bf16"
    ops_per_second: float
    path: str  # the best path
    paths: list[PathRate]
    isa: str = ""  # e.g. "avx512_vnni" for int8


@dataclass
class PeakReport:
    threads: int
    peaks: list[Peak]
    model: ModelOps | None = None
    method: str = (f"per data type, n x n x n matrix products (n={PEAK_GEMM_SIZE}) timed call by call for "
                   f"{PEAK_SECONDS:g} s per path with the benchmark's threads; the fastest call's rate; best path wins")
    excludes: str = ("memory bandwidth, the fixed cost of a call (dominant at batch 1), and non-matrix layers "
                     "(pooling, activations, reorders, (de)quantization)")

    def peak(self, dtype: str) -> Peak | None:
        return next((p for p in self.peaks if p.dtype == dtype), None)


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _rate(fn, ops: int, seconds: float = PEAK_SECONDS, min_calls: int = PEAK_MIN_CALLS) -> tuple[float, float, int]:
    fn()  # first call: allocation, weight packing
    samples = []
    deadline = time.perf_counter_ns() + seconds * 1e9
    while len(samples) < min_calls or time.perf_counter_ns() < deadline:
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    t = np.asarray(samples, dtype=np.float64) * 1e-9
    return ops / float(t.min()), ops / float(np.median(t)), len(samples)


def _ort_matmul(dtype: str, n: int, threads: int):
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if dtype == "fp32":
        a_type, y_type, op = TensorProto.FLOAT, TensorProto.FLOAT, "MatMul"
        weight = rng.standard_normal((n, n), dtype=np.float32)
        x = rng.standard_normal((n, n), dtype=np.float32)
    else:
        a_type, y_type, op = TensorProto.UINT8, TensorProto.INT32, "MatMulInteger"
        weight = rng.integers(-128, 128, (n, n), dtype=np.int8)
        x = rng.integers(0, 256, (n, n), dtype=np.uint8)
    graph = helper.make_graph(
        [helper.make_node(op, ["A", "B"], ["Y"])], "peak",
        [helper.make_tensor_value_info("A", a_type, [n, n])], [helper.make_tensor_value_info("Y", y_type, [n, n])],
        [numpy_helper.from_array(weight, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"A": x})


def _torch_mm(dtype: str, n: int, threads: int):
    import torch

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    if dtype == "int8":
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=gen)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=gen)
        return lambda: torch._int_mm(a, b)
    torch_dtype = torch.float32 if dtype == "fp32" else torch.bfloat16
    a = torch.randn(n, n, generator=gen).to(torch_dtype)
    b = torch.randn(n, n, generator=gen).to(torch_dtype)
    return lambda: torch.mm(a, b)


PATHS = {
    "fp32": [("onnxruntime MatMul fp32 (MLAS)", "onnxruntime", _ort_matmul), ("torch.mm fp32", "torch", _torch_mm)],
    "int8": [("onnxruntime MatMulInteger u8s8 (MLAS)", "onnxruntime", _ort_matmul), ("torch._int_mm s8s8", "torch", _torch_mm)],
    "bf16": [("torch.mm bf16", "torch", _torch_mm)],
}


def measure_peaks(threads: int, dtypes: tuple[str, ...] = ("fp32", "int8", "bf16"), n: int = PEAK_GEMM_SIZE,
                  seconds: float = PEAK_SECONDS) -> list[Peak]:
    """This machine's peak operations per second per data type (see the module docstring)."""
    import importlib.util

    flags = cpu_flags()
    torch_threads = None
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch_threads = torch.get_num_threads()
    peaks = []
    try:
        for dtype in dtypes:
            if dtype == "bf16" and not flags & set(BF16_FLAGS):
                continue
            rates = []
            for label, package, make in PATHS[dtype]:
                name = f"{label} {n}^3"
                if importlib.util.find_spec(package) is None:
                    rates.append(PathRate(dtype, name, None, message=f"{package} is not installed"))
                    continue
                try:
                    best, median, calls = _rate(make(dtype, n, threads), 2 * n**3, seconds)
                    rates.append(PathRate(dtype, name, best, median, calls))
                except Exception as exc:  # noqa: BLE001 - a path this build lacks is reported, not fatal
                    rates.append(PathRate(dtype, name, None, message=f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"))
            measured = [r for r in rates if r.ops_per_second]
            if not measured:
                continue
            best = max(measured, key=lambda r: r.ops_per_second)
            isa = ""
            if dtype == "int8":
                isa = next((f for f in VNNI_FLAGS if f in flags), "no VNNI (int8 through wider multiply-adds)")
            elif dtype == "bf16":
                isa = next((f for f in BF16_FLAGS if f in flags), "")
            peaks.append(Peak(dtype, best.ops_per_second, best.path, rates, isa))
    finally:
        if torch_threads is not None:
            import torch

            torch.set_num_threads(torch_threads)
    return peaks


# --- each cell against the peak ---------------------------------------------------------------------

def peak_dtype_for(precision: str, compute_precision: str = "") -> str:
    """The peak a cell is held against: the data type its heavy layers compute in."""
    return PEAK_DTYPE_FOR_PRECISION.get(compute_precision or precision, "fp32")


def apply_roofline(cells, peak_report: PeakReport, devices: dict[tuple[str, str], str] | None = None) -> None:
    """Fill each ok cell's ops_per_second, peak_dtype and percent_of_peak (CPU cells only: the peak
    is the CPU's). `devices` maps (backend, precision) to "cpu"/"cuda"; unknown counts as cpu."""
    if peak_report.model is None:
        return
    ops = peak_report.model.ops_per_image
    for cell in cells:
        if cell.status != "ok" or not cell.images_per_second_p50:
            continue
        cell.ops_per_second = cell.images_per_second_p50 * ops
        if (devices or {}).get((cell.backend, cell.precision), "cpu") != "cpu":
            continue
        compute = "bf16" if cell.variant.endswith("bf16") else ""
        dtype = peak_dtype_for(cell.precision, compute)
        peak = peak_report.peak(dtype)
        if peak is not None and peak.ops_per_second:
            cell.peak_dtype = dtype
            cell.percent_of_peak = 100.0 * cell.ops_per_second / peak.ops_per_second


def peak_report_from_dict(data: dict) -> PeakReport:
    """Rebuild a PeakReport from bench.json's "peak" object (unknown keys ignored)."""
    def build(cls, raw):
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in names})

    peaks = []
    for p in data.get("peaks", []):
        p = dict(p)
        p["paths"] = [build(PathRate, r) for r in p.get("paths", [])]
        peaks.append(build(Peak, p))
    model = None
    if data.get("model"):
        m = dict(data["model"])
        m["layers"] = [build(LayerOps, layer) for layer in m.get("layers", [])]
        model = build(ModelOps, m)
    return PeakReport(threads=int(data.get("threads", 0)), peaks=peaks, model=model,
                      **{k: data[k] for k in ("method", "excludes") if k in data})


def measure_peak_report(threads: int, model_path: str | Path | None, seconds: float = PEAK_SECONDS) -> PeakReport:
    """Peaks for fp32, int8 (and bf16 where the CPU has it) plus the model's count from `model_path`."""
    model = count_model_ops(model_path) if model_path is not None else None
    return PeakReport(threads=threads, peaks=measure_peaks(threads, seconds=seconds), model=model)
