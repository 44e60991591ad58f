"""The README and docs/ as written: every `toolkit`/`make` command names a real command with real
options, and every relative link (and #anchor) resolves.

Commands are parsed with the CLI's own click parser, never run: the group's parser finds the
subcommand, the subcommand's parser rejects unknown options, missing option values and extra
arguments, and values of choice options are checked against the choices. Placeholders such as
`FILE`, `DIR`, `URL`, `<p>` or `...` stand for any value. `a|b` in a value means "a or b": each is
checked.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from toolkit.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MAKEFILE = ROOT / "Makefile"

FENCE = re.compile(r"^[ \t]*```([\w-]*)[^\n]*\n(.*?)^[ \t]*```", re.M | re.S)
SHELL_FENCES = {"", "sh", "bash", "shell", "console"}
INLINE_CODE = re.compile(r"`((?:[^`\n]|\n(?!\s*\n))+)`")  # a code span may wrap onto the next line
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.M)
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
ANY_VALUE = "\0any"  # what `...` stands for


def _is_placeholder(value: str) -> bool:
    return value == ANY_VALUE or "<" in value or "$" in value or re.fullmatch(r"[A-Z][A-Z0-9_]*", value) is not None


def _segments(line: str) -> list[str]:
    """The simple commands of a shell line: a prompt, comments, `&&`/`;` chains and a trailing `&` removed."""
    line = line.strip()
    if line.startswith("$ "):
        line = line[2:]
    line = re.sub(r"(^|\s)#.*$", "", line)
    out = []
    for part in re.split(r"&&|;", line):
        part = " ".join(part.strip().rstrip("&").split())
        if part:
            out.append(part)
    return out


def _tokens(command: str) -> list[str] | None:
    """The words of a `toolkit`/`make` command (leading VAR=value dropped), or None for other commands."""
    try:
        words = shlex.split(command.replace("\\|", "|"))
    except ValueError:
        words = command.split()
    while words and ENV_ASSIGNMENT.match(words[0]):
        words = words[1:]
    if not words or words[0] not in ("toolkit", "make"):
        return None
    out = []
    for word in words:
        word = word.strip("[]")
        if word in ("", "|"):
            continue
        out.append(ANY_VALUE if word in ("...", "…") else word)
    return out


def commands_in(text: str) -> list[str]:
    """Every `toolkit ...` and `make ...` command in a Markdown text: in shell code blocks and in inline code."""
    found = []
    for lang, body in FENCE.findall(text):
        if lang not in SHELL_FENCES:
            continue
        for line in re.sub(r"\\\n\s*", " ", body).splitlines():
            found += [seg for seg in _segments(line) if _tokens(seg) is not None]
    for span in INLINE_CODE.findall(FENCE.sub("", text)):
        found += [seg for seg in _segments(span) if _tokens(seg) is not None]
    return found


def _check_choices(command: click.Command, opts: dict) -> None:
    for param in command.params:
        if not isinstance(param.type, click.Choice) or opts.get(param.name) is None:
            continue
        values = opts[param.name] if isinstance(opts[param.name], (list, tuple)) else [opts[param.name]]
        for value in values:
            for alternative in str(value).split("|"):
                if not _is_placeholder(alternative) and alternative not in param.type.choices:
                    raise click.BadParameter(f"{alternative!r} is not one of {list(param.type.choices)}", param_hint=param.opts[0])


def check_toolkit_command(words: list[str]) -> None:
    """Raise click.UsageError (or BadParameter) unless `words` parses as a toolkit command line."""
    command: click.Command = cli
    args = words[1:]
    path = ["toolkit"]
    while True:
        ctx = click.Context(command, info_name=" ".join(path), resilient_parsing=False)
        opts, rest, _ = command.make_parser(ctx).parse_args(list(args))
        _check_choices(command, opts)
        if isinstance(command, click.Group) and rest and rest[0] != ANY_VALUE:
            sub = command.commands.get(rest[0])
            if sub is None:
                raise click.UsageError(f"no such command {rest[0]!r} in {' '.join(path)}")
            command, args, path = sub, rest[1:], [*path, rest[0]]
            continue
        extra = [a for a in rest if a != ANY_VALUE]
        if extra:
            raise click.UsageError(f"unexpected arguments {extra} for {' '.join(path)}")
        return


def make_targets() -> set[str]:
    targets = set()
    for match in re.finditer(r"^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*:(?!=)", MAKEFILE.read_text(), re.M):
        targets.update(match.group(1).split())
    return targets - {".PHONY"}


def check_make_command(words: list[str], targets: set[str]) -> None:
    for word in words[1:]:
        if ENV_ASSIGNMENT.match(word) or word == ANY_VALUE:
            continue
        if word not in targets:
            raise ValueError(f"make has no target {word!r}")


def check_command(command: str, targets: set[str]) -> None:
    words = _tokens(command)
    assert words is not None, command
    if words[0] == "toolkit":
        check_toolkit_command(words)
    else:
        check_make_command(words, targets)


def _all_commands() -> list[tuple[str, str]]:
    return [(path.relative_to(ROOT).as_posix(), cmd) for path in DOC_FILES for cmd in commands_in(path.read_text())]


def test_the_docs_hold_commands_of_both_kinds():
    commands = [cmd for _, cmd in _all_commands()]
    assert sum(c.startswith("toolkit") or " toolkit " in f" {c}" for c in commands) > 30
    assert any(_tokens(c)[0] == "make" for c in commands)


def test_every_documented_command_parses():
    targets = make_targets()
    problems = []
    for where, command in _all_commands():
        try:
            check_command(command, targets)
        except (click.ClickException, ValueError) as exc:
            message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
            problems.append(f"{where}: `{command}`: {message}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("command", [
    "toolkit evaluate",
    "toolkit eval --no-such-option",
    "toolkit bench --quick --baseline",
    "toolkit export --format onnx --precision fp32 --calibration kl",
    "toolkit export --format onnnx --precision fp32",
    "toolkit verify artifacts extra-argument",
    "toolkit --no-such-global train",
    "make pipline",
    "make gpu-install CUDA=12 --bogus",
])
def test_the_checker_rejects_a_wrong_command(command):
    with pytest.raises((click.ClickException, ValueError)):
        check_command(command, make_targets())


@pytest.mark.parametrize("command", [
    "toolkit --debug train --epochs 1",
    "toolkit bench --baseline FILE --quick",
    "toolkit eval --backend triton --url http://<ingress> --precision <p>",
    "toolkit export --format onnx --precision fp32|int8 --calibration minmax|percentile",
    "toolkit verify DIR",
    "toolkit bench --url ... --concurrency 1,4,16",
    "make gpu-install CUDA=12|13",
])
def test_the_checker_accepts_placeholders_and_alternatives(command):
    check_command(command, make_targets())


def test_commands_are_found_in_code_blocks_and_inline_code():
    text = (
        "Run `make test` or `toolkit eval --quick`; `toolkit.cli` is a module.\n\n"
        "```sh\n$ STANDINS=1 make gpu-extras-check && toolkit info   # comment\n"
        "toolkit bench \\\n    --quick &\n```\n\n```python\ntoolkit eval\n```\n"
    )
    assert commands_in(text) == ["STANDINS=1 make gpu-extras-check", "toolkit info", "toolkit bench --quick",
                                 "make test", "toolkit eval --quick"]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def broken_links(path: Path) -> list[str]:
    problems = []
    for target in LINK.findall(FENCE.sub("", path.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            problems.append(f"{path.name}: {target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            problems.append(f"{path.name}: {target}: no heading with anchor #{anchor} in {linked.name}")
    return problems


def test_every_relative_link_resolves():
    problems = [p for path in DOC_FILES for p in broken_links(path)]
    assert not problems, "\n".join(problems)


def test_the_link_check_catches_a_missing_file_and_anchor(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading: yes\n")
    page.write_text("# Page\n\n[ok](other.md#a-code-heading-yes) [ok](#page) [bad](missing.md) [bad](other.md#nope) [bad](#nowhere)\n")
    assert broken_links(page) == [
        "page.md: missing.md: no such file",
        "page.md: other.md#nope: no heading with anchor #nope in other.md",
        "page.md: #nowhere: no heading with anchor #nowhere in page.md",
    ]
