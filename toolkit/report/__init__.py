"""Rendering: console tables, Markdown reports and plots for every result. Nothing else formats;
JSON serialization belongs to the file store (toolkit.files.store)."""

from toolkit.report.bench import (
    BENCH_FILES,
    bench_markdown,
    bench_plots,
    format_baseline,
    format_bench,
    write_bench_reports,
)
from toolkit.report.console import (
    format_engine_result,
    format_export_result,
    format_info,
    format_train_benchmark,
    format_train_result,
    format_verify,
)
from toolkit.report.parity import format_parity, parity_markdown, write_parity_reports
from toolkit.report.tables import markdown_table, table
from toolkit.report.tune import format_tuned

__all__ = [
    "BENCH_FILES",
    "bench_markdown",
    "bench_plots",
    "format_baseline",
    "format_bench",
    "format_engine_result",
    "format_export_result",
    "format_info",
    "format_parity",
    "format_train_benchmark",
    "format_train_result",
    "format_tuned",
    "format_verify",
    "markdown_table",
    "parity_markdown",
    "table",
    "write_bench_reports",
    "write_parity_reports",
]
