"""The load benchmark's bookkeeping, without a server: what it counts as failed and wrong, the server
statistics deltas, and its option checks. (Through a real server: tests/test_serve.py.)"""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.bench.load import LoadConfig, LoadRow, _stats_delta, run_cell, run_load
from toolkit.errors import InputError

IMAGES = np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32)
REFERENCE = IMAGES.reshape(64, -1)[:, :10].copy()


class Exact:
    """Returns the reference logits for the images it is given (found by their first pixel)."""

    def __init__(self, shift: float = 0.0, fail_every: int = 0):
        self.shift, self.fail_every, self.calls = shift, fail_every, 0

    def load(self):
        return self

    def close(self):
        pass

    def run_trusted(self, batch):
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            raise RuntimeError("connection reset")
        return batch.reshape(len(batch), -1)[:, :10] + self.shift


def test_every_response_is_checked():
    ok = run_cell(LoadRow("x", "fp32", "t", Exact), IMAGES, REFERENCE, 2, (1, 8), 0.2, 0.0, 1e-4)
    assert ok.requests > 0 and ok.failed == 0 and ok.wrong == 0 and ok.images > ok.requests
    assert ok.p50_us <= ok.p99_us and ok.images_per_second > 0
    off = run_cell(LoadRow("x", "fp32", "t", lambda: Exact(shift=1e-3)), IMAGES, REFERENCE, 1, (8,), 0.1, 0.0, 1e-4)
    assert off.wrong == off.requests > 0  # within top-1 but beyond the logit tolerance
    flaky = run_cell(LoadRow("x", "fp32", "t", lambda: Exact(fail_every=3)), IMAGES, REFERENCE, 2, (4,), 0.2, 0.0, 1e-4)
    assert flaky.failed > 0 and flaky.first_error == "connection reset" and flaky.wrong == 0


def test_a_row_that_cannot_connect_fails_its_cell():
    def refuse():
        raise ConnectionRefusedError("no server")

    cell = run_cell(LoadRow("x", "fp32", "t", refuse), IMAGES, REFERENCE, 3, (1,), 0.1, 0.0, 1e-4)
    assert cell.failed == 3 and cell.requests == 0 and "no server" in cell.first_error


def test_in_process_rows_stay_at_concurrency_one():
    report = run_load([LoadRow("x", "fp32", "in-process", Exact, max_concurrency=1)], IMAGES, {("x", "fp32"): REFERENCE},
                      LoadConfig(concurrencies=(1, 4), batch_sizes=(2,), seconds=0.05, warmup_s=0.0))
    assert [(c.concurrency, c.batch_size) for c in report.cells] == [(1, 2)]


def test_statistics_deltas_from_http_and_grpc_json():
    before = {"inference_count": 10, "execution_count": 5,
              "inference_stats": {"success": {"count": 5, "ns": 0}, "queue": {"count": 5, "ns": 1000}}}
    after_grpc = {"inference_count": "110", "execution_count": "30",  # gRPC's JSON spells int64 as strings
                  "inference_stats": {"success": {"count": "105"}, "queue": {"count": "105", "ns": "201000"},
                                      "compute_infer": {"ns": "1000000"}}}
    s = _stats_delta(before, after_grpc)
    assert (s.requests, s.executions, s.inferences) == (100, 25, 100)
    assert s.images_per_execution == 4.0
    assert s.queue_us == pytest.approx(2.0) and s.compute_infer_us == pytest.approx(10.0)
    assert _stats_delta(None, after_grpc) is None


@pytest.mark.parametrize("kwargs", [dict(concurrencies=()), dict(concurrencies=(0,)), dict(batch_sizes=(1, -2)),
                                    dict(seconds=0), dict(seconds=float("nan"))])
def test_bad_options(kwargs):
    with pytest.raises(InputError):
        LoadConfig(**kwargs)
