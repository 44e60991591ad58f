"""INT8 by explicit quantization: Q/DQ nodes that TensorRT's parser accepts, from onnxruntime.

Layout: QDQ format, signed int8 activations and weights, symmetric (every zero point 0),
per-channel weights, biases left in float (an int32 bias DequantizeLinear is rejected by
TensorRT's ONNX parser). Calibrated on training images only, never the test set.
"""

from __future__ import annotations

import tempfile
import warnings
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


def _quantize_static(fp32_bytes: bytes, data_dir, calibration_images: int, exclude_first_conv: bool = False, **options) -> bytes:
    """onnxruntime's quantize_static over the fp32 bytes, calibrated on training images."""
    from onnxruntime.quantization import CalibrationDataReader, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from toolkit.errors import InputError

    if calibration_images <= 0:
        raise InputError(f"--calibration-images must be positive, got {calibration_images}", "use a few hundred to a few thousand")
    batches = calibration_batches(data_dir, calibration_images)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter(batches)

        def get_next(self):
            batch = next(self._it, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src, pre, dst = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "quantized.onnx")
        src.write_bytes(fp32_bytes)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if exclude_first_conv:
            options["nodes_to_exclude"] = [first_conv_name(pre)]
        quantize_static(str(pre), str(dst), Reader(), **options)
        return dst.read_bytes()


def quantize_int8(fp32_bytes: bytes, data_dir=None, calibration_images: int = 1000, method: str = "minmax") -> tuple[bytes, dict]:
    """Quantize an fp32 ONNX (bytes) to symmetric s8s8 Q/DQ; returns (bytes, metadata)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    data = _quantize_static(
        fp32_bytes, data_dir, calibration_images,
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=methods[method],
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
    )
    meta = {
        "quantization": "QDQ s8s8 symmetric, per-channel weights, float bias",
        "calibration": f"{min(calibration_images, TRAIN_IMAGES)} training images (seed {CALIBRATION_SEED}), {method}",
    }
    return data, meta


def first_conv_name(model_path: str | Path) -> str:
    """Name of the Conv fed by the graph input (the 1-channel 5x5 convolution)."""
    import onnx

    model = onnx.load(str(model_path))
    graph_input = model.graph.input[0].name
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[0] == graph_input:
            return node.name
    raise ValueError("no Conv reads the graph input")


def quantize_int8_cpu(fp32_bytes: bytes, data_dir=None, calibration_images: int = 1000) -> tuple[bytes, dict]:
    """Quantize an fp32 ONNX (bytes) for CPU runtimes: Q/DQ with asymmetric uint8 activations,
    symmetric int8 per-channel weights, int32 biases, and the first convolution left in fp32.

    Why this layout, measured on a 2-core AVX512-VNNI Xeon at batch 256 (ONNX Runtime 1.32): CPU
    int8 GEMMs take u8 activations x s8 weights, and a 1-input-channel convolution gains nothing
    from int8 (its im2col GEMM has K=25) -- quantized, it alone took longer than the whole fp32
    model. Keeping it fp32 and quantizing the 16->32 convolution and the classifier gives ~1.6x
    fp32 throughput in ONNX Runtime (with its QDQ propagation pass off: see
    toolkit/backends/onnxruntime.py) at the same accuracy; the s8s8 `int8` file ran at ~0.5x."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType

    data = _quantize_static(
        fp32_bytes, data_dir, calibration_images, exclude_first_conv=True,
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=CalibrationMethod.MinMax,
    )
    meta = {
        "quantization": "QDQ u8s8: asymmetric uint8 activations, symmetric int8 per-channel weights, int32 bias; first conv fp32",
        "calibration": f"{min(calibration_images, TRAIN_IMAGES)} training images (seed {CALIBRATION_SEED}), minmax",
        "target": "CPU runtimes (ONNX Runtime, OpenVINO); not for TensorRT (use int8)",
    }
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
