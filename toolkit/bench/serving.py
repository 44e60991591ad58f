"""Serving benchmarks: the load benchmark and the soak, through a Triton server (a given endpoint,
or a local one started for the run) next to the same pair in-process.

Rows: for each (backend, precision) pair, `in-process` (the toolkit backend in this process) and
one row per protocol through the server: `http`, `grpc`, and `http+shm` (system shared memory,
local server only). Every response is checked against the in-process logits of the same images.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from toolkit.backends import registry
from toolkit.backends.triton import model_name, parse_endpoint, parse_model_name
from toolkit.bench.load import IN_PROCESS, LoadConfig, LoadReport, LoadRow, SoakResult, run_load, run_soak
from toolkit.errors import InputError
from toolkit.files import paths
from toolkit.files.spec_file import refuse_another_model

PROTOCOLS = ("http", "grpc", "http+shm")
DEFAULT_SOAK_SECONDS = 60.0
DEFAULT_SOAK_CONCURRENCY = 16
DEFAULT_SOAK_BATCH_SIZES = (1, 8, 64)
DEFAULT_RSS_BOUND_MB = 32


@dataclass(frozen=True)
class Target:
    """Where the server rows go: an endpoint (http and grpc URLs, either may be empty) and the model
    name per pair (None: the toolkit's name for the pair)."""

    http_url: str = ""
    grpc_url: str = ""
    model: str | None = None
    token: str | None = None  # None: $TOOLKIT_TRITON_TOKEN
    local: bool = False  # shared memory only works when client and server share /dev/shm
    timeout_s: float = 30.0


def mnist_test_images(data_dir=None) -> np.ndarray:
    from toolkit.data import load_split_uint8, to_model_input
    from toolkit.model import validate_batch

    images, _ = load_split_uint8("test", data_dir)
    return validate_batch(np.ascontiguousarray(to_model_input(images)))


def in_process_logits(backend: str, precision: str, images: np.ndarray, artifacts_dir, checkpoint, threads=None) -> np.ndarray:
    path = checkpoint if registry.get_spec(backend).reads == "checkpoint" else registry.model_path_for(backend, precision, artifacts_dir)
    with registry.create_backend(backend, precision, path, threads=threads) as b:
        return np.concatenate([b.run_trusted(images[i : i + 1024]) for i in range(0, len(images), 1024)])


def server_row(backend: str, precision: str, url: str, model: str, token: str | None = None, shared_memory: bool = False,
               timeout_s: float = 30.0, stats_url: str | None = None, spec=None) -> LoadRow:
    """A load row through a Triton endpoint: one `triton` backend per client, and the model's
    statistics fetched from `stats_url` (default: `url`) with the access token."""
    protocol = ("http+shm" if shared_memory else "http") if parse_endpoint(url, model).protocol == "http" else "grpc"

    def make():
        return registry.create_backend("triton", precision, url=url, model=model, token=token, shared_memory=shared_memory,
                                       timeout_s=timeout_s, spec=spec)

    def statistics():
        b = registry.create_backend("triton", precision, url=stats_url or url, model=model, token=token, timeout_s=timeout_s, spec=spec)
        try:
            b.load()
            return b.statistics()
        except Exception:  # noqa: BLE001 - statistics are optional in the report
            return None
        finally:
            b.close()

    return LoadRow(backend, precision, f"triton {protocol}", make, statistics)


def serving_rows(pairs: list[tuple[str, str]], target: Target, protocols: tuple[str, ...], in_process: bool,
                 artifacts_dir, checkpoint, threads=None, spec=None) -> list[LoadRow]:
    for p in protocols:
        if p not in PROTOCOLS:
            raise InputError(f"unknown protocol {p!r}", f"choose from {', '.join(PROTOCOLS)}")
    if "http+shm" in protocols and not target.local:
        raise InputError("shared memory needs a server on this machine", "use a local server (--serve)")
    rows = []
    for backend, precision in pairs:
        if in_process:
            path = (checkpoint if registry.get_spec(backend).reads == "checkpoint"
                    else registry.model_path_for(backend, precision, artifacts_dir, spec))
            rows.append(LoadRow(backend, precision, IN_PROCESS,
                                lambda b=backend, p=precision, path=path: registry.create_backend(b, p, path, threads=threads, spec=spec),
                                max_concurrency=1))
        model = target.model or model_name(backend, precision, spec)
        stats_url = target.http_url or target.grpc_url
        for protocol in protocols:
            url = target.grpc_url if protocol == "grpc" else target.http_url
            if url:
                rows.append(server_row(backend, precision, url, model, target.token, protocol == "http+shm", target.timeout_s, stats_url,
                                       spec))
    return rows


def run_serving_bench(
    pairs: list[tuple[str, str]],
    config: LoadConfig,
    target: Target | None = None,
    protocols: tuple[str, ...] = ("http", "grpc"),
    in_process: bool = True,
    serve_config=None,
    artifacts_dir=paths.ARTIFACTS_DIR,
    checkpoint=paths.DEFAULT_CHECKPOINT,
    data_dir=None,
    threads: int | None = None,
    progress: Callable[[str], None] | None = None,
    spec=None,
    data=None,
) -> LoadReport:
    """The load benchmark for `pairs`: against `target`, or against a local server started from
    `serve_config` (serve.ServeConfig) for the run and stopped after it. `spec`: another model than
    the built-in (its requests from `data`, a DataSource, or drawn from the spec: bench.model_load)."""
    if serve_config is not None:
        from toolkit.serve import check_serving_support

        check_serving_support()  # before the references are computed
    if spec is not None:
        from toolkit.bench.model_load import in_process_outputs, model_inputs

        images = model_inputs(spec, data, config.batch_sizes)
        references = {pair: in_process_outputs(*pair, images, artifacts_dir, spec, threads) for pair in pairs}
    else:
        images = mnist_test_images(data_dir)
        references = {pair: in_process_logits(*pair, images, artifacts_dir, checkpoint, threads) for pair in pairs}
    if serve_config is None:
        if target is None:
            raise InputError("no server to benchmark", "pass --url, or --serve to start a local one")
        rows = serving_rows(pairs, target, protocols, in_process, artifacts_dir, checkpoint, threads, spec)
        return run_load(rows, images, references, config, progress)
    from toolkit.serve import LocalServer

    with LocalServer(serve_config) as server:
        info = server.info
        local = Target(http_url=info.http_url, grpc_url=info.grpc_url, token=info.access_token, local=True)
        rows = serving_rows(pairs, local, protocols, in_process, artifacts_dir, checkpoint, threads, spec)
        report = run_load(rows, images, references, config, progress)
    stop = server.stop_report
    report.notes.append(f"local server (tritonserver from nvidia-pytriton, python backend: {serve_config.instances} stub process(es) per "
                        f"model, threads {serve_config.threads or 'all cores'}, max queue delay {serve_config.max_queue_delay_us} µs), "
                        f"stopped in {stop.seconds:.1f}s, "
                        + ("nothing left running" if stop.clean else f"LEFT BEHIND {stop.leftover_processes} {stop.leftover_shm}"))
    return report


def _process_label(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as fh:
            name = fh.read().strip()
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read()
    except OSError:
        return str(pid)
    if b"resource_tracker" in cmdline:
        name = "stub's resource tracker"
    elif name.startswith("triton_python"):
        name = "python-backend stub (runs the model)"
    return f"{name} ({pid})"


def run_serving_soak(
    pair: tuple[str, str],
    serve_config,
    seconds: float = DEFAULT_SOAK_SECONDS,
    concurrency: int = DEFAULT_SOAK_CONCURRENCY,
    batch_sizes: tuple[int, ...] = DEFAULT_SOAK_BATCH_SIZES,
    protocol: str = "http",
    rss_bound_mb: float = DEFAULT_RSS_BOUND_MB,
    artifacts_dir=paths.ARTIFACTS_DIR,
    checkpoint=paths.DEFAULT_CHECKPOINT,
    data_dir=None,
) -> SoakResult:
    """A local server under load for `seconds`: every response checked, the resident memory of the
    server's processes (tritonserver, the stubs that run the model) and of this process (the
    clients) sampled."""
    from toolkit.serve import LocalServer, check_serving_support, rss_bytes

    LoadConfig(concurrencies=(concurrency,), batch_sizes=batch_sizes, seconds=seconds)  # validates
    refuse_another_model(artifacts_dir, "toolkit soak", "load another model's server with `toolkit bench --serve --concurrency 16 --duration 60`")
    if protocol not in ("http", "grpc"):
        raise InputError(f"--protocol must be http or grpc, got {protocol!r}", "pass --protocol http")
    check_serving_support()
    images = mnist_test_images(data_dir)
    reference = in_process_logits(*pair, images, artifacts_dir, checkpoint)
    with LocalServer(serve_config) as server:
        info = server.info
        url = info.grpc_url if protocol == "grpc" else info.http_url
        model = model_name(*pair)
        row = server_row(pair[0], pair[1], url, model, info.access_token)
        processes = {_process_label(pid): pid for pid in info.pids}
        processes[f"this process: clients ({os.getpid()})"] = os.getpid()
        result = run_soak(row, images, reference, concurrency, batch_sizes, seconds, processes, rss_bytes,
                          int(rss_bound_mb * 1024 * 1024))
    result.stop = server.stop_report
    return result


def run_load_command(backends: list[str] | None, precisions: list[str] | None, urls: list[str], model: str | None,
                     timeout_s: float, concurrencies: tuple[int, ...], batch_sizes: tuple[int, ...], seconds: float,
                     serve_local: bool, threads: int | None, checkpoint, artifacts_dir, data_dir,
                     progress: Callable[[str], None] | None = None, instances: int = 1, spec=None, data=None) -> LoadReport:
    """`toolkit bench --concurrency ...`: which pairs, which server, then `run_serving_bench`.

    Pairs: the in-process backends named in --backend (default: the one --model names, else
    onnxruntime) x --precision (default: the one --model names, else fp32). Server rows go to each
    --url (its scheme picks HTTP or gRPC), or with --serve to a local server that serves the pairs."""
    from toolkit.serve import ServeConfig

    config = LoadConfig(concurrencies=concurrencies, batch_sizes=batch_sizes, seconds=seconds)
    named = parse_model_name(model) if model else None
    in_process = [b for b in (backends or []) if b != "triton"] or [named[0] if named else "onnxruntime"]
    precisions = precisions or [named[1] if named else "fp32"]
    pairs = [(b, p) for b in in_process for p in precisions]
    if model and len(pairs) > 1:
        raise InputError("--model names one model, and several (backend, precision) pairs were asked for", "pass one of each with --model")
    if serve_local:
        if urls:
            raise InputError("--serve starts its own server, and --url names another", "pass one of them")
        serve = ServeConfig(pairs=tuple(pairs), http_port=0, grpc_port=0, metrics_port=0, threads=threads, instances=instances,
                            artifacts_dir=str(artifacts_dir), checkpoint=str(checkpoint))
        report = run_serving_bench(pairs, config, protocols=PROTOCOLS if spec is None else ("http", "grpc"), serve_config=serve,
                                   artifacts_dir=artifacts_dir, checkpoint=checkpoint, data_dir=data_dir, threads=threads,
                                   progress=progress, spec=spec, data=data)
        if spec is not None:
            report.notes.append(f"no http+shm rows: the Triton client's shared memory carries the built-in CNN's tensors only, not {spec.name}'s")
        return report
    if not urls:
        raise InputError("the load benchmark needs a server", "pass --url http://HOST:8000 (and/or grpc://HOST:8001), or --serve")
    endpoints = [parse_endpoint(u, model or "x") for u in urls]
    http = next((e.url for e in endpoints if e.protocol == "http"), "")
    grpc = next((e.url for e in endpoints if e.protocol == "grpc"), "")
    protocols = tuple(p for p, u in (("http", http), ("grpc", grpc)) if u)
    target = Target(http_url=http, grpc_url=grpc, model=model, timeout_s=timeout_s)
    return run_serving_bench(pairs, config, target, protocols=protocols, artifacts_dir=artifacts_dir, checkpoint=checkpoint,
                             data_dir=data_dir, threads=threads, progress=progress, spec=spec, data=data)
