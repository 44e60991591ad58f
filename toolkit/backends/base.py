"""The backend interface: load a model file, run a numpy batch, describe itself, release.

A backend only reads files that export code wrote. The base class checks every batch against the
model's input contract once for all backends, so a runtime never sees input it would crash on or
silently mis-handle.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.errors import InputError
from toolkit.model import MNIST_CNN_SPEC, NUM_CLASSES, validate_batch  # noqa: F401 - validate_batch: the contract every backend enforces
from toolkit.spec import DYNAMIC, ModelSpec


@dataclass(frozen=True)
class BackendInfo:
    name: str
    device: str
    precision: str
    model_path: str
    runtime: str  # e.g. "onnxruntime 1.32.0"
    threads: int | None = None
    details: dict = field(default_factory=dict)


class Backend(abc.ABC):
    """Subclasses set `name`/`device`, implement `_load`, `_run`, `runtime_version`, may override `close`."""

    name: str = ""
    device: str = "cpu"  # which precisions a backend runs and which file it reads: registry.SPECS
    # The settings a backend accepts beyond `threads`: name -> allowed values, the first being the
    # default. `toolkit bench --tune` searches them; tuned.json stores them. None: the backend's
    # options are not declared (GPU backends) and are passed through unchecked.
    OPTIONS: dict[str, tuple] | None = {}

    def __init__(self, model_path: str | Path, precision: str, threads: int | None = None, spec: ModelSpec | None = None, **options):
        self.model_path = Path(model_path) if model_path is not None else None
        self.precision = precision
        self.threads = threads
        self.check_options(precision, options)
        self.options = options
        self._loaded = False
        # The model's contract (the built-in CNN's unless told). A single-input, single-output model
        # runs through `_run(array) -> array`, today's path; any other through `_run_feeds`.
        self.spec = spec or MNIST_CNN_SPEC
        self.single = len(self.spec.inputs) == 1 and len(self.spec.outputs) == 1
        self.input_name = self.spec.inputs[0].name
        self.output_names = [t.name for t in self.spec.outputs]
        self.output_name = self.output_names[0]
        self._validate = self.spec.inputs[0].validate
        if self.single and type(self).run is Backend.run:
            # Bound once: run() is the hot path at batch 1, and an instance attribute skips a call level.
            self.run = self._run_single
        out = self.spec.outputs[0]
        self._empty_shape = (0, *(0 if d == DYNAMIC else d for d in out.item_shape))
        self._empty_dtype = out.np_dtype

    @classmethod
    def option_choices(cls, precision: str) -> dict[str, tuple] | None:
        """The options this backend accepts for `precision`, each with its allowed values (default first)."""
        return None if cls.OPTIONS is None else dict(cls.OPTIONS)

    @classmethod
    def check_options(cls, precision: str, options: dict) -> None:
        choices = cls.option_choices(precision)
        if choices is None:
            return
        for key, value in options.items():
            if key not in choices:
                accepted = ", ".join(choices) or "none besides threads"
                raise InputError(f"backend {cls.name} has no option {key!r} for {precision}", f"its options: {accepted}")
            if value not in choices[key] or isinstance(value, bool) != isinstance(choices[key][0], bool):
                raise InputError(f"backend {cls.name} option {key}={value!r} is not one of {list(choices[key])}",
                                 f"pass one of {', '.join(map(repr, choices[key]))}")

    @classmethod
    def compute_precision(cls, precision: str, options: dict) -> str:
        """The arithmetic precision when an option changes it from the model file's ("" otherwise):
        the parity gate then judges the pair under that precision's tolerances."""
        return ""

    # -- life cycle ---------------------------------------------------------------------------
    def load(self) -> Backend:
        if not self._loaded:
            self._load()
            self._loaded = True
        return self

    def close(self) -> None:
        self._loaded = False

    def __enter__(self) -> Backend:
        return self.load()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- inference ----------------------------------------------------------------------------
    def run(self, batch):
        """The model's output for a batch, the input validated against the spec: for the built-in,
        logits (N,10) float32 for a batch (N,1,28,28) float32 in [0,1]. A single-input model takes a
        plain array or a feed dict; a multi-output model returns a dict by output name (see
        run_outputs for a dict from any model)."""
        if self.single:
            return self._run_single(batch)
        return self.run_trusted(self.spec.validate_feeds(batch))

    def _run_single(self, batch):
        try:
            batch = self._validate(batch)
        except InputError:
            if type(batch) is not dict:
                raise
            batch = self.spec.validate_feeds(batch)[self.input_name]  # a feed dict: its one (checked) array
        if batch.shape[0] == 0:
            return np.zeros(self._empty_shape, dtype=self._empty_dtype)
        if not self._loaded:
            self.load()
        return self._run(batch)

    def run_outputs(self, feeds) -> dict[str, np.ndarray]:
        """Every output by name, for any model (Polygraphy's convention); the feeds are validated."""
        out = self.run(feeds)
        return out if isinstance(out, dict) else {self.output_name: out}

    def run_trusted(self, batch):
        """Like run() for a batch already validated (the gate and the benchmark validate once): an
        array for a single-input, single-output model, else a feed dict in, a dict out."""
        if not self._loaded:
            self.load()
        if self.single:
            return self._run(batch)
        return self._run_feeds(batch)

    def _run_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise InputError(f"backend {self.name} runs single-input, single-output models only; {self.spec.name} has "
                         f"{len(self.spec.inputs)} inputs and {len(self.spec.outputs)} outputs", "use onnxruntime or openvino")

    def describe(self) -> BackendInfo:
        return BackendInfo(
            name=self.name, device=self.device, precision=self.precision, model_path=str(self.model_path),
            runtime=self.runtime_version(), threads=self.threads, details=self.details(),
        )

    def details(self) -> dict:
        return {}

    @abc.abstractmethod
    def _load(self) -> None: ...

    @abc.abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray: ...

    @abc.abstractmethod
    def runtime_version(self) -> str: ...
