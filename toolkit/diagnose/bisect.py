"""The smallest set of nodes to keep in fp32 so that a re-export passes the full parity gate.

The search (what Polygraphy's `debug precision` does by bisecting layers in order, here over the
diagnosis's ranking): nodes are ranked worst first by the diagnosis (own SQNR, then total); a
binary search finds the shortest prefix of that ranking whose re-export passes; then each node of
that prefix is dropped in turn when the re-export still passes without it. The result is
1-minimal (no single node can be removed), not necessarily the global minimum (that needs every
subset: 2^n re-exports). Every trial is a real re-export run through the gate on all test images.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Trial:
    kept_fp32: list[str]  # nodes left in fp32 for this re-export
    passed: bool
    reason: str  # the gate's broken limits, or the re-export's error
    accuracy: float | None = None
    agreement: float | None = None
    max_abs_logit: float | None = None
    seconds: float = 0.0


@dataclass
class Speed:
    """Median latency at batch 1 and throughput at batch 256 (short timing: indicative only)."""

    batch1_p50_us: float | None = None
    batch256_images_per_s: float | None = None


@dataclass
class BisectResult:
    candidates: list[str]  # nodes searched, ranked worst first
    kept_fp32: list[str] | None  # the set found; None when even all of them does not pass
    passed: bool
    message: str
    trials: list[Trial] = field(default_factory=list)
    original: Trial | None = None  # the file under diagnosis through the same gate
    original_speed: Speed | None = None
    fixed_speed: Speed | None = None
    written: str | None = None  # path of the re-export, when asked to write it


def rank_nodes(tensors, candidates: list[str], min_sqnr_db: float) -> list[str]:
    """`candidates` ordered most suspect first: nodes producing a tensor below the threshold, in
    graph order (the first of them is the verdict); then the others by the lowest own SQNR among
    the tensors they produce (total SQNR where no own split exists); nodes without a measured
    tensor last, in graph order. The graph input's quantization is charged to the first node."""
    score: dict[str, float] = {}
    below: set[str] = set()
    for t in tensors:
        node = t.node or (candidates[0] if candidates and t.op_type == "Input" else None)
        if node not in candidates:
            continue
        if t.sqnr_db is not None and t.sqnr_db < min_sqnr_db:
            below.add(node)
        value = t.own_sqnr_db if t.own_sqnr_db is not None else t.sqnr_db
        if value is not None:
            score[node] = min(score.get(node, math.inf), value)
    order = {name: i for i, name in enumerate(candidates)}
    return sorted(candidates, key=lambda n: (n not in below, order[n] if n in below else score.get(n, math.inf), order[n]))


def search(ranked: list[str], evaluate: Callable[[list[str]], Trial]) -> BisectResult:
    """Prefix binary search over `ranked`, then drop nodes one at a time (see module docstring)."""
    cache: dict[frozenset, Trial] = {}
    trials: list[Trial] = []

    def run(kept: list[str]) -> Trial:
        key = frozenset(kept)
        if key not in cache:
            t0 = time.perf_counter()
            trial = evaluate(list(kept))
            trial.seconds = time.perf_counter() - t0
            cache[key] = trial
            trials.append(trial)
        return cache[key]

    everything = run(ranked)
    if not everything.passed:
        return BisectResult(ranked, None, False,
                            f"even with all {len(ranked)} candidate nodes in fp32 the re-export fails the gate "
                            f"({everything.reason}): the loss is not in these nodes' precision", trials)
    if run([]).passed:
        return BisectResult(ranked, [], True, "the re-export passes the gate with no node kept in fp32", trials)
    lo, hi = 1, len(ranked)  # run(ranked[:hi]) passes; find the smallest such prefix
    while lo < hi:
        mid = (lo + hi) // 2
        if run(ranked[:mid]).passed:
            hi = mid
        else:
            lo = mid + 1
    kept = ranked[:hi]
    for node in list(reversed(kept)):
        if len(kept) > 1:
            without = [n for n in kept if n != node]
            if run(without).passed:
                kept = without
    return BisectResult(ranked, kept, True,
                        f"{len(kept)} node{'s' if len(kept) != 1 else ''} in fp32 pass the gate: {', '.join(kept)} "
                        f"({len(trials)} re-exports)", trials)
