"""Checkpoints: the seed notebook's format (a plain state_dict), saved atomically, loaded safely.

Loading goes only through `torch.load(weights_only=True)`. There is deliberately no fallback to
full unpickling when that fails: an attacker can make it fail at will.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path

from toolkit.errors import CheckpointError
from toolkit.files.paths import DEFAULT_CHECKPOINT, not_a_file

MAX_CHECKPOINT_BYTES = 64 * 1024 * 1024  # the model has 28,938 parameters (~116 KB)


def _expected_shapes() -> dict:
    from toolkit.model import CNN

    return {k: tuple(v.shape) for k, v in CNN().state_dict().items()}


def _unpickler_detail(exc: Exception) -> str:
    """The restricted unpickler's own reason, without torch's advice to retry with weights_only=False."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    text = text.split("Please use", 1)[0].split("Check the documentation", 1)[0]
    return " ".join(text.split())[:160] or type(exc).__name__


def _read_state_dict(p: Path, max_bytes: int, retrain: str, missing_fix: str, too_large: str, state_fix: str) -> dict:
    """The file's mapping of names to tensors via torch.load(weights_only=True), after the size checks."""
    import torch

    if problem := not_a_file(p):
        raise CheckpointError(f"checkpoint {p} {problem}", missing_fix)
    size = p.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {p} is empty", retrain)
    if size > max_bytes:
        raise CheckpointError(f"checkpoint {p} is {size} bytes, {too_large}", "pass the right file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's remarks on odd pickles would break the one-line error
            obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        detail = _unpickler_detail(exc)
        if "Unsupported global" in detail:
            raise CheckpointError(
                f"checkpoint {p} contains code or objects that are not plain tensors ({detail}); refusing to load it",
                "only load checkpoints you trust, saved as a state_dict",
            ) from None
        raise CheckpointError(f"checkpoint {p} is corrupt or not a PyTorch checkpoint ({detail})", retrain) from None
    except Exception as exc:  # noqa: BLE001 - torch raises many types (even AssertionError) on a damaged file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"checkpoint {p} is not a readable PyTorch file ({first[:160]})", retrain) from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"checkpoint {p} is not a state_dict (a mapping of names to tensors)", state_fix)
    return obj


def load_state_dict(path: str | os.PathLike) -> dict:
    """Load and validate a state_dict of the seed CNN (also accepts {'model': state_dict})."""
    p = Path(path)
    obj = _read_state_dict(p, MAX_CHECKPOINT_BYTES, "re-create it with `toolkit train`", "train one with `toolkit train` or pass --checkpoint",
                           "far too large for this model", "pass a checkpoint saved by `toolkit train`")
    validate_state_dict(obj, str(p))
    return obj


def validate_state_dict(state: dict, where: str = "state_dict", expected: dict | None = None, what: str = "the seed CNN",
                        corrupt_fix: str = "the weights are corrupt; retrain with `toolkit train`") -> None:
    """Keys, shapes, dtype kinds and finiteness against `expected` (a module's state_dict; default the seed CNN's)."""
    import torch

    if expected is None:
        shapes, floating = _expected_shapes(), None
    else:
        shapes = {k: tuple(v.shape) for k, v in expected.items()}
        floating = {k: v.is_floating_point() for k, v in expected.items()}
    missing = sorted(set(shapes) - set(state))
    unexpected = sorted(set(state) - set(shapes))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:4])}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:4])}")
        raise CheckpointError(f"{where} is not a state_dict of {what} ({'; '.join(parts)})", "pass a checkpoint of this model")
    for name, shape in shapes.items():
        t = state[name]
        if tuple(t.shape) != shape:
            raise CheckpointError(f"{where}: {name} has shape {tuple(t.shape)}, expected {shape}", "pass a checkpoint of this model")
        # The seed CNN has only float tensors; other modules have integer buffers (BatchNorm's num_batches_tracked).
        if (floating is None or floating[name]) and not t.is_floating_point():
            raise CheckpointError(f"{where}: {name} is {t.dtype}, expected a floating-point tensor", "pass a checkpoint of this model")
        if floating is not None and not floating[name] and t.is_floating_point():
            raise CheckpointError(f"{where}: {name} is {t.dtype}, expected an integer tensor", "pass a checkpoint of this model")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise CheckpointError(f"{where}: {name} contains NaN or Inf", corrupt_fix)


def max_weights_bytes(module) -> int:
    """The size limit for a module's weights file: twice its state in float32 (float64 files fit),
    plus room for pickle's bookkeeping; at least the seed CNN's limit."""
    state_bytes = sum(v.numel() * 4 for v in module.state_dict().values())
    return max(MAX_CHECKPOINT_BYTES, 2 * state_bytes + 16 * 1024 * 1024)


def load_module_weights(module, path: str | os.PathLike, what: str) -> None:
    """Load a state_dict file into `module` in place with the checks of `load_state_dict`, judged
    against the module's own keys and shapes (`what` names the model in messages)."""
    p = Path(path)
    retrain = "pass the weights saved with torch.save(model.state_dict(), FILE)"
    obj = _read_state_dict(p, max_weights_bytes(module), retrain, "pass --weights with an existing file",
                           f"far too large for {what}", retrain)
    expected = module.state_dict()
    validate_state_dict(obj, str(p), expected, what, "the weights are corrupt; save them again")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in obj.items()})


def load_model(path: str | os.PathLike = DEFAULT_CHECKPOINT):
    """The seed CNN in eval mode with the checkpoint's weights, on CPU."""
    from toolkit.model import CNN

    model = CNN()
    model.load_state_dict({k: v.float() for k, v in load_state_dict(path).items()})
    return model.eval()


def save_bytes(state: dict) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()
