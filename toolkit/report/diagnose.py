"""`toolkit diagnose`'s reports: console summary, Markdown, the SQNR-per-layer plot, and the files."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

from toolkit.files.store import to_jsonable, write_artifact, write_json_artifact, write_text_artifact
from toolkit.report.tables import markdown_table, table

TENSOR_HEADERS = ["#", "tensor", "op", "node", "SQNR dB", "own dB", "inherited dB", "max|Δ|", "mean|Δ|", "cosine", "non-finite"]
WORST_SHOWN = 5


def _db(value) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.1f}"


def _num(value, spec: str) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return format(value, spec)


def tensor_rows(diagnosis, tensors=None) -> list[list]:
    rows = []
    for t in tensors if tensors is not None else diagnosis.tensors:
        marker = " <" if diagnosis.verdict.tensor == t.tensor else ""
        rows.append([t.index, t.tensor + marker, t.op_type, t.node or "-", _db(t.sqnr_db), _db(t.own_sqnr_db),
                     _db(t.inherited_sqnr_db), _num(t.max_abs, ".3g"), _num(t.mean_abs, ".3g"), _num(t.cosine, ".5f"),
                     t.non_finite if t.sqnr_db is not None else (t.note or "-")])
    return rows


def _exposure_line(d) -> str:
    e = d.exposure
    state = "ok" if e.passed else "FAILED"
    return (f"exposure check {state}: logits with every tensor exposed vs the unmodified model: max |Δ| "
            f"{_num(e.max_abs_logit, '.3g')} (allowed {e.tolerance:g}), top-1 agreement {100 * e.agreement:.2f}%; "
            f"the unmodified model vs the fp32 ONNX: max |Δ| {_num(e.candidate_max_abs_logit, '.3g')}")


def _bisect_lines(b, markdown: bool = False) -> list[str]:
    lines = [f"bisect: {b.message}"]
    if b.original is not None and b.kept_fp32 is not None and b.trials:
        fixed = next((t for t in reversed(b.trials) if t.passed and sorted(t.kept_fp32) == sorted(b.kept_fp32)), None)
        headers = ["file", "gate", "acc %", "agree %", "batch 1 p50 µs", "batch 256 img/s"]
        rows = []
        for label, trial, speed in (("original", b.original, b.original_speed), ("re-export", fixed, b.fixed_speed)):
            if trial is None:
                continue
            rows.append([label, "pass" if trial.passed else "fail", _num(trial.accuracy, ".2f"),
                         _num(None if trial.agreement is None else 100 * trial.agreement, ".2f"),
                         _num(speed.batch1_p50_us if speed else None, ".0f"),
                         _num(speed.batch256_images_per_s if speed else None, ",.0f")])
        lines.append(markdown_table(headers, rows) if markdown else table(headers, rows))
        lines.append("speeds: short timing (0.3 s per cell) on this machine, indicative only; use `toolkit bench` for figures")
    if b.written:
        lines.append(f"written: {b.written}")
    return lines


def format_diagnosis(d) -> str:
    lines = [
        f"{d.backend}/{d.precision} ({d.runtime}) against the fp32 ONNX on {len(d.images)} test images ({d.image_selection})",
        _exposure_line(d),
    ]
    measured = [t for t in d.tensors if t.sqnr_db is not None]
    worst = sorted(measured, key=lambda t: t.sqnr_db)[:WORST_SHOWN]
    worst += [t for t in measured if t.tensor == d.verdict.tensor and t not in worst]  # the named one, always
    lines.append(f"worst {len(worst)} of {len(d.tensors)} tensors (SQNR; own: the layer recomputed from the reference's inputs):")
    lines.append(table(TENSOR_HEADERS, tensor_rows(d, sorted(worst, key=lambda t: t.index)), align="rlll" + "r" * 7))
    lines.append(f"verdict: {d.verdict.message}")
    if d.bisect is not None:
        lines += _bisect_lines(d.bisect)
    lines += [f"note: {n}" for n in d.notes]
    return "\n".join(lines)


def diagnosis_markdown(d, plot_name: str | None = None) -> str:
    out = [
        f"# Diagnosis: {d.backend} / {d.precision}",
        "",
        f"- Candidate: `{d.model_path}` on {d.runtime}; reference: `{d.reference_path}` on onnxruntime (CPU)",
        f"- Images: {len(d.images)} MNIST test images ({d.image_selection})",
        f"- Threshold: SQNR {d.min_sqnr_db:g} dB; top-1 agreement of the unmodified candidate with the fp32 ONNX on these images: {100 * d.agreement:.2f}%",
        f"- {_exposure_line(d)}",
        f"- **Verdict: {d.verdict.message}**",
        "",
        "SQNR = 20·log10(‖ref‖/‖ref − cand‖) over all images. *own*: the candidate's layer recomputed from the "
        "reference's values of its inputs (its own error); *inherited*: the candidate against that recompute "
        "(what came from upstream). Tensors are compared as the next layer reads them (after Q/DQ, after Casts).",
        "",
        markdown_table(TENSOR_HEADERS, tensor_rows(d)),
        "",
    ]
    if plot_name:
        out += [f"![SQNR per layer]({plot_name})", ""]
    if d.bisect is not None:
        out += ["## Bisect", ""] + _bisect_lines(d.bisect, markdown=True) + [""]
        out += ["| kept in fp32 | gate | reason | s |", "|---|---|---|---|"]
        out += [f"| {', '.join(t.kept_fp32) or '(none)'} | {'pass' if t.passed else 'fail'} | {t.reason or '-'} | {t.seconds:.1f} |"
                for t in d.bisect.trials]
        out.append("")
    if d.notes:
        out += ["## Notes", ""] + [f"- {n}" for n in d.notes] + [""]
    return "\n".join(out)


def diagnosis_plot(d) -> bytes:
    """PNG: SQNR per tensor in graph order, the threshold, the verdict's tensor highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [t.tensor for t in d.tensors]
    finite_top = max([t.sqnr_db for t in d.tensors if t.sqnr_db is not None and math.isfinite(t.sqnr_db)] + [d.min_sqnr_db + 10])
    floor = min([t.sqnr_db for t in d.tensors if t.sqnr_db is not None and math.isfinite(t.sqnr_db)] + [0.0]) - 5

    def clip(v):
        if v is None:
            return math.nan
        return finite_top + 5 if v == math.inf else (floor if v == -math.inf else v)

    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(names)), 4))
    xs = range(len(names))
    colors = ["tab:red" if t.tensor == d.verdict.tensor else "tab:blue" for t in d.tensors]
    ax.bar(xs, [clip(t.sqnr_db) for t in d.tensors], color=colors, label="SQNR")
    ax.plot(xs, [clip(t.own_sqnr_db) for t in d.tensors], "o", color="black", label="own (recomputed from the reference's inputs)")
    ax.axhline(d.min_sqnr_db, color="tab:red", linestyle="--", label=f"threshold {d.min_sqnr_db:g} dB")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_ylabel("SQNR (dB); ±inf drawn at the edges")
    ax.set_title(f"{d.backend} / {d.precision}: SQNR per tensor, in graph order", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_diagnosis_reports(d, out_dir: str | os.PathLike) -> list[Path]:
    from toolkit.files.store import check_writable_dir

    out_dir = check_writable_dir(out_dir, create=True)
    stem = f"{d.backend}-{d.precision}"
    parents = [Path(d.model_path), Path(d.reference_path)]
    plot = diagnosis_plot(d)
    written = [
        write_json_artifact(out_dir / f"{stem}.json", to_jsonable(d), kind="diagnose-report", parents=parents),
        write_text_artifact(out_dir / f"{stem}.md", diagnosis_markdown(d, f"{stem}.png"), kind="diagnose-report", parents=parents),
        write_artifact(out_dir / f"{stem}.png", lambda tmp: tmp.write_bytes(plot), kind="diagnose-plot", parents=parents),
    ]
    return written
