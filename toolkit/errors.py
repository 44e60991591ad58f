"""The toolkit's own error type: what went wrong and what to do, in one line.

The CLI turns a ToolkitError into one line on stderr and its exit code; anything else is a bug
and is reported as such (with the traceback only under --debug).
"""

from __future__ import annotations

# Exit codes, documented in docs/reliability.md.
EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # the command ran and its verdict is "no": parity broken, artifacts changed
EXIT_BAD_INPUT = 2  # bad option, bad or missing file, unwritable location
EXIT_UNAVAILABLE = 3  # a dependency or device is missing (CUDA, TensorRT, OpenVINO)
EXIT_INTERNAL = 70  # a bug in the toolkit (unexpected exception)
EXIT_INTERRUPTED = 130


class ToolkitError(Exception):
    """An error whose message is fit to show a user as is: the problem, then the fix."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem
        self.fix = fix
        super().__init__(problem if not fix else f"{problem}; {fix}")


class DataError(ToolkitError):
    """MNIST files missing, malformed or failing their checksum."""


class CheckpointError(ToolkitError):
    """A checkpoint that is missing, unreadable, unsafe or not this model's."""


class ModelFileError(ToolkitError):
    """An ONNX file or engine that is missing, corrupt, unsafe or not this model's signature."""


class InputError(ToolkitError, ValueError):
    """A batch handed to the Python API that breaks the model's input contract."""


class OutputError(ToolkitError):
    """An output location that is missing, unwritable or full."""


class UnavailableError(ToolkitError):
    """A backend, runtime or device that this machine does not have."""

    exit_code = EXIT_UNAVAILABLE


class CheckFailed(ToolkitError):
    """The command worked and its verdict is negative (parity gate, verify, baseline)."""

    exit_code = EXIT_CHECK_FAILED
