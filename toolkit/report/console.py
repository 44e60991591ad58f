"""Console text for the one-shot commands: train, export, engine build, the training benchmark,
info and verify."""

from __future__ import annotations

from toolkit.report.tables import table


def format_train_result(result) -> str:
    rows = [[h.epoch, f"{h.train_loss:.4f}", f"{h.train_accuracy:.2f}", f"{h.test_accuracy:.2f}", f"{h.epoch_seconds:.1f}"] for h in result.history]
    lines = [
        table(["epoch", "loss", "train %", "test %", "seconds"], rows),
        "",
        f"test accuracy {result.test_accuracy:.2f}% after {result.wall_seconds:.1f}s on {result.device} ({result.threads} threads)",
    ]
    if result.time_to_99_seconds is not None:
        lines.append(f"reached 99% after {result.time_to_99_seconds:.1f}s of training")
    lines.append(f"checkpoint {result.checkpoint} (sha256 {result.checkpoint_sha256[:16]}...)")
    return "\n".join(lines)


# --- parity -------------------------------------------------------------------------------------


def format_export_result(result) -> str:
    c = result.check
    return (
        f"{result.precision}: {result.path} ({result.size} bytes, opset {result.opset}) in {result.seconds:.1f}s; "
        f"check on {c.images} test images vs PyTorch: max |Δlogit| {c.max_abs_logit:.2e} (≤ {c.tolerance.max_abs_logit:g}), "
        f"agreement {100 * c.agreement:.2f}%" + (f" (≥ {100 * c.tolerance.min_agreement:.2f}%)" if c.tolerance.min_agreement else " (the gate judges it)")
    )


def format_train_benchmark(b) -> str:
    s = b.seed
    t99 = "not reached" if b.default_time_to_99_seconds is None else f"{b.default_time_to_99_seconds:.1f}s"
    rows = [
        [f"default (AdamW one-cycle, batch {b.default_recipe['batch_size']}, {b.default_recipe['epochs']} epochs)",
         t99, f"{b.default_train_seconds:.1f}s (measured)", f"{b.default_test_accuracy:.2f}%"],
        ["seed notebook (Adam 1e-3, batch 4, 10 epochs)",
         f"~{s.extrapolated_seconds:.0f}s (notebook: 99.05% after 10 epochs)",
         f"{s.extrapolated_seconds:.0f}s (extrapolated: {s.ms_per_step:.2f} ms/step x {s.steps_per_epoch * 10} steps)",
         f"{s.test_accuracy_after_steps:.2f}% after {s.steps} steps"],
    ]
    lines = [table(["recipe", "time to 99%", "training time", "test accuracy"], rows, align="llll")]
    if b.speedup_time_to_99:
        lines.append(f"time-to-99% ratio (seed extrapolated / default measured): {b.speedup_time_to_99:.1f}x on {b.cpu}, {b.threads} threads")
    return "\n".join(lines)


# --- TensorRT engines and `toolkit info` ----------------------------------------------------------

def format_engine_result(result) -> str:
    low, opt, high = result.profile
    if result.strict_fp32:
        math = "TF32 off (strict fp32)"
    elif result.tf32:
        math = "TF32 allowed for fp32 layers (--strict-fp32 for true fp32)"
    else:
        math = "TF32 off (this GPU has none)"
    return (
        f"{result.precision}: {result.path} ({result.size} bytes) from {result.onnx_path} in {result.seconds:.1f}s; "
        f"TensorRT {result.tensorrt_version} on {result.gpu_name} (compute {result.compute_capability}); "
        f"batch profile {low}/{opt}/{high}, workspace {result.workspace_mb} MiB, {math}; "
        f"timing cache: {result.timing_cache}; sidecar {result.sidecar}"
    )


def format_info(info) -> str:
    lines = [f"toolkit {info.toolkit}, Python {info.python} on {info.platform}", "", "runtimes:"]
    width = max(len(name) for name in info.runtimes)
    for name, version in info.runtimes.items():
        lines.append(f"  {name.ljust(width)}  {version or 'not installed'}")
    lines.append(f"  {'torch CUDA'.ljust(width)}  {info.torch_cuda or 'none (CPU-only build)'}")
    lines.append("")
    if info.gpus:
        lines += [f"GPU {g.index}: {g.name}, compute capability {g.compute_capability}, {g.memory_gib:g} GiB" for g in info.gpus]
    else:
        lines.append(f"GPU: none usable ({info.gpu_reason})")
    lines.append("")
    rows = [[s.name, s.device, ",".join(s.precisions), "yes" if s.available else f"no: {s.reason}"] for s in info.backends]
    lines += [line.rstrip() for line in table(["backend", "device", "precisions", "usable"], rows, align="llll").splitlines()]
    lines += [f"warning: {w}" for w in info.warnings]
    return "\n".join(lines)


def format_verify(report) -> str:
    rows = [[a.name, a.kind, a.status.upper(), a.detail] for a in report.artifacts]
    c = report.counts()
    verdict = "all intact" if report.passed else f"{len(report.problems)} with problems"
    lines = [line.rstrip() for line in table(["artifact", "kind", "status", "detail"], rows, align="llll").splitlines()]
    lines.append(
        f"{report.manifest}: {len(report.artifacts)} artifacts, {verdict} "
        f"({c['ok']} ok, {c['missing']} missing, {c['changed']} changed, {c['stale']} stale)"
    )
    return "\n".join(lines)


# --- bench ----------------------------------------------------------------------------------------



def format_model_export_result(result, checked_on: str) -> str:
    """Another model's export: checked against its own fp32 file (agreement, relative error, cosine)."""
    c = result.check
    return (
        f"{result.precision}: {result.path} ({result.size} bytes, opset {result.opset}) in {result.seconds:.1f}s; "
        f"check on {c.images} samples of the {checked_on} vs the fp32 file: max |Δ| {c.max_abs_logit:.2e}, "
        f"agreement {100 * c.agreement:.2f}%" + (f" (≥ {100 * c.tolerance.min_agreement:.2f}%)" if c.tolerance.min_agreement else " (the gate judges it)")
    )
