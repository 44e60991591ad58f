"""The gate's verdict on logits, without a runtime: toolkit.compare and parity.judge_pair.

Each test builds reference and candidate logits whose accuracy, agreement, logit difference and
batch-size behaviour are known by construction, and checks that the verdict passes exactly when
every limit holds, at the limit included, and names the limit it breaks otherwise. These are the
fast tests `make mutate` runs against the gate (see docs/mutation.md).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import logits_for, with_wrong_labels

from toolkit.compare import Tolerance, compare_logits, predictions_changed, tolerance_breaches
from toolkit.errors import InputError
from toolkit.parity import DEFAULT_TOLERANCES, CapturedPair, judge_pair, override_tolerances, tolerance_key

N = 1000
NO_LIMITS = Tolerance(min_agreement=0.0)


def captured(*logits_by_batch: np.ndarray, batch_sizes=(1, 1024)) -> CapturedPair:
    return CapturedPair("onnxruntime", "fp32", "ok", device="cpu",
                        logits=dict(zip(batch_sizes, logits_by_batch, strict=True)),
                        seconds=dict.fromkeys(batch_sizes, 0.5))


# --- minimum accuracy -------------------------------------------------------------------------

@pytest.mark.parametrize("wrong, min_accuracy, passes", [
    (10, 99.0, True),    # 99.0% at a 99.0% limit: the limit itself passes
    (11, 99.0, False),   # 98.9%
    (11, 98.9, True),
    (0, 100.0, True),
    (1, 100.0, False),
])
def test_min_accuracy_is_checked_at_its_limit(wrong, min_accuracy, passes):
    ref = logits_for(N, seed=1)
    labels = with_wrong_labels(ref, wrong)
    # The candidate equals the reference: agreement 100%, no logit difference, no accuracy drop.
    # Only the minimum accuracy can fail it.
    result = judge_pair(captured(ref, ref.copy()), ref, labels, DEFAULT_TOLERANCES["fp32"], min_accuracy=min_accuracy)
    assert result.accuracy == pytest.approx(100.0 * (N - wrong) / N)
    assert result.status == ("pass" if passes else "fail"), result.reason
    assert ("accuracy" in result.reason) == (not passes)
    assert result.agreement == 1.0 and result.max_abs_logit == 0.0


def test_min_accuracy_reads_the_worst_batch_size():
    ref = logits_for(N, seed=2)
    labels = with_wrong_labels(ref, 5)  # reference: 99.5%
    worse = ref.copy()
    worse[np.flatnonzero(worse.argmax(1) == labels)[:10]] *= -1  # 10 more wrong at the second batch size only
    result = judge_pair(captured(ref.copy(), worse), ref, labels, NO_LIMITS, min_accuracy=99.0)
    assert result.accuracy == pytest.approx(98.5)
    assert result.status == "fail" and "accuracy 98.50% < 99.00%" in result.reason


def test_tolerance_breaches_min_accuracy_only_when_labels_given():
    ref = logits_for(200, seed=3)
    labels = with_wrong_labels(ref, 100)  # 50% accurate
    assert tolerance_breaches(compare_logits(ref, ref, labels), NO_LIMITS, min_accuracy=99.0) == ["accuracy 50.00% < 99.00%"]
    assert tolerance_breaches(compare_logits(ref, ref, labels), NO_LIMITS, min_accuracy=None) == []
    assert tolerance_breaches(compare_logits(ref, ref), NO_LIMITS, min_accuracy=99.0) == []


# --- predictions that change with the batch size ----------------------------------------------

def test_predictions_that_change_with_batch_size_fail_a_pair_within_every_other_limit():
    ref = logits_for(N, seed=4)
    labels = ref.argmax(1)
    moved = ref.copy()
    flip = [3, 500]
    moved[flip] = np.roll(moved[flip], 1, axis=1)  # two images predicted differently at batch 1024
    tol = DEFAULT_TOLERANCES["int8"]  # agreement >= 99.5% and a 0.3 pp drop: two flips of 1000 keep both
    result = judge_pair(captured(ref.copy(), moved), ref, labels, tol, min_accuracy=0.0)
    assert result.agreement == pytest.approx(0.998)
    assert result.status == "fail"
    assert result.reason == "predictions change with batch size (2 images differ)"
    assert sorted({(f.index, f.batch_size) for f in result.flips}) == [(3, 1024), (500, 1024)]
    same = judge_pair(captured(moved.copy(), moved), ref, labels, tol, min_accuracy=0.0)
    assert same.status == "pass", same.reason


def test_predictions_changed_counts_every_batch_size_against_the_first():
    a = logits_for(50, seed=5)
    b = a.copy()
    b[[1, 2, 3]] = np.roll(b[[1, 2, 3]], 2, axis=1)
    c = a.copy()
    c[[7]] = np.roll(c[[7]], 1, axis=1)
    assert predictions_changed([a]) == 0
    assert predictions_changed([a, a.copy(), a + 1e-3]) == 0  # logit noise that keeps the argmax is no change
    assert predictions_changed([a, b]) == 3
    assert predictions_changed([a, a.copy(), b]) == 3  # only the third batch size differs
    assert predictions_changed([a, b, c]) == 4


# --- logit differences, agreement, accuracy drop ----------------------------------------------

@pytest.mark.parametrize("shift, passes", [(0.0, True), (5e-5, True), (2e-4, False), (1e-3, False)])
def test_fp32_max_logit_difference(shift, passes):
    ref = logits_for(N, seed=6)
    labels = ref.argmax(1)
    result = judge_pair(captured(ref + shift, ref + shift), ref, labels, DEFAULT_TOLERANCES["fp32"])
    assert result.max_abs_logit == pytest.approx(shift, abs=1e-6)
    assert result.status == ("pass" if passes else "fail"), result.reason
    assert ("max |dlogit|" in result.reason) == (not passes)


def test_nan_or_inf_logits_break_a_logit_limit():
    ref = logits_for(20, seed=7)
    for bad in (np.nan, np.inf):
        cand = ref.copy()
        cand[4, 2] = bad
        cmp = compare_logits(ref, cand)
        assert cmp.max_abs_logit == float("inf") and cmp.mean_abs_logit == float("inf")
        assert any("max |dlogit|" in b for b in tolerance_breaches(cmp, Tolerance(min_agreement=0.0, max_abs_logit=1e3)))


@pytest.mark.parametrize("disagree, passes", [(1, True), (2, False)])
def test_agreement_limit_is_inclusive(disagree, passes):
    ref = logits_for(N, seed=8)
    cand = ref.copy()
    cand[:disagree] = np.roll(cand[:disagree], 1, axis=1)
    breaches = tolerance_breaches(compare_logits(ref, cand), Tolerance(min_agreement=0.999))
    assert (breaches == []) == passes, breaches


@pytest.mark.parametrize("drop, passes", [(3, True), (4, False)])
def test_int8_accuracy_drop_limit(drop, passes):
    ref = logits_for(N, seed=9)
    labels = ref.argmax(1)  # the reference is 100% right
    cand = ref.copy()
    cand[:drop] = np.roll(cand[:drop], 1, axis=1)  # `drop` images now wrong: -0.1 pp each
    result = judge_pair(captured(cand, cand.copy()), ref, labels, DEFAULT_TOLERANCES["int8"], min_accuracy=0.0)
    assert result.delta_pp == pytest.approx(-drop / 10)
    assert result.status == ("pass" if passes else "fail"), result.reason
    assert ("accuracy drop" in result.reason) == (not passes)


def test_an_accuracy_gain_is_not_a_drop():
    ref = logits_for(N, seed=10)
    labels = with_wrong_labels(ref, 20)
    better = ref.copy()
    wrong = np.flatnonzero(ref.argmax(1) != labels)
    better[wrong, labels[wrong]] = 100.0  # the candidate fixes the reference's mistakes
    result = judge_pair(captured(better, better.copy()), ref, labels, Tolerance(min_agreement=0.9, max_accuracy_drop_pp=0.0), min_accuracy=0.0)
    assert result.delta_pp == pytest.approx(2.0)
    assert result.status == "pass", result.reason


def test_compare_logits_measures_what_it_says():
    ref = np.array([[0.0, 1.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    cand = np.array([[0.0, 1.5, 0.0], [0.0, 2.5, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    labels = np.array([1, 1, 2, 2])
    cmp = compare_logits(ref, cand, labels)
    assert cmp.images == 4
    assert cmp.agreement == 0.75
    assert cmp.max_abs_logit == 2.5
    assert cmp.mean_abs_logit == pytest.approx((0.5 + 2.0 + 2.5) / 12)
    assert cmp.accuracy == 75.0 and cmp.reference_accuracy == 50.0 and cmp.delta_pp == 25.0
    assert cmp.flipped.tolist() == [1]
    with pytest.raises(ValueError):
        compare_logits(ref, cand[:3])


def test_gpu_fp32_is_judged_by_the_tf32_row():
    assert tolerance_key("fp32", "cuda") == "fp32-tf32"
    assert tolerance_key("fp32", "cpu") == "fp32"
    assert tolerance_key("fp16", "cuda") == "fp16"
    strict, tf32 = DEFAULT_TOLERANCES["fp32"], DEFAULT_TOLERANCES["fp32-tf32"]
    assert strict.min_agreement == 1.0 and strict.max_abs_logit == 1e-4
    assert tf32.max_abs_logit > strict.max_abs_logit


def test_a_pair_that_did_not_run_keeps_its_status_and_reason():
    ref = logits_for(10, seed=11)
    for status in ("error", "skipped"):
        pair = CapturedPair("openvino", "int8", status, reason="why", device="cpu")
        result = judge_pair(pair, ref, ref.argmax(1), DEFAULT_TOLERANCES["int8"])
        assert (result.status, result.reason, result.accuracy) == (status, "why", None)


def test_the_verdict_carries_the_capture_and_the_per_batch_details():
    ref = logits_for(N, seed=12)
    labels = with_wrong_labels(ref, 30)
    at_1, at_64 = ref.copy(), ref.copy()
    at_1[100:104] = np.roll(at_1[100:104], 1, axis=1)  # 4 flips at batch 1
    at_64[200:206] = np.roll(at_64[200:206], 1, axis=1)  # 6 other flips at batch 64: the worse one
    at_64[300] += 0.25
    pair = CapturedPair("openvino", "fp16", "ok", device="cpu", model_path="/m/mnist_cnn.fp16.onnx",
                        runtime="openvino 2030.1", logits={1: at_1, 64: at_64}, seconds={1: 2.0, 64: 0.5})
    tol = DEFAULT_TOLERANCES["fp16"]
    result = judge_pair(pair, ref, labels, tol, min_accuracy=0.0, max_flips=7)
    assert (result.backend, result.precision, result.device, result.model_path, result.runtime) == \
        ("openvino", "fp16", "cpu", "/m/mnist_cnn.fp16.onnx", "openvino 2030.1")
    assert result.tolerance == tol and result.seconds == 2.5
    assert [(b.batch_size, b.seconds) for b in result.batches] == [(1, 2.0), (64, 0.5)]
    assert [b.accuracy for b in result.batches] == pytest.approx([96.6, 96.4])  # 970 right, minus the flips
    assert result.accuracy == pytest.approx(96.4) and result.delta_pp == pytest.approx(-0.6)
    assert result.agreement == pytest.approx(0.994)  # the worst batch size's
    assert result.max_abs_logit == pytest.approx(max(np.abs(at_1 - ref).max(), np.abs(at_64 - ref).max()))
    assert result.mean_abs_logit == max(b.mean_abs_logit for b in result.batches) > 0
    # flips: every flipped image with its label and both predictions, capped at max_flips over all batch sizes
    assert len(result.flips) == 7
    assert [(f.index, f.batch_size) for f in result.flips] == [(i, 1) for i in range(100, 104)] + [(i, 64) for i in range(200, 203)]
    for f in result.flips:
        assert (f.label, f.reference_prediction) == (labels[f.index], ref[f.index].argmax())
        assert f.prediction == pair.logits[f.batch_size][f.index].argmax() != f.reference_prediction
    # McNemar on the worst batch size: 6 images only the reference got right (none of the flips were wrong before)
    assert (result.mcnemar.reference_only_correct, result.mcnemar.candidate_only_correct) == (6, 0)
    assert judge_pair(pair, ref, labels, tol, min_accuracy=0.0, max_flips=3).flips[-1].index == 102


def test_limits_are_inclusive_at_exactly_the_measured_value():
    ref = logits_for(N, seed=13)
    labels = ref.argmax(1)
    cand = ref.copy()
    cand[:4] = np.roll(cand[:4], 1, axis=1)
    cmp = compare_logits(ref, cand + 0.01, labels)
    drop = -cmp.delta_pp
    at_limit = Tolerance(min_agreement=cmp.agreement, max_abs_logit=cmp.max_abs_logit, max_accuracy_drop_pp=drop)
    assert tolerance_breaches(cmp, at_limit, min_accuracy=cmp.accuracy) == []
    below = float(np.nextafter(drop, 0.0))
    assert tolerance_breaches(cmp, Tolerance(min_agreement=0.0, max_accuracy_drop_pp=below)) == [f"accuracy drop {drop:.2f} pp > {below:g} pp"]
    assert drop == pytest.approx(0.4)


def test_an_empty_comparison_measures_nothing_and_breaks_nothing():
    empty = np.zeros((0, 10), dtype=np.float32)
    cmp = compare_logits(empty, empty)
    assert (cmp.images, cmp.agreement, cmp.max_abs_logit, cmp.mean_abs_logit) == (0, 1.0, 0.0, 0.0)
    assert tolerance_breaches(cmp, DEFAULT_TOLERANCES["fp32"]) == []


def _flip(logits: np.ndarray, index: int) -> None:
    """Make image `index` predict its second-best class, changing only its top logit."""
    row = logits[index]
    top, second = np.argsort(row)[-1], np.argsort(row)[-2]
    row[top] = row[second] - 0.01


def test_agreement_and_logit_limits_read_every_batch_size_not_only_the_least_accurate():
    ref = logits_for(N, seed=14)
    labels = with_wrong_labels(ref, 20)
    # batch 1: fixes 8 of the reference's mistakes (more accurate, agreement 99.2%) and moves one
    # image's logits by 5 without changing its prediction
    at_1 = ref.copy()
    at_1[:8, :] = -5.0
    at_1[np.arange(8), labels[:8]] = 5.0
    at_1[500] += 5.0
    # batch 1024: one correct image now wrong: the least accurate, agreement 99.9%, small differences
    at_1024 = ref.copy()
    _flip(at_1024, 600)
    result = judge_pair(captured(at_1, at_1024), ref, labels,
                        Tolerance(min_agreement=0.995, max_abs_logit=3.0), min_accuracy=0.0)
    assert result.accuracy == pytest.approx(97.9)  # batch 1024's
    assert "agreement 99.20% < 99.50%" in result.reason
    assert "max |dlogit|" in result.reason and result.max_abs_logit >= 5.0


def test_cli_overrides_replace_one_field_in_every_row():
    out = override_tolerances(max_abs_logit=0.5)
    assert set(out) == set(DEFAULT_TOLERANCES)
    for key, tol in out.items():
        assert tol.max_abs_logit == 0.5
        assert (tol.min_agreement, tol.max_accuracy_drop_pp) == (DEFAULT_TOLERANCES[key].min_agreement, DEFAULT_TOLERANCES[key].max_accuracy_drop_pp)
    out = override_tolerances(min_agreement=0.9)
    assert all(t.min_agreement == 0.9 and t.max_abs_logit == DEFAULT_TOLERANCES[k].max_abs_logit for k, t in out.items())
    assert override_tolerances() == DEFAULT_TOLERANCES
    assert override_tolerances(min_agreement=0.0)["fp32"].min_agreement == 0.0  # both ends of [0, 1] are allowed
    assert override_tolerances(max_abs_logit=0.0, min_agreement=1.0)["int8"] == Tolerance(1.0, 0.0, 0.3)
    for bad in (dict(max_abs_logit=-1e-9), dict(max_abs_logit=float("nan")), dict(min_agreement=1.01), dict(min_agreement=-0.1)):
        with pytest.raises(InputError):
            override_tolerances(**bad)
