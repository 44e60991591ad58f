"""The `toolkit` command group and the options several commands share."""

from __future__ import annotations

import os
import sys

import click

from toolkit import __version__
from toolkit.errors import (
    InputError,
)
from toolkit.files import paths

DEBUG_ENV = "TOOLKIT_DEBUG"


def _debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV) == "1" or "--debug" in sys.argv[1:]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="toolkit")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
def cli(debug: bool) -> None:
    """Train the MNIST CNN, export it (ONNX, TensorRT, Triton), prove accuracy parity on every backend, benchmark and serve it."""
    if debug:
        os.environ[DEBUG_ENV] = "1"



_data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False), default=None, envvar="TOOLKIT_DATA_DIR",
    show_envvar=True, help="Where the MNIST IDX files are (or go). Default: ./data",
)



def _split_list(value: str | None, what: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        from toolkit.errors import InputError

        raise InputError(f"--{what} is empty", f"pass a comma-separated list of {what}")
    return items


def _batch_sizes(value: str) -> tuple[int, ...]:

    try:
        sizes = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise InputError(f"--batch-sizes {value!r} is not a comma-separated list of integers", "pass e.g. --batch-sizes 1,8,32") from None
    if not sizes or any(s <= 0 for s in sizes):
        raise InputError(f"--batch-sizes {value!r} must be positive integers", "pass e.g. --batch-sizes 1,8,32")
    return sizes


_triton_url_option = click.option(
    "--url", default=None, help="triton backend: the server (http://HOST:8000, grpc://HOST:8001; https://, grpcs:// for TLS).")
_triton_model_option = click.option(
    "--model", default=None, help="triton backend: the model name (default: mnist_onnxruntime_<precision>, as `toolkit serve` names it).")
_triton_timeout_option = click.option(
    "--timeout", type=float, default=30.0, show_default=True, help="triton backend: seconds before a request is given up.")


def _positive_ints(value: str, option: str) -> tuple[int, ...]:

    try:
        values = tuple(int(v) for v in value.split(","))
    except ValueError:
        values = ()
    if not values or any(v <= 0 for v in values):
        raise InputError(f"{option} {value!r} is not a comma-separated list of positive integers", f"pass e.g. {option} 1,4,16")
    return values


def _endpoint(url, model, timeout) -> dict | None:
    return {"url": url, "model": model, "timeout_s": timeout} if url or model else None


_checkpoint_option = click.option(
    "--checkpoint", type=click.Path(dir_okay=False), default=str(paths.DEFAULT_CHECKPOINT), show_default=True,
    help="The trained PyTorch checkpoint (a state_dict).",
)
_artifacts_option = click.option(
    "--artifacts", "artifacts_dir", type=click.Path(file_okay=False), default="artifacts", show_default=True,
    help="Where model files are read from.",
)



# --- any model: where it comes from (export) and which data it is judged on (eval, bench) ---------

_MODEL_OPTIONS = [
    click.option("--model", "model_source", default=None,
                 help="The model: mnist-cnn (default: the built-in), path/model.onnx, package.module:function or "
                      "path/file.py:function (a factory returning an nn.Module), torchvision:<name>."),
    click.option("--weights", type=click.Path(dir_okay=False), default=None, help="A state_dict for a factory or torchvision model."),
    click.option("--input", "input_specs", multiple=True, help="An input the model takes: name:dtype:[-1,3,224,224] (repeatable)."),
    click.option("--output", "output_names", multiple=True, help="Output names, in the module's order (repeatable)."),
    click.option("--num-classes", type=int, default=None, help="A classifier's class count (torchvision: the head's size)."),
    click.option("--task", type=click.Choice(["classification", "generic"]), default=None, help="What the outputs are (default: inferred)."),
    click.option("--name", "model_name", default=None, help="The model's name: its artifacts are <name>.<precision>.onnx (default: from the source)."),
    click.option("--seed", "model_seed", type=int, default=0, show_default=True, help="torchvision without --weights: the random init's seed."),
]


def model_options(func):
    for option in reversed(_MODEL_OPTIONS):
        func = option(func)
    return func


_eval_data_option = click.option(
    "--data", "data_source", default="mnist", show_default=True,
    help="Evaluation data: mnist, npz:FILE (arrays by input name, optional labels), imagefolder:DIR, script:FILE.py[:fn], "
         "or random[:N] (a smoke test, not a parity gate).")


_PREPROCESSING_OPTIONS = [
    click.option("--size", "pre_size", default=None, help="Images: the crop H,W (or one number for a square) fed to the model."),
    click.option("--resize", "pre_resize", type=int, default=None, help="Images: resize the shorter side to this, then centre-crop to --size."),
    click.option("--channels", "pre_channels", type=click.Choice(["1", "3"]), default=None, help="Images: convert to 1 (grey) or 3 (RGB) channels."),
    click.option("--mean", "pre_mean", default=None, help="Images: per-channel mean subtracted after scaling, e.g. 0.485,0.456,0.406."),
    click.option("--std", "pre_std", default=None, help="Images: per-channel standard deviation divided by, e.g. 0.229,0.224,0.225."),
    click.option("--scale", "pre_scale", type=float, default=None, help="Images: pixel multiplier before mean/std (default 1/255)."),
]


def preprocessing_options(func):
    for option in reversed(_PREPROCESSING_OPTIONS):
        func = option(func)
    return func


def _floats(value: str, option: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise InputError(f"{option} {value!r} is not a comma-separated list of numbers", f"pass e.g. {option} 0.5,0.5,0.5") from None


def preprocessing_from_options(base, size, resize, channels, mean, std, scale):
    """The preprocessing the flags give, over `base` (the spec's); None when no flag is given."""
    import dataclasses

    from toolkit.spec import Preprocessing

    if all(v is None for v in (size, resize, channels, mean, std, scale)):
        return None
    changes = {}
    if size is not None:
        dims = tuple(int(v) for v in _floats(size, "--size"))
        if len(dims) not in (1, 2) or min(dims) <= 0:
            raise InputError(f"--size {size!r} must be H,W or one positive number", "pass e.g. --size 224,224")
        changes["size"] = dims * 2 if len(dims) == 1 else dims
    if resize is not None:
        changes["resize"] = resize
    if channels is not None:
        changes["channels"] = int(channels)
    if mean is not None:
        changes["mean"] = _floats(mean, "--mean")
    if std is not None:
        changes["std"] = _floats(std, "--std")
    if scale is not None:
        changes["scale"] = scale
    return dataclasses.replace(base, **changes) if base is not None else Preprocessing(**changes)
