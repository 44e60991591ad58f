"""`toolkit info`, `toolkit gpu-check`, `toolkit verify`."""

from __future__ import annotations

import click

from toolkit.cli.group import _artifacts_option, _checkpoint_option, _data_dir_option, cli


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


