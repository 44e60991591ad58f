"""ONNX export in fp32 and fp16, with metadata, checks, and a parity check against PyTorch.

fp16 contract: weights and compute in float16, I/O in float32 (a Cast at each edge), so every
backend and every caller feeds the same float32 batch whatever the precision.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import toolkit
from toolkit.compare import Tolerance, compare_logits, tolerance_breaches
from toolkit.errors import CheckFailed, InputError
from toolkit.files import paths
from toolkit.files.spec_file import spec_json_compact, write_spec
from toolkit.model import IMAGE_SHAPE, INPUT_NAME, MNIST_CNN_SPEC, OUTPUT_NAME

OPSET = 18
CHECK_IMAGES = 256  # the first N test images: fixed, real data for the post-export check


ExportTolerance = Tolerance  # max |logit - PyTorch fp32 logit| and top-1 agreement over the check batch

# Measured on the committed checkpoint (logits reach |x| ~ 35): fp32 ~1e-5, fp16 ~4e-3, int8 ~0.5.
EXPORT_TOLERANCES = {
    "fp32": ExportTolerance(max_abs_logit=1e-4, min_agreement=1.0),
    "fp16": ExportTolerance(max_abs_logit=5e-2, min_agreement=0.996),
    "int8": ExportTolerance(max_abs_logit=2.0, min_agreement=0.98),
    "int8-cpu": ExportTolerance(max_abs_logit=2.0, min_agreement=0.98),
}


@dataclass
class ExportCheck:
    precision: str
    images: int
    max_abs_logit: float
    mean_abs_logit: float
    agreement: float
    tolerance: ExportTolerance
    passed: bool


@dataclass
class ExportResult:
    path: str
    precision: str
    opset: int
    sha256: str
    size: int
    seconds: float
    check: ExportCheck


class _Float16Model:
    """Builds the fp16 wrapper lazily so importing this module never needs torch."""

    @staticmethod
    def wrap(model):
        import torch

        class Float16Edges(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner.half()

            def forward(self, x):
                return self.inner(x.half()).float()

        return Float16Edges(copy.deepcopy(model)).eval()


def export_bytes(model, precision: str) -> bytes:
    """Serialized ONNX of `model` (fp32 or fp16) with a dynamic batch dimension."""
    import torch

    if precision not in ("fp32", "fp16"):
        raise InputError(f"export_bytes handles fp32 and fp16, not {precision!r}")
    module = _Float16Model.wrap(model) if precision == "fp16" else model
    example = torch.rand(2, *IMAGE_SHAPE)
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with warnings.catch_warnings(), torch.inference_mode(False):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes={"x": {0: batch}}, opset_version=OPSET, dynamo=True, external_data=False,
            verbose=False, optimize=True,
        )
    proto = program.model_proto
    return proto.SerializeToString()


def finalize(proto_bytes: bytes, precision: str, checkpoint_sha256: str, extra_meta: dict | None = None) -> bytes:
    """Rename the batch dim, stamp metadata, run the checker with shape inference."""
    import onnx

    model = onnx.load_from_string(proto_bytes)
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    used = {n.domain for n in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    meta = {
        "toolkit_version": toolkit.__version__,
        "precision": precision,
        "source_checkpoint_sha256": checkpoint_sha256,
        "opset": str(opset),
        "input_contract": "input: float32 (N,1,28,28) in [0,1]; logits: float32 (N,10)",
        "model_spec": spec_json_compact(MNIST_CNN_SPEC),  # the one key every export carries, whatever the model
        **(extra_meta or {}),
    }
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=str(value))
    model.producer_name = "toolkit"
    model.producer_version = toolkit.__version__
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(inferred)
    return model.SerializeToString()


def check_against_pytorch(model_bytes: bytes, reference_model, precision: str, images: np.ndarray, tolerance: ExportTolerance | None = None) -> ExportCheck:
    """Run the exported bytes in onnxruntime (CPU) on real images and compare with PyTorch fp32."""
    import onnxruntime as ort
    import torch

    tol = tolerance or EXPORT_TOLERANCES[precision]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {INPUT_NAME: images[i : i + 64]})[0] for i in range(0, len(images), 64)])
    with torch.inference_mode():
        ref = reference_model(torch.from_numpy(images)).numpy()
    cmp = compare_logits(ref, got)
    passed = not tolerance_breaches(cmp, tol)
    return ExportCheck(precision, len(images), cmp.max_abs_logit, cmp.mean_abs_logit, cmp.agreement, tol, passed)


def check_images(data_dir=None, count: int = CHECK_IMAGES) -> np.ndarray:
    from toolkit.data import load_split_uint8, to_model_input

    images, _ = load_split_uint8("test", data_dir)
    return to_model_input(images[:count])


def export_onnx(
    checkpoint: str | Path,
    precision: str,
    out_dir: str | Path = paths.ARTIFACTS_DIR,
    data_dir=None,
    calibration_images: int = 1000,
    calibration: str = "minmax",
    percentile: float | None = None,
) -> ExportResult:
    """Export one precision to `out_dir/mnist_cnn.<precision>.onnx`; fail (nothing written) if its
    outputs on real test images break the precision's tolerance against PyTorch fp32.
    int8 and int8-cpu: `calibration` is onnxruntime's calibrator (minmax, entropy, percentile),
    `percentile` the percentile's cut (default DEFAULT_PERCENTILE); both recorded in the metadata."""
    import time

    import onnx  # noqa: F401 - both are needed after the export: a missing one should stop it before the work
    import onnxruntime  # noqa: F401

    from toolkit.export.quantize import DEFAULT_PERCENTILE, TRAIN_IMAGES, Calibration
    from toolkit.files.checkpoint import load_model
    from toolkit.files.store import check_writable_dir, sha256_bytes, sha256_file, write_artifact

    t0 = time.perf_counter()
    if precision not in paths.ONNX_PRECISIONS:
        raise InputError(f"unknown precision {precision!r}", f"choose from {', '.join(paths.ONNX_PRECISIONS)}")
    if percentile is not None and calibration != "percentile":
        raise InputError("--percentile applies to --calibration percentile only", "add --calibration percentile or drop --percentile")
    recipe = Calibration(calibration, calibration_images, DEFAULT_PERCENTILE if percentile is None else percentile)
    if precision in ("int8", "int8-cpu"):
        recipe.check()  # bad calibration options are bad input before the export's work
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint)
    # Created like `mkdir -p` once the inputs are known good, so a refused command leaves no empty directory.
    out_dir = check_writable_dir(out_dir, create=True)
    ckpt_sha = sha256_file(checkpoint)
    fp32_bytes = export_bytes(model, "fp32")
    if precision == "fp32":
        raw, extra = fp32_bytes, {}
    elif precision == "fp16":
        raw, extra = export_bytes(model, "fp16"), {"io_dtype": "float32", "compute_dtype": "float16"}
    elif precision == "int8":
        from toolkit.export.quantize import quantize_int8

        raw, extra = quantize_int8(fp32_bytes, data_dir=data_dir, calibration=recipe)
    elif precision == "int8-cpu":
        from toolkit.export.quantize import quantize_int8_cpu

        raw, extra = quantize_int8_cpu(fp32_bytes, data_dir=data_dir, calibration=recipe)
    else:
        raise InputError(f"unknown precision {precision!r}", f"choose from {', '.join(paths.ONNX_PRECISIONS)}")
    final = finalize(raw, precision, ckpt_sha, extra)
    check = check_against_pytorch(final, model, precision, check_images(data_dir))
    if not check.passed:
        raise CheckFailed(
            f"{precision} export breaks its tolerance against PyTorch on {check.images} test images "
            f"(max |dlogit| {check.max_abs_logit:.3g} > {check.tolerance.max_abs_logit:g} or agreement "
            f"{check.agreement:.4f} < {check.tolerance.min_agreement:g}); nothing written",
            "check the checkpoint; rerun with --debug",
        )
    target = paths.onnx_path(precision, out_dir)
    manifest_extra = {"precision": precision, "opset": OPSET}
    if precision in ("int8", "int8-cpu"):
        manifest_extra["calibration"] = {"method": recipe.method, "images": min(recipe.images, TRAIN_IMAGES),
                                         **({"percentile": recipe.percentile} if recipe.method == "percentile" else {})}
    write_artifact(target, lambda tmp: tmp.write_bytes(final), kind=f"onnx-{precision}", parents=[checkpoint],
                   extra=manifest_extra)
    if precision == "fp32":  # the spec beside the artifacts, as every model's export writes it
        write_spec(MNIST_CNN_SPEC, out_dir, parents=[checkpoint])
    return ExportResult(str(target), precision, OPSET, sha256_bytes(final), len(final), time.perf_counter() - t0, check)


