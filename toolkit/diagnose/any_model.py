"""`toolkit diagnose` for another model than the built-in CNN: the same per-tensor analysis
(toolkit.diagnose.analysis) with the model's own tensor names, on its own data."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from toolkit.diagnose.analysis import DEFAULT_MIN_SQNR_DB, Diagnosis, diagnose_models, select_images
from toolkit.diagnose.run import _capture_for, _load_onnx, check_arguments, parse_images, read_parity
from toolkit.errors import InputError, UnavailableError
from toolkit.files import paths


def diagnose_model(spec, data, backend: str, precision: str, artifacts_dir, images, min_sqnr_db, bisect: bool, calibration,
                   threads: int | None) -> Diagnosis:
    """Another model (single input, single output): every tensor of its `precision` file against its
    fp32 file, on the pair's flipped samples in parity.json plus a fixed sample of others, or the
    first N samples of `data`. The exposure check's limit is relative (the gate's relative error for
    the precision, times the largest output), since logit-absolute limits mean nothing across models."""
    from toolkit.backends import registry
    from toolkit.export.model_export import read_feeds
    from toolkit.parity import tolerance_key
    from toolkit.parity_spec import MODEL_TOLERANCES

    t0 = time.perf_counter()
    images = parse_images(images) if isinstance(images, str) else images
    min_sqnr_db = DEFAULT_MIN_SQNR_DB if min_sqnr_db is None else min_sqnr_db
    check_arguments(backend, precision, images, min_sqnr_db, bisect, False)
    if bisect or calibration is not None or backend == "tensorrt":
        raise InputError(f"--bisect, --calibration and the tensorrt backend diagnose the built-in CNN only so far; this is {spec.name}",
                         "diagnose it with --backend onnxruntime or openvino")
    if len(spec.inputs) != 1 or len(spec.outputs) != 1:
        raise InputError(f"diagnose takes models with one input and one output; {spec.name} has {len(spec.inputs)} and {len(spec.outputs)}",
                         "evaluate it with `toolkit eval`, which compares every output")
    if data is None:
        raise InputError(f"diagnose needs the samples to run {spec.name} on", "pass --data (the data given to `toolkit eval`)")
    status = registry.status(backend)
    if not status.available:
        raise UnavailableError(f"backend {backend} is unavailable: {status.reason}")
    artifacts_dir = Path(artifacts_dir)
    reference_path = paths.onnx_path("fp32", artifacts_dir, spec.name)
    candidate_path = paths.onnx_path(precision, artifacts_dir, spec.name)
    reference_model = _load_onnx(reference_path, "fp32", spec)
    candidate_model = _load_onnx(candidate_path, precision, spec)
    parity = read_parity(artifacts_dir, backend, precision) if images == "flipped" else None
    total = data.info.samples
    if total is None:
        raise InputError(f"the data {data.info.location} cannot say how many samples it holds", "pass --images N")
    indices, how = select_images(parity, backend, precision, None if images == "flipped" else int(images), test_size=total)
    how = how.replace("test images", "samples")
    feeds = read_feeds(data, spec, max(indices) + 1)
    batch = feeds[spec.inputs[0].name][indices]
    fixed = None if spec.inputs[0].batch_dynamic else spec.inputs[0].shape[0]
    if fixed:
        raise InputError(f"diagnose runs its exposed graphs on many samples at once; {spec.name}'s batch axis is fixed at {fixed}",
                         "evaluate it with `toolkit eval`")
    with registry.create_backend(backend, precision, candidate_path, threads=threads, spec=spec) as runner:
        plain = np.concatenate([runner.run(batch[i : i + 256]) for i in range(0, len(batch), 256)])
        runtime = runner.describe().runtime
    tol = MODEL_TOLERANCES[tolerance_key(precision, registry.get_spec(backend).device)]
    limit = (tol.max_rel_error or 0.0) * float(np.abs(plain).max() if plain.size else 0.0)
    found = diagnose_models(reference_model, candidate_model, batch, _capture_for(backend, precision, threads, spec), plain,
                            min_sqnr_db, limit, spec=spec)
    result = Diagnosis(backend, precision, str(candidate_path), str(reference_path), runtime, min_sqnr_db, indices, how,
                       found["tensors"], found["exposure"], found["verdict"], found["agreement"], 0.0)
    result.notes.append(f"model {spec.name}: the exposure check's limit is {limit:.3g}, the gate's relative error for {precision} "
                        f"({tol.max_rel_error:g}) times the largest output")
    result.seconds = time.perf_counter() - t0
    return result
