"""TensorRT engines from the ONNX exports: one strongly typed build path for TensorRT 10.x and 11.x.

Precision comes from the ONNX file (fp32, fp16 with float32 I/O, int8 Q/DQ): the network is
created strongly typed and no precision flag is set, because 11.x removed the FP16/INT8 flags and
calibrators. The only numeric switch left is TF32, on by default for fp32 layers; `strict_fp32`
clears it. Every TensorRT call that reports failure by returning False, None or -1 is checked.
Written against the documented API and checked with trt-api-check; docs/gpu-tensorrt.md says what has run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.errors import InputError, ModelFileError, ToolkitError
from toolkit.files import paths
from toolkit.files.engine_sidecar import EngineOptions, build_record, profile_shapes, rebuild_command
from toolkit.model import INPUT_NAME, OUTPUT_NAME

if TYPE_CHECKING:
    import tensorrt as trt


@dataclass
class EngineResult:
    path: str
    sidecar: str
    precision: str
    strict_fp32: bool
    tf32: bool  # whether fp32 layers may use TF32 math
    profile: tuple[int, int, int]
    workspace_mb: int
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    size: int
    sha256: str
    onnx_path: str
    onnx_sha256: str
    timing_cache: str  # what happened to the timing cache, in words
    seconds: float


class EngineBuildError(ModelFileError):
    """TensorRT refused the ONNX or failed to build it."""


def _parser_errors(parser: trt.OnnxParser) -> list[str]:
    messages = []
    for i in range(parser.num_errors):
        error: trt.ParserError = parser.get_error(i)
        where = f"node {error.node()}"
        if error.node_name():
            where += f" {error.node_name()} ({error.node_operator()})"
        messages.append(f"{where}: {error.desc()}")
    return messages


def network_flags(trt) -> int:
    """Creation flags for a strongly typed network.

    10.x: strong typing is opt-in through NetworkDefinitionCreationFlag.STRONGLY_TYPED (value 1).
    11.x: every network is strongly typed; the flag survives (value 0), deprecated and ignored,
    so none is passed. Never hard-code the value: it differs between the majors."""
    from toolkit.backends.tensorrt_env import tensorrt_major

    if tensorrt_major(trt.__version__) >= 11:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def is_strongly_typed(network: trt.INetworkDefinition, trt) -> bool:
    """Whether `network` is strongly typed. On 11.x it always is, and get_flag(STRONGLY_TYPED) of a
    deprecated, ignored flag may read False: only 10.x is asked."""
    from toolkit.backends.tensorrt_env import tensorrt_major

    if tensorrt_major(trt.__version__) >= 11:
        return True
    return bool(network.get_flag(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))


def _parse(builder: trt.Builder, logger, onnx_bytes: bytes, onnx_path: Path, precision: str):
    """A strongly typed network parsed from the ONNX; the parser is returned too: it owns the weights."""
    import tensorrt as trt

    network = builder.create_network(network_flags(trt))
    if network is None:
        raise EngineBuildError("TensorRT could not create a network definition", "re-run with --debug for TensorRT's log")
    if not is_strongly_typed(network, trt):
        raise EngineBuildError(f"TensorRT {trt.__version__} did not create a strongly typed network", "use TensorRT 10.x or newer")
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes, str(onnx_path)):
        errors = _parser_errors(parser) or [" ".join(logger.take_errors()) or "no details given"]
        raise EngineBuildError(
            f"TensorRT's ONNX parser rejected {onnx_path} ({len(errors)} error(s)): " + " | ".join(e[:200] for e in errors),
            f"re-export it with `toolkit export --format onnx --precision {precision} --out {onnx_path.parent}`",
        )
    return network, parser


def _check_io(io: list[dict], onnx_path: Path, spec=None) -> None:
    """The profile and the backend address tensors by name: refuse a network named otherwise than
    the built-in's input and output, or `spec`'s (another model's) inputs and outputs."""
    names = {mode: [t["name"] for t in io if t["mode"] == mode] for mode in ("input", "output")}
    expected = ({"input": [t.name for t in spec.inputs], "output": [o.name for o in spec.outputs]} if spec is not None
                else {"input": [INPUT_NAME], "output": [OUTPUT_NAME]})
    if {k: sorted(v) for k, v in names.items()} != {k: sorted(v) for k, v in expected.items()}:
        raise ModelFileError(f"{onnx_path} has inputs {names['input']} and outputs {names['output']}, expected {expected['input']} and "
                             f"{expected['output']}", "re-export it with `toolkit export`")


def _configure(builder: trt.Builder, config: trt.IBuilderConfig, options: EngineOptions, spec=None) -> bool:
    """Workspace, TF32 and the batch profile (every input's shapes: profile_shapes); returns whether TF32 stays allowed."""
    import tensorrt as trt

    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    if options.strict_fp32:
        config.clear_flag(trt.BuilderFlag.TF32)
    profile = builder.create_optimization_profile()
    try:
        # Returns None; the binding throws std::runtime_error (RuntimeError in Python) when TensorRT
        # rejects the shapes, and pybind11 raises TypeError/ValueError for arguments it cannot convert.
        for name, (low, opt, high) in profile_shapes(options.profile, spec).items():
            profile.set_shape(name, low, opt, high)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise InputError(f"TensorRT rejected the batch profile {options.min_batch}/{options.opt_batch}/{options.max_batch} ({exc})",
                         "pass min <= opt <= max batch sizes") from None
    if config.add_optimization_profile(profile) < 0:
        raise InputError(f"TensorRT rejected the batch profile {options.min_batch}/{options.opt_batch}/{options.max_batch}", "pass min <= opt <= max batch sizes")
    return config.get_flag(trt.BuilderFlag.TF32)


def _attach_timing_cache(config: trt.IBuilderConfig, logger, cache_path: Path):
    """Reuse the saved timing cache when it fits this GPU and release; start a fresh one otherwise."""
    previous = cache_path.read_bytes() if cache_path.is_file() else b""
    cache = config.create_timing_cache(previous) if previous else None
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache, f"reused {cache_path} ({len(previous)} bytes)"
    note = f"new {cache_path}" if not previous else f"{cache_path} did not fit this GPU or TensorRT release; replaced"
    logger.take_errors()
    fresh: trt.ITimingCache = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, ignore_mismatch=False):
        raise EngineBuildError("TensorRT could not attach a timing cache", "re-run with --debug for TensorRT's log")
    return fresh, note


def _io(network: trt.INetworkDefinition) -> list[dict]:
    """Names, dtypes and shapes of the network's inputs and outputs, for the sidecar."""
    described = []
    for mode, count, get in (("input", network.num_inputs, network.get_input), ("output", network.num_outputs, network.get_output)):
        for i in range(count):
            tensor: trt.ITensor = get(i)
            described.append({"name": tensor.name, "mode": mode, "dtype": tensor.dtype.name, "shape": list(tensor.shape)})
    return described


def _serialize(builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig, logger, onnx_path: Path) -> bytes:
    from toolkit.backends.tensorrt_env import last_error

    logger.take_errors()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        reason = last_error(logger, "no details logged")
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path} ({reason})", "re-run with --debug for TensorRT's log; check the workspace (--workspace-mb) and GPU memory")
    return bytes(serialized)


def _check_onnx(onnx_path: Path, precision: str) -> bytes:
    """The ONNX's bytes after the toolkit's own checks, refusing a file of another precision."""
    from toolkit.files.onnx_file import load_checked, metadata

    model = load_checked(onnx_path)
    found = metadata(model).get("precision")
    if found != precision:
        raise ModelFileError(f"{onnx_path} is a {found or 'unlabelled'} export, not {precision}", f"export it with `toolkit export --format onnx --precision {precision}`")
    return onnx_path.read_bytes()


def build_engine(onnx_path: str | Path, precision: str, out_dir: str | Path = paths.ARTIFACTS_DIR, options: EngineOptions | None = None,
                 spec=None) -> EngineResult:
    """Build `out_dir/<model>.<precision>[-strict].engine` and its sidecar from an ONNX export
    (`spec`: another model's ModelSpec, its inputs' profiles and its name; the built-in's without)."""
    from toolkit.backends.tensorrt_env import require_tensorrt, trt_logger
    from toolkit.files.store import check_writable_dir, sha256_bytes

    environment = require_tensorrt("building a TensorRT engine")
    if precision not in paths.PRECISIONS:
        raise InputError(f"unknown precision {precision!r}", f"choose from {', '.join(paths.PRECISIONS)}")
    options = options or EngineOptions()
    t0 = time.perf_counter()
    out_dir = check_writable_dir(out_dir, create=True)
    onnx_path = Path(onnx_path)
    onnx_bytes = _check_onnx(onnx_path, precision)
    logger = trt_logger()
    logger.take_errors()
    import tensorrt as trt

    from toolkit.backends.tensorrt_env import create_with_logger, tensorrt_cuda

    builder: trt.Builder = create_with_logger(trt.Builder, logger, "builder")
    network, parser = _parse(builder, logger, onnx_bytes, onnx_path, precision)  # the parser holds the weights until the build ends
    io = _io(network)
    _check_io(io, onnx_path, spec)
    config = builder.create_builder_config()
    tf32 = _configure(builder, config, options, spec)
    cache_path = paths.timing_cache_path(out_dir)
    timing_cache, cache_note = _attach_timing_cache(config, logger, cache_path)  # must outlive the build
    engine_bytes = _serialize(builder, network, config, logger, onnx_path)
    engine = paths.engine_path(precision, out_dir, strict=options.strict_fp32, name=spec.name if spec is not None else paths.BUILTIN_NAME)
    record = build_record(
        engine_path=engine, engine_bytes=engine_bytes, onnx_path=onnx_path, onnx_sha256=sha256_bytes(onnx_bytes),
        precision=precision, strict_fp32=options.strict_fp32, tf32=tf32, profile=options.profile,
        workspace_mb=options.workspace_mb, io=io, environment=environment,
        build_seconds=time.perf_counter() - t0, extra={"cuda_runtime": tensorrt_cuda()},
    )
    _write_outputs(engine, engine_bytes, record, onnx_path, _serialized_timing_cache(config, engine, options, precision), cache_path)
    return EngineResult(
        str(engine), str(paths.sidecar_path(engine)), precision, options.strict_fp32, tf32, options.profile,
        options.workspace_mb, environment.tensorrt_version, environment.gpu_name, environment.compute_capability,
        len(engine_bytes), record["engine"]["sha256"], str(onnx_path), record["onnx"]["sha256"], cache_note,
        time.perf_counter() - t0,
    )


def _serialized_timing_cache(config: trt.IBuilderConfig, engine: Path, options: EngineOptions, precision: str) -> bytes:
    timing: trt.ITimingCache = config.get_timing_cache()
    if timing is None:
        raise ToolkitError("TensorRT lost the timing cache during the build", rebuild_command(precision, engine.parent, options.strict_fp32, options.profile))
    return bytes(timing.serialize())


def _write_outputs(engine: Path, engine_bytes: bytes, record: dict, onnx_path: Path, cache_bytes: bytes, cache_path: Path) -> None:
    """Engine, then sidecar, then timing cache, each atomic and in the manifest: a crash in between
    leaves an engine whose sidecar does not match it, which loading refuses."""
    from toolkit.files.store import json_text, write_artifact

    extra = {"precision": record["precision"], "strict_fp32": record["strict_fp32"], "tensorrt": record["tensorrt_version"]}
    write_artifact(engine, lambda tmp: tmp.write_bytes(engine_bytes), kind=f"tensorrt-engine-{record['precision']}", parents=[onnx_path], extra=extra)
    text = json_text(record)
    write_artifact(paths.sidecar_path(engine), lambda tmp: tmp.write_text(text, encoding="utf-8"), kind="tensorrt-engine-record", parents=[engine])
    write_artifact(cache_path, lambda tmp: tmp.write_bytes(cache_bytes), kind="tensorrt-timing-cache")


def build_engine_from_checkpoint(
    checkpoint: str | Path,
    precision: str,
    out_dir: str | Path = paths.ARTIFACTS_DIR,
    options: EngineOptions | None = None,
    data_dir=None,
    calibration_images: int = 1000,
) -> EngineResult:
    """Export the matching ONNX first when `out_dir` lacks it, then build the engine."""
    from toolkit.backends.tensorrt_env import require_tensorrt
    from toolkit.files.store import check_writable_dir

    require_tensorrt("building a TensorRT engine")  # before anything is exported or written
    if precision not in paths.PRECISIONS:
        raise InputError(f"unknown precision {precision!r}", f"choose from {', '.join(paths.PRECISIONS)}")
    onnx_path = paths.onnx_path(precision, check_writable_dir(out_dir, create=True))
    if not onnx_path.is_file():
        from toolkit.export.onnx import export_onnx

        export_onnx(checkpoint, precision, out_dir, data_dir=data_dir, calibration_images=calibration_images)
    return build_engine(onnx_path, precision, out_dir, options)
