"""Training: the default fast recipe (AdamW + one-cycle) and the seed notebook's recipe, one loop.

The whole split lives in memory as one float32 tensor; a batch is an index into it, so the loop
spends its time in the model, not in per-sample transforms. Deterministic for a seed on CPU.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from toolkit.errors import InputError, UnavailableError
from toolkit.files import paths

RESUME_SUFFIX = ".resume.pt"
ONE_CYCLE_MIN_STEPS = 8


@dataclass
class TrainConfig:
    epochs: int = 8
    batch_size: int = 128
    lr: float = 5e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"  # adamw | adam
    schedule: str = "onecycle"  # onecycle | constant
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    data_dir: str | None = None
    out: str = str(paths.DEFAULT_CHECKPOINT)
    train_limit: int | None = None  # use only the first N training images (tests, quick runs)
    threads: int | None = None
    resume: bool = False

    def validate(self) -> None:
        if self.epochs <= 0:
            raise InputError(f"--epochs must be a positive integer, got {self.epochs}", "pass --epochs 1 or more")
        if self.batch_size <= 0:
            raise InputError(f"--batch-size must be a positive integer, got {self.batch_size}", "pass --batch-size 1 or more")
        if not self.lr > 0:
            raise InputError(f"--lr must be positive, got {self.lr}", "pass e.g. --lr 0.003")
        if self.optimizer not in ("adamw", "adam"):
            raise InputError(f"unknown optimizer {self.optimizer!r}", "use adamw or adam")
        if self.schedule not in ("onecycle", "constant"):
            raise InputError(f"unknown schedule {self.schedule!r}", "use onecycle or constant")
        if not self.weight_decay >= 0:
            raise InputError(f"--weight-decay must be zero or more, got {self.weight_decay}", "pass e.g. --weight-decay 1e-4")
        if self.threads is not None and self.threads <= 0:
            raise InputError(f"--threads must be a positive integer, got {self.threads}", "omit it to use every core")
        if self.train_limit is not None and self.train_limit <= 0:
            raise InputError(f"--train-limit must be positive, got {self.train_limit}", "omit it to train on all 60,000 images")

    def recipe(self) -> dict:
        return {k: getattr(self, k) for k in ("epochs", "batch_size", "lr", "weight_decay", "optimizer", "schedule", "train_limit")}


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    train_accuracy: float
    test_accuracy: float
    epoch_seconds: float
    elapsed_seconds: float  # training time since start, evaluation excluded


@dataclass
class TrainResult:
    checkpoint: str
    test_accuracy: float
    history: list[EpochStats]
    wall_seconds: float
    seed: int
    device: str
    threads: int
    recipe: dict
    versions: dict
    checkpoint_sha256: str
    resumed_from_epoch: int = 0
    time_to_99_seconds: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(device: str) -> str:
    import torch

    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"unknown device {device!r}", "use auto, cpu or cuda")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UnavailableError("--device cuda was requested but CUDA is not available on this machine", "use --device cpu (or auto)")
    return device


def seed_everything(seed: int, device: str) -> None:
    import random

    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=device == "cuda")


def evaluate_accuracy(model, images, labels, batch_size: int = 1000) -> float:
    """Top-1 accuracy in percent of `model` on in-memory tensors."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device, non_blocking=True)
            y = labels[start : start + batch_size].to(device, non_blocking=True)
            correct += int((model(x).argmax(1) == y).sum())
    model.train(was_training)
    return 100.0 * correct / len(images)


def _make_optimizer(model, cfg: TrainConfig):
    import torch

    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _make_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int):
    import torch

    if cfg.schedule == "constant":
        return None
    total_steps = cfg.epochs * steps_per_epoch
    if total_steps < ONE_CYCLE_MIN_STEPS:  # OneCycleLR divides by zero at 4 steps and has no warm-up below 8
        raise InputError(
            f"the one-cycle schedule needs at least {ONE_CYCLE_MIN_STEPS} steps; this run has {total_steps} "
            f"({cfg.epochs} epochs x {steps_per_epoch} batches)",
            "train on more images, lower --batch-size, or pass --schedule constant",
        )
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.lr, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.25
    )


def _resume_path(out: Path) -> Path:
    return out.with_name(out.name + RESUME_SUFFIX)


def _load_resume_state(path: Path, cfg: TrainConfig) -> dict:
    import torch

    from toolkit.errors import CheckpointError

    if not path.is_file():
        raise CheckpointError(f"--resume given but there is no resume state at {path}", "train without --resume first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read means the state is unusable
        from toolkit.files.checkpoint import _unpickler_detail

        raise CheckpointError(f"resume state {path} is unreadable ({_unpickler_detail(exc)})", "delete it and train without --resume") from None
    if not isinstance(state, dict) or state.get("recipe") != cfg.recipe() or state.get("seed") != cfg.seed:
        raise CheckpointError(
            f"resume state {path} was made with another recipe or seed",
            "pass the same --epochs/--batch-size/--lr/--seed as the interrupted run, or train without --resume",
        )
    return state


def _is_terminal(stream) -> bool:
    return bool(stream is not None and getattr(stream, "isatty", None) and stream.isatty())


def train(cfg: TrainConfig, progress: bool = True) -> TrainResult:
    """Train the seed CNN with `cfg`, write the checkpoint and its JSON record atomically."""
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from toolkit.data import load_split
    from toolkit.env import library_versions
    from toolkit.files.checkpoint import save_bytes
    from toolkit.files.store import (
        atomic_write_bytes,
        check_writable_dir,
        clean_stale_temp_files,
        directory_lock,
        sha256_file,
        write_artifact,
        write_json_artifact,
    )
    from toolkit.model import CNN

    cfg.validate()
    out = Path(cfg.out)
    device = resolve_device(cfg.device)
    threads = cfg.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)

    train_x, train_y = load_split("train", cfg.data_dir)
    test_x, test_y = load_split("test", cfg.data_dir)
    # Created like `mkdir -p` once the inputs are known good (a refused run leaves no empty
    # directory), and checked before the first epoch, not after it.
    check_writable_dir(out.parent, create=True)
    clean_stale_temp_files(out.parent)
    if cfg.train_limit:
        train_x, train_y = train_x[: cfg.train_limit], train_y[: cfg.train_limit]

    seed_everything(cfg.seed, device)
    model = CNN().to(device)
    optimizer = _make_optimizer(model, cfg)
    steps_per_epoch = (len(train_x) + cfg.batch_size - 1) // cfg.batch_size
    scheduler = _make_scheduler(optimizer, cfg, steps_per_epoch)
    generator = torch.Generator().manual_seed(cfg.seed)
    train_x, train_y = train_x.to(device), train_y.to(device)

    history: list[EpochStats] = []
    start_epoch = 0
    elapsed_before = 0.0
    resume_path = _resume_path(out)
    if cfg.resume:
        state = _load_resume_state(resume_path, cfg)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            history = [EpochStats(**h) for h in state["history"]]
            start_epoch = int(state["epoch"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            from toolkit.errors import CheckpointError

            raise CheckpointError(f"resume state {resume_path} is incomplete or damaged ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})",
                                  "delete it and train without --resume") from None
        elapsed_before = history[-1].elapsed_seconds if history else 0.0

    # A live bar only on a terminal: in a log (CI, a pipe, a file) every bar update would be a line,
    # so there the one line per epoch below is the progress.
    live_bar = progress and _is_terminal(sys.stderr)
    wall_start = time.perf_counter()
    train_seconds = elapsed_before
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        perm = torch.randperm(len(train_x), generator=generator).to(device)
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        t0 = time.perf_counter()
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not live_bar, leave=False, unit="step")
        for step in bar:
            idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
            x, y = train_x[idx], train_y[idx]
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            with torch.no_grad():
                loss_sum += loss.detach() * len(y)
                correct += (logits.argmax(1) == y).sum()
            if live_bar and step % 50 == 0:
                seen = min((step + 1) * cfg.batch_size, len(train_x))
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.4f}", acc=f"{100.0 * correct.item() / seen:.2f}%")
        bar.close()
        epoch_seconds = time.perf_counter() - t0
        train_seconds += epoch_seconds
        test_acc = evaluate_accuracy(model, test_x, test_y)
        stats = EpochStats(
            epoch=epoch + 1,
            train_loss=loss_sum.item() / len(train_x),
            train_accuracy=100.0 * correct.item() / len(train_x),
            test_accuracy=test_acc,
            epoch_seconds=epoch_seconds,
            elapsed_seconds=train_seconds,
        )
        history.append(stats)
        if progress:
            tqdm.write(
                f"epoch {stats.epoch}/{cfg.epochs}: loss {stats.train_loss:.4f}, train {stats.train_accuracy:.2f}%, "
                f"test {stats.test_accuracy:.2f}%, {stats.epoch_seconds:.1f}s"
            )
        if epoch + 1 < cfg.epochs:
            # Resume state after each completed epoch, written atomically (an interrupt keeps the last one).
            resume_state = {
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": [asdict(h) for h in history],
                "epoch": epoch + 1,
                "recipe": cfg.recipe(),
                "seed": cfg.seed,
            }
            resume_bytes = save_bytes(resume_state)
            with directory_lock(out.parent):  # clean_stale_temp_files in another process must not take our temp file
                atomic_write_bytes(resume_path, resume_bytes)

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_artifact(out, lambda tmp: tmp.write_bytes(save_bytes(state)), kind="checkpoint")
    time_to_99 = next((h.elapsed_seconds for h in history if h.test_accuracy >= 99.0), None)
    result = TrainResult(
        checkpoint=str(out),
        test_accuracy=history[-1].test_accuracy,
        history=history,
        wall_seconds=(time.perf_counter() - wall_start) + elapsed_before,
        seed=cfg.seed,
        device=device if device == "cpu" else f"cuda ({torch.cuda.get_device_name()})",
        threads=threads,
        recipe=cfg.recipe(),
        versions=library_versions(),
        checkpoint_sha256=sha256_file(out),
        resumed_from_epoch=start_epoch,
        time_to_99_seconds=time_to_99,
    )
    write_json_artifact(record_path(out), result.to_dict(), kind="train-record", parents=[out])
    resume_path.unlink(missing_ok=True)
    return result


def record_path(checkpoint: str | os.PathLike) -> Path:
    p = Path(checkpoint)
    return p.with_suffix(".json")
