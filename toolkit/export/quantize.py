"""INT8 by explicit quantization: Q/DQ nodes that TensorRT's parser accepts, from onnxruntime.

Layout: QDQ format, signed int8 activations and weights, symmetric (every zero point 0),
per-channel weights, biases left in float (an int32 bias DequantizeLinear is rejected by
TensorRT's ONNX parser). Calibrated on training images only, never the test set.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.model import INPUT_NAME

CALIBRATION_SEED = 1234
TRAIN_IMAGES = 60_000  # calibration_batches never samples more than the split holds


def calibration_batches(data_dir=None, count: int = 1000, batch_size: int = 100, seed: int = CALIBRATION_SEED) -> list[np.ndarray]:
    """A fixed random sample of *training* images, in batches."""
    from toolkit.data import load_split_uint8, to_model_input

    images, _ = load_split_uint8("train", data_dir)
    idx = np.sort(np.random.default_rng(seed).choice(len(images), size=min(count, len(images)), replace=False))
    x = to_model_input(images[idx])
    return [x[i : i + batch_size] for i in range(0, len(x), batch_size)]


CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_PERCENTILE = 99.99  # the best of 99.9, 99.99, 99.999 here (docs/parity.md, calibration choices); onnxruntime defaults to 99.999
# onnxruntime's quantize_static builds its entropy calibrator with 128 histogram bins and 128
# quantized bins, so the KL search has one candidate and returns the min-max range (measured: the
# same scales as minmax, bit for bit). The toolkit runs that calibrator itself with TensorRT's 2048
# bins and hands the ranges to quantize_static as TensorQuantOverrides.
ENTROPY_BINS = 2048
ENTROPY_QUANTIZED_BINS = 128


@dataclass(frozen=True)
class Calibration:
    """How activation ranges are chosen: onnxruntime's calibrators on a fixed sample of training images."""

    method: str = "minmax"  # minmax | entropy | percentile
    images: int = 1000
    percentile: float = DEFAULT_PERCENTILE  # percentile only
    ranges: tuple[tuple[str, float, float], ...] = ()  # (tensor, min, max) pinned by hand, over the calibrator's

    def check(self) -> Calibration:
        from toolkit.errors import InputError

        if self.method not in CALIBRATION_METHODS:
            raise InputError(f"unknown calibration method {self.method!r}", f"choose from {', '.join(CALIBRATION_METHODS)}")
        if self.images <= 0:
            raise InputError(f"--calibration-images must be positive, got {self.images}", "use a few hundred to a few thousand")
        if not 50.0 < self.percentile <= 100.0:
            raise InputError(f"--percentile must be in (50, 100], got {self.percentile}", "pass e.g. --percentile 99.99")
        return self

    def describe(self) -> str:
        what = f"percentile {self.percentile:g}" if self.method == "percentile" else self.method
        pinned = f", {len(self.ranges)} ranges pinned" if self.ranges else ""
        return f"{min(self.images, TRAIN_IMAGES)} training images (seed {CALIBRATION_SEED}), {what}{pinned}"

    def metadata(self) -> dict:
        meta = {"calibration": self.describe(), "calibration_method": self.method,
                "calibration_images": str(min(self.images, TRAIN_IMAGES))}
        if self.method == "percentile":
            meta["calibration_percentile"] = f"{self.percentile:g}"
        return meta

    @classmethod
    def from_metadata(cls, meta: dict) -> Calibration:
        """The calibration an export recorded (files from before these keys: min-max on 1,000 images)."""
        return cls(method=meta.get("calibration_method", "minmax"),
                   images=int(meta.get("calibration_images", 1000)),
                   percentile=float(meta.get("calibration_percentile", DEFAULT_PERCENTILE)))


def calibration_recipe(method: str | None, percentile: float | None = None, images: int = 1000) -> Calibration | None:
    """The CLI's --calibration/--percentile as a Calibration (None when neither is given)."""
    from toolkit.errors import InputError

    if percentile is not None and method != "percentile":
        raise InputError("--percentile applies to --calibration percentile only", "add --calibration percentile or drop --percentile")
    if method is None:
        return None
    return Calibration(method, images, DEFAULT_PERCENTILE if percentile is None else percentile).check()


def _reader(batches):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            batch = next(self._it, None)
            # a feed dict (any model's calibration data) or the built-in's image batch
            return None if batch is None else batch if isinstance(batch, dict) else {INPUT_NAME: batch}

    return Reader()


def _entropy_ranges(model_path: Path, batches, workdir: Path) -> dict[str, tuple[float, float]]:
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    calibrator = create_calibrator(
        str(model_path), [], augmented_model_path=str(workdir / "entropy-augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options={"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS, "symmetric": True},
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the calibrator prints its progress
        calibrator.collect_data(_reader(batches))
        data = calibrator.compute_data()
    return {name: (float(r.range_value[0]), float(r.range_value[1])) for name, r in data.data.items()}


def _quantize_static(fp32_bytes: bytes, data_dir, calibration: Calibration, nodes_to_exclude=(),
                     exclude_first_conv: bool = False, feeds=None, **options) -> bytes:
    """onnxruntime's quantize_static over the fp32 bytes, calibrated on training images (or on
    `feeds`, a list of feed dicts: another model's calibration data)."""
    from onnxruntime.quantization import CalibrationMethod, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibration.check()
    batches = calibration_batches(data_dir, calibration.images) if feeds is None else feeds
    extra = dict(options.pop("extra_options", {}))
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        src, pre, dst = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "quantized.onnx")
        src.write_bytes(fp32_bytes)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        excluded = list(nodes_to_exclude)
        if exclude_first_conv and (feeds is None or _first_conv_or_none(pre)):
            excluded.append(first_conv_name(pre))
        _check_node_names(pre, excluded)
        ranges = {}
        method = CalibrationMethod.MinMax
        if calibration.method == "entropy":
            ranges = _entropy_ranges(pre, batches, Path(tmp))
        elif calibration.method == "percentile":
            method = CalibrationMethod.Percentile
            extra["CalibPercentile"] = calibration.percentile
        ranges.update({name: (lo, hi) for name, lo, hi in calibration.ranges})
        if ranges:
            extra["TensorQuantOverrides"] = {
                name: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for name, (lo, hi) in ranges.items()
            }
        quantize_static(str(pre), str(dst), _reader(batches), calibrate_method=method,
                        nodes_to_exclude=sorted(set(excluded)), extra_options=extra, **options)
        return dst.read_bytes()


def _check_node_names(model_path: Path, names: list[str]) -> None:
    import onnx

    from toolkit.errors import InputError

    known = {n.name for n in onnx.load(str(model_path)).graph.node}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"no node named {', '.join(unknown)} in the model", f"node names: {', '.join(sorted(known))}")


def quantize_int8(fp32_bytes: bytes, data_dir=None, calibration: Calibration | None = None,
                  nodes_to_exclude=(), feeds=None) -> tuple[bytes, dict]:
    """Quantize an fp32 ONNX (bytes) to symmetric s8s8 Q/DQ; returns (bytes, metadata).
    `nodes_to_exclude`: node names left in fp32 (no Q/DQ around them)."""
    from onnxruntime.quantization import QuantFormat, QuantType

    calibration = calibration or Calibration()
    data = _quantize_static(
        fp32_bytes, data_dir, calibration, nodes_to_exclude, feeds=feeds,
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    )
    meta = {"quantization": "QDQ s8s8 symmetric, per-channel weights, float bias", **calibration.metadata()}
    if feeds is not None:
        meta.update(_feeds_metadata(feeds))
    if nodes_to_exclude:
        meta["nodes_in_fp32"] = ",".join(nodes_to_exclude)
    return data, meta


def _feeds_metadata(feeds) -> dict:
    """Calibrated on the user's data: what it was, not the training images describe() names."""
    count = sum(len(next(iter(f.values()))) for f in feeds)
    return {"calibration": f"{count} samples of the calibration data", "calibration_images": str(count)}


def _first_conv_or_none(model_path) -> str | None:
    try:
        return first_conv_name(model_path)
    except ValueError:
        return None


def first_conv_name(model_path: str | Path) -> str:
    """Name of the Conv fed by the graph input (the 1-channel 5x5 convolution)."""
    import onnx

    model = onnx.load(str(model_path))
    graph_input = model.graph.input[0].name
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[0] == graph_input:
            return node.name
    raise ValueError("no Conv reads the graph input")


def quantize_int8_cpu(fp32_bytes: bytes, data_dir=None, calibration: Calibration | None = None,
                      nodes_to_exclude=(), feeds=None) -> tuple[bytes, dict]:
    """Quantize an fp32 ONNX (bytes) for CPU runtimes: Q/DQ with asymmetric uint8 activations,
    symmetric int8 per-channel weights, int32 biases, and the first convolution left in fp32.

    Why this layout, measured on a 2-core AVX512-VNNI Xeon at batch 256 (ONNX Runtime 1.32): CPU
    int8 GEMMs take u8 activations x s8 weights, and a 1-input-channel convolution gains nothing
    from int8 (its im2col GEMM has K=25) -- quantized, it alone took longer than the whole fp32
    model. Keeping it fp32 and quantizing the 16->32 convolution and the classifier gives ~1.6x
    fp32 throughput in ONNX Runtime (with its QDQ propagation pass off: see
    toolkit/backends/onnxruntime.py) at the same accuracy; the s8s8 `int8` file ran at ~0.5x."""
    from onnxruntime.quantization import QuantFormat, QuantType

    calibration = calibration or Calibration()
    data = _quantize_static(
        fp32_bytes, data_dir, calibration, nodes_to_exclude, exclude_first_conv=True, feeds=feeds,
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    meta = {
        "quantization": "QDQ u8s8: asymmetric uint8 activations, symmetric int8 per-channel weights, int32 bias; first conv fp32",
        **calibration.metadata(),
        "target": "CPU runtimes (ONNX Runtime, OpenVINO); not for TensorRT (use int8)",
    }
    if feeds is not None:
        meta.update(_feeds_metadata(feeds))
    if nodes_to_exclude:
        meta["nodes_in_fp32"] = ",".join(nodes_to_exclude)
    return data, meta


def check_qdq_layout(model) -> list[str]:
    """Problems that would stop TensorRT's explicit quantization (empty list when none)."""
    import onnx
    from onnx import numpy_helper

    problems = []
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) >= 3 and node.input[2]:
            zp = inits.get(node.input[2])
            if zp is None:
                problems.append(f"{node.name}: zero point is not a constant")
                continue
            if zp.data_type != onnx.TensorProto.INT8:
                problems.append(f"{node.name}: zero point type {onnx.TensorProto.DataType.Name(zp.data_type)} (TensorRT needs INT8)")
            if np.any(numpy_helper.to_array(zp) != 0):
                problems.append(f"{node.name}: non-zero zero point")
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and inits[node.input[0]].data_type == onnx.TensorProto.INT32:
            problems.append(f"{node.name}: int32 (bias) DequantizeLinear")
    return problems
