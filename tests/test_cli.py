"""toolkit.cli in-process (click's runner): what the help says. Behaviour is tested through the
real CLI in subprocesses elsewhere (test_battery.py and each command's test module)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from toolkit.cli import cli
from toolkit.files.paths import ONNX_PRECISIONS


def option_help(command: str, option: str) -> str:
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0, result.output
    text = result.output[result.output.index(option):]
    following = re.search(r"\n\s+--(?!" + option[2:] + r")", text)
    return re.sub(r"\s+", "", text[: following.start()] if following else text)


@pytest.mark.parametrize("command", ["export", "eval", "bench"])
def test_precision_help_names_every_onnx_precision(command):
    text = option_help(command, "--precision")
    for precision in ONNX_PRECISIONS:
        assert precision in text, (command, precision, text)


@pytest.mark.parametrize("command, option", [("train", "--out"), ("export", "--out")])
def test_output_help_says_a_missing_directory_is_created(command, option):
    assert "created" in option_help(command, option)
