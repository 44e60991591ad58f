"""The accuracy-parity gate: every (backend, precision) pair on the full MNIST test set.

Each pair is compared with one reference, PyTorch fp32 on the CPU, on the same 10,000 images at
several batch sizes (1 and a large one by default: dynamic-shape bugs hide at the edges). A pair
passes when its accuracy is at least `min_accuracy` and it keeps its precision's tolerance.
Every pair gets a fresh backend instance, so results don't depend on what ran before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from toolkit import paths
from toolkit.backends import registry
from toolkit.errors import InputError, ToolkitError
from toolkit.stats import McNemarResult, mcnemar_exact

DEFAULT_BATCH_SIZES = (1, 1024)
DEFAULT_CHECKPOINT = paths.checkpoint_path()
MIN_ACCURACY = 99.0


@dataclass(frozen=True)
class ParityTolerance:
    min_agreement: float  # fraction of top-1 predictions equal to the reference's
    max_abs_logit: float | None  # max |logit - reference logit|; None: not checked
    max_accuracy_drop_pp: float | None  # reference accuracy - pair accuracy; None: not checked


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

    from toolkit.checkpoint import load_model

    model = load_model(checkpoint)
    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(images[i : i + 1000])).numpy() for i in range(0, len(images), 1000)])


def run_batched(backend, images: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([backend.run_trusted(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def evaluate_backend(
    backend_name: str,
    precision: str,
    images: np.ndarray,
    labels: np.ndarray,
    ref_logits: np.ndarray,
    batch_sizes=DEFAULT_BATCH_SIZES,
    tolerance: ParityTolerance | None = None,
    min_accuracy: float = MIN_ACCURACY,
    artifacts_dir: str | Path = paths.ARTIFACTS_DIR,
    model_path: str | Path | None = None,
    threads: int | None = None,
    max_flips: int = 200,
) -> PairResult:
    """One pair through the whole test set; never raises for the pair's own failures."""
    tol = tolerance or DEFAULT_TOLERANCES[tolerance_key(precision, registry.get_spec(backend_name).device)]
    result = PairResult(backend_name, precision, "error", tolerance=tol)
    status = registry.status(backend_name)
    result.device = status.device
    if not status.available:
        result.status, result.reason = "skipped", status.reason
        return result
    t0 = time.perf_counter()
    ref_pred = ref_logits.argmax(1)
    ref_correct = ref_pred == labels
    ref_acc = 100.0 * float(ref_correct.mean())
    try:
        backend = registry.create_backend(backend_name, precision, model_path or registry.model_path_for(backend_name, precision, artifacts_dir), threads=threads)
        result.model_path = str(backend.model_path)
        with backend:
            info = backend.describe()
            result.runtime = info.runtime
            outputs = {}
            for bs in batch_sizes:
                tb = time.perf_counter()
                logits = run_batched(backend, images, bs)
                seconds = time.perf_counter() - tb
                if logits.shape != ref_logits.shape:
                    raise ToolkitError(f"output shape {logits.shape} at batch {bs}, expected {ref_logits.shape}")
                outputs[bs] = (logits, seconds)
    except ToolkitError as exc:
        result.reason = str(exc)
        result.seconds = time.perf_counter() - t0
        return result
    except Exception as exc:  # noqa: BLE001 - a runtime failure fails this pair, not the whole run
        result.reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
        result.seconds = time.perf_counter() - t0
        return result

    worst_pred = None
    for bs, (logits, seconds) in outputs.items():
        pred = logits.argmax(1)
        diff = np.abs(logits.astype(np.float64) - ref_logits)
        finite = bool(np.isfinite(diff).all())
        bp = BatchParity(
            batch_size=bs,
            accuracy=100.0 * float((pred == labels).mean()),
            agreement=float((pred == ref_pred).mean()),
            max_abs_logit=float(diff.max()) if finite else float("inf"),
            mean_abs_logit=float(diff.mean()) if finite else float("inf"),
            seconds=seconds,
        )
        result.batches.append(bp)
        for i in np.flatnonzero(pred != ref_pred)[: max_flips - len(result.flips)]:
            result.flips.append(Flip(int(i), int(labels[i]), int(ref_pred[i]), int(pred[i]), bs))
        if result.accuracy is None or bp.accuracy < result.accuracy:
            result.accuracy, worst_pred = bp.accuracy, pred
    result.agreement = min(b.agreement for b in result.batches)
    result.max_abs_logit = max(b.max_abs_logit for b in result.batches)
    result.mean_abs_logit = max(b.mean_abs_logit for b in result.batches)
    result.delta_pp = result.accuracy - ref_acc
    result.mcnemar = mcnemar_exact(ref_correct, worst_pred == labels)
    result.seconds = time.perf_counter() - t0

    broken = []
    if result.accuracy < min_accuracy:
        broken.append(f"accuracy {result.accuracy:.2f}% < {min_accuracy:.2f}%")
    if result.agreement < tol.min_agreement:
        broken.append(f"agreement {100 * result.agreement:.2f}% < {100 * tol.min_agreement:.2f}%")
    if tol.max_abs_logit is not None and not result.max_abs_logit <= tol.max_abs_logit:
        broken.append(f"max |dlogit| {result.max_abs_logit:.3g} > {tol.max_abs_logit:g}")
    if tol.max_accuracy_drop_pp is not None and -result.delta_pp > tol.max_accuracy_drop_pp:
        broken.append(f"accuracy drop {-result.delta_pp:.2f} pp > {tol.max_accuracy_drop_pp:g} pp")
    preds = [o[0].argmax(1) for o in outputs.values()]
    if any(not np.array_equal(preds[0], p) for p in preds[1:]):
        changed = int(sum((preds[0] != p).sum() for p in preds[1:]))
        broken.append(f"predictions change with batch size ({changed} images differ)")
    result.status = "fail" if broken else "pass"
    result.reason = "; ".join(broken)
    return result


def select_pairs(backends: list[str] | None = None, precisions: list[str] | None = None) -> list[tuple[str, str]]:
    names = backends or registry.backend_names()
    for n in names:
        registry.get_spec(n)
    for p in precisions or []:
        registry.check_precision(p)
    pairs = []
    for name in names:
        spec = registry.get_spec(name)
        for precision in spec.precisions:
            if precisions and precision not in precisions:
                continue
            pairs.append((name, precision))
    if not pairs:
        raise InputError(
            f"no (backend, precision) pair matches backends {backends or 'all'} and precisions {precisions or 'all'}",
            "see `toolkit info` for which backend runs which precision",
        )
    return pairs


def run_gate(
    checkpoint: str | Path = DEFAULT_CHECKPOINT,
    artifacts_dir: str | Path = paths.ARTIFACTS_DIR,
    backends: list[str] | None = None,
    precisions: list[str] | None = None,
    batch_sizes=DEFAULT_BATCH_SIZES,
    tolerances: dict[str, ParityTolerance] | None = None,
    min_accuracy: float = MIN_ACCURACY,
    data_dir=None,
    threads: int | None = None,
    limit: int | None = None,
) -> ParityReport:
    """Evaluate every requested pair against the PyTorch fp32 reference; see module docstring."""
    from toolkit.artifacts import sha256_file
    from toolkit.checkpoint import load_state_dict
    from toolkit.data import load_split_uint8, to_model_input

    if not batch_sizes or any(int(b) <= 0 for b in batch_sizes):
        raise InputError(f"batch sizes must be positive integers, got {list(batch_sizes)}", "pass e.g. --batch-sizes 1,1024")
    if threads is not None and threads <= 0:
        raise InputError(f"--threads must be a positive integer, got {threads}", "omit it to use every core")
    if not 0.0 <= min_accuracy <= 100.0:
        raise InputError(f"--min-accuracy is a percentage in [0, 100], got {min_accuracy}", "pass e.g. --min-accuracy 99.0")
    if limit is not None and limit <= 0:
        raise InputError(f"--limit must be positive, got {limit}", "omit it to use all 10,000 test images")
    if explicit := [n for n in (backends or []) if not registry.status(n).available]:
        st = registry.status(explicit[0])
        from toolkit.errors import UnavailableError

        raise UnavailableError(f"backend {explicit[0]} was requested but is unavailable: {st.reason}")
    pairs = select_pairs(backends, precisions)
    load_state_dict(checkpoint)  # a bad checkpoint is bad input, not a failed pair
    images_u8, labels_u8 = load_split_uint8("test", data_dir)
    if limit:
        images_u8, labels_u8 = images_u8[:limit], labels_u8[:limit]
    images = to_model_input(images_u8)
    labels = labels_u8.astype(np.int64)
    ref = reference_logits(checkpoint, images)
    tolerances = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    results = []
    for name, precision in pairs:
        model_path = Path(checkpoint) if registry.get_spec(name).reads == "checkpoint" else None
        tol = tolerances[tolerance_key(precision, registry.get_spec(name).device)]
        results.append(
            evaluate_backend(name, precision, images, labels, ref, tuple(int(b) for b in batch_sizes), tol,
                             min_accuracy, artifacts_dir, model_path, threads)
        )
    return ParityReport(
        reference="pytorch fp32 (cpu)",
        reference_accuracy=100.0 * float((ref.argmax(1) == labels).mean()),
        images=len(images),
        batch_sizes=tuple(int(b) for b in batch_sizes),
        min_accuracy=min_accuracy,
        pairs=results,
        checkpoint=str(checkpoint),
        checkpoint_sha256=sha256_file(checkpoint),
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
