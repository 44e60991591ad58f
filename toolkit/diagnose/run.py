"""`toolkit diagnose`: load the files, pick the images, run the analysis, optionally bisect."""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from toolkit.diagnose.analysis import DEFAULT_MIN_SQNR_DB, Diagnosis, diagnose_models, select_images
from toolkit.diagnose.bisect import BisectResult, Speed, Trial, rank_nodes, search
from toolkit.errors import InputError, ModelFileError, UnavailableError
from toolkit.files import paths

DIAGNOSE_BACKENDS = ("onnxruntime", "openvino", "tensorrt")  # the runtimes whose tensors capture.py can expose
BISECT_BACKENDS = ("onnxruntime", "openvino")  # re-exports are gated as ONNX files; TensorRT would need an engine per trial
BISECT_PRECISIONS = ("fp16", "int8", "int8-cpu")
MIXED_SUFFIX = "-mixed"  # mnist_cnn.<precision>-mixed.onnx: the bisect's re-export, written only with --write


def mixed_path(precision: str, artifacts_dir: str | Path) -> Path:
    return Path(artifacts_dir) / f"mnist_cnn.{precision}{MIXED_SUFFIX}.onnx"


def check_arguments(backend: str, precision: str, images, min_sqnr_db: float, bisect: bool, write: bool) -> None:
    from toolkit.backends import registry

    registry.get_spec(backend)
    registry.check_precision(precision)
    if backend not in DIAGNOSE_BACKENDS:
        raise InputError(f"diagnose cannot expose {backend}'s intermediate tensors",
                         f"use one of {', '.join(DIAGNOSE_BACKENDS)} (onnxruntime runs the same ONNX files on the CPU)")
    if precision not in registry.get_spec(backend).precisions:
        raise InputError(f"backend {backend} does not run {precision}", f"it runs {', '.join(registry.get_spec(backend).precisions)}")
    if images != "flipped" and not (isinstance(images, int) and images > 0):
        raise InputError(f"--images must be 'flipped' or a positive number of test images, got {images!r}",
                         "pass --images flipped (the default) or e.g. --images 500")
    if not math.isfinite(min_sqnr_db):
        raise InputError(f"--min-sqnr must be a finite number of dB, got {min_sqnr_db}", f"the default is {DEFAULT_MIN_SQNR_DB:g}")
    if bisect and precision not in BISECT_PRECISIONS:
        raise InputError(f"--bisect searches which nodes to keep in fp32; {precision} has none to keep",
                         f"use it with --precision {' / '.join(BISECT_PRECISIONS)}")
    if bisect and backend not in BISECT_BACKENDS:
        raise InputError(f"--bisect re-exports ONNX files and gates them on {' or '.join(BISECT_BACKENDS)}, not {backend}",
                         "bisect with --backend onnxruntime, then build the engine from the file it writes")
    if write and not bisect:
        raise InputError("--write saves the bisect's re-export", "add --bisect")


def parse_images(text: str) -> str | int:
    """--images: 'flipped' or a positive integer."""
    if text.strip().lower() == "flipped":
        return "flipped"
    try:
        value = int(text)
    except ValueError:
        raise InputError(f"--images must be 'flipped' or a positive number of test images, got {text!r}",
                         "pass --images flipped (the default) or e.g. --images 500") from None
    if value <= 0:
        raise InputError(f"--images must be positive, got {value}", "pass e.g. --images 500")
    return value


def read_parity(artifacts_dir: Path, backend: str, precision: str) -> dict:
    path = artifacts_dir / "parity.json"
    if not path.is_file():
        raise InputError(f"no parity.json in {artifacts_dir} to take the flipped images from",
                         f"run `toolkit eval --backend {backend}` first, or pass --images N")
    try:
        parity = json.loads(path.read_text(encoding="utf-8"))
        pairs = parity["pairs"]
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{path} is not a parity report", "rerun `toolkit eval`, or pass --images N") from None
    if not any(isinstance(p, dict) and p.get("backend") == backend and p.get("precision") == precision
               and p.get("status") in ("pass", "fail") for p in pairs):
        raise InputError(f"{path} has no result for {backend}/{precision}",
                         f"run `toolkit eval --backend {backend} --precision {precision}`, or pass --images N")
    return parity


def _load_onnx(path: Path, precision: str, spec=None):
    from toolkit.files.onnx_file import load_checked
    from toolkit.files.paths import not_a_file

    if problem := not_a_file(path):
        problem = "is missing" if problem == "does not exist" else problem
        raise ModelFileError(f"{path} {problem}", f"export it with `toolkit export --format onnx --precision {precision}`")
    return load_checked(path) if spec is None else load_checked(path, spec)


def exposure_tolerance(backend: str, precision: str) -> float:
    """How far the exposed model's logits may move from the unmodified model's: the gate's logit
    limit for the precision, or (int8, where the gate has none) the export check's."""
    from toolkit.backends import registry
    from toolkit.export.onnx import EXPORT_TOLERANCES
    from toolkit.parity import DEFAULT_TOLERANCES, tolerance_key

    tol = DEFAULT_TOLERANCES[tolerance_key(precision, registry.get_spec(backend).device)]
    return tol.max_abs_logit if tol.max_abs_logit is not None else EXPORT_TOLERANCES[precision].max_abs_logit


def _logits(backend, images: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([backend.run(images[i : i + batch]) for i in range(0, len(images), batch)])


def _capture_for(backend_name: str, precision: str, threads: int | None, spec=None):
    from toolkit.backends import registry
    from toolkit.diagnose import capture

    named = {} if spec is None else {"input_name": spec.inputs[0].name}
    if backend_name == "onnxruntime":
        # The backend's own session settings (optimisations, the QDQ propagation it disables).
        options = registry.create_backend(backend_name, precision, threads=threads).session_options()
        return lambda model, names, images: capture.capture_onnxruntime(model, names, images, session_options=options, **named)
    runner = capture.RUNNERS[backend_name]
    return lambda model, names, images: runner(model, names, images, threads=threads, **named)


def diagnose(
    backend: str,
    precision: str,
    artifacts_dir: str | Path = paths.ARTIFACTS_DIR,
    checkpoint: str | Path | None = None,
    images: str | int = "flipped",
    min_sqnr_db: float | None = None,
    bisect: bool = False,
    write: bool = False,
    data_dir=None,
    threads: int | None = None,
    reexport=None,
    calibration=None,
) -> Diagnosis:
    """Diagnose one (backend, precision) pair against the fp32 ONNX; see toolkit/diagnose/analysis.py.

    `calibration` (a toolkit.export.quantize.Calibration, int8 and int8-cpu): diagnose the file that
    calibration would make, exported in memory from the fp32 ONNX, instead of the one on disk (and
    bisect with it). `reexport(kept_fp32: list[str]) -> bytes` overrides how --bisect re-exports
    (the default reads the recipe from the candidate's metadata); tests use it to bisect a
    deliberately broken recipe. Another model than the built-in: toolkit.diagnose.any_model."""
    from toolkit.backends import registry

    t0 = time.perf_counter()
    images = parse_images(images) if isinstance(images, str) else images
    min_sqnr_db = DEFAULT_MIN_SQNR_DB if min_sqnr_db is None else min_sqnr_db
    if threads is not None and threads <= 0:
        raise InputError(f"--threads must be a positive integer, got {threads}", "omit it to use every core")
    check_arguments(backend, precision, images, min_sqnr_db, bisect, write)
    if calibration is not None:
        if precision not in ("int8", "int8-cpu") or backend not in BISECT_BACKENDS:
            raise InputError("--calibration diagnoses an int8 or int8-cpu export made in memory",
                             f"use it with --precision int8 or int8-cpu on {' or '.join(BISECT_BACKENDS)}")
        calibration.check()
    status = registry.status(backend)
    if not status.available:
        raise UnavailableError(f"backend {backend} is unavailable: {status.reason}")
    artifacts_dir = Path(artifacts_dir)
    checkpoint = Path(checkpoint) if checkpoint else paths.checkpoint_path(artifacts_dir)
    reference_path = paths.onnx_path("fp32", artifacts_dir)
    reference_model = _load_onnx(reference_path, "fp32")
    with tempfile.TemporaryDirectory(prefix="toolkit-diagnose-") as tmp:
        if calibration is None:
            candidate_path = paths.onnx_path(precision, artifacts_dir)
            candidate_model = _load_onnx(candidate_path, precision)
            plain_path = Path(registry.model_path_for(backend, precision, artifacts_dir))
            if not plain_path.is_file():
                raise ModelFileError(f"{plain_path} is missing", f"build it with `toolkit export --format tensorrt --precision {precision}`")
        else:
            reexport = reexport or recipe_reexport(precision, reference_model.SerializeToString(), reference_model, data_dir, calibration)
            candidate_path = plain_path = Path(tmp) / f"mnist_cnn.{precision}.onnx"
            candidate_path.write_bytes(reexport([]))
            candidate_model = _load_onnx(candidate_path, precision)
        result = _diagnose_files(backend, precision, reference_path, reference_model, candidate_path, candidate_model,
                                 plain_path, artifacts_dir, images, min_sqnr_db, data_dir, threads,
                                 flipped_from_parity=calibration is None)
        if calibration is not None:
            result.model_path = f"(in memory) {precision} with {calibration.describe()}"
            result.notes.append(f"the candidate is the {precision} export that calibration ({calibration.describe()}) "
                                "would make, exported in memory from the fp32 ONNX; nothing is written unless --bisect --write")
        if bisect:
            result.bisect = run_bisect(result, backend, precision, artifacts_dir, checkpoint, reference_model, candidate_model,
                                       candidate_path, data_dir, threads, write, reexport)
    result.seconds = time.perf_counter() - t0
    return result


def _diagnose_files(backend, precision, reference_path, reference_model, candidate_path, candidate_model, plain_path,
                    artifacts_dir, images, min_sqnr_db, data_dir, threads, flipped_from_parity: bool) -> Diagnosis:
    from toolkit.backends import registry
    from toolkit.data import load_split_uint8, to_model_input

    parity = None
    if images == "flipped" and flipped_from_parity:
        parity = read_parity(artifacts_dir, backend, precision)
    test_u8, _ = load_split_uint8("test", data_dir)
    indices, how = select_images(parity, backend, precision, None if images == "flipped" else int(images), test_size=len(test_u8))
    batch = to_model_input(test_u8[indices])
    with registry.create_backend(backend, precision, plain_path, threads=threads) as runner:
        plain_logits = _logits(runner, batch)
        runtime = runner.describe().runtime
    found = diagnose_models(reference_model, candidate_model, batch, _capture_for(backend, precision, threads), plain_logits,
                            min_sqnr_db, exposure_tolerance(backend, precision))
    result = Diagnosis(backend, precision, str(candidate_path), str(reference_path), runtime, min_sqnr_db, indices, how,
                       found["tensors"], found["exposure"], found["verdict"], found["agreement"], 0.0)
    if backend == "onnxruntime" and precision == "fp16":
        result.notes.append("onnxruntime's CPU provider computes this fp16 graph in fp32: its optimized graph (checked with "
                            "onnxruntime 1.32) widens the fp16 weights and keeps no fp16 activation between the input and "
                            "the output, while the exposed graph stores every tensor in fp16, so the per-tensor errors are "
                            "an upper bound; the exposure check says how far the two runs' logits are apart")
    if backend == "tensorrt":
        result.notes.append("TensorRT: the tensors come from an engine built from the ONNX file with every float "
                            "tensor marked as an output; the exposure check compares it with the exported engine")
    return result


def recipe_reexport(precision: str, fp32_bytes: bytes, candidate_model, data_dir, calibration=None):
    """Re-export `precision` from the fp32 bytes with the candidate's recorded recipe (or the given
    calibration), keeping the given nodes in fp32: int8 by the quantizer's nodes_to_exclude, fp16 by
    node (block list)."""
    from toolkit.export.onnx import finalize

    meta = {p.key: p.value for p in candidate_model.metadata_props}
    checkpoint_sha = meta.get("source_checkpoint_sha256", "")

    def reexport(kept: list[str]) -> bytes:
        if precision == "fp16":
            from toolkit.export.fp16_nodes import convert_fp16

            raw = convert_fp16(fp32_bytes, kept)
            extra = {"io_dtype": "float32", "compute_dtype": "float16"}
            if kept:
                extra["nodes_in_fp32"] = ",".join(kept)
        else:
            from toolkit.export.quantize import Calibration, quantize_int8, quantize_int8_cpu

            quantize = quantize_int8 if precision == "int8" else quantize_int8_cpu
            raw, extra = quantize(fp32_bytes, data_dir, calibration or Calibration.from_metadata(meta), nodes_to_exclude=kept)
        return finalize(raw, precision, checkpoint_sha, extra)

    return reexport


def bisect_candidates(precision: str, reference_model) -> list[str]:
    """Nodes whose precision the re-export can change: compute nodes of the fp32 graph (for
    int8-cpu, less the first convolution its recipe already keeps in fp32)."""
    from toolkit.diagnose.graph import compute_nodes
    from toolkit.model import INPUT_NAME

    nodes = compute_nodes(reference_model)
    if precision == "int8-cpu":
        first = [n.name for n in reference_model.graph.node if n.op_type == "Conv" and n.input[0] == INPUT_NAME]
        nodes = [n for n in nodes if n not in first]
    return nodes


def _speed(backend: str, precision: str, path: Path, images: np.ndarray, threads: int | None) -> Speed:
    from toolkit.backends import registry
    from toolkit.bench.schema import Warmup
    from toolkit.bench.timing import time_calls, warm_up

    out = Speed()
    with registry.create_backend(backend, precision, path, threads=threads) as runner:
        for size in (1, 256):
            batch = np.ascontiguousarray(images[:size])
            warm_up(runner.run, batch, Warmup(count=5, seconds=0.1))
            samples, _ = time_calls(runner.run, batch, iterations=30, min_seconds=0.3)
            median_ns = float(np.median(samples))
            if size == 1:
                out.batch1_p50_us = median_ns / 1e3
            else:
                out.batch256_images_per_s = size / (median_ns / 1e9)
    return out


def run_bisect(result: Diagnosis, backend: str, precision: str, artifacts_dir: Path, checkpoint: Path, reference_model,
               candidate_model, candidate_path: Path, data_dir, threads, write: bool, reexport=None) -> BisectResult:
    from toolkit.backends import registry
    from toolkit.data import load_split_uint8, to_model_input
    from toolkit.files.checkpoint import load_state_dict
    from toolkit.parity import (
        DEFAULT_BATCH_SIZES,
        DEFAULT_TOLERANCES,
        capture_pair,
        judge_pair,
        reference_logits,
        tolerance_key,
    )

    load_state_dict(checkpoint)  # a bad checkpoint is bad input before any re-export
    images_u8, labels_u8 = load_split_uint8("test", data_dir)
    images, labels = to_model_input(images_u8), labels_u8.astype(np.int64)
    ref = reference_logits(checkpoint, images)
    tolerance = DEFAULT_TOLERANCES[tolerance_key(precision, registry.get_spec(backend).device)]
    fp32_bytes = reference_model.SerializeToString()
    reexport = reexport or recipe_reexport(precision, fp32_bytes, candidate_model, data_dir)

    def gate(path: Path, kept: list[str]) -> Trial:
        planned = registry.PlannedPair(backend, precision, path, True, "")
        # The gate's verdict is the worst over its batch sizes, so failing at the large batch alone
        # (a fifth of the time) is failing the gate; only a pass there pays for the whole gate.
        large, others = max(DEFAULT_BATCH_SIZES), [b for b in DEFAULT_BATCH_SIZES if b != max(DEFAULT_BATCH_SIZES)]
        captured = capture_pair(planned, images, (large,), threads)
        judged = judge_pair(captured, ref, labels, tolerance)
        if judged.status == "pass" and others:
            rest = capture_pair(planned, images, tuple(others), threads)
            if rest.status == "ok":
                captured.logits.update(rest.logits)
                captured.seconds.update(rest.seconds)
            else:
                captured = rest
            judged = judge_pair(captured, ref, labels, tolerance)
        return Trial(kept, judged.status == "pass", judged.reason, judged.accuracy, judged.agreement, judged.max_abs_logit)

    with tempfile.TemporaryDirectory(prefix="toolkit-bisect-") as tmp:
        trial_path = Path(tmp) / f"mnist_cnn.{precision}.onnx"

        def evaluate(kept: list[str]) -> Trial:
            try:
                trial_path.write_bytes(reexport(kept))
            except InputError:
                raise
            except Exception as exc:  # noqa: BLE001 - a re-export that fails is a failed trial, not a crash
                return Trial(kept, False, f"re-export failed: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")
            return gate(trial_path, kept)

        ranked = rank_nodes(result.tensors, bisect_candidates(precision, reference_model), result.min_sqnr_db)
        found = search(ranked, evaluate)
        found.original = gate(candidate_path, [])
        if found.kept_fp32 is not None:
            fixed_bytes = reexport(found.kept_fp32)
            trial_path.write_bytes(fixed_bytes)
            found.original_speed = _speed(backend, precision, candidate_path, images, threads)
            found.fixed_speed = _speed(backend, precision, trial_path, images, threads)
            if write:
                from toolkit.files.store import write_artifact

                target = mixed_path(precision, artifacts_dir)
                write_artifact(target, lambda t: t.write_bytes(fixed_bytes), kind=f"onnx-{precision}{MIXED_SUFFIX}",
                               parents=[checkpoint, Path(result.reference_path)],
                               extra={"precision": precision, "nodes_in_fp32": found.kept_fp32})
                found.written = str(target)
    return found
