"""Export any model a spec describes (not the built-in CNN: toolkit.export.onnx): the fp32 ONNX
from an ONNX file handed to us or from a PyTorch module, then fp16, int8 and int8-cpu from that fp32
ONNX, calibrated on the user's data. Every file is named after the model (`<name>.<precision>.onnx`),
carries the spec in its metadata (`model_spec`), and `model.json` is written beside them.

An ONNX file as the model: today's untrusted-file checks first (no external data, no custom
domains, the checker), then an opset below MIN_OPSET is converted with onnx's version converter
(recorded in the metadata); the graph is never reshaped: a fixed batch axis stays fixed (evaluated at
that batch), a (N,C,1,1) classifier output is refused with the fix. Tensor names are kept as they
are (ONNX Runtime and OpenVINO take '/' and ':'); the Triton repository sanitizes them.

fp16: weights and compute in float16, float32 I/O (onnxruntime's float16 converter, keep_io_types),
the same contract as the built-in's. Every export is checked at once in ONNX Runtime against the
fp32 file on the first CHECK_SAMPLES samples of the calibration data (or random inputs when none is
given), with the gate's limits for other models (agreement, relative error, cosine similarity).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import toolkit
from toolkit.errors import CheckFailed, InputError, ModelFileError
from toolkit.export.onnx import ExportCheck, ExportResult
from toolkit.files import paths
from toolkit.files.spec_file import (
    METADATA_KEY,
    spec_from_metadata,
    spec_from_onnx,
    spec_json_compact,
    write_spec,
)
from toolkit.spec import ModelSpec

MIN_OPSET = 13  # per-channel Q/DQ (the int8 exports) needs 13; older files are converted
CHECK_SAMPLES = 64
# The export-time check catches a broken conversion (NaN, a wrong graph), not a precision's fine
# differences: those are the gate's verdict (toolkit eval), on the evaluation data. So the limits
# are the gate's for fp32 and fp16 and looser for int8, whose top-1 agreement on a few samples of a
# model with near-uniform scores (a random init) says little.
EXPORT_CHECK = {
    "fp32": (0.999, 1e-3, 0.99999),  # min agreement, max relative error, min cosine
    "fp16": (0.98, 5e-2, 0.999),
    "int8": (None, None, 0.9),
    "int8-cpu": (None, None, 0.9),
}


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def import_onnx(path: str | Path, name: str | None = None, num_classes: int | None = None,
                task: str | None = None) -> tuple[ModelSpec, bytes, dict]:
    """(spec, fp32 bytes, metadata) for an ONNX file handed over as the model; nothing is written."""
    import onnx

    from toolkit.files.onnx_file import load_checked

    path = Path(path)
    model = load_checked(path, spec=None)
    recorded = spec_from_metadata(model)
    extra = {"source_file": path.name}
    opset = _opset(model)
    if opset < MIN_OPSET:
        from onnx import version_converter

        try:
            model = version_converter.convert_version(model, MIN_OPSET)
            onnx.checker.check_model(model)
        except Exception as exc:  # noqa: BLE001 - the converter raises several types
            raise ModelFileError(f"{path} has opset {opset} and onnx's version converter cannot bring it to {MIN_OPSET} "
                                 f"({' '.join(str(exc).split())[:160]})", f"re-export the model with opset {MIN_OPSET} or newer") from None
        extra["converted_from_opset"] = str(opset)
    source = str(path)
    spec = recorded if recorded is not None and name is None else spec_from_onnx(model, source, name, num_classes, task)
    return spec, model.SerializeToString(), extra


def stamp(model_bytes: bytes, spec: ModelSpec, precision: str, source_sha256: str, extra: dict | None = None) -> bytes:
    """The spec and the export's facts in the file's metadata; the checker with shape inference."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    meta = {p.key: p.value for p in model.metadata_props if p.key not in (METADATA_KEY,)}
    meta.update({"toolkit_version": toolkit.__version__, "precision": precision, "source_sha256": source_sha256,
                 "opset": str(_opset(model)), METADATA_KEY: spec_json_compact(spec), **(extra or {})})
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=str(value))
    model.producer_name = "toolkit"
    model.producer_version = toolkit.__version__
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001
        raise ModelFileError(f"the {precision} export of {spec.name} fails the ONNX checker ({' '.join(str(exc).split())[:160]})",
                             "re-run with --debug; the model may use an operator this precision cannot convert") from None
    _check_batch_axes(model, spec, precision)
    return model.SerializeToString()


def _check_batch_axes(model, spec: ModelSpec, precision: str) -> None:
    """A dynamic batch axis is still symbolic in the written file (a conversion that pins it would
    make every batch size but one fail at run time)."""
    from toolkit.files.spec_file import graph_io

    inputs, outputs = graph_io(model)
    dims = {v.name: v.type.tensor_type.shape.dim for v in inputs + outputs}
    for t in spec.inputs + spec.outputs:
        if t.batch_dynamic and t.name in dims and dims[t.name] and dims[t.name][0].HasField("dim_value"):
            raise ModelFileError(f"the {precision} export of {spec.name} fixes the batch axis of {t.name!r} at {dims[t.name][0].dim_value}",
                                 "please report this; export another precision meanwhile")


def to_fp16(fp32_bytes: bytes) -> tuple[bytes, dict]:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load_from_string(fp32_bytes), keep_io_types=True, disable_shape_infer=False)
    _topological_sort(model.graph)  # the converter appends the input Casts after the nodes that read them
    return model.SerializeToString(), {"io_dtype": "float32", "compute_dtype": "float16"}


def _topological_sort(graph) -> None:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ModelFileError("the fp16 conversion produced a graph with a cycle or a dangling input", "please report this")
        for n in ready:
            ordered.append(n)
            available.update(n.output)
        pending = [n for n in pending if all(n is not r for r in ready)]
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered, strict=True):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def data_batch_size(spec: ModelSpec, wanted: int) -> int:
    """The batch size data is read in: the model's own where its batch axis is fixed."""
    fixed = [t.shape[0] for t in spec.inputs if not t.batch_dynamic]
    return fixed[0] if fixed else wanted


def read_feeds(data, spec: ModelSpec, count: int) -> dict:
    """The first `count` samples of `data` as one feed dict (the export checks' samples)."""
    parts = [part for part, _ in data.batches(data_batch_size(spec, 64), count)]
    if not parts:
        raise InputError(f"the data {data.info.location} holds no samples", "pass data with samples")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def calibration_feeds(data, count: int, batch_size: int = 32, spec: ModelSpec | None = None) -> list[dict]:
    """Up to `count` samples of `data` (a DataSource) as feed dicts, for the calibrators."""
    feeds = []
    for part, _ in data.batches(data_batch_size(spec, batch_size) if spec is not None else batch_size, count):
        feeds.append(part)
    if not feeds:
        raise InputError(f"the calibration data {data.info.location} holds no samples", "pass --calibration-data with samples")
    return feeds


def _check(candidate: bytes, reference: bytes, spec: ModelSpec, precision: str, feeds: dict) -> tuple[ExportCheck, list[str]]:
    import onnxruntime as ort

    from toolkit.compare import Tolerance, output_stats

    min_agreement, max_rel, min_cos = EXPORT_CHECK[precision]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    names = [o.name for o in spec.outputs]
    batch = spec.inputs[0].shape[0] if not spec.inputs[0].batch_dynamic else len(next(iter(feeds.values())))
    n = len(next(iter(feeds.values())))
    outs = []
    for model_bytes in (reference, candidate):
        session = ort.InferenceSession(model_bytes, sess_options=so, providers=["CPUExecutionProvider"])
        parts = [session.run(names, {k: v[i : i + batch] for k, v in feeds.items()}) for i in range(0, n - n % batch, batch)]
        outs.append({name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(names)})
    ref, got = outs
    stats = [output_stats(name, ref[name], got[name]) for name in names]
    broken = [b for s in stats for b in s.breaches(max_rel, min_cos)]
    agreement = 1.0
    if spec.task.kind == "classification":
        primary = spec.class_output.name
        agreement = float((ref[primary].argmax(1) == got[primary].argmax(1)).mean())
        if min_agreement is not None and agreement < min_agreement:
            broken.append(f"agreement {100 * agreement:.2f}% < {100 * min_agreement:.2f}%")
    first = stats[0]
    return ExportCheck(precision, len(ref[names[0]]), first.max_abs, first.mean_abs, agreement,
                       Tolerance(min_agreement=min_agreement or 0.0, max_abs_logit=float("inf")), not broken), broken


def export_model(spec: ModelSpec, fp32_bytes: bytes, precision: str, out_dir: str | Path, *, calibration=None,
                 calibration_data=None, check_feeds: dict, source_sha256: str, extra: dict | None = None,
                 parents: list[Path] | None = None) -> ExportResult:
    """Write `<out>/<name>.<precision>.onnx` for `spec`'s model from its fp32 ONNX bytes (and, for
    fp32, model.json); fail, writing nothing, when the check against the fp32 file breaks its limits."""
    from toolkit.export.quantize import Calibration
    from toolkit.files.store import check_writable_dir, sha256_bytes, write_artifact

    t0 = time.perf_counter()
    if precision not in paths.ONNX_PRECISIONS:
        raise InputError(f"unknown precision {precision!r}", f"choose from {', '.join(paths.ONNX_PRECISIONS)}")
    recipe = calibration or Calibration()
    fp32_final = stamp(fp32_bytes, spec, "fp32", source_sha256, extra)
    if precision == "fp32":
        raw, meta = fp32_final, {}
    elif precision == "fp16":
        raw, meta = to_fp16(fp32_final)
    else:
        from toolkit.export.quantize import quantize_int8, quantize_int8_cpu

        if calibration_data is None:
            raise InputError(f"{precision} needs calibration data for {spec.name}", "pass --calibration-data (e.g. npz:FILE or imagefolder:DIR)")
        feeds = calibration_feeds(calibration_data, recipe.check().images, spec=spec)
        quantize = quantize_int8 if precision == "int8" else quantize_int8_cpu
        raw, meta = quantize(fp32_final, calibration=recipe, feeds=feeds)
        info = calibration_data.info  # as --calibration-data names it: the gate reopens it to warn of an overlap
        meta["calibration_data"] = info.kind if info.kind == "mnist" else f"{info.kind}:{info.location}"
    final = stamp(raw, spec, precision, source_sha256, {**(extra or {}), **meta}) if precision != "fp32" else fp32_final
    check, broken = _check(final, fp32_final, spec, precision, check_feeds)
    if broken:
        raise CheckFailed(f"{precision} export of {spec.name} breaks its limits against the fp32 file on {check.images} samples "
                          f"({'; '.join(broken)}); nothing written", "check the calibration data; rerun with --debug")
    out_dir = check_writable_dir(out_dir, create=True)
    target = paths.onnx_path(precision, out_dir, spec.name)
    fp32_path = paths.onnx_path("fp32", out_dir, spec.name)
    own_parents = [p for p in (parents or []) if Path(p).is_file()]
    if precision != "fp32" and fp32_path.is_file():
        own_parents.append(fp32_path)
    write_artifact(target, lambda tmp: tmp.write_bytes(final), kind=f"onnx-{precision}", parents=own_parents,
                   extra={"precision": precision, "model": spec.name})
    if precision == "fp32":
        write_spec(spec, out_dir, parents=[target, *own_parents])
    return ExportResult(str(target), precision, int(dict(_meta(final)).get("opset", 0)), sha256_bytes(final), len(final),
                        time.perf_counter() - t0, check)


def _meta(model_bytes: bytes) -> dict:
    import onnx

    return {p.key: p.value for p in onnx.load_from_string(model_bytes).metadata_props}


def prepare_model(source: str, *, weights: str | None = None, inputs=(), outputs=(), num_classes: int | None = None,
                  task: str | None = None, name: str | None = None, seed: int = 0, out_dir: str | Path = paths.ARTIFACTS_DIR):
    """(spec, fp32 bytes, metadata, source SHA-256, parents) of the model `--model` names: an ONNX file
    as it is (checked, converted when its opset is too old), or a PyTorch module exported to ONNX,
    whose weights are written as `<out>/<name>.pt` (the reference the gate reloads)."""
    from toolkit.files.store import check_writable_dir, sha256_bytes, sha256_file, write_artifact

    if source.endswith(".onnx"):
        if weights or inputs or outputs:
            raise InputError("--weights, --input and --output apply to PyTorch models; an ONNX file declares its own",
                             "drop them, or pass the PyTorch model instead")
        spec, fp32, extra = import_onnx(source, name, num_classes, task)
        return spec, fp32, extra, sha256_file(source), [Path(source)]
    from toolkit.export.torch_onnx import export_torch_fp32
    from toolkit.model_sources import load_torch_model, parse_input_option

    loaded = load_torch_model(source, weights=weights, inputs=[parse_input_option(t) for t in inputs], outputs=list(outputs),
                              num_classes=num_classes, seed=seed, name=name, task=task)
    fp32 = export_torch_fp32(loaded)
    import io

    import torch

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in loaded.module.state_dict().items()}, buf)
    state = buf.getvalue()
    out_dir = check_writable_dir(out_dir, create=True)
    target = paths.checkpoint_path(out_dir, loaded.spec.name)
    write_artifact(target, lambda tmp: tmp.write_bytes(state), kind="checkpoint",
                   parents=[Path(weights)] if weights else None,
                   extra={"model": loaded.spec.name, "source": source, **({} if weights else {"random_init_seed": seed})})
    extra = {"source_weights_sha256": loaded.weights_sha256 or f"random init, seed {seed}"}
    return loaded.spec, fp32, extra, sha256_bytes(state), [target]
