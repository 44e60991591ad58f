"""The accuracy-parity gate: every (backend, precision) pair on the full MNIST test set.

Each pair is compared with one reference, PyTorch fp32 on the CPU, on the same 10,000 images at
several batch sizes (1 and a large one by default: dynamic-shape bugs hide at the edges). A pair
passes when its accuracy is at least `min_accuracy` and it keeps its precision's tolerance.

Run, then compare: `capture_pair` runs a pair and keeps its logits (a fresh backend instance per
pair, so results don't depend on what ran before); `judge_pair` is a pure function from reference
and candidate logits, labels and tolerance to a verdict (toolkit.compare). Captured logits can be
saved with their provenance and judged on another machine (toolkit.files.outputs).
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from toolkit import env
from toolkit.backends import registry
from toolkit.compare import Tolerance, compare_logits, predictions_changed, tolerance_breaches
from toolkit.errors import InputError, ToolkitError
from toolkit.files import outputs as saved
from toolkit.files import paths
from toolkit.model import NUM_CLASSES
from toolkit.stats import McNemarResult, mcnemar_exact

DEFAULT_BATCH_SIZES = (1, 1024)
MIN_ACCURACY = 99.0


ParityTolerance = Tolerance  # the gate's name for the one tolerance type


DEFAULT_TOLERANCES = {
    "fp32": ParityTolerance(min_agreement=1.0, max_abs_logit=1e-4, max_accuracy_drop_pp=None),
    "fp16": ParityTolerance(min_agreement=0.999, max_abs_logit=0.05, max_accuracy_drop_pp=0.1),
    "int8": ParityTolerance(min_agreement=0.995, max_abs_logit=None, max_accuracy_drop_pp=0.3),
    "int8-cpu": ParityTolerance(min_agreement=0.995, max_abs_logit=None, max_accuracy_drop_pp=0.3),
    # fp32 on a GPU: TensorRT (unless built --strict-fp32), cuDNN and onnxruntime-cuda use TF32
    # tensor cores by default, ~10 mantissa bits: fp16-like logit differences are expected.
    "fp32-tf32": ParityTolerance(min_agreement=0.999, max_abs_logit=0.05, max_accuracy_drop_pp=0.1),
}


def tolerance_key(precision: str, device: str) -> str:
    return "fp32-tf32" if precision == "fp32" and device == "cuda" else precision


@dataclass
class Flip:
    index: int  # position in the MNIST test set
    label: int
    reference_prediction: int
    prediction: int
    batch_size: int


@dataclass
class BatchParity:
    batch_size: int
    accuracy: float
    agreement: float
    max_abs_logit: float
    mean_abs_logit: float
    seconds: float


@dataclass
class PairResult:
    backend: str
    precision: str
    status: str  # "pass" | "fail" | "error" | "skipped"
    reason: str = ""  # why skipped, the error, or the broken tolerances
    device: str = ""
    model_path: str = ""
    runtime: str = ""
    accuracy: float | None = None  # worst over batch sizes
    delta_pp: float | None = None  # accuracy - reference accuracy
    agreement: float | None = None  # worst over batch sizes
    max_abs_logit: float | None = None  # worst over batch sizes
    mean_abs_logit: float | None = None
    seconds: float = 0.0
    mcnemar: McNemarResult | None = None
    flips: list[Flip] = field(default_factory=list)
    batches: list[BatchParity] = field(default_factory=list)
    tolerance: ParityTolerance | None = None


@dataclass
class ParityReport:
    reference: str
    reference_accuracy: float
    images: int
    batch_sizes: tuple[int, ...]
    min_accuracy: float
    pairs: list[PairResult]
    checkpoint: str
    checkpoint_sha256: str

    @property
    def passed(self) -> bool:
        # Nothing verified is not a pass: at least one pair must have run and passed.
        return any(p.status == "pass" for p in self.pairs) and all(p.status in ("pass", "skipped") for p in self.pairs)

    def counts(self) -> dict[str, int]:
        out = {"pass": 0, "fail": 0, "error": 0, "skipped": 0}
        for p in self.pairs:
            out[p.status] += 1
        return out


def reference_logits(checkpoint: str | Path, images: np.ndarray) -> np.ndarray:
    """PyTorch fp32 CPU logits, the one reference every pair is compared with."""
    import torch

    from toolkit.files.checkpoint import load_model

    model = load_model(checkpoint)
    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(images[i : i + 1000])).numpy() for i in range(0, len(images), 1000)])


def run_batched(backend, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([backend.run_trusted(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ToolkitError):
        return str(exc)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


@dataclass
class CapturedPair:
    """One pair's logits over the test images at every batch size, or why there are none."""

    backend: str
    precision: str
    status: str  # "ok" | "error" | "skipped"
    reason: str = ""
    device: str = ""
    model_path: str = ""
    runtime: str = ""
    logits: dict[int, np.ndarray] = field(default_factory=dict)  # batch size -> (N, 10) float32
    seconds: dict[int, float] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)


def capture_pair(planned: registry.PlannedPair, images: np.ndarray, batch_sizes=DEFAULT_BATCH_SIZES,
                 threads: int | None = None, options: dict | None = None) -> CapturedPair:
    """Run one pair over `images` at each batch size (with the backend `options`, e.g. tuned ones);
    never raises for the pair's own failures."""
    out = CapturedPair(planned.backend, planned.precision, "error", device=registry.get_spec(planned.backend).device,
                       model_path=str(planned.model_path))
    if not planned.available:
        out.status, out.reason = "skipped", planned.reason
        return out
    try:
        backend = registry.create_backend(planned.backend, planned.precision, planned.model_path, threads=threads,
                                          **{**planned.options, **(options or {})})
        with backend:
            out.runtime = backend.describe().runtime
            for bs in batch_sizes:
                t0 = time.perf_counter()
                logits = run_batched(backend, images, bs)
                out.seconds[bs] = time.perf_counter() - t0
                if logits.shape != (len(images), NUM_CLASSES):
                    raise ToolkitError(f"output shape {logits.shape} at batch {bs}, expected {(len(images), NUM_CLASSES)}")
                out.logits[bs] = logits
    except Exception as exc:  # noqa: BLE001 - a runtime failure fails this pair, not the whole run
        out.reason = _one_line(exc)
        out.logits = {}
        return out
    out.status = "ok"
    return out


def judge_pair(captured: CapturedPair, ref_logits: np.ndarray, labels: np.ndarray, tolerance: Tolerance,
               min_accuracy: float = MIN_ACCURACY, max_flips: int = 200) -> PairResult:
    """The verdict on captured logits: a pure function of arrays and limits (no runtime runs here)."""
    result = PairResult(captured.backend, captured.precision, captured.status if captured.status != "ok" else "error",
                        reason=captured.reason, device=captured.device, model_path=captured.model_path,
                        runtime=captured.runtime, tolerance=tolerance, seconds=sum(captured.seconds.values()))
    if captured.status != "ok":
        return result
    worst = None
    for bs, logits in captured.logits.items():
        cmp = compare_logits(ref_logits, logits, labels)
        result.batches.append(BatchParity(bs, cmp.accuracy, cmp.agreement, cmp.max_abs_logit, cmp.mean_abs_logit,
                                          captured.seconds.get(bs, 0.0)))
        pred, ref_pred = logits.argmax(1), ref_logits.argmax(1)
        for i in cmp.flipped[: max(0, max_flips - len(result.flips))]:
            result.flips.append(Flip(int(i), int(labels[i]), int(ref_pred[i]), int(pred[i]), bs))
        if worst is None or cmp.accuracy < worst[0].accuracy:
            worst = (cmp, pred)
    cmp, worst_pred = worst
    result.accuracy, result.delta_pp = cmp.accuracy, cmp.delta_pp
    # The worst batch size on each measure, so no batch size hides behind another.
    result.agreement = min(b.agreement for b in result.batches)
    result.max_abs_logit = max(b.max_abs_logit for b in result.batches)
    result.mean_abs_logit = max(b.mean_abs_logit for b in result.batches)
    result.mcnemar = mcnemar_exact(ref_logits.argmax(1) == labels, worst_pred == labels)
    worst_measures = replace(cmp, agreement=result.agreement, max_abs_logit=result.max_abs_logit)
    broken = tolerance_breaches(worst_measures, tolerance, min_accuracy)
    if changed := predictions_changed(list(captured.logits.values())):
        broken.append(f"predictions change with batch size ({changed} images differ)")
    result.status = "fail" if broken else "pass"
    result.reason = "; ".join(broken)
    return result


def evaluate_backend(planned: registry.PlannedPair, images: np.ndarray, labels: np.ndarray, ref_logits: np.ndarray,
                     batch_sizes=DEFAULT_BATCH_SIZES, tolerance: Tolerance | None = None,
                     min_accuracy: float = MIN_ACCURACY, threads: int | None = None) -> PairResult:
    """Capture one pair and judge it."""
    tol = tolerance or DEFAULT_TOLERANCES[tolerance_key(planned.precision, registry.get_spec(planned.backend).device)]
    return judge_pair(capture_pair(planned, images, batch_sizes, threads), ref_logits, labels, tol, min_accuracy)


def _provenance(captured: CapturedPair, checkpoint_sha256: str, images: int, limit: int | None) -> dict:
    from toolkit.files.store import sha256_file

    return {
        "backend": captured.backend, "precision": captured.precision, "device": captured.device,
        "runtime": captured.runtime, "model_path": captured.model_path,
        "model_sha256": sha256_file(captured.model_path) if Path(captured.model_path).is_file() else None,
        "checkpoint_sha256": checkpoint_sha256, "images": images, "limit": limit,
        "test_set": "MNIST t10k, in file order", "seconds": {str(k): v for k, v in captured.seconds.items()},
        "versions": env.library_versions(), "cpu": env.cpu_model(), "gpu": env.gpu_description(),
        "captured_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "command": env.command_line(),
    }


def _check_pair_names(loaded: saved.SavedOutputs, path: Path) -> str:
    """The device the saved pair's backend runs on; a backend this toolkit does not know, or one
    that does not run the precision or on the device the file records, is bad input."""
    fix = "capture them again with `toolkit eval --save-outputs DIR`"
    spec = registry.BY_NAME.get(loaded.backend)
    if spec is None:
        raise InputError(f"saved outputs {path} names an unknown backend {loaded.backend!r} "
                         f"(known: {', '.join(registry.backend_names())})", fix)
    if loaded.precision not in spec.precisions:
        raise InputError(f"saved outputs {path} names {loaded.backend}/{loaded.precision}, a precision {loaded.backend} "
                         f"does not run (it runs {', '.join(spec.precisions)})", fix)
    recorded = loaded.provenance.get("device")
    if recorded != spec.device:
        # The tolerance row follows the backend's device (fp32 on a GPU allows TF32), never the file's word.
        raise InputError(f"saved outputs {path} records device {recorded!r}, but {loaded.backend} runs on {spec.device}", fix)
    return spec.device


def _loaded_pairs(directory: str | Path, checkpoint: str | Path, images: int, limit: int | None,
                  backends: list[str] | None, precisions: list[str] | None, key: bytes | None = None) -> list[CapturedPair]:
    """Saved outputs turned back into captured pairs, refusing any that were not captured from
    this checkpoint on these test images (or, with `key`, not signed with it)."""
    pairs = []
    for path in saved.list_output_files(directory):
        saved.check_manifest(path)
        loaded = saved.load_outputs(path, key)
        device = _check_pair_names(loaded, path)
        if (backends and loaded.backend not in backends) or (precisions and loaded.precision not in precisions):
            continue
        saved.check_checkpoint(loaded, checkpoint, path)
        prov = loaded.provenance
        got = next(iter(loaded.logits.values())).shape[0]
        if got != images or prov.get("limit") != limit:
            raise InputError(f"saved outputs {path} hold {got} images (limit {prov.get('limit')}), this gate runs {images} (limit {limit})",
                             "pass the same --limit as when they were captured")
        pairs.append(CapturedPair(loaded.backend, loaded.precision, "ok", device=device,
                                  model_path=str(prov.get("model_path", "")),
                                  runtime=f"{prov.get('runtime', '')} (saved outputs, {path.name}{', signature verified' if key else ''})",
                                  logits=dict(sorted(loaded.logits.items())),
                                  seconds={int(k): float(v) for k, v in (prov.get("seconds") or {}).items()},
                                  provenance=prov))
    if not pairs:
        raise InputError(f"no saved outputs in {directory} match backends {backends or 'all'} and precisions {precisions or 'all'}",
                         "drop --backend/--precision or pass another directory")
    return pairs


def run_gate(
    checkpoint: str | Path = paths.DEFAULT_CHECKPOINT,
    artifacts_dir: str | Path = paths.ARTIFACTS_DIR,
    backends: list[str] | None = None,
    precisions: list[str] | None = None,
    batch_sizes=DEFAULT_BATCH_SIZES,
    tolerances: dict[str, Tolerance] | None = None,
    min_accuracy: float = MIN_ACCURACY,
    data_dir=None,
    threads: int | None = None,
    limit: int | None = None,
    save_outputs: str | Path | None = None,
    load_outputs: str | Path | None = None,
    endpoint: dict | None = None,
    sign_key: str | Path | None = None,
) -> ParityReport:
    """Evaluate every requested pair against the PyTorch fp32 reference; see module docstring.
    `save_outputs`: also write each captured pair's logits there; `load_outputs`: judge the pairs
    saved there instead of running any backend. `endpoint` ({"url", "model", "timeout_s", "token"})
    is where the `triton` backend's pairs run. `sign_key` (a key file): sign the saved outputs, or
    refuse loaded ones not signed with it (toolkit.files.outputs)."""
    from toolkit.data import load_split_uint8, to_model_input
    from toolkit.files.checkpoint import load_state_dict
    from toolkit.files.store import sha256_file

    if not batch_sizes or any(int(b) <= 0 for b in batch_sizes):
        raise InputError(f"batch sizes must be positive integers, got {list(batch_sizes)}", "pass e.g. --batch-sizes 1,1024")
    if threads is not None and threads <= 0:
        raise InputError(f"--threads must be a positive integer, got {threads}", "omit it to use every core")
    if not 0.0 <= min_accuracy <= 100.0:
        raise InputError(f"--min-accuracy is a percentage in [0, 100], got {min_accuracy}", "pass e.g. --min-accuracy 99.0")
    if limit is not None and limit <= 0:
        raise InputError(f"--limit must be positive, got {limit}", "omit it to use all 10,000 test images")
    if save_outputs is not None and load_outputs is not None:
        raise InputError("--save-outputs and --load-outputs exclude each other", "save on one machine, load on another")
    if sign_key is not None and save_outputs is None and load_outputs is None:
        raise InputError("--sign-key signs saved outputs or checks loaded ones", "pass it with --save-outputs DIR or --load-outputs DIR")
    key = saved.read_key(sign_key) if sign_key is not None else None
    batch_sizes = tuple(int(b) for b in batch_sizes)
    # Names and availability first (what was asked), then the checkpoint: a bad one is bad input, not a failed pair.
    planned = [] if load_outputs is not None else registry.plan_pairs(backends, precisions, checkpoint, artifacts_dir, endpoint)
    load_state_dict(checkpoint)
    images_u8, labels_u8 = load_split_uint8("test", data_dir)
    if limit:
        images_u8, labels_u8 = images_u8[:limit], labels_u8[:limit]
    images = to_model_input(images_u8)
    labels = labels_u8.astype(np.int64)
    checkpoint_sha256 = sha256_file(checkpoint)
    captured = (_loaded_pairs(load_outputs, checkpoint, len(images), limit, backends, precisions, key) if load_outputs is not None
                else [capture_pair(p, images, batch_sizes, threads) for p in planned])
    if save_outputs is not None:
        for c in captured:
            if c.status == "ok":
                saved.save_outputs(save_outputs, saved.SavedOutputs(c.backend, c.precision, c.logits,
                                                                    _provenance(c, checkpoint_sha256, len(images), limit)),
                                   parents=[Path(checkpoint)], key=key)
    ref = reference_logits(checkpoint, images)
    tolerances = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    results = [judge_pair(c, ref, labels, tolerances[tolerance_key(c.precision, c.device)], min_accuracy) for c in captured]
    return ParityReport(
        reference="pytorch fp32 (cpu)",
        reference_accuracy=100.0 * float((ref.argmax(1) == labels).mean()),
        images=len(images),
        batch_sizes=tuple(sorted({bs for c in captured for bs in c.logits})) if load_outputs is not None else batch_sizes,
        min_accuracy=min_accuracy,
        pairs=results,
        checkpoint=str(checkpoint),
        checkpoint_sha256=checkpoint_sha256,
    )


def override_tolerances(max_abs_logit: float | None = None, min_agreement: float | None = None) -> dict[str, ParityTolerance]:
    """Default tolerances with the given fields replaced for every precision (CLI overrides)."""
    if max_abs_logit is not None and not max_abs_logit >= 0:
        raise InputError(f"--max-logit-diff must be zero or more, got {max_abs_logit}", "pass e.g. --max-logit-diff 1e-4")
    if min_agreement is not None and not 0.0 <= min_agreement <= 1.0:
        raise InputError(f"--min-agreement is a fraction in [0, 1], got {min_agreement}", "pass e.g. --min-agreement 0.999 for 99.9%")
    out = {}
    for precision, tol in DEFAULT_TOLERANCES.items():
        changes = {}
        if max_abs_logit is not None:
            changes["max_abs_logit"] = max_abs_logit
        if min_agreement is not None:
            changes["min_agreement"] = min_agreement
        out[precision] = replace(tol, **changes)
    return out
