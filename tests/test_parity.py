import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error, run_cli

from toolkit import parity
from toolkit.errors import InputError
from toolkit.stats import mcnemar_exact

CPU_BACKENDS = ["pytorch", "onnxruntime", "openvino"]


@pytest.fixture(scope="module")
def gate_report(exported_dir, checkpoint, data_dir):
    """The gate on the committed checkpoint, every CPU pair, full test set, batch 1 and 1024."""
    return parity.run_gate(checkpoint=checkpoint, artifacts_dir=exported_dir, data_dir=data_dir)


def test_gate_passes_on_committed_checkpoint(gate_report):
    by_pair = {(p.backend, p.precision): p for p in gate_report.pairs}
    assert gate_report.images == 10_000 and gate_report.batch_sizes == (1, 1024)
    assert gate_report.reference_accuracy >= 99.0
    ran = [p for p in gate_report.pairs if p.status != "skipped"]
    assert {("pytorch", "fp32"), ("onnxruntime", "fp32"), ("onnxruntime", "fp16"), ("onnxruntime", "int8")} <= set(by_pair)
    assert len(ran) >= 4
    for p in ran:
        assert p.status == "pass", (p.backend, p.precision, p.reason)
        assert p.accuracy >= 99.0
        assert [b.batch_size for b in p.batches] == [1, 1024]
        assert p.mcnemar is not None
    for p in gate_report.pairs:
        if p.status == "skipped":
            assert p.reason, "a skipped pair must say why"
    fp32 = by_pair[("onnxruntime", "fp32")]
    assert fp32.agreement == 1.0 and fp32.max_abs_logit <= 1e-4 and not fp32.flips


def test_gate_reports_written(gate_report, tmp_path):
    from toolkit.report import format_parity, write_parity_reports

    j, m = write_parity_reports(gate_report, tmp_path)
    data = json.loads(j.read_text())
    assert data["passed"] is True and len(data["pairs"]) == len(gate_report.pairs)
    assert data["pairs"][0]["batches"][0]["batch_size"] == 1
    text = m.read_text()
    assert "# Accuracy parity report" in text and "onnxruntime" in text
    assert "parity gate PASSED" in format_parity(gate_report)


def test_flips_and_mcnemar_are_consistent(gate_report):
    for p in gate_report.pairs:
        if p.status == "skipped":
            continue
        assert bool(p.flips) == (p.agreement < 1.0)
        for f in p.flips:
            assert f.prediction != f.reference_prediction and 0 <= f.index < 10_000 and 0 <= f.label <= 9
        assert p.mcnemar.discordant <= round((1 - p.agreement) * gate_report.images)


def test_wrong_signature_onnx_is_refused(tmp_path, checkpoint):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 28, 28])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])
    w = helper.make_tensor("w", TensorProto.FLOAT, [10, 3 * 28 * 28], np.zeros(10 * 3 * 28 * 28, np.float32))
    shape = helper.make_tensor("s", TensorProto.INT64, [2], [-1, 3 * 28 * 28])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "s"], ["flat"]), helper.make_node("Gemm", ["flat", "w"], ["logits"], transB=1)],
        "wrong", [x], [y], [w, shape],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "mnist_cnn.fp32.onnx")
    proc = run_cli("eval", "--backend", "onnxruntime", "--precision", "fp32", "--artifacts", tmp_path,
                   "--report-dir", tmp_path, "--checkpoint", checkpoint, "--limit", "100")
    # a file the checks refuse is bad input, refused before any work (no report written)
    assert_one_line_error(proc, "not this model's signature", code=2)
    assert not (tmp_path / "parity.json").exists()


def test_gate_fails_with_corrupted_weights(tmp_path, checkpoint, exported_dir, data_dir):
    from toolkit.export.onnx import export_onnx
    from toolkit.files.checkpoint import load_state_dict

    state = load_state_dict(checkpoint)
    g = torch.Generator().manual_seed(0)
    state["fc1.weight"] = state["fc1.weight"] + 0.5 * torch.randn(state["fc1.weight"].shape, generator=g)
    bad_ckpt = tmp_path / "bad.pt"
    torch.save(state, bad_ckpt)
    # ONNX from the corrupted weights, evaluated against the good checkpoint's reference.
    export_onnx(bad_ckpt, "fp32", tmp_path, data_dir=data_dir)
    report = parity.run_gate(checkpoint=checkpoint, artifacts_dir=tmp_path, backends=["onnxruntime"], precisions=["fp32"], data_dir=data_dir)
    (pair,) = report.pairs
    assert pair.status == "fail" and not report.passed
    assert "agreement" in pair.reason and pair.flips
    assert pair.mcnemar.p_value < 0.05  # the accuracy drop is real, not noise


def test_gate_fails_with_impossible_tolerance(exported_dir, checkpoint, data_dir):
    report = parity.run_gate(
        checkpoint=checkpoint, artifacts_dir=exported_dir, backends=["onnxruntime"], precisions=["fp16"],
        tolerances=parity.override_tolerances(max_abs_logit=0.0), data_dir=data_dir, limit=500,
    )
    assert report.pairs[0].status == "fail" and "max |dlogit|" in report.pairs[0].reason


def _numbers(report):
    return {(p.backend, p.precision): (p.status, p.accuracy, p.agreement, p.max_abs_logit, p.mean_abs_logit, [f.index for f in p.flips]) for p in report.pairs}


def test_results_do_not_depend_on_order(exported_dir, checkpoint, data_dir):
    # A benchmark-like warm run first, then the gate in two opposite orders: same numbers.
    from toolkit.backends import registry

    with registry.create_backend("onnxruntime", "int8", registry.model_path_for("onnxruntime", "int8", exported_dir)) as b:
        for _ in range(20):
            b.run(np.random.default_rng(1).random((64, 1, 28, 28), dtype=np.float32))
    kw = dict(checkpoint=checkpoint, artifacts_dir=exported_dir, data_dir=data_dir, limit=2000, precisions=["fp32", "int8"])
    forward = parity.run_gate(backends=["onnxruntime", "openvino", "pytorch"], **kw)
    backward = parity.run_gate(backends=["pytorch", "openvino", "onnxruntime"], **kw)
    assert _numbers(forward) == _numbers(backward)


def test_mcnemar_exact_known_values():
    ref = np.array([True] * 10 + [False] * 0)
    cand = np.array([False] * 10)
    r = mcnemar_exact(ref, cand)
    assert (r.reference_only_correct, r.candidate_only_correct) == (10, 0)
    assert r.p_value == pytest.approx(2 * 0.5**10)
    same = mcnemar_exact(np.array([True, False]), np.array([True, False]))
    assert same.p_value == 1.0 and same.discordant == 0
    # b=3, c=3 -> symmetric, p = 1
    a = np.array([1, 1, 1, 0, 0, 0], bool)
    assert mcnemar_exact(a, ~a).p_value == 1.0
    # b=5, c=1 -> 2 * P(X<=1 | n=6) = 2 * 7/64
    a = np.array([1] * 5 + [0], bool)
    assert mcnemar_exact(a, ~a).p_value == pytest.approx(14 / 64)


@pytest.mark.parametrize(
    "args, needle, code",
    [
        (["--backend", "tflite"], "unknown backend", 2),
        (["--precision", "fp8"], "unknown precision", 2),
        (["--batch-sizes", "0,8"], "positive", 2),
        (["--batch-sizes", "a"], "integers", 2),
        (["--checkpoint", "/nonexistent.pt"], "does not exist", 2),
        (["--min-agreement", "99.5"], "fraction", 2),
        (["--max-logit-diff", "nan"], "--max-logit-diff", 2),
        (["--min-accuracy", "150"], "percentage", 2),
        (["--threads", "0"], "--threads", 2),
    ],
)
def test_eval_bad_input(args, needle, code, tmp_path):
    proc = run_cli("eval", "--report-dir", tmp_path, *args)
    assert_one_line_error(proc, needle, code=code)


def test_eval_explicit_unavailable_backend_says_why(tmp_path):
    from toolkit.backends import registry

    st = registry.status("tensorrt")
    if st.available:
        pytest.skip("TensorRT is available here")
    proc = run_cli("eval", "--backend", "tensorrt", "--report-dir", tmp_path)
    assert_one_line_error(proc, "unavailable", code=3)


def test_eval_random_bytes_onnx_is_error_not_crash(tmp_path, checkpoint):
    (tmp_path / "mnist_cnn.fp32.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    proc = run_cli("eval", "--backend", "onnxruntime", "--precision", "fp32", "--artifacts", tmp_path,
                   "--report-dir", tmp_path, "--checkpoint", checkpoint, "--limit", "100")
    assert_one_line_error(proc, "not a valid ONNX file", str(tmp_path / "mnist_cnn.fp32.onnx"), code=2)
    assert not (tmp_path / "parity.json").exists()


def test_mcnemar_handles_thousands_of_discordant_pairs():
    ref = np.array([True] * 3000 + [False] * 1000)
    r = mcnemar_exact(ref, ~ref)
    assert r.discordant == 4000 and 0.0 <= r.p_value < 1e-100


def test_a_gate_where_nothing_ran_does_not_pass():
    report = parity.ParityReport("ref", 99.0, 10, (1,), 99.0, [parity.PairResult("tensorrt", "fp32", "skipped", "no GPU")], "c", "s")
    assert not report.passed
    ok = parity.PairResult("onnxruntime", "fp32", "pass")
    assert parity.ParityReport("ref", 99.0, 10, (1,), 99.0, [ok, report.pairs[0]], "c", "s").passed


# --- run, then compare: outputs saved on one machine, gated on another ---------------------------

def _eval_json(tmp_path, name, *args):
    reports = tmp_path / name
    proc = run_cli("eval", *args, "--report-dir", reports)
    return proc, (json.loads((reports / "parity.json").read_text()) if (reports / "parity.json").exists() else None)


def test_saved_outputs_reproduce_the_verdicts_in_another_process(tmp_path, checkpoint, exported_dir):
    common = ["--checkpoint", checkpoint, "--artifacts", exported_dir, "--backend", "onnxruntime", "--precision", "fp32,int8"]
    saved_dir = tmp_path / "outputs"
    proc, direct = _eval_json(tmp_path, "direct", *common, "--save-outputs", saved_dir)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in saved_dir.glob("*.npz")) == ["onnxruntime-fp32.npz", "onnxruntime-int8.npz"]
    proc, loaded = _eval_json(tmp_path, "loaded", "--checkpoint", checkpoint, "--load-outputs", saved_dir)
    assert proc.returncode == 0, proc.stderr
    keys = ("backend", "precision", "status", "accuracy", "delta_pp", "agreement", "max_abs_logit", "mean_abs_logit", "flips", "mcnemar")
    assert [{k: p[k] for k in keys} for p in loaded["pairs"]] == [{k: p[k] for k in keys} for p in direct["pairs"]]
    assert loaded["batch_sizes"] == direct["batch_sizes"] == [1, 1024]
    assert all("saved outputs" in p["runtime"] for p in loaded["pairs"])


def test_saved_outputs_that_were_changed_or_come_from_other_weights_are_refused(tmp_path, checkpoint, exported_dir):
    from toolkit.files import outputs as saved

    saved_dir = tmp_path / "outputs"
    proc, _ = _eval_json(tmp_path, "direct", "--checkpoint", checkpoint, "--artifacts", exported_dir,
                         "--backend", "onnxruntime", "--precision", "fp32", "--batch-sizes", "64", "--save-outputs", saved_dir)
    assert proc.returncode == 0, proc.stderr
    original = saved.load_outputs(saved_dir / "onnxruntime-fp32.npz")
    assert original.provenance["checkpoint_sha256"] and original.provenance["model_sha256"]

    # Logits edited after writing (digest no longer matches): refused, one line, exit 2.
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    logits = {bs: x.copy() for bs, x in original.logits.items()}
    logits[64][0, 0] += 1.0
    arrays = {f"logits_b{bs}": x for bs, x in logits.items()}
    arrays["provenance"] = np.array(json.dumps(original.provenance))
    np.savez(tampered / "onnxruntime-fp32.npz", **arrays)
    proc = run_cli("eval", "--checkpoint", checkpoint, "--load-outputs", tampered, "--report-dir", tmp_path / "r1")
    assert_one_line_error(proc, "differ from their recorded SHA-256", code=2)

    # Outputs captured from another checkpoint: refused before anything is judged.
    other = tmp_path / "other.pt"
    state = torch.load(checkpoint, weights_only=True)
    state["fc1.bias"] = state["fc1.bias"] + 1.0
    torch.save(state, other)
    proc = run_cli("eval", "--checkpoint", other, "--load-outputs", saved_dir, "--report-dir", tmp_path / "r2")
    assert_one_line_error(proc, "come from checkpoint", code=2)

    # A pickle inside the .npz is never loaded.
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    np.savez(pickled / "onnxruntime-fp32.npz", logits_b64=logits[64], provenance=np.array([{"format": "toolkit-outputs"}], dtype=object))
    proc = run_cli("eval", "--checkpoint", checkpoint, "--load-outputs", pickled, "--report-dir", tmp_path / "r3")
    assert_one_line_error(proc, "saved outputs", code=2)
    assert not (tmp_path / "r1" / "parity.json").exists() and not (tmp_path / "r2" / "parity.json").exists()


def test_judge_pair_is_a_pure_verdict():
    """The verdict needs no runtime: arrays and limits in, pass/fail out."""
    from toolkit.compare import Tolerance

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 500)
    ref = rng.normal(size=(500, 10)).astype(np.float32)
    ref[np.arange(500), labels] += 10.0  # the reference is right on every image
    same = parity.CapturedPair("x", "fp32", "ok", logits={1: ref.copy(), 64: ref.copy()})
    strict = Tolerance(min_agreement=1.0, max_abs_logit=1e-4)
    assert parity.judge_pair(same, ref, labels, strict, min_accuracy=99.0).status == "pass"
    worse = ref.copy()
    worse[:10] = np.roll(worse[:10], 1, axis=1)  # 10 images now predict another class
    r = parity.judge_pair(parity.CapturedPair("x", "fp32", "ok", logits={1: worse}), ref, labels, strict, min_accuracy=99.0)
    assert r.status == "fail" and "accuracy 98.00% < 99.00%" in r.reason and "agreement" in r.reason and len(r.flips) == 10
    # Below the minimum accuracy alone fails, even when every other tolerance holds.
    loose = Tolerance(min_agreement=0.0)
    r = parity.judge_pair(parity.CapturedPair("x", "int8", "ok", logits={1: worse}), ref, labels, loose, min_accuracy=99.0)
    assert r.status == "fail" and r.reason == "accuracy 98.00% < 99.00%"
    # Predictions that change with the batch size fail on their own.
    r = parity.judge_pair(parity.CapturedPair("x", "int8", "ok", logits={1: ref, 64: worse}), ref, labels, loose, min_accuracy=0.0)
    assert r.status == "fail" and r.reason == "predictions change with batch size (10 images differ)"


def _near_ties(n: int, flipped: int):
    """Reference logits right on all but `flipped` images (those have their top two classes 0.01
    apart, both wrong), and a candidate that swaps those two: agreement (n - flipped) / n, the
    same accuracy, and no logit more than 0.02 away."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, n)
    ref = rng.normal(size=(n, 10)).astype(np.float32)
    ref[np.arange(n), labels] += 10.0
    cand = ref.copy()
    for i in range(flipped):
        a, b = (labels[i] + 1) % 10, (labels[i] + 2) % 10
        ref[i, labels[i]] -= 20.0
        ref[i, a], ref[i, b] = 11.0, 10.99
        cand[i] = ref[i]
        cand[i, b] += 0.02
    return labels, ref, cand


@pytest.mark.parametrize("n, flipped, status", [(1000, 1, "pass"), (2000, 3, "fail")])
def test_fp16_top1_agreement_limit_is_99_9_percent(n, flipped, status):
    """fp16's only limit this case touches is top-1 agreement: 99.9% passes, 99.85% fails."""
    labels, ref, cand = _near_ties(n, flipped)
    tol = parity.DEFAULT_TOLERANCES["fp16"]
    r = parity.judge_pair(parity.CapturedPair("x", "fp16", "ok", logits={1: cand}), ref, labels, tol)
    assert r.status == status, r.reason
    assert r.reason == ("" if status == "pass" else "agreement 99.85% < 99.90%")
    assert r.delta_pp == 0.0 and r.max_abs_logit <= 0.02 + 1e-6


# --- saved outputs: names, signature, manifest (what the digests do not protect) ----------------

def _relabel(src: Path, dst_dir: Path, keep_signature: bool = False, **changes) -> Path:
    """A deliberate edit: provenance rewritten and every digest recomputed, as an editor would."""
    from toolkit.files import outputs as saved

    with np.load(src, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    prov = dict(json.loads(str(arrays["provenance"])), **changes)
    logits = {k: v for k, v in arrays.items() if k.startswith("logits_b")}
    prov["logits_sha256"] = {k[len("logits_b"):]: saved.logits_digest(v) for k, v in logits.items()}
    out = {**logits, "provenance": np.array(json.dumps(prov, sort_keys=True))}
    if keep_signature:
        out["signature"] = arrays["signature"]
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / saved.file_name(prov["backend"], prov["precision"])
    np.savez(dst, **out)
    return dst


@pytest.fixture(scope="module")
def signed_outputs(tmp_path_factory, checkpoint, exported_dir):
    """onnxruntime/fp32 outputs of 64 images, saved signed with a key (and a manifest), once."""
    d = tmp_path_factory.mktemp("signed")
    key = d / "key"
    key.write_bytes(bytes(range(32)))
    proc = run_cli("eval", "--checkpoint", checkpoint, "--artifacts", exported_dir, "--backend", "onnxruntime", "--precision", "fp32",
                   "--batch-sizes", "64", "--limit", "64", "--save-outputs", d / "out", "--sign-key", key, "--report-dir", d / "r")
    assert proc.returncode == 0, proc.stderr
    assert (d / "out" / "manifest.json").is_file()
    return d / "out" / "onnxruntime-fp32.npz", key


def _load(directory, checkpoint, key=None):
    from toolkit.files import outputs as saved

    return parity._loaded_pairs(directory, checkpoint, 64, 64, None, None, saved.read_key(key) if key else None)


def test_saved_outputs_naming_an_unknown_precision_or_backend_are_bad_input(signed_outputs, checkpoint, tmp_path):
    npz, _ = signed_outputs
    _relabel(npz, tmp_path / "precision", precision="fp64")
    proc = run_cli("eval", "--checkpoint", checkpoint, "--limit", "64", "--load-outputs", tmp_path / "precision", "--report-dir", tmp_path / "r")
    assert_one_line_error(proc, "unknown precision 'fp64'", code=2)
    _relabel(npz, tmp_path / "backend", backend="nosuch")
    with pytest.raises(InputError, match="unknown backend 'nosuch'"):
        _load(tmp_path / "backend", checkpoint)
    _relabel(npz, tmp_path / "pair", backend="pytorch", precision="int8")
    with pytest.raises(InputError, match="a precision pytorch does not run"):
        _load(tmp_path / "pair", checkpoint)


def test_the_tolerance_row_follows_the_backend_not_the_recorded_device(signed_outputs, checkpoint, tmp_path):
    """Claiming a GPU would loosen fp32 from 1e-4 to TF32's 0.05: the device is the backend's own."""
    npz, _ = signed_outputs
    _relabel(npz, tmp_path / "gpu", device="cuda")
    with pytest.raises(InputError, match="records device 'cuda', but onnxruntime runs on cpu"):
        _load(tmp_path / "gpu", checkpoint)
    assert _load(npz.parent, checkpoint)[0].device == "cpu"


def test_a_signing_key_authenticates_the_provenance(signed_outputs, checkpoint, tmp_path):
    npz, key = signed_outputs
    pairs = _load(npz.parent, checkpoint, key)
    assert [(p.backend, p.precision) for p in pairs] == [("onnxruntime", "fp32")] and "signature verified" in pairs[0].runtime
    # CPU logits relabelled tensorrt/int8 on cuda, digests recomputed: without a key this is taken as written ...
    forged = _relabel(npz, tmp_path / "forged", keep_signature=True, backend="tensorrt", precision="int8", device="cuda")
    assert _load(forged.parent, checkpoint)[0].backend == "tensorrt"
    # ... with the key, the old signature no longer matches: refused, one line, exit 2.
    proc = run_cli("eval", "--checkpoint", checkpoint, "--limit", "64", "--load-outputs", forged.parent, "--sign-key", key,
                   "--report-dir", tmp_path / "r1")
    assert_one_line_error(proc, "has a signature that this key did not make", code=2)
    # No signature at all, or another key: refused.
    _relabel(npz, tmp_path / "unsigned")
    with pytest.raises(InputError, match="is not signed, and a signing key was given"):
        _load(tmp_path / "unsigned", checkpoint, key)
    other = tmp_path / "other.key"
    other.write_bytes(bytes(range(1, 33)))
    with pytest.raises(InputError, match="signature that this key did not make"):
        _load(npz.parent, checkpoint, other)
    # A key too short to be one, and --sign-key with nothing to sign or check.
    short = tmp_path / "short.key"
    short.write_bytes(b"secret\n")
    with pytest.raises(InputError, match="fewer than 16"):
        _load(npz.parent, checkpoint, short)
    proc = run_cli("eval", "--checkpoint", checkpoint, "--limit", "64", "--sign-key", key, "--report-dir", tmp_path / "r2")
    assert_one_line_error(proc, "--sign-key", "--save-outputs", code=2)


def test_saved_outputs_are_checked_against_the_directory_manifest(signed_outputs, checkpoint, tmp_path):
    npz, _ = signed_outputs
    d = tmp_path / "copy"
    shutil.copytree(npz.parent, d)
    _relabel(d / npz.name, d)  # rewritten in place, digests recomputed, manifest left as it was
    with pytest.raises(InputError, match="differ from their entry in"):
        _load(d, checkpoint)
    (d / "manifest.json").write_text(json.dumps({"version": 1, "artifacts": {}}))
    with pytest.raises(InputError, match="is not listed in"):
        _load(d, checkpoint)
    (d / "manifest.json").unlink()  # no manifest: nothing to check against
    assert _load(d, checkpoint)[0].backend == "onnxruntime"


def test_saved_outputs_round_trip_in_process_signed_and_not(tmp_path):
    """save_outputs -> load_outputs keeps every array bit for bit and the provenance; a signature
    is written only with a key and checked only with one."""
    from toolkit.files import outputs as saved

    rng = np.random.default_rng(3)
    logits = {1: rng.normal(size=(20, 10)).astype(np.float32), 64: rng.normal(size=(20, 10)).astype(np.float32)}
    key = bytes(range(16))
    (tmp_path / "signed").mkdir()
    (tmp_path / "unsigned").mkdir()
    out = saved.SavedOutputs("openvino", "int8", logits, {"checkpoint_sha256": "c" * 64, "device": "cpu"})
    path = saved.save_outputs(tmp_path / "signed", out, key=key)
    assert path == tmp_path / "signed" / "openvino-int8.npz" and (tmp_path / "signed" / "manifest.json").is_file()
    saved.check_manifest(path)
    for with_key in (key, None):
        back = saved.load_outputs(path, with_key)
        assert (back.backend, back.precision) == ("openvino", "int8") and back.provenance["device"] == "cpu"
        assert sorted(back.logits) == [1, 64] and all(np.array_equal(back.logits[b], logits[b]) for b in logits)
        assert back.provenance["logits_sha256"] == {str(b): saved.logits_digest(x) for b, x in logits.items()}
    with np.load(path, allow_pickle=False) as npz:
        assert str(npz["signature"]) == saved.sign(str(npz["provenance"]), key)
    unsigned = saved.save_outputs(tmp_path / "unsigned", out)
    with np.load(unsigned, allow_pickle=False) as npz:
        assert "signature" not in npz.files
    with pytest.raises(InputError, match="is not signed"):
        saved.load_outputs(unsigned, key)
    with pytest.raises(InputError, match="this key did not make"):
        saved.load_outputs(path, bytes(range(1, 17)))
