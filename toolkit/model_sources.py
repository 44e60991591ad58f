"""Where a PyTorch model comes from (`--model`), and its spec, found by running it once.

    mnist-cnn              the built-in CNN; weights: its checkpoint (default the trained one)
    pkg.module:function    a factory returning an nn.Module, imported from the Python path
    path/to/file.py:fn     a factory in a file: the file is executed in this process. It is the
                           user's own model code, run by design, like `python file.py`; only
                           point it at code you trust.
    torchvision:<name>     an architecture only (never downloaded): random init with `seed`, or --weights

`--weights` is a state_dict loaded with the checkpoint checks (weights_only, size, keys and shapes
against the module). Inputs come from `--input name:dtype:[shape]` unless they can be inferred;
outputs are named from `--output` or the module's outputs (a tensor: "logits" for a 2-D output or
a class count, else "output"; a tuple: output_0, output_1, ...; a dict: its keys). Output shapes
are found by running two dummy batches of different sizes: axes that change are dynamic (-1).
torch is imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from toolkit.errors import InputError
from toolkit.spec import DYNAMIC, ModelSpec, Preprocessing, Task, TensorSpec

BUILTIN = "mnist-cnn"
TORCHVISION_PREFIX = "torchvision:"
# The dummy batches that find the output shapes: (batch, size of every other dynamic axis).
_PROBES = ((2, 32), (3, 48))
# torchvision's standard classification preset (ImageNet statistics, resize 256, crop 224).
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_TORCHVISION_SIZES = {"inception_v3": 299}

_INPUT_RE = re.compile(r"^(?P<name>[^:\s]+):(?P<dtype>[A-Za-z0-9_]+):\[(?P<shape>[^\]]*)\](?::\[(?P<range>[^\]]*)\])?$")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"


def parse_input_option(text: str) -> TensorSpec:
    """`name:dtype:[-1,3,224,224]` with an optional value range `:[0,1]`; -1 (or N) marks a dynamic axis."""
    fix = "write --input name:dtype:[-1,3,224,224] (optionally :[low,high]), -1 for a dynamic axis"
    match = _INPUT_RE.match(text.strip().replace(" ", ""))
    if match is None:
        raise InputError(f"--input {text!r} is not name:dtype:[shape]", fix)
    try:
        shape = tuple(DYNAMIC if d.upper() in ("N", "-1") else int(d) for d in match["shape"].split(",") if d)
        value_range = None
        if match["range"] is not None:
            value_range = tuple(float(v) for v in match["range"].split(","))
            if len(value_range) != 2 or value_range[0] > value_range[1]:
                raise ValueError("a range is [low,high]")
    except ValueError:
        raise InputError(f"--input {text!r} has a malformed shape or range", fix) from None
    try:
        np.dtype(match["dtype"])
    except TypeError:
        raise InputError(f"--input {text!r} has unknown dtype {match['dtype']!r}", "use a numpy dtype name such as float32 or int64") from None
    return TensorSpec(match["name"], match["dtype"], shape, value_range)


@dataclass
class LoadedModel:
    module: object  # torch.nn.Module, eval mode, on CPU
    spec: ModelSpec
    weights_sha256: str | None  # of --weights, None for random init


# --- the module ---------------------------------------------------------------------------------

def _factory(source: str):
    """The factory function of `pkg.module:function` or `path/to/file.py:function`."""
    target, sep, function = source.rpartition(":")
    if not sep or not target or not function.isidentifier():
        raise InputError(f"--model {source!r} is not a model source", "pass mnist-cnn, torchvision:<name>, pkg.module:function or path/to/file.py:function")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise InputError(f"model factory file {path} does not exist", "pass path/to/file.py:function with an existing file")
        _importable_beside(path)
        name = f"_toolkit_model_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module  # dataclasses and pickling inside the user's file look themselves up here
        try:
            module_spec.loader.exec_module(module)  # the user's own code, by design (see the module docstring)
        except Exception as exc:  # noqa: BLE001 - any failure of the user's file is bad input
            sys.modules.pop(name, None)
            raise InputError(f"model factory file {path} raised {_one_line(exc)}", "fix the file (run it with python to see the traceback)") from None
        where = str(path)
    else:
        try:
            module = importlib.import_module(target)
        except ModuleNotFoundError as exc:
            raise InputError(f"model factory module {target!r} cannot be imported ({exc})", "check the module path and PYTHONPATH, or pass path/to/file.py:function") from None
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"model factory module {target!r} raised {_one_line(exc)} on import", "fix the module") from None
        where = target
    fn = getattr(module, function, None)
    if not callable(fn):
        raise InputError(f"{where} has no function {function!r}", "name a function that returns the nn.Module")
    return fn, f"{where}:{function}"


def _importable_beside(path: Path) -> None:
    """Modules next to the user's file import as they would under `python file.py`."""
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.append(folder)


def _build(source: str, num_classes: int | None, seed: int):
    """(module, default name, default inputs, preprocessing) for a source other than the built-in."""
    import torch

    torch.manual_seed(seed)
    if source.startswith(TORCHVISION_PREFIX):
        import torchvision

        arch = source[len(TORCHVISION_PREFIX):]
        if arch not in torchvision.models.list_models():
            raise InputError(f"torchvision has no architecture {arch!r}", "pick a name from torchvision.models.list_models()")
        kwargs = {"num_classes": num_classes} if num_classes is not None else {}
        if "weights_backbone" in inspect.signature(torchvision.models.get_model_builder(arch)).parameters:
            kwargs["weights_backbone"] = None  # detection and segmentation builders fetch a backbone unless told not to
        try:
            module = torchvision.models.get_model(arch, weights=None, **kwargs)  # architectures only: nothing is downloaded
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"torchvision:{arch} cannot be built ({_one_line(exc)})", "check --num-classes") from None
        size = _TORCHVISION_SIZES.get(arch, 224)
        pre = Preprocessing(size=(size, size), resize=size * 256 // 224, channels=3, mean=_IMAGENET_MEAN, std=_IMAGENET_STD)
        return module, arch, (TensorSpec("input", "float32", (DYNAMIC, 3, size, size)),), pre
    fn, where = _factory(source)
    kwargs = {}
    if num_classes is not None:
        try:
            if "num_classes" in inspect.signature(fn).parameters:
                kwargs["num_classes"] = num_classes
        except (TypeError, ValueError):
            pass
    try:
        module = fn(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's factory failing is bad input
        raise InputError(f"model factory {where} raised {_one_line(exc)}", "fix the factory (call it in python to see the traceback)") from None
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"model factory {where} returned {type(module).__name__}, not a torch.nn.Module", "return the model (an nn.Module instance)")
    return module, getattr(fn, "__name__", "model"), _infer_inputs(module, where), None


def _infer_inputs(module, where: str) -> tuple[TensorSpec, ...] | None:
    """A model whose first layer is Linear takes (N, in_features); anything else needs --input."""
    import torch

    first = next((m for m in module.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d))), None)
    if isinstance(first, torch.nn.Linear):
        return (TensorSpec(_forward_names(module, 1)[0], "float32", (DYNAMIC, first.in_features)),)
    return None


def _forward_names(module, count: int) -> list[str]:
    try:
        params = [p.name for p in inspect.signature(module.forward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    names = params[:count] if len(params) >= count else []
    return names if len(set(names)) == count and "output" not in names else [f"input_{i}" if count > 1 else "input" for i in range(count)]


# --- running it ---------------------------------------------------------------------------------

def _dummy(spec: TensorSpec, batch: int, other: int):
    import torch

    shape = [batch] + [other if d == DYNAMIC else d for d in spec.shape[1:]]
    if spec.shape[0] != DYNAMIC:
        shape[0] = spec.shape[0]
    dtype = spec.np_dtype
    if dtype.kind == "f":
        lo, hi = spec.value_range or (0.0, 1.0)
        return torch.from_numpy((np.random.default_rng(0).random(shape) * (hi - lo) + lo).astype(dtype))
    if dtype.kind == "b":
        return torch.zeros(shape, dtype=torch.bool)
    lo = int(spec.value_range[0]) if spec.value_range else 0
    return torch.from_numpy(np.full(shape, lo, dtype=dtype))


def _flatten_outputs(result, names: Sequence[str], where: str) -> tuple[list[str], list]:
    import torch

    if isinstance(result, torch.Tensor):
        found, tensors = ["output"], [result]
    elif isinstance(result, (tuple, list)) and result and all(isinstance(t, torch.Tensor) for t in result):
        found, tensors = [f"output_{i}" for i in range(len(result))], list(result)
    elif isinstance(result, dict) and result and all(isinstance(t, torch.Tensor) for t in result.values()):
        found, tensors = [str(k) for k in result], list(result.values())
    else:
        raise InputError(f"model {where} returns {type(result).__name__}, not a tensor, a tuple of tensors or a dict of tensors",
                         "make forward return tensors")
    if names:
        if len(names) != len(tensors):
            raise InputError(f"--output names {len(names)} outputs ({', '.join(names)}), model {where} returns {len(tensors)}",
                             "give one --output per output, in order")
        found = list(names)
    return found, tensors


def _run(module, args):
    import torch

    with torch.inference_mode():
        return module(*args)


def _probe(module, inputs, outputs, where: str) -> tuple[list[str], list[tuple[str, tuple[int, ...]]]]:
    """Output names, dtypes and shapes from two dummy batches (axes that change are dynamic)."""
    shapes, names, dtypes = [], None, None
    for batch, other in _PROBES:
        args = [_dummy(t, batch, other) for t in inputs]
        try:
            result = _run(module, args)
        except Exception as exc:  # noqa: BLE001 - the shapes given do not fit the model's forward
            given = " ".join(f"{t.name}:{t.dtype}:{list(t.shape)}".replace(" ", "") for t in inputs)
            raise InputError(f"--input {given} does not match model {where} ({_one_line(exc)})",
                             "pass the inputs its forward takes, e.g. --input input:float32:[-1,3,224,224]") from None
        names, tensors = _flatten_outputs(result, outputs, where)
        shapes.append([tuple(t.shape) for t in tensors])
        dtypes = [str(t.dtype).removeprefix("torch.") for t in tensors]
    batch_dynamic = all(t.shape[0] == DYNAMIC for t in inputs)
    found = []
    for i, (a, b) in enumerate(zip(*shapes, strict=True)):
        if len(a) != len(b) or not a:
            raise InputError(f"output {names[i]} of model {where} changes rank with the input size ({list(a)} vs {list(b)})", "return tensors with a batch axis")
        dims = tuple(DYNAMIC if x != y else x for x, y in zip(a, b, strict=True))
        if batch_dynamic and a[0] != _PROBES[0][0]:
            raise InputError(f"output {names[i]} of model {where} has {a[0]} rows for a batch of {_PROBES[0][0]}", "return one row per sample (batch axis first)")
        try:
            np.dtype(dtypes[i])
        except TypeError:
            raise InputError(f"output {names[i]} of model {where} is {dtypes[i]}, which numpy cannot hold", "return float32 outputs") from None
        found.append((dtypes[i], dims))
    return names, found


def load_torch_model(source: str, *, weights: str | None = None, inputs: Sequence[TensorSpec] = (),
                     outputs: Sequence[str] = (), num_classes: int | None = None, seed: int = 0,
                     name: str | None = None, task: str | None = None) -> LoadedModel:
    """The module (eval, CPU) and its spec; see the module docstring for the sources."""
    import torch

    from toolkit.files.checkpoint import load_model, load_module_weights
    from toolkit.files.store import sha256_file

    if source == BUILTIN:
        from toolkit.files.paths import DEFAULT_CHECKPOINT
        from toolkit.model import MNIST_CNN_SPEC

        if inputs or outputs or (num_classes not in (None, MNIST_CNN_SPEC.task.num_classes)):
            raise InputError("the built-in mnist-cnn has a fixed contract", "drop --input, --output and --num-classes, or pass your own --model")
        path = weights or DEFAULT_CHECKPOINT
        module = load_model(path)
        return LoadedModel(module, MNIST_CNN_SPEC, sha256_file(path))

    module, default_name, inferred, pre = _build(source, num_classes, seed)
    where = source
    if not inputs:
        if inferred is None:
            conv = next((m for m in module.modules() if isinstance(m, torch.nn.Conv2d)), None)
            hint = f"[-1,{conv.in_channels},H,W]" if conv is not None else "[-1,...]"
            raise InputError(f"cannot infer the inputs of model {where}", f"pass --input input:float32:{hint}")
        inputs = inferred
    inputs = tuple(inputs)
    if pre is not None and len(inputs) == 1 and len(inputs[0].shape) == 4 and DYNAMIC not in inputs[0].shape[2:]:
        # torchvision's preset scaled to the size given with --input (resize:crop stays 256:224)
        h, w = inputs[0].shape[2:]
        pre = dataclasses.replace(pre, size=(h, w), resize=min(h, w) * 256 // 224)
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise InputError(f"--input repeats a name: {names}", "give every input its own name")
    sha = None
    if weights is not None:
        load_module_weights(module, weights, f"model {where}")
        sha = sha256_file(weights)
    module = module.eval().to("cpu")
    out_names, found = _probe(module, inputs, outputs, where)
    out_specs = tuple(TensorSpec(n, dtype, dims) for n, (dtype, dims) in zip(out_names, found, strict=True))
    scores = out_specs[0]
    if task is None:
        # Class scores are (N, classes); a --num-classes for another output shape is the architecture's
        # argument (a segmentation head's channels), not a classification task.
        task = "classification" if len(scores.shape) == 2 and (num_classes is not None or scores.shape[1] >= 2) else "generic"
    if task == "classification":
        classes = num_classes if num_classes is not None else scores.shape[-1]
        task_spec = Task("classification", num_classes=classes)
        if not outputs and len(out_specs) == 1 and out_specs[0].name == "output":
            out_specs = (TensorSpec("logits", scores.dtype, scores.shape),)
    else:
        task_spec = Task(task)
    spec_name = name or _safe_name(default_name)  # a name given is checked by ModelSpec, not rewritten
    spec = ModelSpec(spec_name, inputs, out_specs, task_spec, pre, source)
    return LoadedModel(module, spec, sha)


def _safe_name(text: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip(".")
    return cleaned or "model"


def torch_outputs(loaded: LoadedModel, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The PyTorch fp32 reference: the module's outputs by name for checked feeds."""
    import torch

    checked = loaded.spec.validate_feeds(feeds)
    args = [torch.from_numpy(checked[t.name]) for t in loaded.spec.inputs]
    result = _run(loaded.module, args)
    _, tensors = _flatten_outputs(result, [t.name for t in loaded.spec.outputs], loaded.spec.name)
    return {t.name: v.detach().cpu().numpy() for t, v in zip(loaded.spec.outputs, tensors, strict=True)}


def example_inputs(spec: ModelSpec, batch: int = _PROBES[0][0], other: int = _PROBES[0][1]) -> tuple:
    """Torch tensors for every input: `batch` rows, `other` for every other dynamic axis."""
    return tuple(_dummy(t, batch, other) for t in spec.inputs)
