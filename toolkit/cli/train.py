"""`toolkit data`, `toolkit train`, `toolkit bench-train`."""

from __future__ import annotations

import click

from toolkit.cli.group import _data_dir_option, cli
from toolkit.files import paths
from toolkit.train import TrainConfig


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


