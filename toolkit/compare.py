"""Compare a candidate's logits with the reference's: the one comparison the parity gate, the
export-time check and saved outputs from other machines all use.

Pure functions of arrays: no runtime, no files. `compare_logits` measures; `tolerance_breaches`
turns measurements and a tolerance into the list of broken limits (empty: it passes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    min_agreement: float  # fraction of top-1 predictions equal to the reference's
    max_abs_logit: float | None = None  # max |logit - reference logit|; None: not checked
    max_accuracy_drop_pp: float | None = None  # reference accuracy - candidate accuracy; None: not checked


@dataclass(frozen=True)
class LogitComparison:
    images: int
    agreement: float  # fraction of images whose top-1 prediction equals the reference's
    max_abs_logit: float  # inf when the candidate has NaN/Inf
    mean_abs_logit: float
    accuracy: float | None = None  # percent, when labels are given
    reference_accuracy: float | None = None
    flipped: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64), repr=False)  # indices whose top-1 differs

    @property
    def delta_pp(self) -> float | None:
        if self.accuracy is None or self.reference_accuracy is None:
            return None
        return self.accuracy - self.reference_accuracy


def compare_logits(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None = None) -> LogitComparison:
    """Agreement, logit differences and (with labels) accuracy of `candidate` against `reference`,
    both (N, classes)."""
    if reference.shape != candidate.shape:
        raise ValueError(f"candidate logits {candidate.shape} do not match the reference's {reference.shape}")
    ref_pred, pred = reference.argmax(1), candidate.argmax(1)
    diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    finite = bool(np.isfinite(diff).all())
    accuracy = reference_accuracy = None
    if labels is not None:
        accuracy = 100.0 * float((pred == labels).mean())
        reference_accuracy = 100.0 * float((ref_pred == labels).mean())
    return LogitComparison(
        images=len(reference),
        agreement=float((pred == ref_pred).mean()) if len(reference) else 1.0,
        max_abs_logit=(float(diff.max()) if diff.size else 0.0) if finite else float("inf"),
        mean_abs_logit=(float(diff.mean()) if diff.size else 0.0) if finite else float("inf"),
        accuracy=accuracy, reference_accuracy=reference_accuracy,
        flipped=np.flatnonzero(pred != ref_pred),
    )


def tolerance_breaches(result: LogitComparison, tolerance: Tolerance, min_accuracy: float | None = None) -> list[str]:
    """The limits `result` breaks, in words; empty when it keeps them all."""
    broken = []
    if min_accuracy is not None and result.accuracy is not None and not result.accuracy >= min_accuracy:
        broken.append(f"accuracy {result.accuracy:.2f}% < {min_accuracy:.2f}%")
    if not result.agreement >= tolerance.min_agreement:
        broken.append(f"agreement {100 * result.agreement:.2f}% < {100 * tolerance.min_agreement:.2f}%")
    if tolerance.max_abs_logit is not None and not result.max_abs_logit <= tolerance.max_abs_logit:
        broken.append(f"max |dlogit| {result.max_abs_logit:.3g} > {tolerance.max_abs_logit:g}")
    drop = result.delta_pp
    if tolerance.max_accuracy_drop_pp is not None and drop is not None and -drop > tolerance.max_accuracy_drop_pp:
        broken.append(f"accuracy drop {-drop:.2f} pp > {tolerance.max_accuracy_drop_pp:g} pp")
    return broken


def predictions_changed(logits_by_batch: list[np.ndarray]) -> int:
    """How many (image, other batch size) predictions differ from the first batch size's: a pair
    whose answer depends on the batch size has a dynamic-shape bug."""
    preds = [logits.argmax(1) for logits in logits_by_batch]
    return int(sum((preds[0] != p).sum() for p in preds[1:]))


# --- any model's outputs: elementwise statistics (the gate without labels) ------------------------

REL_EPS = 1e-12  # the epsilon in the relative error's denominator: only keeps an all-zero output finite (outputs of a random init reach 1e-9)


@dataclass(frozen=True)
class OutputStats:
    """One output of a candidate against the reference's: max and mean |Δ|, the relative error
    max|Δ| / (max|ref| + REL_EPS) (the largest difference against the output's own scale), and the
    cosine similarity of the flattened outputs (1.0 when both are all zeros)."""

    name: str
    max_abs: float
    mean_abs: float
    rel_error: float
    cosine: float

    def breaches(self, max_rel_error: float | None, min_cosine: float | None) -> list[str]:
        broken = []
        if max_rel_error is not None and not self.rel_error <= max_rel_error:
            broken.append(f"{self.name}: relative error {self.rel_error:.3g} > {max_rel_error:g}")
        if min_cosine is not None and not self.cosine >= min_cosine:
            broken.append(f"{self.name}: cosine similarity {self.cosine:.6f} < {min_cosine:g}")
        return broken


def output_stats(name: str, reference: np.ndarray, candidate: np.ndarray) -> OutputStats:
    if reference.shape != candidate.shape:
        raise ValueError(f"candidate output {name} {candidate.shape} does not match the reference's {reference.shape}")
    ref = reference.astype(np.float64).ravel()
    cand = candidate.astype(np.float64).ravel()
    if not np.isfinite(cand).all():
        inf = float("inf")
        return OutputStats(name, inf, inf, inf, -1.0)
    diff = np.abs(cand - ref)
    max_abs = float(diff.max()) if diff.size else 0.0
    ref_scale = float(np.abs(ref).max()) if ref.size else 0.0
    norms = float(np.linalg.norm(ref)) * float(np.linalg.norm(cand))
    cosine = float(ref @ cand / norms) if norms > 0 else (1.0 if max_abs == 0 else 0.0)
    return OutputStats(name, max_abs, float(diff.mean()) if diff.size else 0.0, max_abs / (ref_scale + REL_EPS), cosine)
