"""The load benchmark's requests and references for a model other than the built-in CNN: every
input of its spec in each request (drawn from the spec, or read from `--data`), and every output of
each response checked against the same pair's in-process outputs for the same samples.

The check: per output, same shape and max|Δ| <= tolerance x (1 + max|in-process|): the same runtime
and file in and out of the server agree up to float noise, whatever the output's scale.
"""

from __future__ import annotations

import numpy as np

from toolkit.backends import registry
from toolkit.errors import InputError

DEFAULT_SAMPLES = 1024


class Feeds:
    """A multi-input model's samples (input name -> array), sliced like an array of images."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, part: slice) -> dict[str, np.ndarray]:
        return {k: v[part] for k, v in self.arrays.items()}


class OutputBatch:
    """The in-process outputs of one request's samples; `matches` judges a served response."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def matches(self, out, tolerance: float) -> bool:
        got = out if isinstance(out, dict) else {next(iter(self.arrays)): out}
        for name, ref in self.arrays.items():
            a = got.get(name)
            if not isinstance(a, np.ndarray) or a.shape != ref.shape:
                return False
            if a.size and not np.abs(a.astype(np.float64) - ref).max() <= tolerance * (1.0 + float(np.abs(ref).max())):
                return False
        return True


class Outputs:
    """Every sample's in-process outputs (output name -> array), sliced per request."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays

    def __getitem__(self, part: slice) -> OutputBatch:
        return OutputBatch({k: v[part] for k, v in self.arrays.items()})


def model_inputs(spec, data, batch_sizes: tuple[int, ...]):
    """The request pool: `data` (a DataSource) or inputs drawn from the spec; an array for a
    single-input model (what its backends take), else Feeds."""
    from toolkit.parity_spec import random_feeds

    if any(not t.batch_dynamic for t in spec.inputs):
        raise InputError(f"model {spec.name} has a fixed batch axis: the load benchmark sends batches of several sizes",
                         "benchmark it with the sweep (drop --concurrency and --serve), or export it with a dynamic batch axis")
    samples = max(DEFAULT_SAMPLES, *batch_sizes)
    if data is None:
        feeds = random_feeds(spec, samples)
    else:
        parts = {}
        for chunk, _ in data.batches(256, samples):
            for k, v in chunk.items():
                parts.setdefault(k, []).append(v)
        if not parts:
            raise InputError(f"the data {data.info.location} holds no samples", "pass data with samples for every input")
        feeds = {k: np.concatenate(v) for k, v in parts.items()}
    feeds = {t.name: np.ascontiguousarray(feeds[t.name]) for t in spec.inputs}
    return feeds[spec.inputs[0].name] if len(feeds) == 1 else Feeds(feeds)


def in_process_outputs(backend: str, precision: str, inputs, artifacts_dir, spec, threads=None) -> Outputs:
    if registry.get_spec(backend).reads == "checkpoint":
        raise InputError(f"backend {backend} runs the built-in CNN only; model {spec.name}'s PyTorch run is the gate's reference",
                         "pass --backend onnxruntime or openvino")
    names = [o.name for o in spec.outputs]
    parts: dict[str, list] = {}
    with registry.create_backend(backend, precision, registry.model_path_for(backend, precision, artifacts_dir, spec),
                                 threads=threads, spec=spec) as b:
        for i in range(0, len(inputs), 256):
            got = b.run_trusted(inputs[i : i + 256])
            for name, array in (got if isinstance(got, dict) else {names[0]: got}).items():
                parts.setdefault(name, []).append(np.asarray(array))
    return Outputs({k: np.concatenate(v) for k, v in parts.items()})
