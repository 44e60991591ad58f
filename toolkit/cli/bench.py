"""`toolkit bench`."""

from __future__ import annotations

import math

import click

from toolkit.cli.group import (
    _artifacts_option,
    _batch_sizes,
    _checkpoint_option,
    _data_dir_option,
    _endpoint,
    _positive_ints,
    _split_list,
    _triton_model_option,
    _triton_timeout_option,
    cli,
)


@cli.command()
@click.option("--backend", "backends", default=None, help="Comma-separated backends (default: every available one).")
@click.option("--precision", "precisions", default=None, help="Comma-separated precisions: fp32,fp16,int8,int8-cpu (default: all).")
@click.option("--batch-sizes", default=None, help="Comma-separated batch sizes.  [default: 1,8,32,128,256; --quick: 1,32,256; --concurrency: 1,256]")
@click.option("--warmup", default=None, help="Warm-up per cell: calls (20) or seconds (0.2s).  [default: 0.2s; --quick: 0.05s]")
@click.option("--iterations", type=int, default=None, help="At least this many timed calls per cell.  [default: 100; --quick: 20]")
@click.option("--min-seconds", type=float, default=None, help="And at least this long per cell.  [default: 1; --quick: 0.15]")
@click.option("--threads", type=int, default=None, help="Threads per backend (default: every usable core).")
@click.option("--quick", is_flag=True, help="A small sweep that finishes in under a minute (no torch.compile row).")
@click.option("--compile/--no-compile", "torch_compile", default=None, help="Add a torch.compile row beside eager PyTorch.  [default: on; --quick: off]")
@click.option("--direct/--no-direct", default=True, help="Add rows calling onnxruntime/OpenVINO directly, to measure the toolkit's wrapper overhead.  [default: on]")
@click.option("--baseline", type=click.Path(dir_okay=False), default=None, help="An earlier bench.json: fail on a real regression.")
@click.option("--threshold", type=float, default=0.10, show_default=True, help="Regression threshold for --baseline (0.10 = 10%).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="artifacts/bench", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress lines.")
@click.option("--peak/--no-peak", default=True, help="Measure this machine's fp32/int8 peak and report each cell's % of it.  [default: on]")
@click.option("--tune", is_flag=True, help="Search each pair's settings instead of sweeping; writes OUT/tuned.json.  [batch sizes default: 1,256]")
@click.option("--budget", type=float, default=None, help="Seconds for the search, shared over its steps (implies --tune).  [default: 420]")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help="A tuned.json: add 'tuned' rows with its settings.")
@click.option("--url", "urls", multiple=True, help="triton backend: the server (repeat for http:// and grpc://).")
@_triton_model_option
@_triton_timeout_option
@click.option("--concurrency", default=None, help="Load benchmark: comma-separated client counts, through a Triton server next to in-process.  [default with --serve: 1,4,16]")
@click.option("--duration", type=float, default=2.0, show_default=True, help="Load benchmark: seconds per cell.")
@click.option("--serve", "serve_local", is_flag=True, help="Load benchmark: start a local Triton server for the run (HTTP, gRPC, HTTP + shared memory).")
@click.option("--instances", type=int, default=1, show_default=True, help="Load benchmark with --serve: model instances (stub processes) per pair.")
@_checkpoint_option
@_artifacts_option
@_data_dir_option
@click.option("--data", "data_source", default=None,
              help="Another model's inputs: npz:FILE, imagefolder:DIR, script:FILE.py[:fn] (default: drawn from its spec; the built-in: MNIST).")
def bench(backends, precisions, batch_sizes, warmup, iterations, min_seconds, threads, quick, torch_compile, direct, baseline,
          threshold, out_dir, quiet, peak, tune, budget, config_file, urls, model, timeout, concurrency, duration, serve_local, instances, checkpoint,
          artifacts_dir, data_dir, data_source):
    """Latency and throughput of every available (backend, precision) pair over a batch-size sweep;
    with --concurrency, the load benchmark through a Triton server. The model is the one exported
    into --artifacts (its model.json; the built-in CNN where there is none)."""
    from toolkit.files.spec_file import read_spec

    spec = read_spec(artifacts_dir)
    other = spec.source != "mnist-cnn"
    if other and config_file:
        from toolkit.errors import InputError

        raise InputError(f"--config runs the built-in CNN only so far; {artifacts_dir} holds {spec.name}",
                         "benchmark it with the sweep, --tune or --concurrency (drop --config)")
    if data_source is not None and not other:
        from toolkit.errors import InputError

        raise InputError("--data applies to another model's artifacts; the built-in CNN is benchmarked on MNIST", "drop --data")
    if batch_sizes is not None:  # every mode below: refused before any work when it cannot fit
        from toolkit.bench.schema import check_batch_memory

        check_batch_memory(_batch_sizes(batch_sizes))
    if concurrency is not None or serve_local:
        from toolkit.bench.serving import run_load_command
        from toolkit.files.store import check_writable_dir
        from toolkit.report.serve import format_load, write_load_reports

        check_writable_dir(out_dir, create=True)
        progress = None if quiet else (lambda line: click.echo(f"bench: {line}", err=True))
        report = run_load_command(
            _split_list(backends, "backend"), _split_list(precisions, "precision"), list(urls), model, timeout,
            _positive_ints(concurrency or "1,4,16", "--concurrency"), _batch_sizes(batch_sizes or "1,256"), duration, serve_local, threads,
            checkpoint, artifacts_dir, data_dir, progress, instances=instances, **_other_model_load(spec, data_source, data_dir) if other else {},
        )
        written = write_load_reports(report, out_dir)
        click.echo(format_load(report))
        click.echo("reports: " + ", ".join(str(p) for p in written))
        if report.failed:
            from toolkit.errors import CheckFailed

            c = report.failed[0]
            raise CheckFailed(f"{len(report.failed)} load cells had failed or wrong responses, first {c.label} concurrency "
                              f"{c.concurrency} batch {c.batch_size}: {c.failed} failed, {c.wrong} wrong {c.first_error}".rstrip())
        return
    if len(urls) > 1:
        from toolkit.errors import InputError

        raise InputError("the sweep takes one --url", "pass one, or add --concurrency for the load benchmark over several")
    from toolkit.bench import BenchConfig, compare_to_baseline, load_report, run_bench, summarize
    from toolkit.bench.tune import tune_to_file
    from toolkit.errors import CheckFailed, InputError
    from toolkit.files.store import check_writable_dir
    from toolkit.report import format_bench, format_tuned, write_bench_reports

    progress = None if quiet else (lambda line: click.echo(f"bench: {line}", err=True))
    backend_list, precision_list = _split_list(backends, "backend"), _split_list(precisions, "precision")
    data = None
    if data_source is not None:
        from toolkit.datasets import open_data

        data = open_data(data_source, spec, spec.preprocessing, split="test", data_dir=data_dir)
    if tune or budget is not None:  # the configuration search (--budget implies it): OUT/tuned.json, for --config and deployments
        tuned, path = tune_to_file(out_dir, budget, backend_list, precision_list, batch_sizes and _batch_sizes(batch_sizes), checkpoint, artifacts_dir,
                                   data_dir, progress, {"--baseline": baseline, "--config": config_file, "--quick": quick},
                                   **({"spec": spec, "data": data} if other else {}))
        return click.echo(format_tuned(tuned) + f"\ntuned settings: {path}")
    options = dict(batch_sizes=None if batch_sizes is None else _batch_sizes(batch_sizes), warmup=warmup, iterations=iterations,
                   min_seconds=min_seconds, threads=threads, torch_compile=torch_compile, direct=direct, peak=peak, tuned=config_file)
    config = BenchConfig.quick_defaults(**options) if quick else BenchConfig(**{k: v for k, v in options.items() if v is not None})
    if threshold is None or not math.isfinite(threshold) or threshold < 0:
        raise InputError(f"--threshold must be zero or more, got {threshold}", "pass e.g. --threshold 0.1 for 10%")
    base = load_report(baseline) if baseline else None
    check_writable_dir(out_dir, create=True)
    report = run_bench(config, backend_list, precision_list, checkpoint=checkpoint, artifacts_dir=artifacts_dir,
                       data_dir=data_dir, progress=progress, endpoint=_endpoint(urls[0] if urls else None, model, timeout),
                       **({"spec": spec, "data": data} if other else {}))
    comparison = compare_to_baseline(report, base, threshold, baseline_name=str(baseline)) if base else None
    summary = summarize(report)
    written = write_bench_reports(report, out_dir, summary, comparison)
    click.echo(format_bench(report, summary, comparison))
    click.echo("reports: " + ", ".join(str(p) for p in written))
    if report.failed:
        first = report.failed[0]
        raise CheckFailed(f"{len(report.failed)} benchmark cells failed, first {first.label} batch {first.batch_size}: {first.message}")
    if comparison is not None and not comparison.passed:
        worst = max(comparison.regressions, key=lambda c: c.ratio)
        raise CheckFailed(f"{len(comparison.regressions)} cells regressed against {baseline}, worst {worst.label} batch "
                          f"{worst.batch_size}: {worst.ratio:.2f}x the baseline median")


def _other_model_load(spec, data_source, data_dir) -> dict:
    """The load benchmark's model and requests for another model than the built-in."""
    data = None
    if data_source is not None:
        from toolkit.datasets import open_data

        data = open_data(data_source, spec, spec.preprocessing, split="test", data_dir=data_dir)
    return {"spec": spec, "data": data}
