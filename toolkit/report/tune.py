"""The configuration search's report: a console table (tuned.json itself is written by the store)."""

from __future__ import annotations

from toolkit.report.tables import table


def _settings(options: dict, defaults: dict) -> str:
    changed = [f"{k}={v}" for k, v in sorted(options.items()) if defaults.get(k) != v]
    return ", ".join(changed) or "defaults kept"


def format_tuned(tuned) -> str:
    """One line per (backend, precision, batch size): what won, its gain over the defaults, parity."""
    env, st = tuned.environment, tuned.settings
    rows = []
    for e in tuned.entries:
        gain = "-" if e.speedup is None else f"{e.speedup:.2f}x [{e.ci_low:.2f}..{e.ci_high:.2f}]"
        tried = sum(1 for t in e.trials if t.get("verdict") != "failed")
        refused = sum(1 for t in e.trials if str(t.get("verdict", "")).startswith("refused"))
        parity = e.parity.get("status", "-") if e.parity else "-"
        rows.append([e.label, e.batch_size, _settings(e.options, e.default_options),
                     "-" if e.default_median_us is None else f"{e.default_median_us:,.1f}",
                     "-" if e.tuned_median_us is None else f"{e.tuned_median_us:,.1f}", gain, parity,
                     f"{tried} tried, {refused} refused, {len(e.untried)} untried"])
    lines = [
        f"{env.get('cpu_model')}, {env.get('usable_cores')} usable cores; load average {env.get('load_average_start')} -> "
        f"{env.get('load_average_end')}; budget {st.get('budget_s')} s, used {st.get('elapsed_s')} s",
        f"a setting wins when its {100 * st.get('confidence', 0.95):g}% bootstrap interval of the median-latency ratio lies below 1 "
        f"and it is at least {100 * st.get('min_gain', 0):g}% faster, and it passes the parity gate",
        table(["pair", "batch", "chosen settings", "default p50 µs", "tuned p50 µs", "speed-up [95% CI]", "parity", "search"], rows,
              align="lrlrrrll"),
    ]
    for e in tuned.entries:
        for t in e.trials:
            if str(t.get("verdict", "")).startswith("refused") or t.get("verdict") == "failed":
                lines.append(f"  {e.label} batch {e.batch_size}: {t.get('setting')} {t.get('verdict')}: {t.get('message')}")
        if e.note:
            lines.append(f"  {e.label} batch {e.batch_size}: {e.note}")
        if e.untried:
            lines.append(f"  {e.label} batch {e.batch_size}: untried {', '.join(e.untried)}")
    return "\n".join(lines)
