"""`toolkit serve`, `toolkit soak` (Triton)."""

from __future__ import annotations

import click

from toolkit.cli.group import (
    _artifacts_option,
    _batch_sizes,
    _checkpoint_option,
    _data_dir_option,
    _split_list,
    cli,
)


def _ports(http_port, grpc_port, metrics_port):
    return dict(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port)


def _serve_pairs(backends, precisions) -> tuple[tuple[str, str], ...]:
    backend_list = _split_list(backends, "backend") or ["onnxruntime"]
    precision_list = _split_list(precisions, "precision") or ["fp32"]
    return tuple((b, p) for b in backend_list for p in precision_list)


@cli.command()
@click.option("--backend", "backends", default="onnxruntime", show_default=True, help="Comma-separated backends to serve (onnxruntime, openvino).")
@click.option("--precision", "precisions", default="fp32", show_default=True, help="Comma-separated precisions; every backend x precision is served.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 exposes the server to the network).")
@click.option("--http-port", type=int, default=8000, show_default=True, help="0: any free port.")
@click.option("--grpc-port", type=int, default=8001, show_default=True, help="0: any free port.")
@click.option("--metrics-port", type=int, default=8002, show_default=True, help="0: any free port.")
@click.option("--max-batch", type=int, default=1024, show_default=True, help="Largest batch the dynamic batcher forms (and a request may send).")
@click.option("--max-queue-delay-us", type=int, default=0, show_default=True, help="How long the batcher waits to fill a batch (requests queued while the model is busy are merged anyway).")
@click.option("--instances", type=int, default=1, show_default=True, help="Model instances per pair (each its own stub process).")
@click.option("--threads", type=int, default=None, help="Threads per model instance (default: every core).")
@click.option("--repository", type=click.Path(file_okay=False), default=None,
              help="Serve this repository from `toolkit export --format triton --runtime python` as it is (after verifying its manifest).")
@click.option("--verbose", is_flag=True, help="Show the server's own log as it is written (otherwise kept in its log file, shown on failure).")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="Write the access token for the statistics and shared-memory endpoints here (mode 0600).")
@_checkpoint_option
@_artifacts_option
def serve(backends, precisions, host, http_port, grpc_port, metrics_port, max_batch, max_queue_delay_us, instances, threads, repository, verbose,
          token_file, checkpoint, artifacts_dir):
    """Serve (backend, precision) pairs on a local Triton Inference Server until Ctrl-C or SIGTERM."""
    from toolkit.report.serve import format_server_info, format_stop_report
    from toolkit.serve import ServeConfig, run_server

    config = ServeConfig(
        pairs=_serve_pairs(backends, precisions), host=host, **_ports(http_port, grpc_port, metrics_port), max_batch=max_batch,
        max_queue_delay_us=max_queue_delay_us, instances=instances, threads=threads, artifacts_dir=artifacts_dir,
        checkpoint=checkpoint, verbose=verbose, repository=repository,
    )

    report = run_server(config, on_ready=lambda info: click.echo(format_server_info(info, token_file)), token_file=token_file)
    click.echo(format_stop_report(report))


@cli.command()
@click.option("--backend", "backend", default="onnxruntime", show_default=True, help="The in-process backend to serve.")
@click.option("--precision", default="fp32", show_default=True)
@click.option("--duration", type=float, default=60.0, show_default=True, help="Seconds of load (after a short warm-up).")
@click.option("--concurrency", type=int, default=16, show_default=True, help="Clients sending at once.")
@click.option("--batch-sizes", default="1,8,64", show_default=True, help="Batch sizes the clients cycle through.")
@click.option("--protocol", type=click.Choice(["http", "grpc"]), default="http", show_default=True)
@click.option("--rss-bound-mb", type=float, default=32.0, show_default=True, help="Fail when any process's memory grows more than this.")
@click.option("--threads", type=int, default=None, help="Threads per served backend (default: every core).")
@_checkpoint_option
@_artifacts_option
@_data_dir_option
def soak(backend, precision, duration, concurrency, batch_sizes, protocol, rss_bound_mb, threads, checkpoint, artifacts_dir, data_dir):
    """Load a local Triton server for a while: every response checked, memory watched."""
    from toolkit.bench.serving import run_serving_soak
    from toolkit.errors import CheckFailed
    from toolkit.report.serve import format_soak
    from toolkit.serve import ServeConfig

    config = ServeConfig(pairs=((backend, precision),), http_port=0, grpc_port=0, metrics_port=0, threads=threads,
                         artifacts_dir=artifacts_dir, checkpoint=checkpoint)
    result = run_serving_soak((backend, precision), config, duration, concurrency, _batch_sizes(batch_sizes), protocol, rss_bound_mb,
                              artifacts_dir, checkpoint, data_dir)
    click.echo(format_soak(result))
    if not result.passed:
        raise CheckFailed(f"soak failed: {result.cell.failed} failed, {result.cell.wrong} wrong responses, or memory grew past "
                          f"{rss_bound_mb:g} MiB; see above")


