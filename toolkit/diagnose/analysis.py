"""Where does a lower-precision model leave the fp32 one? Per-tensor errors in graph order, the
layer's own share of each, the first tensor below an SQNR threshold, and a check that exposing the
tensors did not change the answer being diagnosed.

Measures, per reference tensor (all images together):
- max and mean |candidate - reference|, cosine similarity;
- SQNR = 20 log10(||ref|| / ||ref - cand||) in dB (onnxruntime's qdq_loss_debug uses the same
  definition); 6 dB is a factor of 2 in the error's RMS;
- own: the candidate's layer recomputed from the *reference's* values of its inputs (the layer cut
  out of the candidate graph with its weights' DequantizeLinear and its output Q/DQ or Cast), so
  `own` is the error this layer adds by itself and `inherited` (candidate - own recompute) what it
  passed on from upstream.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

# Default threshold, measured on the committed checkpoint (1,000-image calibration, 256 test images,
# onnxruntime): the lowest healthy tensors are 25.4 dB (int8, min-max) and 16.4 dB (int8, percentile
# 99.99: conv2d_1, a pre-ReLU output whose clipped negative tail the ReLU discards anyway); fp16
# tensors sit near 70 dB. Broken ones: 7.6 dB (relu_1 under entropy calibration, clipped to 2.0 of
# 10.8), under 1 dB (an int8 range 100x too narrow), -inf (fp16 overflow). 12 dB (error RMS 25% of
# the signal's) sits 4 dB from both sides.
DEFAULT_MIN_SQNR_DB = 12.0
SAMPLE_IMAGES = 256  # test images added to the flipped ones by default
SAMPLE_SEED = 0


@dataclass
class TensorError:
    """One reference tensor against the candidate's value of it."""

    index: int  # position in the reference's graph order
    tensor: str  # reference tensor name
    op_type: str  # the reference node's operator ("Input" for the graph input)
    node: str | None  # the candidate node that computes it (Q/DQ/Cast skipped); None for the input
    candidate_tensor: str | None  # None: the candidate has no such tensor (fused away)
    max_abs: float | None = None  # inf when the candidate has NaN/Inf
    mean_abs: float | None = None
    cosine: float | None = None
    sqnr_db: float | None = None
    own_sqnr_db: float | None = None  # the layer recomputed from the reference's inputs
    inherited_sqnr_db: float | None = None  # candidate against that recompute: what came from upstream
    non_finite: int = 0  # NaN/Inf values in the candidate tensor (fp16 overflow)
    note: str = ""


@dataclass
class ExposureCheck:
    """Do the logits of the model with every tensor exposed equal the unmodified model's?"""

    max_abs_logit: float
    agreement: float
    tolerance: float
    passed: bool
    candidate_max_abs_logit: float  # the unmodified candidate against the reference, for scale


@dataclass
class Verdict:
    tensor: str | None  # the first tensor below the threshold; None: none is
    node: str | None
    sqnr_db: float | None
    own_sqnr_db: float | None
    message: str


@dataclass
class Diagnosis:
    backend: str
    precision: str
    model_path: str
    reference_path: str
    runtime: str
    min_sqnr_db: float
    images: list[int]  # test-set indices used
    image_selection: str
    tensors: list[TensorError]
    exposure: ExposureCheck
    verdict: Verdict
    agreement: float  # top-1 agreement of the unmodified candidate with the fp32 ONNX on these images
    seconds: float
    bisect: object | None = None
    notes: list[str] = field(default_factory=list)

    def raise_if_broken(self) -> None:
        """CheckFailed (exit 1) when a tensor is below the threshold or the exposure check failed."""
        if self.verdict.tensor is not None or not self.exposure.passed:
            from toolkit.errors import CheckFailed

            fix = "see the report" + ("" if self.bisect is not None else "; --bisect finds the nodes to keep in fp32")
            raise CheckFailed(f"{self.backend}/{self.precision}: {self.verdict.message}", fix)


def sqnr_db(reference: np.ndarray, noise: np.ndarray) -> float:
    """20 log10(||reference|| / ||noise||): inf for no noise, -inf for non-finite noise."""
    noise_norm = float(np.linalg.norm(noise.astype(np.float64).ravel()))
    if not math.isfinite(noise_norm):
        return -math.inf
    if noise_norm == 0.0:
        return math.inf
    signal = float(np.linalg.norm(reference.astype(np.float64).ravel()))
    return 20.0 * math.log10(max(signal, 1e-30) / noise_norm)


def tensor_error(reference: np.ndarray, candidate: np.ndarray) -> dict:
    ref = reference.astype(np.float64).ravel()
    cand = candidate.astype(np.float64).ravel()
    finite = np.isfinite(cand)
    diff = np.abs(cand - ref)
    out = {"non_finite": int((~finite).sum()), "sqnr_db": sqnr_db(ref, cand - ref)}
    if finite.all():
        out["max_abs"] = float(diff.max()) if diff.size else 0.0
        out["mean_abs"] = float(diff.mean()) if diff.size else 0.0
        norms = float(np.linalg.norm(ref) * np.linalg.norm(cand))
        out["cosine"] = float(ref @ cand / norms) if norms > 0 else (1.0 if not ref.any() and not cand.any() else 0.0)
    else:
        out["max_abs"] = out["mean_abs"] = math.inf
        out["cosine"] = None
    return out


def own_recomputes(candidate, sites, reference_values: dict[str, np.ndarray], run_layer) -> dict[str, np.ndarray]:
    """For each site with a cuttable layer, that layer run on the reference's values of its inputs.

    `run_layer(model, feeds) -> array` runs one cut-out layer (onnxruntime CPU, graph optimisations
    off: a single layer's numerics, not a runtime's fusions)."""
    from onnx import TensorProto

    from toolkit.diagnose.graph import extract_layer

    out = {}
    for site in sites:
        if site.candidate_tensor is None or not site.layer_inputs:
            continue
        layer = extract_layer(candidate, site.layer_inputs, site.candidate_tensor)
        if layer is None:
            continue
        dtypes = {i.name: i.type.tensor_type.elem_type for i in layer.graph.input}
        feeds = {}
        for name, source in zip(site.layer_inputs, site.layer_input_sources, strict=True):
            value = reference_values[source]
            with np.errstate(over="ignore"):  # a reference value beyond fp16's range is inf in the fp16 layer, too
                feeds[name] = value.astype(np.float16 if dtypes.get(name) == TensorProto.FLOAT16 else np.float32)
        if set(feeds) != set(dtypes):
            continue
        out[site.name] = run_layer(layer, feeds)
    return out


def run_layer_onnxruntime(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def judge(tensors: list[TensorError], min_sqnr_db: float, exposure: ExposureCheck) -> Verdict:
    """The first tensor in graph order whose SQNR is below the threshold, and the node producing it."""
    if not exposure.passed:
        return Verdict(None, None, None, None,
                       f"exposing the tensors changed the logits by up to {exposure.max_abs_logit:.3g} "
                       f"(allowed {exposure.tolerance:g}; top-1 agreement {100 * exposure.agreement:.2f}%): "
                       "the per-tensor figures describe a different computation, so no layer is blamed")
    for t in tensors:
        if t.sqnr_db is not None and t.sqnr_db < min_sqnr_db:
            where = f"node {t.node} ({t.op_type})" if t.node else "the input's quantization"
            own = ""
            if t.own_sqnr_db is not None:
                own = (f"; recomputed from the reference's inputs it keeps {_db(t.own_sqnr_db)}, so the error is "
                       + ("its own" if t.own_sqnr_db < min_sqnr_db else "mostly inherited from upstream"))
            return Verdict(t.tensor, t.node, t.sqnr_db, t.own_sqnr_db,
                           f"tensor {t.tensor} from {where} is the first below {min_sqnr_db:g} dB: SQNR {_db(t.sqnr_db)}{own}")
    worst = min((t for t in tensors if t.sqnr_db is not None), key=lambda t: t.sqnr_db, default=None)
    tail = f" (lowest: {worst.tensor}, {_db(worst.sqnr_db)})" if worst else ""
    return Verdict(None, None, None, None, f"no layer below the threshold of {min_sqnr_db:g} dB{tail}")


def _db(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf dB" if value > 0 else "-inf dB"
    return f"{value:.1f} dB"


def _measure(index: int, site, reference_values, candidate_values, own_values) -> TensorError:
    t = TensorError(index, site.name, site.op_type, site.candidate_node, site.candidate_tensor)
    if site.candidate_tensor is None:
        t.note = "not in the candidate (fused into the next layer)"
        return t
    if site.candidate_tensor not in candidate_values or site.name not in reference_values:
        t.note = "not exposed by this runtime"
        return t
    ref, cand = reference_values[site.name], candidate_values[site.candidate_tensor]
    if ref.shape != cand.shape:
        t.note = f"shape {cand.shape} differs from the reference's {ref.shape}"
        return t
    for key, value in tensor_error(ref, cand).items():
        setattr(t, key, value)
    if site.name in own_values:
        own = own_values[site.name]
        t.own_sqnr_db = sqnr_db(ref, own.astype(np.float64) - ref)
        t.inherited_sqnr_db = sqnr_db(ref, cand.astype(np.float64) - own)
    elif site.candidate_node is None:  # the graph input: all of its error is its own quantization
        t.own_sqnr_db, t.inherited_sqnr_db = t.sqnr_db, math.inf
    return t


def compare_tensors(sites, reference_values, candidate_values, own_values) -> list[TensorError]:
    """One TensorError per matched site, in graph order."""
    with np.errstate(over="ignore", invalid="ignore"):  # NaN/Inf (fp16 overflow) are counted, not warned about
        return [_measure(i, site, reference_values, candidate_values, own_values) for i, site in enumerate(sites)]


def select_images(parity: dict | None, backend: str, precision: str, count: int | None,
                  sample: int = SAMPLE_IMAGES, test_size: int = 10_000) -> tuple[list[int], str]:
    """The flipped images of this pair in `parity` (parity.json) plus a fixed sample of others, or
    the first `count` test images."""
    if count is not None:
        return list(range(min(count, test_size))), f"the first {min(count, test_size)} test images"
    flipped = []
    for pair in (parity or {}).get("pairs", []):
        if pair.get("backend") == backend and pair.get("precision") == precision:
            flipped = sorted({int(f["index"]) for f in pair.get("flips", [])})
    rest = np.setdiff1d(np.arange(test_size), flipped)
    others = np.sort(np.random.default_rng(SAMPLE_SEED).choice(rest, size=min(sample, len(rest)), replace=False))
    images = sorted(set(flipped) | {int(i) for i in others})
    if parity is None:
        return images, f"{len(others)} fixed test images (seed {SAMPLE_SEED})"
    return images, f"{len(flipped)} flipped in parity.json + {len(others)} fixed others (seed {SAMPLE_SEED})"


def exposure_check(exposed_logits: np.ndarray, plain_logits: np.ndarray, reference_logits: np.ndarray,
                   tolerance: float) -> ExposureCheck:
    """Passes when the exposed model's logits are within `tolerance` of the unmodified model's
    (NaN/Inf in the same places count as equal: an overflow both share is not a difference)."""
    from toolkit.compare import compare_logits

    exposed, plain = exposed_logits.astype(np.float64), plain_logits.astype(np.float64)
    same = (exposed == plain) | (np.isnan(exposed) & np.isnan(plain))
    diff = np.where(same, 0.0, np.abs(exposed - plain))
    max_abs = float(diff.max()) if diff.size and np.isfinite(diff).all() else (0.0 if not diff.size else math.inf)
    agreement = float((exposed.argmax(1) == plain.argmax(1)).mean()) if len(plain) else 1.0
    scale = compare_logits(reference_logits, plain_logits)
    return ExposureCheck(max_abs, agreement, tolerance, bool(max_abs <= tolerance), scale.max_abs_logit)


def diagnose_models(reference_model, candidate_model, images: np.ndarray, capture, plain_logits: np.ndarray,
                    min_sqnr_db: float, exposure_tolerance: float, run_layer=run_layer_onnxruntime, spec=None) -> dict:
    """The analysis on models and arrays: `capture(model, names, images)` runs a model with `names`
    exposed on the candidate's runtime; `plain_logits` are the unmodified candidate's logits."""
    from toolkit.diagnose.capture import capture_onnxruntime
    from toolkit.diagnose.graph import activation_names, match_tensors
    from toolkit.model import INPUT_NAME, OUTPUT_NAME

    # another model (`spec`): its own input and output names
    input_name, output_name = (INPUT_NAME, OUTPUT_NAME) if spec is None else (spec.inputs[0].name, spec.outputs[0].name)
    t0 = time.perf_counter()
    reference_values = capture_onnxruntime(reference_model, activation_names(reference_model), images, input_name=input_name)
    sites = match_tensors(reference_model, candidate_model)
    wanted = sorted({s.candidate_tensor for s in sites if s.candidate_tensor} | {output_name})
    candidate_values = capture(candidate_model, wanted, images)
    own_values = own_recomputes(candidate_model, sites, reference_values, run_layer)
    tensors = compare_tensors(sites, reference_values, candidate_values, own_values)
    exposure = exposure_check(candidate_values[output_name], plain_logits, reference_values[output_name], exposure_tolerance)
    verdict = judge(tensors, min_sqnr_db, exposure)
    agreement = float((plain_logits.argmax(1) == reference_values[output_name].argmax(1)).mean())
    return {"tensors": tensors, "exposure": exposure, "verdict": verdict, "agreement": agreement,
            "seconds": time.perf_counter() - t0}
