"""Helpers shared by test modules (imported as `from helpers import ...`; pytest puts tests/ on
sys.path). Fixtures stay in conftest.py; plain functions live here so tests import them by name."""

from __future__ import annotations

import numpy as np

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
