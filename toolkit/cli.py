"""The command line: parse options, call one function, print its result, map errors to exit codes.

Heavy modules (torch, onnx, runtimes) are imported inside the commands so `toolkit --help` is fast
and works without optional packages. The file runs over 400 lines: one short command per verb, all
options in one place; the work lives in the modules the commands call.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import traceback

import click

from toolkit import __version__
from toolkit.errors import (
    EXIT_BAD_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_UNAVAILABLE,
    InputError,
    ToolkitError,
)
from toolkit.files import paths
from toolkit.train import TrainConfig

DEBUG_ENV = "TOOLKIT_DEBUG"


def _debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV) == "1" or "--debug" in sys.argv[1:]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="toolkit")
@click.option("--debug", is_flag=True, help="Show the full traceback on errors.")
def cli(debug: bool) -> None:
    """Train the MNIST CNN, export it (ONNX, TensorRT), prove accuracy parity on every backend, benchmark it."""
    if debug:
        os.environ[DEBUG_ENV] = "1"


# --- data & train -----------------------------------------------------------------------------

_data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False), default=None, envvar="TOOLKIT_DATA_DIR",
    show_envvar=True, help="Where the MNIST IDX files are (or go). Default: ./data",
)


@cli.command()
@_data_dir_option
def data(data_dir):
    """Find, fetch and verify the four MNIST IDX files (SHA-256)."""
    from toolkit.data import ensure_mnist

    status = ensure_mnist(data_dir)
    for name, source in status.files.items():
        click.echo(f"{name}: ok ({source})")
    click.echo(f"MNIST verified in {status.data_dir.resolve()}")


_RECIPE = TrainConfig()  # the CLI's defaults are the library's defaults


@cli.command()
@click.option("--epochs", type=int, default=_RECIPE.epochs, show_default=True)
@click.option("--batch-size", type=int, default=_RECIPE.batch_size, show_default=True)
@click.option("--lr", type=float, default=_RECIPE.lr, show_default=True, help="Peak learning rate.")
@click.option("--weight-decay", type=float, default=_RECIPE.weight_decay, show_default=True)
@click.option("--optimizer", type=click.Choice(["adamw", "adam"]), default=_RECIPE.optimizer, show_default=True)
@click.option("--schedule", type=click.Choice(["onecycle", "constant"]), default=_RECIPE.schedule, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads", type=int, default=None, help="CPU threads (default: all cores).")
@click.option("--train-limit", type=int, default=None, help="Train on the first N images only (quick runs).")
@click.option("--out", type=click.Path(dir_okay=False), default=str(paths.DEFAULT_CHECKPOINT), show_default=True,
              help="Checkpoint path (its directory is created if missing).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from its last completed epoch.")
@click.option("--quiet", is_flag=True, help="No progress: no bar (shown on a terminal only) and no per-epoch lines.")
@_data_dir_option
def train(epochs, batch_size, lr, weight_decay, optimizer, schedule, seed, device, threads, train_limit, out, resume, quiet, data_dir):
    """Train the seed CNN (default recipe: AdamW, one-cycle, batch 128, 8 epochs, peak lr 5e-3)."""
    from toolkit.report import format_train_result
    from toolkit.train import train as run_training

    cfg = TrainConfig(
        epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, optimizer=optimizer,
        schedule=schedule, seed=seed, device=device, data_dir=data_dir, out=out, train_limit=train_limit,
        threads=threads, resume=resume,
    )
    result = run_training(cfg, progress=not quiet)
    click.echo(format_train_result(result))


@cli.command("bench-train")
@click.option("--seed-steps", type=int, default=3000, show_default=True, help="Steps of the seed recipe to time (then extrapolated).")
@click.option("--out", type=click.Path(dir_okay=False), default="artifacts/bench/train.json", show_default=True)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@_data_dir_option
def bench_train(seed_steps, out, quiet, data_dir):
    """Time to 99%: the default recipe vs the seed notebook's recipe, side by side."""
    import tempfile
    from pathlib import Path

    from toolkit.bench.train import benchmark_training
    from toolkit.files.store import check_writable_dir, write_json_artifact
    from toolkit.report import format_train_benchmark

    check_writable_dir(Path(out).parent, create=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = benchmark_training(seed_steps, data_dir, out=str(Path(tmp) / "m.pt"), progress=not quiet)
    write_json_artifact(out, result, kind="train-benchmark")
    click.echo(format_train_benchmark(result))
    click.echo(f"report: {out}")


# --- export & eval ------------------------------------------------------------------------------

def _split_list(value: str | None, what: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        from toolkit.errors import InputError

        raise InputError(f"--{what} is empty", f"pass a comma-separated list of {what}")
    return items


def _batch_sizes(value: str) -> tuple[int, ...]:
    from toolkit.errors import InputError

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
    from toolkit.errors import InputError

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


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["onnx", "tensorrt", "triton"]), default="onnx", show_default=True,
              help="triton: a Triton model repository (default <artifacts>/triton) from the exports in --artifacts, and its KServe manifest.")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8", "int8-cpu", "all"]), default="fp32", show_default=True,
              help="int8: symmetric s8s8 Q/DQ (TensorRT-ready); int8-cpu: u8s8 with the first conv in fp32 (ONNX only, for CPU runtimes).")
@_checkpoint_option
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="artifacts", show_default=True, help="Output directory (created if missing).")
@click.option("--calibration-images", type=int, default=1000, show_default=True, help="int8: training images used for calibration.")
@click.option("--calibration", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True,
              help="int8, int8-cpu (ONNX): onnxruntime's calibrator for activation ranges (recorded in the metadata and manifest).")
@click.option("--percentile", type=float, default=None, help="--calibration percentile: the cut, in percent (default 99.99).")
@click.option("--min-batch", type=int, default=1, show_default=True, help="tensorrt: optimization profile minimum batch.")
@click.option("--opt-batch", type=int, default=64, show_default=True, help="tensorrt: profile batch the kernels are tuned for.")
@click.option("--max-batch", type=int, default=1024, show_default=True, help="tensorrt: profile maximum batch; triton: max_batch_size.")
@click.option("--instances", type=int, default=1, show_default=True, help="triton: model instances per model (instance_group count).")
@click.option("--max-queue-delay-us", type=int, default=100, show_default=True, help="triton: dynamic batcher's max queue delay.")
@_artifacts_option
@click.option("--workspace-mb", type=int, default=1024, show_default=True, help="tensorrt: builder workspace limit (MiB).")
@click.option("--strict-fp32", is_flag=True, help="tensorrt: disable TF32 so fp32 engines compute in true fp32.")
@_data_dir_option
def export(fmt, precision, checkpoint, out_dir, calibration_images, calibration, percentile, min_batch, opt_batch, max_batch,
           instances, max_queue_delay_us, artifacts_dir, workspace_mb, strict_fp32, data_dir):
    """Export the checkpoint to ONNX (fp32, fp16, int8 and int8-cpu Q/DQ), build TensorRT engines
    (fp32, fp16, int8), or write a Triton model repository. A missing --out directory is created."""
    if (fmt != "onnx" or precision in ("fp32", "fp16")) and (calibration != "minmax" or percentile is not None):
        raise InputError("--calibration applies to ONNX int8 and int8-cpu exports", "use --format onnx --precision int8|int8-cpu|all")
    if fmt == "triton":
        from toolkit.export.triton import export_triton
        from toolkit.report.serve import format_repository

        explicit_out = click.get_current_context().get_parameter_source("out_dir") != click.core.ParameterSource.DEFAULT
        precisions = list(paths.ONNX_PRECISIONS) if precision == "all" else [precision]
        click.echo(format_repository(export_triton(precisions, artifacts_dir, out_dir if explicit_out else None, max_batch=max_batch,
                                                   instances=instances, queue_delay_us=max_queue_delay_us)))
        return

    precisions = list(paths.ONNX_PRECISIONS if fmt == "onnx" else paths.PRECISIONS) if precision == "all" else [precision]
    if fmt == "onnx":
        from toolkit.export.onnx import export_onnx
        from toolkit.report import format_export_result

        for p in precisions:
            click.echo(format_export_result(export_onnx(checkpoint, p, out_dir, data_dir=data_dir, calibration_images=calibration_images,
                                                        calibration=calibration, percentile=percentile)))
        return
    from toolkit.export.tensorrt import EngineOptions, build_engine_from_checkpoint
    from toolkit.report import format_engine_result

    options = EngineOptions(min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, workspace_mb=workspace_mb, strict_fp32=strict_fp32)
    for p in precisions:
        click.echo(format_engine_result(build_engine_from_checkpoint(checkpoint, p, out_dir, options, data_dir=data_dir, calibration_images=calibration_images)))


@cli.command("eval")
@click.option("--backend", "backends", default=None, help="Comma-separated backends (default: all).")
@click.option("--precision", "precisions", default=None, help="Comma-separated precisions: fp32,fp16,int8,int8-cpu (default: all).")
@click.option("--batch-sizes", default="1,1024", show_default=True, help="Batch sizes each pair is checked at.")
@click.option("--min-accuracy", type=float, default=99.0, show_default=True)
@click.option("--max-logit-diff", type=float, default=None, help="Override every precision's max |Δlogit| tolerance.")
@click.option("--min-agreement", type=float, default=None, help="Override every precision's top-1 agreement (0..1).")
@click.option("--export/--no-export", "do_export", default=False, help="Re-export every ONNX precision from the checkpoint first.")
@click.option("--threads", type=int, default=None, help="Threads per CPU backend (default: all cores).")
@click.option("--limit", type=int, default=None, hidden=True, help="Only the first N test images (debugging).")
@click.option("--report-dir", type=click.Path(file_okay=False), default="artifacts", show_default=True)
@click.option("--save-outputs", type=click.Path(file_okay=False), default=None,
              help="Also write each pair's logits with their provenance to DIR (.npz), to gate them elsewhere.")
@click.option("--load-outputs", type=click.Path(file_okay=False), default=None,
              help="Gate the logits saved in DIR by --save-outputs (e.g. on a GPU machine) instead of running backends.")
@_triton_url_option
@_triton_model_option
@_triton_timeout_option
@_checkpoint_option
@_artifacts_option
@_data_dir_option
def eval_cmd(backends, precisions, batch_sizes, min_accuracy, max_logit_diff, min_agreement, do_export, threads, limit, report_dir,
             save_outputs, load_outputs, url, model, timeout, checkpoint, artifacts_dir, data_dir):
    """Accuracy parity: the full test set through every available (backend, precision) pair."""
    from toolkit.files.store import check_writable_dir
    from toolkit.parity import override_tolerances, run_gate
    from toolkit.report import format_parity, write_parity_reports

    check_writable_dir(report_dir, create=True)
    if save_outputs is not None:
        check_writable_dir(save_outputs, create=True)
    backend_list = _split_list(backends, "backend")
    precision_list = _split_list(precisions, "precision")
    sizes = _batch_sizes(batch_sizes)
    if do_export:
        from toolkit.export.onnx import export_onnx
        from toolkit.report import format_export_result

        for p in precision_list or paths.ONNX_PRECISIONS:
            click.echo(format_export_result(export_onnx(checkpoint, p, artifacts_dir, data_dir=data_dir)))
    report = run_gate(
        checkpoint=checkpoint, artifacts_dir=artifacts_dir, backends=backend_list, precisions=precision_list,
        batch_sizes=sizes, tolerances=override_tolerances(max_logit_diff, min_agreement), min_accuracy=min_accuracy,
        data_dir=data_dir, threads=threads, limit=limit, save_outputs=save_outputs, load_outputs=load_outputs,
        endpoint=_endpoint(url, model, timeout),
    )
    json_path, md_path = write_parity_reports(report, report_dir)
    click.echo(format_parity(report))
    click.echo(f"reports: {json_path}, {md_path}")
    if not report.passed:
        from toolkit.errors import CheckFailed

        bad = [p for p in report.pairs if p.status in ("fail", "error")]
        first = f"{bad[0].backend}/{bad[0].precision} {bad[0].status}: {bad[0].reason}" if bad else "no pair passed"
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise CheckFailed(f"parity gate failed: {first}{more}; see the table above and {md_path}")


# --- diagnose -----------------------------------------------------------------------------------

@cli.command()
@click.option("--backend", required=True, help="onnxruntime, openvino or tensorrt.")
@click.option("--precision", required=True, help="fp16, int8, int8-cpu (or fp32).")
@click.option("--images", default="flipped", show_default=True, help="'flipped': this pair's flipped images in parity.json plus 256 fixed others; or N: the first N test images.")
@click.option("--min-sqnr", type=float, default=None, help="SQNR threshold (dB) for the verdict (default 12: see the README).")
@click.option("--calibration", type=click.Choice(["minmax", "entropy", "percentile"]), default=None, help="int8: diagnose the export this calibration makes (in memory).")
@click.option("--percentile", type=float, default=None, help="With --calibration percentile: the cut (default 99.99).")
@click.option("--bisect", is_flag=True, help="Find the smallest set of nodes to keep in fp32 so a re-export passes the full parity gate.")
@click.option("--write", is_flag=True, help="With --bisect: write that re-export as artifacts/mnist_cnn.<precision>-mixed.onnx.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="artifacts/diagnose", show_default=True)
@click.option("--threads", type=int, default=None, help="Runtime threads (default: all cores).")
@_checkpoint_option
@_artifacts_option
@_data_dir_option
def diagnose(backend, precision, images, min_sqnr, calibration, percentile, bisect, write, out_dir, threads, checkpoint, artifacts_dir,
             data_dir):
    """Which layer breaks parity: every tensor against the fp32 ONNX's; exit 1 when one is below the threshold."""
    from toolkit.diagnose import diagnose as run_diagnose
    from toolkit.export.quantize import calibration_recipe
    from toolkit.files.store import check_writable_dir
    from toolkit.report.diagnose import format_diagnosis, write_diagnosis_reports

    check_writable_dir(out_dir, create=True)  # before the work, not after it
    result = run_diagnose(backend, precision, artifacts_dir, checkpoint, images, min_sqnr, bisect, write, data_dir, threads,
                          calibration=calibration_recipe(calibration, percentile))
    written = write_diagnosis_reports(result, out_dir)
    click.echo(format_diagnosis(result) + f"\nreports: {', '.join(map(str, written))} ({result.seconds:.1f} s)")
    result.raise_if_broken()


# --- info ---------------------------------------------------------------------------------------

@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def info(as_json):
    """Runtime versions, the GPU if any, and which backends are usable here (and why not)."""
    from toolkit.files.store import json_text
    from toolkit.info import collect_info
    from toolkit.report import format_info

    result = collect_info()
    click.echo(json_text(result).rstrip() if as_json else format_info(result))


# --- gpu-check ----------------------------------------------------------------------------------

@cli.command("gpu-check")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="artifacts/gpu-check", show_default=True)
@click.option("--tests/--no-tests", "run_tests", default=True, show_default=True, help="Run pytest -m 'gpu or tensorrt' (needs tests/).")
@_checkpoint_option
@_artifacts_option
@_data_dir_option
def gpu_check(out_dir, run_tests, checkpoint, artifacts_dir, data_dir):
    """On a GPU machine: usable GPU backends (and what the others lack), GPU-marked tests, parity gate
    and quick benchmark, in one JSON + Markdown report. Exit 1 on a failure, 3 when nothing can run."""
    from toolkit.gpu_check import raise_for_verdict, run_gpu_check
    from toolkit.report.gpu_check import format_gpu_check, write_gpu_check_reports

    result = run_gpu_check(checkpoint=checkpoint, artifacts_dir=artifacts_dir, out_dir=out_dir, data_dir=data_dir, run_tests=run_tests)
    json_path, md_path = write_gpu_check_reports(result, out_dir)
    click.echo(format_gpu_check(result))
    click.echo(f"reports: {json_path}, {md_path}")
    raise_for_verdict(result, md_path)


# --- verify -------------------------------------------------------------------------------------

@cli.command()
@click.argument("directory", type=click.Path(file_okay=False), default="artifacts", required=False)
def verify(directory):
    """Check every artifact in DIRECTORY's manifest (default: artifacts): missing, changed, or stale
    (derived from a parent that has changed since). Exit 1 when any is."""
    from toolkit.files.verify import verify_directory
    from toolkit.report import format_verify

    report = verify_directory(directory)
    click.echo(format_verify(report))
    if not report.passed:
        from toolkit.errors import CheckFailed

        problems = report.problems
        names = ", ".join(f"{a.name} {a.status}" for a in problems[:4]) + (f" and {len(problems) - 4} more" if len(problems) > 4 else "")
        raise CheckFailed(
            f"{len(problems)} of {len(report.artifacts)} artifacts in {directory} are missing, changed or stale: {names}",
            "re-run the commands that produce them (see the table above)",
        )


# --- bench --------------------------------------------------------------------------------------

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
@_checkpoint_option
@_artifacts_option
@_data_dir_option
def bench(backends, precisions, batch_sizes, warmup, iterations, min_seconds, threads, quick, torch_compile, direct, baseline,
          threshold, out_dir, quiet, peak, tune, budget, config_file, urls, model, timeout, concurrency, duration, serve_local, checkpoint,
          artifacts_dir, data_dir):
    """Latency and throughput of every available (backend, precision) pair over a batch-size sweep;
    with --concurrency, the load benchmark through a Triton server."""
    if concurrency is not None or serve_local:
        from toolkit.bench.serving import run_load_command
        from toolkit.files.store import check_writable_dir
        from toolkit.report.serve import format_load, write_load_reports

        check_writable_dir(out_dir, create=True)
        progress = None if quiet else (lambda line: click.echo(f"bench: {line}", err=True))
        report = run_load_command(
            _split_list(backends, "backend"), _split_list(precisions, "precision"), list(urls), model, timeout,
            _positive_ints(concurrency or "1,4,16", "--concurrency"), _batch_sizes(batch_sizes or "1,256"), duration, serve_local, threads,
            checkpoint, artifacts_dir, data_dir, progress,
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
    if tune or budget is not None:  # the configuration search (--budget implies it): OUT/tuned.json, for --config and deployments
        tuned, path = tune_to_file(out_dir, budget, backend_list, precision_list, batch_sizes and _batch_sizes(batch_sizes), checkpoint, artifacts_dir,
                                   data_dir, progress, {"--baseline": baseline, "--config": config_file, "--quick": quick})
        return click.echo(format_tuned(tuned) + f"\ntuned settings: {path}")
    options = dict(batch_sizes=None if batch_sizes is None else _batch_sizes(batch_sizes), warmup=warmup, iterations=iterations,
                   min_seconds=min_seconds, threads=threads, torch_compile=torch_compile, direct=direct, peak=peak, tuned=config_file)
    config = BenchConfig.quick_defaults(**options) if quick else BenchConfig(**{k: v for k, v in options.items() if v is not None})
    if threshold is None or not math.isfinite(threshold) or threshold < 0:
        raise InputError(f"--threshold must be zero or more, got {threshold}", "pass e.g. --threshold 0.1 for 10%")
    base = load_report(baseline) if baseline else None
    check_writable_dir(out_dir, create=True)
    report = run_bench(config, backend_list, precision_list, checkpoint=checkpoint, artifacts_dir=artifacts_dir,
                       data_dir=data_dir, progress=progress, endpoint=_endpoint(urls[0] if urls else None, model, timeout))
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


# --- serving (Triton) ---------------------------------------------------------------------------

def _ports(http_port, grpc_port, metrics_port):
    return dict(http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port)


def _serve_pairs(backends, precisions) -> tuple[tuple[str, str], ...]:
    backend_list = _split_list(backends, "backend") or ["onnxruntime"]
    precision_list = _split_list(precisions, "precision") or ["fp32"]
    return tuple((b, p) for b in backend_list for p in precision_list)


@cli.command()
@click.option("--backend", "backends", default="onnxruntime", show_default=True, help="Comma-separated in-process backends to serve.")
@click.option("--precision", "precisions", default="fp32", show_default=True, help="Comma-separated precisions; every backend x precision is served.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 exposes the server to the network).")
@click.option("--http-port", type=int, default=8000, show_default=True, help="0: any free port.")
@click.option("--grpc-port", type=int, default=8001, show_default=True, help="0: any free port.")
@click.option("--metrics-port", type=int, default=8002, show_default=True, help="0: any free port.")
@click.option("--max-batch", type=int, default=1024, show_default=True, help="Largest batch the dynamic batcher forms (and a request may send).")
@click.option("--max-queue-delay-us", type=int, default=100, show_default=True, help="How long the batcher waits to fill a batch.")
@click.option("--instances", type=int, default=1, show_default=True, help="Model instances per pair (each its own backend).")
@click.option("--threads", type=int, default=None, help="Threads per backend instance (default: every core).")
@click.option("--token-file", type=click.Path(dir_okay=False), default=None,
              help="Write the access token for the statistics and shared-memory endpoints here (mode 0600).")
@_checkpoint_option
@_artifacts_option
def serve(backends, precisions, host, http_port, grpc_port, metrics_port, max_batch, max_queue_delay_us, instances, threads,
          token_file, checkpoint, artifacts_dir):
    """Serve (backend, precision) pairs on a local Triton Inference Server until Ctrl-C or SIGTERM."""
    from toolkit.report.serve import format_server_info, format_stop_report
    from toolkit.serve import ServeConfig, run_server

    config = ServeConfig(
        pairs=_serve_pairs(backends, precisions), host=host, **_ports(http_port, grpc_port, metrics_port), max_batch=max_batch,
        max_queue_delay_us=max_queue_delay_us, instances=instances, threads=threads, artifacts_dir=artifacts_dir,
        checkpoint=checkpoint,
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


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn every failure into one line and an exit code."""
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    debug = _debug_enabled()
    try:
        rv = cli.main(args=argv, prog_name="toolkit", standalone_mode=False)
    except ToolkitError as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt (SIGINT, or SIGTERM via the handler above)
        if debug:
            traceback.print_exc()
        click.echo("error: interrupted; artifacts already written are intact", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except click.ClickException as exc:
        if debug:
            traceback.print_exc()
        click.echo(f"error: {_one_line(exc.format_message())} (see `toolkit --help`)", err=True)
        sys.exit(exc.exit_code if exc.exit_code else EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        click.echo("error: interrupted; artifacts already written are intact", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except ModuleNotFoundError as exc:
        if debug:
            traceback.print_exc()
        package = (exc.name or "").split(".")[0]
        if package and package != "toolkit":  # an optional or broken install, not a bug in the toolkit
            click.echo(f"error: the Python package '{package}' is not installed and this command needs it; install it (see the README)", err=True)
            sys.exit(EXIT_UNAVAILABLE)
        click.echo(f"error: internal error {type(exc).__name__}: {_one_line(str(exc))[:300]} (re-run with --debug for the traceback)", err=True)
        sys.exit(EXIT_INTERNAL)
    except Exception as exc:  # noqa: BLE001 - a bug: still one line, traceback only with --debug
        if debug:
            traceback.print_exc()
        click.echo(f"error: internal error {type(exc).__name__}: {_one_line(str(exc))[:300]} (re-run with --debug for the traceback)", err=True)
        sys.exit(EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else 0)
