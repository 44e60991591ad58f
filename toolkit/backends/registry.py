"""Which backends exist, which are usable on this machine and, for the others, why not.

Availability is decided without importing heavy packages (importlib.util.find_spec), except that
CUDA backends ask torch whether a GPU is present, and only when their package is installed; on a
machine with a GPU, the TensorRT and onnxruntime GPU backends are then tried for real (status()).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.env import GPU_INSTALL, cuda_available
from toolkit.errors import InputError, ModelFileError, UnavailableError
from toolkit.files import paths
from toolkit.model import MNIST_CNN_SPEC


@dataclass(frozen=True)
class BackendSpec:
    name: str
    module: str  # toolkit.backends.<module>
    class_name: str
    device: str
    precisions: tuple[str, ...]
    reads: str  # "checkpoint" | "onnx" | "engine"
    packages: tuple[str, ...]  # importable module names it needs
    install: str  # how to get it


@dataclass(frozen=True)
class BackendStatus:
    name: str
    available: bool
    reason: str  # why not, and how to fix; "" when available
    device: str
    precisions: tuple[str, ...]


SPECS: tuple[BackendSpec, ...] = (
    BackendSpec("pytorch", "pytorch", "TorchBackend", "cpu", ("fp32",), "checkpoint", ("torch",), "pip install torch"),
    BackendSpec("pytorch-cuda", "pytorch", "TorchCudaBackend", "cuda", ("fp32", "fp16"), "checkpoint", ("torch",), "a CUDA build of torch and an NVIDIA GPU"),
    BackendSpec("onnxruntime", "onnxruntime", "OrtCpuBackend", "cpu", ("fp32", "fp16", "int8", "int8-cpu"), "onnx", ("onnxruntime",), "pip install onnxruntime"),
    BackendSpec("onnxruntime-cuda", "onnxruntime_gpu", "OrtCudaBackend", "cuda", ("fp32", "fp16", "int8"), "onnx", ("onnxruntime",), GPU_INSTALL),
    BackendSpec("onnxruntime-trt", "onnxruntime_gpu", "OrtTensorrtBackend", "cuda", ("fp32", "fp16", "int8"), "onnx", ("onnxruntime", "tensorrt"), GPU_INSTALL),
    BackendSpec("openvino", "openvino", "OpenVinoBackend", "cpu", ("fp32", "fp16", "int8", "int8-cpu"), "onnx", ("openvino",), "pip install 'toolkit[openvino]'"),
    BackendSpec("tensorrt", "tensorrt", "TensorrtBackend", "cuda", ("fp32", "fp16", "int8"), "engine", ("tensorrt", "torch"), GPU_INSTALL),
    # A model on a Triton server (client side): it reads an endpoint (URL + model name), not a file,
    # and runs only when asked for by name (it needs --url).
    BackendSpec("triton", "triton", "TritonBackend", "remote", ("fp32", "fp16", "int8", "int8-cpu"), "endpoint", ("tritonclient",),
                "pip install 'toolkit[serve]'"),
)
BY_NAME = {s.name: s for s in SPECS}
# Backends whose engines or optimization profiles are built for the built-in CNN's input only so far
# (TensorRT's): another model's pairs are planned as skipped, with that reason.
BUILTIN_ONLY = ("onnxruntime-trt",)


def backend_names() -> list[str]:
    return [s.name for s in SPECS]


def get_spec(name: str) -> BackendSpec:
    try:
        return BY_NAME[name]
    except KeyError:
        raise InputError(f"unknown backend {name!r}", f"choose from {', '.join(backend_names())}") from None


def status(name: str) -> BackendStatus:
    """Whether `name` can run here, and why not. A GPU backend is usable only when what it runs on
    actually starts: `import tensorrt` works (tensorrt, onnxruntime-trt) and a tiny onnxruntime
    session on its provider runs (onnxruntime-cuda, onnxruntime-trt; probed once per process).
    Anything short of that makes the backend unavailable with the reason, never an error."""
    spec = get_spec(name)

    def unavailable(reason: str) -> BackendStatus:
        return BackendStatus(name, False, reason, spec.device, spec.precisions)

    for pkg in spec.packages:
        if importlib.util.find_spec(pkg) is None:
            return unavailable(f"Python package '{pkg}' is not installed ({spec.install})")
    if "tensorrt" in spec.packages:  # a broken TensorRT install is worth saying even without a GPU
        from toolkit.backends.tensorrt_env import tensorrt_import_problem

        problem = tensorrt_import_problem()
        if problem:
            return unavailable(f"{problem} ({GPU_INSTALL})")
    if spec.device == "cuda":
        ok, why = cuda_available()
        if not ok:
            return unavailable(f"needs a CUDA GPU: {why}")
    if spec.module == "onnxruntime_gpu":
        from toolkit.backends.onnxruntime_gpu import PROVIDER_OF_BACKEND, probe_provider

        probe = probe_provider(PROVIDER_OF_BACKEND[name])
        if not probe.usable:
            return unavailable(f"{probe.reason} ({GPU_INSTALL})")
    return BackendStatus(name, True, "", spec.device, spec.precisions)


def all_statuses() -> list[BackendStatus]:
    return [status(s.name) for s in SPECS]


def model_path_for(name: str, precision: str, artifacts_dir: str | Path = paths.ARTIFACTS_DIR, model=None) -> Path:
    """The file backend `name` reads for `precision`, named after the model (`model`: its ModelSpec,
    the built-in CNN's by default)."""
    spec = get_spec(name)
    stem = (model or MNIST_CNN_SPEC).name
    if spec.reads == "endpoint":
        raise InputError(f"backend {name} reads a server endpoint, not a file", "pass --url and --model")
    if spec.reads == "checkpoint":
        return paths.checkpoint_path(artifacts_dir, stem)
    if spec.reads == "engine":
        return paths.engine_path(precision, artifacts_dir, name=stem)
    return paths.onnx_path(precision, artifacts_dir, stem)


def check_precision(precision: str) -> str:
    if precision not in paths.ONNX_PRECISIONS:
        raise InputError(f"unknown precision {precision!r}", f"choose from {', '.join(paths.ONNX_PRECISIONS)}")
    return precision


def backend_class(name: str):
    """The backend's class (its module imports its runtime lazily, so this needs none installed)."""
    spec = get_spec(name)
    return getattr(importlib.import_module(f"toolkit.backends.{spec.module}"), spec.class_name)


def option_choices(name: str, precision: str) -> dict[str, tuple] | None:
    """The options `name` accepts for `precision`, each with its allowed values, the default first;
    None when the backend does not declare them (they are then passed through unchecked)."""
    return backend_class(name).option_choices(check_precision(precision))


def compute_precision(name: str, precision: str, options: dict) -> str:
    """The arithmetic precision when an option changes it from the file's (e.g. "bf16"), else ""."""
    return backend_class(name).compute_precision(precision, options)


def check_options(name: str, precision: str, options: dict) -> None:
    """Refuse options `name` does not accept (InputError), `threads` included; as tuned.json stores them."""
    spec = get_spec(name)
    check_precision(precision)
    if precision not in spec.precisions:
        raise InputError(f"backend {name} does not run {precision}", f"it runs {', '.join(spec.precisions)}")
    rest = dict(options)
    threads = rest.pop("threads", None)
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise InputError(f"threads must be a positive integer, got {threads!r}", "omit it to use every core")
    backend_class(name).check_options(precision, rest)


def create_backend(name: str, precision: str, model_path: str | Path | None = None, threads: int | None = None, spec=None, **options):
    """An unloaded backend instance; raises UnavailableError (with the reason) when it can't run here,
    InputError for an option the backend does not accept (see option_choices; tuned.json's
    `options` are accepted as keyword arguments as they are). `spec`: the model's ModelSpec (the
    built-in CNN's by default): the inputs every call is checked against, the file's signature."""
    model = spec_kw(spec)
    spec = get_spec(name)
    check_precision(precision)
    if precision not in spec.precisions:
        raise InputError(f"backend {name} does not run {precision}", f"it runs {', '.join(spec.precisions)}")
    st = status(name)
    if not st.available:
        raise UnavailableError(f"backend {name} is unavailable: {st.reason}")
    cls = backend_class(name)
    if spec.reads == "endpoint":
        return cls(None, precision, threads=threads, **model, **options)  # the endpoint is in options (url, model)
    return cls(model_path or model_path_for(name, precision, model=model.get("spec")), precision, threads=threads, **model, **options)


def spec_kw(model) -> dict:
    """The `spec` keyword for a backend: none for the built-in CNN (so backends that predate specs,
    and their tests' stand-ins, are called exactly as before)."""
    return {} if model is None or model is MNIST_CNN_SPEC else {"spec": model}


# --- pair planning: the gate and the benchmark ask the same question -------------------------------

@dataclass(frozen=True)
class PlannedPair:
    backend: str
    precision: str
    model_path: Path | str  # a file, or for an endpoint backend the model's URL
    available: bool
    reason: str  # why unavailable; "" when available
    options: dict = field(default_factory=dict, hash=False, compare=False)  # create_backend(**options): an endpoint's url, model
    spec: object = field(default=None, hash=False, compare=False)  # the model's ModelSpec; None: the built-in CNN


def select_pairs(backends: list[str] | None = None, precisions: list[str] | None = None) -> list[tuple[str, str]]:
    """Every (backend, precision) pair the names select; unknown names are bad input."""
    names = backends or [s.name for s in SPECS if s.reads != "endpoint"]  # a server is only used when named
    for n in names:
        get_spec(n)
    for p in precisions or []:
        check_precision(p)
    pairs = [(name, precision) for name in names for precision in get_spec(name).precisions
             if not precisions or precision in precisions]
    if not pairs:
        raise InputError(
            f"no (backend, precision) pair matches backends {backends or 'all'} and precisions {precisions or 'all'}",
            "see `toolkit info` for which backend runs which precision",
        )
    return pairs


def _how_to_make(reads: str, precision: str) -> str:
    if reads == "checkpoint":
        return "train it with `toolkit train` or pass --checkpoint"
    if reads == "engine":
        return f"build it with `toolkit export --format tensorrt --precision {precision}`"
    return f"export it with `toolkit export --format onnx --precision {precision}` or pass --artifacts"


def _endpoint_options(precision: str, endpoint: dict | None, precisions_asked: int, model=None) -> tuple[str, dict]:
    """(model URL, create_backend options) of an endpoint pair; without a URL it is bad input."""
    from toolkit.backends.triton import model_name, parse_endpoint

    endpoint = dict(endpoint or {})
    if not endpoint.get("url"):
        raise InputError("the triton backend needs a server", "pass --url http://HOST:8000 (or grpc://HOST:8001) and --model NAME")
    if endpoint.get("model") and precisions_asked > 1:
        raise InputError("--model names one model, and several precisions were asked for", "pass one --precision with --model")
    endpoint["model"] = endpoint.get("model") or model_name("onnxruntime", precision, model)
    return parse_endpoint(endpoint["url"], endpoint["model"]).model_url, endpoint


def _served_precision(endpoint: dict) -> str:
    """The precision of the model `endpoint` names, as its server's configuration (or its name) records it."""
    from toolkit.backends.triton import TritonBackend, parse_endpoint

    options = {k: v for k, v in endpoint.items() if v is not None}
    precision = TritonBackend(None, "fp32", **options).served_precision()
    if precision is None:
        ep = parse_endpoint(endpoint["url"], endpoint["model"])
        raise InputError(f"model {ep.model!r} at {ep.url} does not record its precision (no toolkit_precision parameter, "
                         "not a toolkit model name)", "pass --precision")
    return check_precision(precision)


def plan_pairs(backends: list[str] | None, precisions: list[str] | None, checkpoint: str | Path,
               artifacts_dir: str | Path = paths.ARTIFACTS_DIR, endpoint: dict | None = None, spec=None) -> list[PlannedPair]:
    """Every requested pair with the file it reads, checked before any work: unknown names and a
    missing, corrupt, unsafe or foreign model file of a usable pair are bad input (check_model_file);
    a backend requested by name that can't run here is an UnavailableError; other unavailable
    backends are planned as skipped, with the reason.
    `endpoint` ({"url", "model", "timeout_s", "token"}) is where the endpoint backend (triton) runs:
    its server is asked once here, so an unreachable server (UnavailableError), an unknown model or a
    foreign signature (bad input) stops the run before any work. A URL alone selects that backend.
    `spec`: the model (its ModelSpec; the built-in CNN's by default): the files are named after it
    and checked against its signature. The PyTorch backends run the built-in CNN only (another
    model's PyTorch fp32 run is the gate's reference itself)."""
    model = None if spec is None or spec is MNIST_CNN_SPEC else spec
    if endpoint and endpoint.get("url") and not backends:
        backends = ["triton"]  # --url alone: the server's model
    if backends == ["triton"] and not precisions and endpoint and endpoint.get("url") and endpoint.get("model") and status("triton").available:
        precisions = [_served_precision(endpoint)]  # --model names one model: its precision is the server's word
    for name in backends or []:
        get_spec(name)
        st = status(name)
        if not st.available:
            raise UnavailableError(f"backend {name} was requested but is unavailable: {st.reason}")
    planned = []
    checked: set[tuple[str, Path]] = set()
    selected = select_pairs(backends, precisions)
    for name, precision in selected:
        spec = get_spec(name)
        st = status(name)
        if spec.reads == "endpoint":
            asked = sum(1 for n, _ in selected if n == name)
            url, options = _endpoint_options(precision, endpoint, asked, model) if st.available else ("", {})
            if st.available:
                # Like a missing model file, an unreachable server, an unknown model or a foreign
                # signature is refused before any work (its own error and exit code).
                with create_backend(name, precision, threads=None, spec=model, **options):
                    pass
            planned.append(PlannedPair(name, precision, url, st.available, st.reason, options, model))
            continue
        if model is not None and (spec.reads in ("checkpoint", "engine") or name in BUILTIN_ONLY):
            why = (f"backend {name} runs the built-in CNN only; {model.name}'s PyTorch fp32 run is the gate's reference"
                   if spec.reads == "checkpoint" else f"backend {name} runs the built-in CNN only so far (its engines and profiles)")
            if name in (backends or []):
                raise InputError(why, "drop it from --backend")
            planned.append(PlannedPair(name, precision, "", False, why, spec=model))
            continue
        path = Path(checkpoint) if spec.reads == "checkpoint" else model_path_for(name, precision, artifacts_dir, model)
        # A missing checkpoint is said by check_model_file, in the words every command uses for it.
        if st.available and spec.reads != "checkpoint" and (problem := paths.not_a_file(path)):
            problem = "is missing" if problem == "does not exist" else problem
            raise ModelFileError(f"model file {path} for {name}/{precision} {problem}", _how_to_make(spec.reads, precision))
        if st.available and (spec.reads, path) not in checked:
            check_model_file(name, precision, path, model)
            checked.add((spec.reads, path))
        planned.append(PlannedPair(name, precision, path, st.available, st.reason, spec=model))
    return planned


def check_model_file(name: str, precision: str, path: Path, spec=None) -> None:
    """The checks the backend makes when it loads `path`, made before any work: a corrupt, unsafe or
    foreign file is bad input (exit 2) in the gate and the benchmark alike. A file that passes and
    then fails or disagrees when run is that pair's failure (exit 1), a verdict on the file."""
    reads = get_spec(name).reads
    if reads == "onnx":
        from toolkit.files.onnx_file import load_checked

        load_checked(path) if spec is None or spec is MNIST_CNN_SPEC else load_checked(path, spec)
    elif reads == "checkpoint":
        from toolkit.files.checkpoint import load_state_dict

        load_state_dict(path)
    elif reads == "engine":
        # the engine backend's own check (sidecar, hashes, this TensorRT and GPU); no engine is deserialized
        importlib.import_module(f"toolkit.backends.{get_spec(name).module}").check_engine_file(path, precision)
