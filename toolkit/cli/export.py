"""`toolkit export`, `toolkit eval`, `toolkit diagnose`."""

from __future__ import annotations

import click

from toolkit.cli.group import (
    _artifacts_option,
    _batch_sizes,
    _checkpoint_option,
    _data_dir_option,
    _endpoint,
    _eval_data_option,
    _split_list,
    _triton_model_option,
    _triton_timeout_option,
    _triton_url_option,
    cli,
    model_options,
    preprocessing_options,
)
from toolkit.errors import (
    InputError,
)
from toolkit.files import paths


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
@click.option("--runtime", type=click.Choice(["native", "python"]), default="native", show_default=True,
              help="triton: native: Triton's onnxruntime/openvino/tensorrt backends; python: python-backend models running the ONNX file "
                   "with the toolkit in Triton's stub (what `toolkit serve` runs; needs the toolkit where the server runs).")
@_artifacts_option
@click.option("--workspace-mb", type=int, default=1024, show_default=True, help="tensorrt: builder workspace limit (MiB).")
@click.option("--strict-fp32", is_flag=True, help="tensorrt: disable TF32 so fp32 engines compute in true fp32.")
@_data_dir_option
@model_options
@preprocessing_options
@click.option("--calibration-data", default=None,
              help="Another model's int8 calibration data: npz:FILE, imagefolder:DIR or script:FILE.py[:fn] (--calibration-images samples).")
def export(fmt, precision, checkpoint, out_dir, calibration_images, calibration, percentile, min_batch, opt_batch, max_batch,
           instances, max_queue_delay_us, runtime, artifacts_dir, workspace_mb, strict_fp32, data_dir, model_source, weights, input_specs,
           output_names, num_classes, task, model_name, model_seed, pre_size, pre_resize, pre_channels, pre_mean, pre_std, pre_scale,
           calibration_data):
    """Export the checkpoint to ONNX (fp32, fp16, int8 and int8-cpu Q/DQ), build TensorRT engines
    (fp32, fp16, int8), or write a Triton model repository. A missing --out directory is created.
    --model exports another model (an ONNX file, a PyTorch factory, a torchvision architecture):
    its files are named after it and its spec is written as <out>/model.json."""
    if fmt != "triton" and runtime != "native":
        raise InputError("--runtime applies to the Triton repository", "use it with --format triton")
    if (fmt != "onnx" or precision in ("fp32", "fp16")) and (calibration != "minmax" or percentile is not None):
        raise InputError("--calibration applies to ONNX int8 and int8-cpu exports", "use --format onnx --precision int8|int8-cpu|all")
    other_model = model_source not in (None, "mnist-cnn")
    pre_flags = (pre_size, pre_resize, pre_channels, pre_mean, pre_std, pre_scale)
    if not other_model and (weights or input_specs or output_names or num_classes or task or model_name or calibration_data
                            or any(v is not None for v in pre_flags)):
        raise InputError("--weights, --input, --output, --num-classes, --task, --name, --calibration-data and the preprocessing "
                         "options describe another model", "pass --model too (e.g. --model path/model.onnx)")
    if other_model and fmt == "onnx":
        from toolkit.cli.model_export import export_other_model

        export_other_model(model_source, precision, out_dir, weights=weights, inputs=input_specs, outputs=output_names,
                           num_classes=num_classes, task=task, name=model_name, seed=model_seed, calibration_data=calibration_data,
                           calibration_images=calibration_images, calibration=calibration, percentile=percentile, data_dir=data_dir,
                           preprocessing_flags=pre_flags)
        return
    if other_model:
        raise InputError(f"--model applies to --format onnx; --format {fmt} reads the exports in --artifacts (with their model.json)",
                         f"export first: toolkit export --model {model_source} --out DIR, then --format {fmt} --artifacts DIR")
    if fmt == "triton":
        from toolkit.export.triton import export_triton
        from toolkit.files.spec_file import read_spec
        from toolkit.report.serve import format_repository

        explicit_out = click.get_current_context().get_parameter_source("out_dir") != click.core.ParameterSource.DEFAULT
        precisions = list(paths.ONNX_PRECISIONS) if precision == "all" else [precision]
        spec = read_spec(artifacts_dir)
        click.echo(format_repository(export_triton(precisions, artifacts_dir, out_dir if explicit_out else None, max_batch=max_batch,
                                                   instances=instances, queue_delay_us=max_queue_delay_us, runtime=runtime,
                                                   **({"spec": spec} if spec.source != "mnist-cnn" else {}))))
        return

    precisions = list(paths.ONNX_PRECISIONS if fmt == "onnx" else paths.PRECISIONS) if precision == "all" else [precision]
    if fmt == "onnx":
        from toolkit.export.onnx import export_onnx
        from toolkit.report import format_export_result

        for p in precisions:
            click.echo(format_export_result(export_onnx(checkpoint, p, out_dir, data_dir=data_dir, calibration_images=calibration_images,
                                                        calibration=calibration, percentile=percentile)))
        return
    from toolkit.export.tensorrt import EngineOptions, build_engine, build_engine_from_checkpoint
    from toolkit.files.spec_file import read_spec
    from toolkit.report import format_engine_result

    options = EngineOptions(min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, workspace_mb=workspace_mb, strict_fp32=strict_fp32)
    spec = read_spec(out_dir)
    if spec.source != "mnist-cnn":  # another model: engines from its ONNX files, every input's profile from its spec
        from toolkit.backends.tensorrt_env import require_tensorrt

        require_tensorrt("building a TensorRT engine")  # before any file is looked at
        for p in precisions:
            onnx_file = paths.onnx_path(p, out_dir, spec.name)
            if not onnx_file.is_file():
                raise InputError(f"{onnx_file} is missing: {spec.name}'s engines are built from its ONNX files",
                                 f"export it first: toolkit export --model {spec.source} --precision {p} --out {out_dir}")
            click.echo(format_engine_result(build_engine(onnx_file, p, out_dir, options, spec=spec)))
        return
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
@click.option("--sign-key", type=click.Path(dir_okay=False), default=None,
              help="A key file: sign the --save-outputs (HMAC-SHA256), or refuse --load-outputs not signed with it.")
@_triton_url_option
@_triton_model_option
@_triton_timeout_option
@_checkpoint_option
@_artifacts_option
@_data_dir_option
@_eval_data_option
@preprocessing_options
@click.option("--max-accuracy-drop", type=float, default=None,
              help="Another model with labels: the most its accuracy may fall below the reference's, in pp (default per precision).")
@click.option("--output-tolerance", "output_tolerances", multiple=True,
              help="Another model: NAME=REL,COS overrides one output's max relative error and min cosine similarity (repeatable).")
def eval_cmd(backends, precisions, batch_sizes, min_accuracy, max_logit_diff, min_agreement, do_export, threads, limit, report_dir,
             save_outputs, load_outputs, sign_key, url, model, timeout, checkpoint, artifacts_dir, data_dir, data_source, pre_size,
             pre_resize, pre_channels, pre_mean, pre_std, pre_scale, max_accuracy_drop, output_tolerances):
    """Accuracy parity: the full test set through every available (backend, precision) pair. The
    model is the one exported into --artifacts (its model.json; the built-in CNN where there is none)."""
    from toolkit.files.spec_file import read_spec
    from toolkit.files.store import check_writable_dir
    from toolkit.parity import override_tolerances, run_gate
    from toolkit.report import format_parity, write_parity_reports

    spec = read_spec(artifacts_dir)
    if not (spec.name == paths.BUILTIN_NAME and spec.source == "mnist-cnn" and data_source == "mnist"):
        from toolkit.cli.model_export import gate_other_model

        default_sizes = click.get_current_context().get_parameter_source("batch_sizes") == click.core.ParameterSource.DEFAULT
        gate_other_model(spec, data_source, backends=_split_list(backends, "backend"), precisions=_split_list(precisions, "precision"),
                         batch_sizes=(1, 64) if default_sizes else _batch_sizes(batch_sizes), threads=threads, limit=limit, report_dir=report_dir,
                         artifacts_dir=artifacts_dir, data_dir=data_dir, endpoint=_endpoint(url, model, timeout),
                         max_accuracy_drop=max_accuracy_drop, min_agreement=min_agreement, output_tolerances=output_tolerances,
                         preprocessing_flags=(pre_size, pre_resize, pre_channels, pre_mean, pre_std, pre_scale),
                         refused={"--max-logit-diff": max_logit_diff, "--export": do_export or None},
                         save_outputs=save_outputs, load_outputs=load_outputs, sign_key=sign_key)
        return
    if max_accuracy_drop is not None or output_tolerances or any(v is not None for v in (pre_size, pre_resize, pre_channels, pre_mean,
                                                                                         pre_std, pre_scale)):
        raise InputError("--max-accuracy-drop, --output-tolerance and the preprocessing options apply to other models or data than "
                         "the built-in CNN on MNIST", "use --min-accuracy, --max-logit-diff and --min-agreement for the built-in")
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
        endpoint=_endpoint(url, model, timeout), sign_key=sign_key,
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
@click.option("--min-sqnr", type=float, default=None, help="SQNR threshold (dB) for the verdict (default 12: see docs/diagnose.md).")
@click.option("--calibration", type=click.Choice(["minmax", "entropy", "percentile"]), default=None, help="int8: diagnose the export this calibration makes (in memory).")
@click.option("--percentile", type=float, default=None, help="With --calibration percentile: the cut (default 99.99).")
@click.option("--bisect", is_flag=True, help="Find the smallest set of nodes to keep in fp32 so a re-export passes the full parity gate.")
@click.option("--write", is_flag=True, help="With --bisect: write that re-export as artifacts/mnist_cnn.<precision>-mixed.onnx.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="artifacts/diagnose", show_default=True)
@click.option("--threads", type=int, default=None, help="Runtime threads (default: all cores).")
@_checkpoint_option
@_artifacts_option
@_data_dir_option
@click.option("--data", "data_source", default=None, help="Another model: the data `toolkit eval` gated it on (its samples are diagnosed).")
def diagnose(backend, precision, images, min_sqnr, calibration, percentile, bisect, write, out_dir, threads, checkpoint, artifacts_dir,
             data_dir, data_source):
    """Which layer breaks parity: every tensor against the fp32 ONNX's; exit 1 when one is below the threshold."""
    from toolkit.files.spec_file import read_spec

    spec = read_spec(artifacts_dir)
    if spec.source != "mnist-cnn":
        from toolkit.datasets import open_data
        from toolkit.diagnose.any_model import diagnose_model
        from toolkit.export.quantize import calibration_recipe
        from toolkit.files.store import check_writable_dir
        from toolkit.report.diagnose import format_diagnosis, write_diagnosis_reports

        check_writable_dir(out_dir, create=True)
        data = open_data(data_source, spec, spec.preprocessing, data_dir=data_dir) if data_source else None
        result = diagnose_model(spec, data, backend, precision, artifacts_dir, images, min_sqnr, bisect or write,
                                calibration_recipe(calibration, percentile), threads)
        written = write_diagnosis_reports(result, out_dir)
        click.echo(format_diagnosis(result) + f"\nreports: {', '.join(map(str, written))} ({result.seconds:.1f} s)")
        result.raise_if_broken()
        return
    if data_source is not None:
        raise InputError("--data applies to another model's artifacts; the built-in CNN is diagnosed on MNIST", "drop --data")
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


