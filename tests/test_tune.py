"""The configuration search (toolkit.bench.tune) and tuned.json (toolkit.bench.tuned): the search
logic on controlled fake calls, the parity refusal, the file's round trip and refusals, and the
tuned rows of `toolkit bench --config`. No assertion is about how fast anything is."""

import json
import time

import numpy as np
import pytest
from helpers import assert_one_line_error, run_cli

from toolkit import bench
from toolkit.backends import registry
from toolkit.bench import tune
from toolkit.bench.tuned import (
    TUNED_SCHEMA,
    TunedEntry,
    TunedFile,
    load_tuned,
    tuned_from_dict,
    tuned_to_dict,
)
from toolkit.errors import InputError
from toolkit.files.store import json_text

FAST, SLOW = 0.0004, 0.003  # seconds per fake call: 7x apart, far beyond any scheduling noise


def _config():
    return bench.BenchConfig(batch_sizes=(1,), warmup=bench.Warmup(count=1), iterations=20, min_seconds=0.05,
                             torch_compile=False, direct=False)


def _opener(opened):
    """open_call for a fake backend whose `delay` option is how long each call sleeps."""
    def open_call(options):
        opened.append(dict(options))
        delay = options["delay"]
        return (lambda batch: time.sleep(delay)), (lambda: None)
    return open_call


def test_search_picks_the_really_faster_setting():
    opened = []
    result = tune.search([("delay", (SLOW, FAST))], {"delay": SLOW}, _opener(opened), np.zeros(1), _config())
    assert result.options == {"delay": FAST}
    (trial,) = result.trials
    assert trial.verdict == "faster" and trial.ci_high < 1 and trial.ratio < 1
    # The gain is re-measured against the defaults in a fresh paired run, and its interval is above 1.
    assert result.speedup > 1 and result.ci_low > 1
    assert result.default_median_us > result.tuned_median_us


def test_search_keeps_the_default_when_nothing_is_faster():
    result = tune.search([("delay", (FAST, SLOW))], {"delay": FAST}, _opener([]), np.zeros(1), _config())
    assert result.options == {"delay": FAST}
    assert [t.verdict for t in result.trials] == ["not faster"]
    assert result.speedup is None


def test_search_refuses_a_faster_setting_that_fails_parity():
    asked = []

    def gate(options):
        asked.append(options)
        return options["delay"] != FAST, "agreement 97.0% < 99.5%"

    result = tune.search([("delay", (SLOW, FAST))], {"delay": SLOW}, _opener([]), np.zeros(1), _config(), gate=gate)
    assert result.options == {"delay": SLOW}
    (trial,) = result.trials
    assert trial.verdict == "refused: parity" and "agreement" in trial.message
    assert asked == [{"delay": FAST}]  # the gate is asked only about the speed winner


def test_a_winner_the_confirmation_does_not_confirm_is_dropped():
    # The candidate is fast while it is searched, slow once the gate has passed it (as a lucky
    # draw on a busy machine would be): the fresh measurement against the defaults catches it.
    phase = {"confirm": False}

    def open_call(options):
        def call(batch):
            time.sleep(SLOW * 2 if phase["confirm"] and options["delay"] == FAST else options["delay"])
        return call, (lambda: None)

    def gate(options):
        phase["confirm"] = True
        return True, ""

    result = tune.search([("delay", (SLOW, FAST))], {"delay": SLOW}, open_call, np.zeros(1), _config(), gate=gate)
    assert result.trials[0].verdict == "faster"
    assert result.options == {"delay": SLOW} and result.confirmed is False
    assert result.speedup < 1 and "not confirmed" in result.note


def test_search_is_coordinate_descent_from_the_best_so_far():
    # Two settings; the second is tried on top of the first's winner.
    def open_call(options):
        delay = options["delay"] * options["scale"]
        return (lambda batch: time.sleep(delay)), (lambda: None)

    result = tune.search([("delay", (SLOW, FAST)), ("scale", (1, 0.25))], {"delay": SLOW, "scale": 1}, open_call, np.zeros(1), _config(),
                         min_gain=0.0)
    assert result.options == {"delay": FAST, "scale": 0.25}
    assert result.trials[1].options == {"delay": FAST, "scale": 0.25}


def test_search_lists_what_the_budget_left_untried():
    result = tune.search([("delay", (SLOW, FAST))], {"delay": SLOW}, _opener([]), np.zeros(1), _config(),
                         deadline=time.monotonic() - 1)
    assert result.options == {"delay": SLOW} and not result.trials
    assert result.untried == [f"delay={FAST} (budget)"]


def test_a_setting_the_runtime_rejects_is_one_failed_trial():
    def open_call(options):
        if options["delay"] == FAST:
            raise RuntimeError("NUM_STREAMS: unsupported")
        return (lambda batch: time.sleep(options["delay"])), (lambda: None)

    result = tune.search([("delay", (SLOW, FAST))], {"delay": SLOW}, open_call, np.zeros(1), _config())
    assert result.options == {"delay": SLOW}
    assert result.trials[0].verdict == "failed" and "NUM_STREAMS" in result.trials[0].message


def test_search_space_comes_from_the_backends():
    knobs, defaults = tune.search_space("onnxruntime", "int8-cpu", 2)
    assert dict(knobs)["threads"] == (2, 1) and defaults["threads"] == 2
    assert dict(knobs)["spinning"] == (True, False) and defaults["spinning"] is True
    knobs, defaults = tune.search_space("openvino", "int8", 2)
    assert dict(knobs)["inference_precision"] == ("f32",)  # bf16 only where the file computes in floats
    knobs, _ = tune.search_space("openvino", "fp32", 2)
    assert "bf16" in dict(knobs)["inference_precision"]
    assert registry.compute_precision("openvino", "fp32", {"inference_precision": "bf16"}) == "bf16"
    assert registry.compute_precision("onnxruntime", "fp32", {"spinning": False}) == ""


def test_create_backend_refuses_options_it_does_not_know():
    with pytest.raises(InputError, match="no option 'spin'"):
        registry.create_backend("onnxruntime", "fp32", threads=1, spin=False)
    with pytest.raises(InputError, match="not one of"):
        registry.create_backend("onnxruntime", "fp32", graph_optimization="maximal")
    with pytest.raises(InputError, match="not one of"):
        registry.create_backend("onnxruntime", "fp32", spinning=1)  # a bool option takes a bool


# --- the real gate behind the search -------------------------------------------------------------

def test_gate_passes_real_settings_and_refuses_when_the_logits_disagree(exported_dir, checkpoint, test_images):
    from toolkit import parity

    images, labels = test_images[0][:500], test_images[1][:500]
    planned = registry.PlannedPair("onnxruntime", "fp32", exported_dir / "mnist_cnn.fp32.onnx", True, "")
    reference = parity.reference_logits(checkpoint, images)
    ctx = tune._GateContext(images, labels, reference)
    passed, _ = tune._gate_for(planned, ctx)({"threads": 1, "spinning": False})
    assert passed
    verdict = ctx.verdicts[tune._key({"threads": 1, "spinning": False})]
    assert verdict["status"] == "pass" and verdict["tolerance"] == "fp32" and verdict["max_abs_logit"] <= 1e-4
    shifted = tune._GateContext(images, labels, reference + 1e-3)  # beyond fp32's 1e-4
    passed, why = tune._gate_for(planned, shifted)({"threads": 1, "spinning": False})
    assert not passed and "logit" in why


@pytest.mark.skipif(not registry.status("openvino").available, reason="OpenVINO is not installed")
def test_gate_judges_openvino_bf16_under_the_fp16_tolerances(exported_dir, checkpoint, test_images):
    from toolkit import parity

    images, labels = test_images[0][:500], test_images[1][:500]
    planned = registry.PlannedPair("openvino", "fp32", exported_dir / "mnist_cnn.fp32.onnx", True, "")
    ctx = tune._GateContext(images, labels, parity.reference_logits(checkpoint, images))
    tune._gate_for(planned, ctx)({"threads": 1, "inference_precision": "bf16"})
    tune._gate_for(planned, ctx)({"threads": 1, "inference_precision": "f32"})
    assert ctx.verdicts[tune._key({"threads": 1, "inference_precision": "bf16"})]["tolerance"] == "fp16"
    assert ctx.verdicts[tune._key({"threads": 1, "inference_precision": "f32"})]["tolerance"] == "fp32"


# --- tuned.json -------------------------------------------------------------------------------------

def _tuned(**entry_changes):
    entry = dict(backend="onnxruntime", precision="fp32", batch_size=1, options={"threads": 1, "spinning": False},
                 default_options={"threads": 2, "spinning": True}, speedup=1.2, ci_low=1.1, ci_high=1.3,
                 default_median_us=50.0, tuned_median_us=41.7, parity={"status": "pass"})
    entry.update(entry_changes)
    big = dict(entry, batch_size=256, options={"threads": 2, "spinning": False})
    return TunedFile(environment={"cpu_model": "x"}, settings={"budget_s": 1}, entries=[TunedEntry(**entry), TunedEntry(**big)])


def test_tuned_file_round_trips(tmp_path):
    tuned = _tuned()
    path = tmp_path / "tuned.json"
    path.write_text(json_text(tuned_to_dict(tuned)))
    back = load_tuned(path)
    assert back.entries == tuned.entries and back.environment == tuned.environment
    assert back.options_for("onnxruntime", "fp32", 1) == {"threads": 1, "spinning": False}
    assert back.options_for("onnxruntime", "fp32", 128) == {"threads": 2, "spinning": False}  # nearest tuned batch size
    assert back.options_for("openvino", "fp32", 1) == {}
    backend = registry.create_backend("onnxruntime", "fp32", tmp_path / "unused.onnx", **back.options_for("onnxruntime", "fp32", 1))
    assert backend.threads == 1 and backend.options == {"spinning": False}


@pytest.mark.parametrize("text, needle", [
    ("not json", "not readable JSON"),
    ("[]", "not a toolkit tuned-settings file"),
    (json.dumps({"schema": "toolkit-bench", "schema_version": 1}), "not a toolkit tuned-settings file"),
    (json.dumps({"schema": TUNED_SCHEMA, "schema_version": 7, "entries": []}), "schema version 7"),
    (json.dumps({"schema": TUNED_SCHEMA, "schema_version": 1}), "no list"),
    (json.dumps({"schema": TUNED_SCHEMA, "schema_version": 1, "entries": [{"backend": "onnxruntime"}]}), "lacks a field"),
])
def test_bad_tuned_files_are_refused(tmp_path, text, needle):
    path = tmp_path / "tuned.json"
    path.write_text(text)
    with pytest.raises(InputError, match=needle):
        load_tuned(path)


@pytest.mark.parametrize("changes, needle", [
    ({"backend": "onnxruntim"}, "unknown backend"),
    ({"precision": "int4"}, "unknown precision"),
    ({"batch_size": 0}, "batch_size"),
    ({"options": {"threads": 0}}, "threads"),
    ({"options": {"graph_optimization": "max"}}, "not one of"),
    ({"options": {"hint": "LATENCY"}}, "no option 'hint'"),
    ({"backend": "pytorch", "options": {"compile": "turbo"}}, "not one of"),
])
def test_tuned_entries_with_bad_settings_are_refused(changes, needle):
    data = tuned_to_dict(_tuned(**changes))
    with pytest.raises(InputError, match=needle):
        tuned_from_dict(data, "t.json")


def test_a_bad_tuned_file_is_a_one_line_error(tmp_path):
    bad = tmp_path / "tuned.json"
    bad.write_text(json.dumps({"schema": TUNED_SCHEMA, "schema_version": 1, "entries": [{"backend": "onnxruntime", "precision": "fp32",
                   "batch_size": 1, "options": {"spinning": "yes"}, "default_options": {}}]}))
    proc = run_cli("bench", "--config", bad, "--out", tmp_path / "out")
    assert_one_line_error(proc, "spinning", code=2)
    assert not (tmp_path / "out" / "bench.json").exists()
    proc = run_cli("bench", "--config", tmp_path / "missing.json", "--out", tmp_path / "out")
    assert_one_line_error(proc, "does not exist", code=2)
    proc = run_cli("bench", "--budget", "5", "--baseline", tmp_path / "b.json", "--out", tmp_path / "out")  # --budget implies --tune
    assert_one_line_error(proc, "--tune takes no --baseline", code=2)
    proc = run_cli("bench", "--tune", "--budget", "-1", "--out", tmp_path / "out")
    assert_one_line_error(proc, "--budget", code=2)


def test_config_adds_tuned_rows_and_their_gain(exported_dir, checkpoint, data_dir):
    tuned = _tuned()
    config = bench.BenchConfig(batch_sizes=(1,), warmup=bench.Warmup(count=2), iterations=20, min_seconds=0.02, torch_compile=False,
                               direct=False, peak=False, profile=False, tuned=tuned)
    report = bench.run_bench(config, ["onnxruntime"], ["fp32"], checkpoint=checkpoint, artifacts_dir=exported_dir, data_dir=data_dir)
    assert {(c.variant, c.batch_size, c.status) for c in report.cells} == {("", 1, "ok"), ("tuned", 1, "ok")}
    cell = report.cell("onnxruntime", "fp32", "tuned", 1)
    assert cell.options == {"threads": 1, "spinning": False}
    info = next(p for p in report.pairs if p.variant == "tuned")
    assert info.threads == 1 and info.settings["spinning"] is False
    summary = bench.summarize(report)
    (gain,) = summary.tuned
    default = report.cell("onnxruntime", "fp32", "", 1)
    assert gain.speedup == pytest.approx(default.latency.median_us / cell.latency.median_us)
    assert gain.ci_low <= gain.speedup <= gain.ci_high
