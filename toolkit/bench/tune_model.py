"""`toolkit bench --tune` for another model than the built-in: the data its candidates are gated
on, and the gate for any model (toolkit.parity_spec) applied to one candidate setting.

Every candidate is gated on the first GATE_SAMPLES samples of `--data` (inputs drawn from the spec
without it: then a smoke test, as the report of `toolkit eval --data random` says) at batch sizes
GATE_BATCH_SIZES, against the model's reference outputs computed once.
"""

from __future__ import annotations

import numpy as np

GATE_SAMPLES = 256
GATE_BATCH_SIZES = (1, 64)


def _fixed_batch(spec) -> int | None:
    return next((t.shape[0] for t in spec.inputs if not t.batch_dynamic), None)


def model_batch_sizes(spec, batch_sizes: tuple[int, ...]) -> tuple[int, ...]:
    """A fixed batch axis is searched at its own batch only."""
    fixed = _fixed_batch(spec)
    return (fixed,) if fixed else tuple(batch_sizes)


def gate_data(spec, artifacts_dir, data) -> tuple:
    """(feeds, labels or None, reference outputs by name, {}, samples): _GateContext's fields."""
    from toolkit import parity_spec

    source = data if data is not None else parity_spec.open_eval_data(f"random:{GATE_SAMPLES}", spec)
    parts = list(source.batches(_fixed_batch(spec) or 64, GATE_SAMPLES))
    feeds = {k: np.concatenate([f[k] for f, _ in parts]) for k in parts[0][0]}
    labels = None
    if spec.task.kind == "classification" and parts[0][1] is not None:
        labels = np.concatenate([y for _, y in parts])
    reference = parity_spec.Reference(spec, artifacts_dir)
    ref_parts = [reference(f) for f, _ in parts]
    ref = {name: np.concatenate([p[name] for p in ref_parts]) for name in ref_parts[0]}
    return feeds, labels, ref, {}, len(next(iter(feeds.values())))


def judge_candidate(planned, feeds: dict, reference: dict, labels, options: dict):
    """(the judged pair, the verdict tuned.json records) for one candidate setting of `planned`."""
    from toolkit import parity, parity_spec
    from toolkit.backends import registry

    opts = dict(options)
    threads = opts.pop("threads", None)
    compute = registry.compute_precision(planned.backend, planned.precision, opts)
    # bf16 arithmetic (OpenVINO's inference precision) is judged as fp16 is: no silent precision change.
    key = "fp16" if compute == "bf16" else parity.tolerance_key(planned.precision, registry.get_spec(planned.backend).device)
    batch_sizes = model_batch_sizes(planned.spec, GATE_BATCH_SIZES)
    judged = parity_spec.judge_options(planned, planned.spec, feeds, reference, labels, batch_sizes,
                                       parity_spec.MODEL_TOLERANCES[key], threads, opts)
    verdict = {"status": judged.status, "reason": judged.reason, "tolerance": key, "images": len(next(iter(feeds.values()))),
               "batch_sizes": list(batch_sizes), "accuracy": judged.accuracy, "agreement": judged.agreement,
               "max_abs_logit": judged.max_abs_logit}
    return judged, verdict
