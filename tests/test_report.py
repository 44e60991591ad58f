"""toolkit.report's shared layouts: console and Markdown tables."""

from toolkit.report.tables import _fmt, markdown_table, table


def test_console_table_aligns_columns_and_right_aligns_numbers():
    text = table(["row", "p50 µs"], [["onnxruntime/fp32", "27.8"], ["pytorch/fp32", "142.4"], ["x", None]])
    lines = text.splitlines()
    assert lines[0].startswith("row") and set(lines[1].replace(" ", "")) == {"-"}
    # every line ends in the same column (numbers right-aligned), no trailing blanks
    widths = {len(line) for line in lines[:3]}
    assert len(widths) == 1 and all(line == line.rstrip() for line in lines)
    assert lines[2].endswith(" 27.8") and lines[3].endswith("142.4") and lines[4] == "x"


def test_console_table_honours_an_explicit_alignment():
    text = table(["a", "b"], [["1", "left"], ["22", "l"]], align="rl")
    assert text.splitlines()[2:] == [" 1  left", "22  l"]


def test_markdown_table_escapes_pipes_and_newlines():
    text = markdown_table(["max |Δ|", "note"], [["1e-4", "a|b\nc"], [None, "ok"]])
    assert text.splitlines() == ["| max \\|Δ\\| | note |", "|---|---|", "| 1e-4 | a\\|b c |", "|  | ok |"]


def test_missing_values_print_as_a_dash():
    assert _fmt(None, ".2f") == "-" and _fmt(3.14159, ".2f") == "3.14"


def test_parity_markdown_lists_every_flip_of_every_pair():
    """parity.md's flip table is what a reviewer reads to see which images changed: each flip is
    one row (test index, label, reference prediction, pair prediction, batch), under its pair."""
    from toolkit.parity import Flip, PairResult, ParityReport
    from toolkit.report.parity import parity_markdown

    int8 = PairResult("onnxruntime", "int8", "fail", reason="agreement 99.00% < 99.50%",
                      flips=[Flip(17, 3, 3, 5, 1), Flip(4242, 9, 4, 9, 1024)])
    fp32 = PairResult("onnxruntime", "fp32", "pass")
    text = parity_markdown(ParityReport("pytorch fp32 (cpu)", 99.1, 10000, (1, 1024), 99.0, [fp32, int8], "c.pt", "ab" * 32))
    lines = text.splitlines()
    start = lines.index("## Predictions that flipped against the reference")
    section = lines[start:]
    assert "### onnxruntime / int8" in section and "### onnxruntime / fp32" not in section
    assert section[section.index("### onnxruntime / int8") + 2:][:4] == [
        "| test index | label | reference | pair | batch |", "|---|---|---|---|---|", "| 17 | 3 | 3 | 5 | 1 |", "| 4242 | 9 | 4 | 9 | 1024 |"]
    # No flips: no section.
    assert "flipped" not in parity_markdown(ParityReport("r", 99.1, 10, (1,), 99.0, [fp32], "c.pt", "ab"))
