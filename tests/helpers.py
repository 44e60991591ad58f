"""Helpers shared by test modules, imported as `from helpers import ...` (pytest puts tests/ on
sys.path). Fixtures stay in conftest.py, which imports from here too; nothing imports conftest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The committed reference run (checkpoint, exports, reports); commands write to artifacts/ by default.
REFERENCE = ROOT / "artifacts" / "reference"
DATA_DIR = Path(os.environ.get("TOOLKIT_DATA_DIR", ROOT / "data"))

NUM_CLASSES = 10


def logits_for(n: int, seed: int = 0) -> np.ndarray:
    """Logits (n, 10) float32 with a clear top-1 (margin >= 1), so small perturbations keep the argmax."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, size=(n, NUM_CLASSES)).astype(np.float32)
    top = rng.integers(0, NUM_CLASSES, size=n)
    logits[np.arange(n), top] = logits.max(axis=1) + 1.0 + rng.random(n).astype(np.float32)
    return logits


def with_wrong_labels(logits: np.ndarray, wrong: int) -> np.ndarray:
    """Labels equal to the logits' argmax except on the first `wrong` images (shifted by one class)."""
    labels = logits.argmax(1).astype(np.int64)
    labels[:wrong] = (labels[:wrong] + 1) % NUM_CLASSES
    return labels


# --- the real CLI in a subprocess -------------------------------------------------------------

def run_cli(*args, env=None, cwd=None, timeout=600, input=None):
    """Run the real CLI in a subprocess; returns CompletedProcess with text stdout/stderr."""
    full_env = {**os.environ, "TOOLKIT_DATA_DIR": str(DATA_DIR), **(env or {})}
    full_env.pop("TOOLKIT_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "toolkit", *map(str, args)], capture_output=True, text=True,
        env=full_env, cwd=cwd or ROOT, timeout=timeout, input=input,
    )


def assert_one_line_error(proc, *needles, code=None):
    """Non-zero exit, exactly one line on stderr naming the problem, no traceback."""
    assert proc.returncode != 0, f"expected failure, got 0; stdout={proc.stdout[-500:]}"
    if code is not None:
        assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_one_line_exception(excinfo, *needles):
    """A raised ToolkitError that the CLI renders as one line (problem; fix) with exit code 2."""
    from toolkit.errors import EXIT_BAD_INPUT, ToolkitError

    exc = excinfo.value
    assert isinstance(exc, ToolkitError) and exc.exit_code == EXIT_BAD_INPUT and exc.fix
    assert "\n" not in str(exc)
    for needle in needles:
        assert needle.lower() in str(exc).lower(), (needle, str(exc))
    return str(exc)
