"""The model's contract as data: what goes in, what comes out, what the outputs mean, and how raw
images become inputs.

One `ModelSpec` describes a model and is passed down to every command; nothing re-derives it from
file names or literals. It is written beside the artifacts as `model.json` and recorded in every
exported ONNX file's metadata, so flags are given once. The built-in CNN's spec is
`toolkit.model.MNIST_CNN_SPEC`.

Shapes include the batch axis first; -1 marks a dynamic axis. Multiple inputs are fed as dicts keyed
by input name (Polygraphy's convention); a single-input model also takes a plain array.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from toolkit.errors import InputError

SPEC_VERSION = 1
TASKS = ("classification", "generic")
DYNAMIC = -1

_UINT32 = np.dtype(np.uint32)
_FLOAT32_ONE_BITS = 0x3F800000  # the bit pattern of float32 1.0


def _dims(shape) -> str:
    return "(" + ", ".join("N" if d == DYNAMIC else str(d) for d in shape) + ")"


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy's name: "float32", "int64", ...
    shape: tuple[int, ...]  # batch axis first; -1: dynamic
    value_range: tuple[float, float] | None = None  # inclusive; inputs only, None: any finite value

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.value_range is not None:
            object.__setattr__(self, "value_range", tuple(float(v) for v in self.value_range))
        if not self.name:
            raise InputError("a tensor has an empty name", "name every input and output")
        try:
            np.dtype(self.dtype)
        except TypeError:
            raise InputError(f"tensor {self.name!r} has unknown dtype {self.dtype!r}", "use a numpy dtype name such as float32") from None
        if not self.shape or any(d < DYNAMIC or d == 0 for d in self.shape):
            raise InputError(f"tensor {self.name!r} has shape {list(self.shape)}", "give every axis a positive size, or -1 for dynamic")
        # Made once: validate() runs on every call, and at batch 1 its fixed cost is measurable.
        object.__setattr__(self, "_np_dtype", np.dtype(self.dtype))
        object.__setattr__(self, "_fixed_item_shape", None if DYNAMIC in self.shape[1:] else self.shape[1:])
        object.__setattr__(self, "_unit_range_f32", self.value_range == (0.0, 1.0) and self.dtype == "float32")

    @property
    def np_dtype(self) -> np.dtype:
        return self._np_dtype

    @property
    def batch_dynamic(self) -> bool:
        return self.shape[0] == DYNAMIC

    @property
    def item_shape(self) -> tuple[int, ...]:
        """The shape of one sample (without the batch axis)."""
        return self.shape[1:]

    def validate(self, array) -> np.ndarray:
        """Check one input array against this tensor; return it C-contiguous in this dtype. Floats of
        another width, non-contiguous and read-only arrays are copied; integer data for a float input
        is refused (unscaled 0..255 pixels are the usual mistake)."""
        if not isinstance(array, np.ndarray):
            raise InputError(f"input {self.name!r} must be a numpy array, got {type(array).__name__}",
                             f"pass np.ndarray of shape {_dims(self.shape)}")
        shape = array.shape
        fixed = self._fixed_item_shape
        if shape[1:] != fixed if fixed is not None else (
                len(shape) != len(self.shape) or any(want not in (DYNAMIC, got) for want, got in zip(self.shape[1:], shape[1:], strict=True))):
            raise InputError(f"input {self.name!r} has shape {shape}, expected {_dims(self.shape)}",
                             f"reshape to {_dims(self.shape)}; a single sample needs a batch axis of 1")
        if self.shape[0] != DYNAMIC and shape[0] not in (0, self.shape[0]):
            raise InputError(f"input {self.name!r} has batch {shape[0]}, but the model takes exactly {self.shape[0]}",
                             f"send batches of {self.shape[0]}")
        want = self._np_dtype
        if want.kind == "f":
            if array.dtype.kind != "f":  # cheaper than np.issubdtype on every call
                raise InputError(f"input {self.name!r} has dtype {array.dtype}, expected {want} in {self._range_text()}",
                                 "convert with x.astype(np.float32) / 255 for uint8 pixels" if self.value_range == (0.0, 1.0)
                                 else f"convert with x.astype(np.{want})")
        elif array.dtype.kind not in "iub" or (array.dtype.kind == "b") != (want.kind == "b"):
            raise InputError(f"input {self.name!r} has dtype {array.dtype}, expected {want}", f"convert with x.astype(np.{want})")
        if array.dtype != want or not array.flags.c_contiguous:
            array = np.ascontiguousarray(array, dtype=want)
        elif not array.flags.writeable:
            # Read-only arrays (memory-mapped, np.frombuffer): runtimes that share memory want writable ones.
            array = array.copy()
        if want.kind == "f":
            self._check_values(array)
        elif self.value_range is not None and array.size:
            lo, hi = array.min(), array.max()
            if lo < self.value_range[0] or hi > self.value_range[1]:
                raise InputError(f"input {self.name!r} values span [{lo}, {hi}], expected {self._range_text()}",
                                 "check the data against the model's input range")
        return array

    def _range_text(self) -> str:
        return "any finite value" if self.value_range is None else f"[{self.value_range[0]:g}, {self.value_range[1]:g}]"

    def _check_values(self, array: np.ndarray) -> None:
        if array.size == 0:
            return
        if self._unit_range_f32:
            # One pass over the bits decides the common case (the check is a measurable part of a
            # batch-1 call): float32 bit patterns of +0.0..1.0 are exactly the uint32 range
            # 0..0x3F800000, and every negative value, -0.0, NaN and Inf lies above it. argmax has a
            # quarter of a ufunc reduction's fixed cost. Only when the largest pattern is out of range
            # does the precise float check run.
            bits = array.view(_UINT32).ravel()
            if bits.item(bits.argmax()) <= _FLOAT32_ONE_BITS:
                return
        # NaN fails both comparisons, so two reductions check range and finiteness together.
        lo, hi = array.min(), array.max()
        lo_ok, hi_ok = (-math.inf, math.inf) if self.value_range is None else self.value_range
        if not (lo >= lo_ok and hi <= hi_ok) or self.value_range is None and not (math.isfinite(lo) and math.isfinite(hi)):
            if not np.isfinite(array).all():
                raise InputError(f"input {self.name!r} contains NaN or Inf", f"clean the input; values must be finite, in {self._range_text()}")
            raise InputError(f"input {self.name!r} values span [{lo:g}, {hi:g}], expected {self._range_text()}",
                             "scale pixels to [0,1] (uint8 / 255)" if self.value_range == (0.0, 1.0)
                             else "check the preprocessing against the model's input range")


@dataclass(frozen=True)
class Task:
    kind: str = "generic"  # "classification" | "generic"
    num_classes: int | None = None  # classification: the class axis' size
    class_names: tuple[str, ...] | None = None
    output: str | None = None  # classification: the output that holds the class scores (default: the first)

    def __post_init__(self):
        if self.kind not in TASKS:
            raise InputError(f"task {self.kind!r} is not one of {', '.join(TASKS)}", "pass --task classification or generic")
        if self.kind == "classification" and not (isinstance(self.num_classes, int) and self.num_classes >= 2):
            raise InputError(f"a classification task needs a class count of at least 2, got {self.num_classes}", "pass --num-classes")
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(self.class_names))
            if len(self.class_names) != self.num_classes:
                raise InputError(f"{len(self.class_names)} class names for {self.num_classes} classes", "give one name per class")


@dataclass(frozen=True)
class Preprocessing:
    """How image files become an input tensor (NCHW float32): decode, convert to `channels`, resize
    the shorter side to `resize` and centre-crop to `size` (H, W), multiply by `scale`, then
    subtract `mean` and divide by `std` per channel."""

    size: tuple[int, int] | None = None
    resize: int | None = None
    channels: int = 3
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self):
        for name in ("size", "mean", "std"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if self.channels not in (1, 3):
            raise InputError(f"preprocessing channels must be 1 or 3, got {self.channels}", "pass --channels 1 or 3")
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, self.channels):
                raise InputError(f"--{name} has {len(getattr(self, name))} values for {self.channels} channels", f"give 1 or {self.channels} values")
        if any(s == 0 for s in self.std):
            raise InputError("--std has a zero", "give non-zero standard deviations")


@dataclass(frozen=True)
class ModelSpec:
    name: str  # artifacts are named after it: <name>.<precision>.onnx
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    task: Task = field(default_factory=Task)
    preprocessing: Preprocessing | None = None
    source: str = ""  # where the model came from: "mnist-cnn", "torchvision:resnet18", "file.py:fn", "model.onnx"

    def __post_init__(self):
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if not self.name or not all(c.isalnum() or c in "_-." for c in self.name) or self.name[0] == ".":
            raise InputError(f"model name {self.name!r} is not usable in file names", "use letters, digits, '_', '-' and '.'")
        if not self.inputs or not self.outputs:
            raise InputError(f"model {self.name} needs at least one input and one output", "pass --input and --output")
        names = [t.name for t in self.inputs + self.outputs]
        if len(set(names)) != len(names):
            raise InputError(f"model {self.name} repeats a tensor name: {names}", "give every input and output its own name")
        if self.task.kind == "classification":
            scores = self.class_output
            if scores.shape[-1] not in (DYNAMIC, self.task.num_classes):
                raise InputError(f"output {scores.name!r} has {scores.shape[-1]} classes, the task says {self.task.num_classes}",
                                 "pass the model's class count with --num-classes")

    @property
    def single_input(self) -> TensorSpec | None:
        return self.inputs[0] if len(self.inputs) == 1 else None

    @property
    def class_output(self) -> TensorSpec:
        """The output holding the class scores (classification only)."""
        if self.task.output is None:
            return self.outputs[0]
        for out in self.outputs:
            if out.name == self.task.output:
                return out
        raise InputError(f"the task names output {self.task.output!r}, the model has {[o.name for o in self.outputs]}",
                         "name one of the model's outputs")

    def input(self, name: str) -> TensorSpec:
        for tensor in self.inputs:
            if tensor.name == name:
                return tensor
        raise InputError(f"model {self.name} has no input {name!r}", f"its inputs: {', '.join(t.name for t in self.inputs)}")

    def validate_feeds(self, feeds) -> dict[str, np.ndarray]:
        """Check a feed (a dict keyed by input name, or a plain array for a single-input model) against
        every input; return the checked arrays by name. All inputs share one batch size."""
        if isinstance(feeds, np.ndarray) or not isinstance(feeds, dict):
            if self.single_input is None:
                raise InputError(f"model {self.name} has {len(self.inputs)} inputs; a plain array feeds only one",
                                 f"pass a dict keyed by {', '.join(t.name for t in self.inputs)}")
            return {self.inputs[0].name: self.inputs[0].validate(feeds)}
        missing = [t.name for t in self.inputs if t.name not in feeds]
        extra = sorted(set(feeds) - {t.name for t in self.inputs})
        if missing or extra:
            raise InputError(f"the feed lacks inputs {missing} or has unknown ones {extra}",
                             f"pass exactly {', '.join(t.name for t in self.inputs)}")
        checked = {t.name: t.validate(feeds[t.name]) for t in self.inputs}
        batches = {a.shape[0] for a in checked.values()}
        if len(batches) > 1:
            raise InputError(f"the inputs have different batch sizes {sorted(batches)}", "send the same number of samples for every input")
        return checked

    # -- JSON --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"spec_version": SPEC_VERSION, **asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict, where: str = "model spec") -> ModelSpec:
        if not isinstance(data, dict):
            raise InputError(f"{where} is not a JSON object", "write it with `toolkit export` or fix it by hand")
        if data.get("spec_version", SPEC_VERSION) != SPEC_VERSION:
            raise InputError(f"{where} has spec_version {data.get('spec_version')!r}; this toolkit reads {SPEC_VERSION}",
                             "export the model again with this toolkit")
        try:
            pre = data.get("preprocessing")
            return cls(
                name=data["name"],
                inputs=tuple(TensorSpec(**t) for t in data["inputs"]),
                outputs=tuple(TensorSpec(**t) for t in data["outputs"]),
                task=Task(**data.get("task") or {}),
                preprocessing=Preprocessing(**pre) if pre else None,
                source=data.get("source", ""),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InputError):
                raise InputError(f"{where}: {exc.problem}", exc.fix) from None
            raise InputError(f"{where} is malformed ({type(exc).__name__}: {exc})", "write it with `toolkit export` or fix it by hand") from None

    @classmethod
    def from_json(cls, text: str, where: str = "model spec") -> ModelSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where} is not valid JSON ({exc.msg} at line {exc.lineno})", "write it with `toolkit export` or fix it by hand") from None
        return cls.from_dict(data, where)
