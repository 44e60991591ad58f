"""The CLI's side of another model (not the built-in CNN): export it, gate it; parse and print only."""

from __future__ import annotations

import click

from toolkit.files import paths


def export_other_model(source: str, precision: str, out_dir: str, *, weights, inputs, outputs, num_classes, task, name, seed,
                       calibration_data, calibration_images: int, calibration: str, percentile, data_dir, preprocessing_flags=()) -> None:
    from toolkit.export.model_export import CHECK_SAMPLES, export_model, prepare_model, read_feeds
    from toolkit.export.quantize import DEFAULT_PERCENTILE, Calibration
    from toolkit.parity_spec import random_feeds
    from toolkit.report.console import format_model_export_result

    recipe = Calibration(calibration, calibration_images, DEFAULT_PERCENTILE if percentile is None else percentile).check()
    precisions = list(paths.ONNX_PRECISIONS) if precision == "all" else [precision]
    spec, fp32, extra, source_sha, parents = prepare_model(source, weights=weights, inputs=input_specs(inputs), outputs=outputs,
                                                           num_classes=num_classes, task=task, name=name, seed=seed, out_dir=out_dir)
    pre = _preprocessing(spec, preprocessing_flags)
    if pre is not None:  # written into model.json: every later command reads images this way
        import dataclasses

        spec = dataclasses.replace(spec, preprocessing=pre)
    calib = None
    if calibration_data:
        from toolkit.datasets import open_data

        calib = open_data(calibration_data, spec, spec.preprocessing, split="train", data_dir=data_dir)
    if calib is not None:
        check_feeds = read_feeds(calib, spec, CHECK_SAMPLES)
    else:
        check_feeds = random_feeds(spec, CHECK_SAMPLES)
    if "fp32" not in precisions:  # the others are made from it, and it carries model.json
        precisions.insert(0, "fp32")
    for p in precisions:
        result = export_model(spec, fp32, p, out_dir, calibration=recipe, calibration_data=calib, check_feeds=check_feeds,
                              source_sha256=source_sha, extra=extra, parents=parents)
        click.echo(format_model_export_result(result, "calibration data" if calib is not None else "random inputs"))
    click.echo(f"model {spec.name}: spec in {paths.spec_path(out_dir)}")


def input_specs(texts) -> list:
    return list(texts)


def _preprocessing(spec, flags):
    from toolkit.cli.group import preprocessing_from_options
    from toolkit.spec import Preprocessing

    if not flags or all(v is None for v in flags):
        return None
    base = spec.preprocessing
    if base is None:
        first = spec.inputs[0]
        channels = first.shape[1] if len(first.shape) == 4 and first.shape[1] in (1, 3) else 3
        base = Preprocessing(size=tuple(first.shape[2:]) if len(first.shape) == 4 and -1 not in first.shape[2:] else None, channels=channels)
    return preprocessing_from_options(base, *flags)


def _output_tolerances(texts) -> dict:
    from toolkit.errors import InputError

    out = {}
    for text in texts:
        name, _, values = text.partition("=")
        try:
            rel, cos = (float(v) for v in values.split(","))
        except ValueError:
            raise InputError(f"--output-tolerance {text!r} is not NAME=REL,COS", "pass e.g. --output-tolerance logits=0.05,0.99") from None
        out[name] = (rel, cos)
    return out


def gate_other_model(spec, data_source: str, *, backends, precisions, batch_sizes, threads, limit, report_dir, artifacts_dir,
                     data_dir, endpoint, max_accuracy_drop, min_agreement, output_tolerances, refused: dict,
                     preprocessing_flags=(), save_outputs=None, load_outputs=None, sign_key=None) -> None:
    from toolkit.errors import CheckFailed, InputError
    from toolkit.files.store import check_writable_dir
    from toolkit.parity_spec import open_eval_data, override_model_tolerances, run_model_gate
    from toolkit.report.parity import format_model_parity, write_model_parity_reports

    given = [flag for flag, value in refused.items() if value is not None]
    if given:
        raise InputError(f"{', '.join(given)} apply to the built-in CNN on MNIST only (so far)", "drop them for this model")
    unknown = sorted(set(_output_tolerances(output_tolerances)) - {o.name for o in spec.outputs})
    if unknown:
        raise InputError(f"--output-tolerance names {unknown}, not outputs of {spec.name}", f"its outputs: {', '.join(o.name for o in spec.outputs)}")
    check_writable_dir(report_dir, create=True)
    data = open_eval_data(data_source, spec, _preprocessing(spec, preprocessing_flags) or spec.preprocessing, data_dir)
    tolerances = override_model_tolerances(max_accuracy_drop, min_agreement, _output_tolerances(output_tolerances))
    if save_outputs is not None and load_outputs is not None:
        raise InputError("--save-outputs and --load-outputs exclude each other", "save on one machine, load on another")
    if sign_key is not None and save_outputs is None and load_outputs is None:
        raise InputError("--sign-key signs saved outputs or checks loaded ones", "pass it with --save-outputs DIR or --load-outputs DIR")
    from toolkit.files.outputs import read_key
    from toolkit.parity_saved import loaded_pairs, saver

    key = read_key(sign_key) if sign_key is not None else None
    if save_outputs is not None:
        check_writable_dir(save_outputs, create=True)
    loaded = (loaded_pairs(load_outputs, spec, artifacts_dir, data, limit, backends, precisions, key)
              if load_outputs is not None else None)
    report = run_model_gate(spec, data, artifacts_dir, backends, precisions, batch_sizes, tolerances, threads, limit, endpoint,
                            loaded=loaded, on_captured=saver(save_outputs, spec, data, limit, key) if save_outputs is not None else None)
    json_path, md_path = write_model_parity_reports(report, report_dir)
    click.echo(format_model_parity(report))
    click.echo(f"reports: {json_path}, {md_path}")
    if not report.passed:
        bad = [p for p in report.pairs if p.status in ("fail", "error")]
        first = f"{bad[0].backend}/{bad[0].precision} {bad[0].status}: {bad[0].reason}" if bad else "no pair passed"
        raise CheckFailed(f"parity gate failed: {first}{' (and more)' if len(bad) > 1 else ''}; see the table above and {md_path}")
