"""The parity gate for any model a spec describes (not the built-in CNN on MNIST: toolkit.parity).

Same shape as the built-in gate: every (backend, precision) pair runs the evaluation data at each
batch size and is judged against one reference, run on the same batches:
- the reference is the model's PyTorch fp32 run on the CPU, or for a model handed over as an ONNX
  file ONNX Runtime fp32 on the CPU (Polygraphy's convention);
- with labels (a classifier): accuracy, Δ pp, top-1 agreement, flips, McNemar, batch-size
  invariance, and the minimum accuracy *relative* to the reference's (`max_accuracy_drop_pp`);
- without labels: top-1 agreement for a classifier's scores, and for every output max and mean
  |Δ|, the relative error max|Δ| / (max|ref| + 1e-12) and the cosine similarity, each judged
  against its precision's defaults (MODEL_TOLERANCES) or a per-output override;
- random inputs (`--data random[:N]`) are a smoke test only, labelled "not a parity gate".

The data is read in chunks (DataSource.batches): only the outputs are kept for the whole set.
A model whose batch axis is fixed (a file exported at batch 1) is evaluated at that batch only, and
the report says so. (It runs over 400 lines: capture, judge and the run that joins them, with saved outputs
loaded in place of a capture, read best in one place.)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from toolkit.backends import registry
from toolkit.compare import OutputStats, Tolerance, output_stats, predictions_changed
from toolkit.errors import InputError, ToolkitError
from toolkit.files import paths
from toolkit.files.spec_file import describe, is_onnx_model
from toolkit.parity import CapturedPair, Flip, PairResult, ParityReport, _one_line, judge_pair, tolerance_key
from toolkit.spec import ModelSpec


@dataclass(frozen=True)
class ModelTolerance:
    """Limits for a model other than the built-in: logit-absolute limits mean nothing across models,
    so agreement, relative error and cosine similarity are judged instead (and, with labels, the
    accuracy drop against the reference)."""

    min_agreement: float | None  # top-1 agreement with the reference (classification outputs)
    max_rel_error: float | None  # per output: max|Δ| / (max|ref| + eps)
    min_cosine: float | None  # per output
    max_accuracy_drop_pp: float | None  # with labels: reference accuracy - pair accuracy
    per_output: dict = field(default_factory=dict, hash=False)  # output name -> (max_rel_error, min_cosine)

    def limits(self, output: str) -> tuple[float | None, float | None]:
        return self.per_output.get(output, (self.max_rel_error, self.min_cosine))


MODEL_TOLERANCES = {
    "fp32": ModelTolerance(min_agreement=0.999, max_rel_error=1e-3, min_cosine=0.99999, max_accuracy_drop_pp=0.1),
    "fp16": ModelTolerance(min_agreement=0.99, max_rel_error=2e-2, min_cosine=0.999, max_accuracy_drop_pp=0.5),
    "int8": ModelTolerance(min_agreement=0.90, max_rel_error=0.25, min_cosine=0.98, max_accuracy_drop_pp=1.0),
    "int8-cpu": ModelTolerance(min_agreement=0.90, max_rel_error=0.25, min_cosine=0.98, max_accuracy_drop_pp=1.0),
    "fp32-tf32": ModelTolerance(min_agreement=0.99, max_rel_error=2e-2, min_cosine=0.999, max_accuracy_drop_pp=0.5),
}
RANDOM_SAMPLES = 64
RANDOM_SEED = 0


@dataclass
class ModelPairResult(PairResult):
    outputs: list[OutputStats] = field(default_factory=list)  # every output, the worst batch size's
    model_tolerance: ModelTolerance | None = None


@dataclass
class ModelParityReport(ParityReport):
    model: str = ""  # one line: name, source, inputs and outputs
    data: dict = field(default_factory=dict)  # the data source (kind, location, samples, labels, preprocessing)
    labelled: bool = False
    is_parity_gate: bool = True  # False for random inputs: a smoke test
    notes: list[str] = field(default_factory=list)


def override_model_tolerances(max_accuracy_drop: float | None = None, min_agreement: float | None = None,
                              per_output: dict | None = None) -> dict[str, ModelTolerance]:
    """MODEL_TOLERANCES with the CLI's overrides for every precision. `per_output`: output name ->
    (max relative error, min cosine) (from `--output-tolerance NAME=REL,COS`)."""
    if max_accuracy_drop is not None and not max_accuracy_drop >= 0:
        raise InputError(f"--max-accuracy-drop must be zero or more percentage points, got {max_accuracy_drop}", "pass e.g. --max-accuracy-drop 0.5")
    if min_agreement is not None and not 0.0 <= min_agreement <= 1.0:
        raise InputError(f"--min-agreement is a fraction in [0, 1], got {min_agreement}", "pass e.g. --min-agreement 0.99")
    out = {}
    for precision, tol in MODEL_TOLERANCES.items():
        changes = {"per_output": dict(per_output or {})}
        if max_accuracy_drop is not None:
            changes["max_accuracy_drop_pp"] = max_accuracy_drop
        if min_agreement is not None:
            changes["min_agreement"] = min_agreement
        out[precision] = replace(tol, **changes)
    return out


def random_feeds(spec: ModelSpec, samples: int, seed: int = RANDOM_SEED) -> dict[str, np.ndarray]:
    """Inputs drawn from the spec alone (uniform in each input's value range, [0, 1) without one;
    integers in [0, 10)): a smoke test and the benchmark's inputs, never a parity gate."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for t in spec.inputs:
        batch = samples if t.batch_dynamic else t.shape[0]
        shape = (batch, *t.item_shape)
        if t.np_dtype.kind == "f":
            lo, hi = t.value_range or (0.0, 1.0)
            feeds[t.name] = rng.uniform(lo, hi, size=shape).astype(t.np_dtype)
        elif t.np_dtype.kind == "b":
            feeds[t.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            lo, hi = t.value_range or (0, 10)
            feeds[t.name] = rng.integers(int(lo), int(hi) + 1, size=shape).astype(t.np_dtype)
    return feeds


class _RandomData:
    def __init__(self, spec: ModelSpec, samples: int):
        from toolkit.datasets import DataSourceInfo

        self.spec, self.samples = spec, samples
        self.info = DataSourceInfo("random", f"random:{samples} (seed {RANDOM_SEED})", samples, False, None)

    def batches(self, batch_size: int, limit: int | None = None):
        feeds = random_feeds(self.spec, self.samples)
        n = min(self.samples, limit or self.samples)
        for i in range(0, n, batch_size):
            yield {k: v[i : i + batch_size] for k, v in feeds.items()}, None


def open_eval_data(source: str, spec: ModelSpec, preprocessing=None, data_dir=None):
    """The evaluation data: `random[:N]` here (a smoke test), anything else by toolkit.datasets."""
    if source == "random" or source.startswith("random:"):
        count = source.partition(":")[2] or str(RANDOM_SAMPLES)
        if not count.isdigit() or int(count) <= 0:
            raise InputError(f"--data {source!r}: the sample count must be a positive integer", "pass e.g. --data random:64")
        return _RandomData(spec, int(count))
    from toolkit.datasets import open_data

    return open_data(source, spec, preprocessing, split="test", data_dir=data_dir)


class _InBatches:
    """A data source read in the model's fixed batch, whatever size a caller asks for."""

    def __init__(self, source, batch: int):
        self.source, self.batch, self.info = source, batch, source.info

    def batches(self, batch_size: int, limit: int | None = None):
        return self.source.batches(self.batch, limit)


def calibration_overlap(spec: ModelSpec, artifacts_dir: str | Path, data, limit: int | None = None) -> str | None:
    """A warning when the int8 exports were calibrated on samples of the evaluation data (the
    calibration source is in their metadata): an int8 pair then looks better than it is."""
    import onnx

    from toolkit.datasets import count_overlap, open_data

    for precision in ("int8", "int8-cpu"):
        path = paths.onnx_path(precision, artifacts_dir, spec.name)
        if not path.is_file() or data.info.kind == "random":
            continue
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        source = meta.get("calibration_data")
        if not source:
            continue
        try:
            calib = open_data(source, spec, spec.preprocessing, split="train")
        except ToolkitError:
            return f"the {precision} calibration data {source} could not be opened to check its overlap with the evaluation data"
        fixed = [t.shape[0] for t in spec.inputs if not t.batch_dynamic]
        shared = count_overlap(_InBatches(calib, fixed[0]), _InBatches(data, fixed[0]), limit) if fixed else count_overlap(calib, data, limit)
        if shared:
            return (f"WARNING: {shared} samples of the evaluation data are also in the int8 calibration data ({source}); "
                    "int8 pairs may look better than they are")
        return None
    return None


# --- the reference ------------------------------------------------------------------------------

class Reference:
    """The model's fp32 outputs on the CPU: PyTorch for a PyTorch model, ONNX Runtime for an ONNX file."""

    def __init__(self, spec: ModelSpec, artifacts_dir: str | Path, threads: int | None = None):
        self.spec = spec
        if is_onnx_model(spec):
            from toolkit.backends.onnxruntime import build_session, session_options

            self.path = paths.onnx_path("fp32", artifacts_dir, spec.name)
            if not self.path.is_file():
                raise InputError(f"the reference {self.path} is missing", f"import the model first: toolkit export --model {spec.source} --out {artifacts_dir}")
            self.session = build_session(self.path, session_options(threads), ["CPUExecutionProvider"], spec)
            self.description = "onnxruntime fp32 (cpu)"
        else:
            from toolkit.model_sources import load_torch_model

            self.path = paths.checkpoint_path(artifacts_dir, spec.name)
            weights = str(self.path) if self.path.is_file() else None
            if spec.source == "mnist-cnn":  # the built-in on other data than MNIST's IDX files: its own contract
                self.loaded = load_torch_model(spec.source, weights=weights)
            else:
                self.loaded = load_torch_model(spec.source, weights=weights, inputs=spec.inputs, outputs=[o.name for o in spec.outputs],
                                               num_classes=spec.task.num_classes, name=spec.name, task=spec.task.kind)
            self.session = None
            self.description = "pytorch fp32 (cpu)"

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.spec.outputs]
        if self.session is not None:
            return dict(zip(names, self.session.run(names, feeds), strict=True))
        from toolkit.model_sources import torch_outputs

        return torch_outputs(self.loaded, feeds)


# --- capture and judge ---------------------------------------------------------------------------

@dataclass
class _Running:
    planned: registry.PlannedPair
    captured: CapturedPair
    backend: object = None
    outputs: dict = field(default_factory=dict)  # batch size -> output name -> list of arrays


def _open(planned: registry.PlannedPair, spec: ModelSpec, threads: int | None, options: dict | None = None) -> _Running:
    captured = CapturedPair(planned.backend, planned.precision, "error", device=registry.get_spec(planned.backend).device,
                            model_path=str(planned.model_path))
    running = _Running(planned, captured)
    if not planned.available:
        captured.status, captured.reason = "skipped", planned.reason
        return running
    try:
        running.backend = registry.create_backend(planned.backend, planned.precision, planned.model_path or None, threads=threads,
                                                  spec=spec, **{**planned.options, **(options or {})}).load()
        captured.runtime = running.backend.describe().runtime
        captured.status = "ok"
    except Exception as exc:  # noqa: BLE001 - a runtime failure fails this pair, not the whole run
        captured.reason = _one_line(exc)
    return running


def _run_chunk(running: _Running, feeds: dict, batch_sizes, spec: ModelSpec) -> None:
    names = [o.name for o in spec.outputs]
    n = len(next(iter(feeds.values())))
    try:
        for bs in batch_sizes:
            t0 = time.perf_counter()
            for i in range(0, n, bs):
                part = {k: v[i : i + bs] for k, v in feeds.items()}
                got = running.backend.run_trusted(part[spec.inputs[0].name] if running.backend.single else part)
                got = got if isinstance(got, dict) else {names[0]: got}
                for name in names:
                    out = got.get(name)
                    want = next(o for o in spec.outputs if o.name == name)
                    if out is None or out.shape[0] != len(part[spec.inputs[0].name]) or len(out.shape) != len(want.shape):
                        raise ToolkitError(f"output {name} is {None if out is None else out.shape} at batch {bs}, expected {want.shape}")
                    running.outputs.setdefault(bs, {}).setdefault(name, []).append(np.asarray(out))
            running.captured.seconds[bs] = running.captured.seconds.get(bs, 0.0) + time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - the pair fails, the others go on
        running.captured.status, running.captured.reason = "error", _one_line(exc)
        running.outputs = {}
        running.backend.close()


def _judge(c: CapturedPair, outputs: dict, ref: dict, labels, spec: ModelSpec, tol: ModelTolerance) -> ModelPairResult:
    classification = spec.task.kind == "classification"
    primary = spec.class_output.name if classification else spec.outputs[0].name
    if c.status != "ok":
        return ModelPairResult(c.backend, c.precision, c.status, reason=c.reason, device=c.device, model_path=c.model_path,
                               runtime=c.runtime, model_tolerance=tol)
    stats: dict[str, OutputStats] = {}
    for bs_outputs in outputs.values():  # the worst batch size per output and measure
        for name, got in bs_outputs.items():
            s = output_stats(name, ref[name], got)
            old = stats.get(name)
            stats[name] = s if old is None else OutputStats(name, max(old.max_abs, s.max_abs), max(old.mean_abs, s.mean_abs),
                                                             max(old.rel_error, s.rel_error), min(old.cosine, s.cosine))
    c.logits = {bs: o[primary] for bs, o in outputs.items()}
    if classification and labels is not None:
        base = judge_pair(c, ref[primary], labels, Tolerance(min_agreement=tol.min_agreement or 0.0, max_accuracy_drop_pp=tol.max_accuracy_drop_pp),
                          min_accuracy=None)
        return ModelPairResult(**vars(base), outputs=list(stats.values()), model_tolerance=tol)
    result = ModelPairResult(c.backend, c.precision, "pass", device=c.device, model_path=c.model_path, runtime=c.runtime,
                             seconds=sum(c.seconds.values()), outputs=list(stats.values()), model_tolerance=tol)
    broken = []
    if classification:
        ref_pred = ref[primary].argmax(1)
        agreements = {bs: float((lg.argmax(1) == ref_pred).mean()) if len(ref_pred) else 1.0 for bs, lg in c.logits.items()}
        result.agreement = min(agreements.values())
        if tol.min_agreement is not None and not result.agreement >= tol.min_agreement:
            broken.append(f"agreement {100 * result.agreement:.2f}% < {100 * tol.min_agreement:.2f}%")
        for bs, lg in c.logits.items():
            pred = lg.argmax(1)
            for i in np.flatnonzero(pred != ref_pred)[: max(0, 200 - len(result.flips))]:
                result.flips.append(Flip(int(i), -1, int(ref_pred[i]), int(pred[i]), bs))
        if changed := predictions_changed(list(c.logits.values())):
            broken.append(f"predictions change with batch size ({changed} samples differ)")
    for s in stats.values():
        broken += s.breaches(*tol.limits(s.name))
    first = stats.get(primary)
    if first is not None:
        result.max_abs_logit, result.mean_abs_logit = first.max_abs, first.mean_abs
    result.status = "fail" if broken else "pass"
    result.reason = "; ".join(broken)
    return result


def run_model_gate(spec: ModelSpec, data, artifacts_dir: str | Path = paths.ARTIFACTS_DIR, backends: list[str] | None = None,
                   precisions: list[str] | None = None, batch_sizes=(1, 64), tolerances: dict[str, ModelTolerance] | None = None,
                   threads: int | None = None, limit: int | None = None, endpoint: dict | None = None, loaded: list | None = None,
                   on_captured=None) -> ModelParityReport:
    """Gate every requested pair of `spec`'s model on `data` (a DataSource, or open_eval_data's). `loaded`:
    [(CapturedPair, {batch: {output: array}})] judged instead of running backends; `on_captured(pair, outputs,
    samples, labelled, reference path)` sees each pair that ran (toolkit.parity_saved saves them)."""
    if not batch_sizes or any(int(b) <= 0 for b in batch_sizes):
        raise InputError(f"batch sizes must be positive integers, got {list(batch_sizes)}", "pass e.g. --batch-sizes 1,64")
    if limit is not None and limit <= 0:
        raise InputError(f"--limit must be positive, got {limit}", "omit it to use the whole data set")
    notes = []
    batch_sizes = tuple(int(b) for b in batch_sizes)
    fixed = {t.shape[0] for t in spec.inputs if not t.batch_dynamic}
    if fixed:
        (batch,) = fixed if len(fixed) == 1 else (min(fixed),)
        if batch_sizes != (batch,):
            notes.append(f"the model's batch axis is fixed at {batch}: evaluated at batch {batch} only (batch-size invariance not checked)")
        batch_sizes = (batch,)
    planned = [] if loaded is not None else registry.plan_pairs(backends, precisions, paths.checkpoint_path(artifacts_dir, spec.name),
                                                                 artifacts_dir, endpoint, spec=spec)
    reference = Reference(spec, artifacts_dir, threads)
    running = [_open(p, spec, threads) for p in planned]
    if loaded is not None:
        batch_sizes = tuple(sorted({bs for _, outs in loaded for bs in outs}))
    chunk = batch_sizes[0] if fixed else max(batch_sizes) * max(1, 256 // max(batch_sizes))
    ref_parts: dict[str, list] = {}
    label_parts = []
    samples = dropped = 0
    for feeds, labels in data.batches(chunk, limit):
        n = len(next(iter(feeds.values())))
        if fixed and n % batch_sizes[0]:
            keep = n - n % batch_sizes[0]
            dropped += n - keep
            feeds, labels = {k: v[:keep] for k, v in feeds.items()}, None if labels is None else labels[:keep]
            n = keep
        if n == 0:
            continue
        samples += n
        for name, out in reference(feeds).items():
            ref_parts.setdefault(name, []).append(np.asarray(out))
        if labels is not None:
            label_parts.append(labels)
        for r in running:
            if r.captured.status == "ok":
                _run_chunk(r, feeds, batch_sizes, spec)
    for r in running:
        if r.backend is not None:
            r.backend.close()
    if samples == 0:
        raise InputError(f"the data {data.info.location} holds no samples the model can take", "pass data with at least one full batch")
    if dropped:
        notes.append(f"{dropped} samples left out: they do not fill a batch of {batch_sizes[0]}")
    ref = {k: np.concatenate(v) for k, v in ref_parts.items()}
    labels = np.concatenate(label_parts) if label_parts and len(label_parts) and spec.task.kind == "classification" else None
    if labels is not None and len(labels) != samples:
        labels = None
    is_random = data.info.kind == "random"
    overlap = calibration_overlap(spec, artifacts_dir, data, limit)
    if overlap:
        notes.append(overlap)
    if is_random:
        notes.append("random inputs: a smoke test, NOT a parity gate")
    tolerances = {**MODEL_TOLERANCES, **(tolerances or {})}
    pairs = loaded if loaded is not None else [(r.captured, {bs: {k: np.concatenate(v) for k, v in o.items()} for bs, o in r.outputs.items()})
                                                for r in running]
    results = []
    for captured, outs in pairs:
        if loaded is not None and any(len(a) != samples for o in outs.values() for a in o.values()):
            raise InputError(f"saved outputs of {captured.backend}/{captured.precision} hold other samples than the {samples} of "
                             f"{data.info.location} (limit {limit})", "pass the same --data and --limit as when they were captured")
        if on_captured is not None and captured.status == "ok":
            on_captured(captured, outs, samples, labels is not None, reference.path)
        results.append(_judge(captured, outs, ref, labels, spec, tolerances[tolerance_key(captured.precision, captured.device)]))
    primary = spec.class_output.name if spec.task.kind == "classification" else None
    ref_acc = 100.0 * float((ref[primary].argmax(1) == labels).mean()) if labels is not None else None
    from toolkit.files.store import sha256_file

    return ModelParityReport(
        reference=reference.description, reference_accuracy=ref_acc, images=samples, batch_sizes=batch_sizes,
        min_accuracy=0.0, pairs=results, checkpoint=str(reference.path),
        checkpoint_sha256=sha256_file(reference.path) if Path(reference.path).is_file() else "",
        model=describe(spec), data={k: v for k, v in vars(data.info).items()} if hasattr(data.info, "__dict__") else {},
        labelled=labels is not None, is_parity_gate=not is_random, notes=notes,
    )


def judge_options(planned: registry.PlannedPair, spec: ModelSpec, feeds: dict, reference: dict, labels, batch_sizes,
                  tolerance: ModelTolerance, threads: int | None = None, options: dict | None = None) -> ModelPairResult:
    """One pair with backend `options` on feeds held in memory, judged against reference outputs
    computed once (`toolkit bench --tune` gates every candidate setting this way)."""
    running = _open(planned, spec, threads, options)
    if running.captured.status == "ok":
        _run_chunk(running, feeds, batch_sizes, spec)
    if running.backend is not None:
        running.backend.close()
    outs = {bs: {k: np.concatenate(v) for k, v in o.items()} for bs, o in running.outputs.items()}
    return _judge(running.captured, outs, reference, labels, spec, tolerance)
