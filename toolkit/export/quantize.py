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

CALIBRATION_SEED = 1234


def calibration_batches(data_dir=None, count: int = 1000, batch_size: int = 100, seed: int = CALIBRATION_SEED) -> list[np.ndarray]:
    """A fixed random sample of *training* images, in batches."""
    from toolkit.data import load_split_uint8, to_model_input

    images, _ = load_split_uint8("train", data_dir)
    idx = np.sort(np.random.default_rng(seed).choice(len(images), size=min(count, len(images)), replace=False))
    x = to_model_input(images[idx])
    return [x[i : i + batch_size] for i in range(0, len(x), batch_size)]


def quantize_int8(fp32_bytes: bytes, data_dir=None, calibration_images: int = 1000, method: str = "minmax") -> tuple[bytes, dict]:
    """Quantize an fp32 ONNX (bytes) to symmetric s8s8 Q/DQ; returns (bytes, metadata)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
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
            return None if batch is None else {"input": batch}

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        src, pre, dst = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32_bytes)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre), str(dst), Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=methods[method],
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )
        data = dst.read_bytes()
    meta = {
        "quantization": "QDQ s8s8 symmetric, per-channel weights, float bias",
        "calibration": f"{calibration_images} training images (seed {CALIBRATION_SEED}), {method}",
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
