"""Another model than the built-in CNN, end to end: an ONNX file from elsewhere (static batch 1, opset
11, tensor names with '/' and ':') and a model with two inputs and two outputs, through export (all
precisions, calibrated on the user's data), the gate with and without labels on onnxruntime and
OpenVINO, the benchmark and the Triton repository; the refusals one line each. The models are built
here with onnx's helper (no PyTorch), tiny, so the whole module runs in seconds per command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import REFERENCE, assert_one_line_error, run_cli

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

IN, OUT = "images/in:0", "scores/out:0"


def _save(graph, path, opset):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 6 if opset <= 11 else 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def handed_model(path, classes=5, four_d_output=False, dynamic_spatial=False):
    """A small classifier as an exporter elsewhere writes it: batch fixed at 1, opset 11, names with '/' and ':'."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.normal(size=(8, 3, 3, 3)) * 0.3).astype(np.float32), "conv/W"),
             numpy_helper.from_array(rng.normal(size=(8, classes)).astype(np.float32), "fc/W")]
    nodes = [helper.make_node("Conv", [IN, "conv/W"], ["conv/out"], pads=[1, 1, 1, 1], name="conv/Conv"),
             helper.make_node("Relu", ["conv/out"], ["relu/out"], name="relu"),
             helper.make_node("GlobalAveragePool", ["relu/out"], ["gap/out"], name="gap")]
    if four_d_output:
        inits.append(numpy_helper.from_array((rng.normal(size=(classes, 8, 1, 1))).astype(np.float32), "head/W"))
        nodes.append(helper.make_node("Conv", ["gap/out", "head/W"], [OUT], name="head"))
        out = helper.make_tensor_value_info(OUT, TensorProto.FLOAT, [1, classes, 1, 1])
    else:
        nodes += [helper.make_node("Flatten", ["gap/out"], ["flat/out"], name="flat"),
                  helper.make_node("MatMul", ["flat/out", "fc/W"], [OUT], name="fc")]
        out = helper.make_tensor_value_info(OUT, TensorProto.FLOAT, [1, classes])
    shape = [1, 3, "h", "w"] if dynamic_spatial else [1, 3, 16, 16]
    graph = helper.make_graph(nodes, "handed", [helper.make_tensor_value_info(IN, TensorProto.FLOAT, shape)], [out], inits)
    return _save(graph, path, 11)


def two_io_model(path):
    """Two inputs (an image and a feature vector), two outputs (class scores and an embedding), dynamic batch."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array((rng.normal(size=(4, 1, 3, 3)) * 0.5).astype(np.float32), "w_conv"),
             numpy_helper.from_array(rng.normal(size=(4 + 6, 3)).astype(np.float32), "w_fc"),
             numpy_helper.from_array(rng.normal(size=(4 + 6, 8)).astype(np.float32), "w_emb")]
    nodes = [helper.make_node("Conv", ["image", "w_conv"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Concat", ["f", "features"], ["joined"], axis=1),
             helper.make_node("MatMul", ["joined", "w_fc"], ["scores"]),
             helper.make_node("MatMul", ["joined", "w_emb"], ["e"]),
             helper.make_node("Tanh", ["e"], ["embedding"])]
    graph = helper.make_graph(
        nodes, "two_io",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 8, 8]),
         helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 8])], inits)
    return _save(graph, path, 17)


@pytest.fixture(scope="module")
def handed(tmp_path_factory):
    """The handed-over file exported at every precision, with data with and without labels."""
    import onnxruntime as ort

    root = tmp_path_factory.mktemp("handed")
    model = handed_model(root / "handed.onnx")
    x = np.random.default_rng(2).uniform(0, 1, size=(48, 3, 16, 16)).astype(np.float32)
    np.savez(root / "data.npz", **{IN: x})
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    labels = np.array([session.run(None, {IN: x[i : i + 1]})[0].argmax() for i in range(len(x))])
    labels[:4] = (labels[:4] + 1) % 5  # the reference gets 44 of 48 right
    np.savez(root / "labelled.npz", **{IN: x, "labels": labels})
    art = root / "art"
    proc = run_cli("export", "--model", model, "--precision", "all", "--out", art, "--calibration-data", f"npz:{root / 'data.npz'}")
    assert proc.returncode == 0, proc.stderr
    return root, art, proc.stdout


def test_an_onnx_file_is_exported_at_every_precision_named_after_it_with_its_spec(handed):
    root, art, out = handed
    for p in ("fp32", "fp16", "int8", "int8-cpu"):
        assert (art / f"handed.{p}.onnx").is_file()
        meta = {m.key: m.value for m in onnx.load(str(art / f"handed.{p}.onnx")).metadata_props}
        spec = json.loads(meta["model_spec"])
        assert spec["inputs"][0]["name"] == IN and spec["inputs"][0]["shape"] == [1, 3, 16, 16]  # the batch stays fixed
        assert meta["converted_from_opset"] == "11" and meta["precision"] == p
    assert not list(art.glob("mnist_cnn.*"))
    spec = json.loads((art / "model.json").read_text())
    assert spec["name"] == "handed" and spec["task"] == {"kind": "classification", "num_classes": 5, "class_names": None, "output": None}
    manifest = json.loads((art / "manifest.json").read_text())
    assert "handed.fp32.onnx" in manifest["artifacts"]["model.json"]["parents"]
    assert "calibration data" in out


def test_the_gate_without_labels_judges_agreement_and_error_statistics_at_the_files_batch(handed):
    root, art, _ = handed
    proc = run_cli("eval", "--artifacts", art, "--data", f"npz:{root / 'data.npz'}", "--backend", "onnxruntime,openvino",
                   "--report-dir", root / "unlabelled")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "evaluated at batch 1 only" in proc.stdout and "without labels" in proc.stdout
    report = json.loads((root / "unlabelled" / "parity.json").read_text())
    assert report["labelled"] is False and report["batch_sizes"] == [1] and report["reference"] == "onnxruntime fp32 (cpu)"
    assert len(report["pairs"]) == 8 and all(p["status"] == "pass" for p in report["pairs"])
    int8 = next(p for p in report["pairs"] if (p["backend"], p["precision"]) == ("onnxruntime", "int8"))
    stats = int8["outputs"][0]
    assert stats["name"] == OUT and 0 < stats["rel_error"] < 0.25 and stats["cosine"] > 0.98


def test_the_gate_with_labels_judges_the_accuracy_drop_against_the_reference(handed):
    root, art, _ = handed
    proc = run_cli("eval", "--artifacts", art, "--data", f"npz:{root / 'labelled.npz'}", "--backend", "onnxruntime",
                   "--precision", "fp32,int8", "--report-dir", root / "labelled")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((root / "labelled" / "parity.json").read_text())
    assert report["labelled"] is True and report["reference_accuracy"] == pytest.approx(100 * 44 / 48)
    assert all(p["accuracy"] is not None and p["mcnemar"] is not None for p in report["pairs"])
    # An accuracy drop limit below zero is bad input; a limit the pairs cannot meet fails the gate.
    bad = run_cli("eval", "--artifacts", art, "--data", f"npz:{root / 'labelled.npz'}", "--backend", "onnxruntime",
                  "--max-accuracy-drop", "-1", "--report-dir", root / "labelled")
    assert_one_line_error(bad, "--max-accuracy-drop", code=2)


def test_bench_and_the_triton_repository_take_the_handed_file(handed):
    root, art, _ = handed
    proc = run_cli("bench", "--quick", "--artifacts", art, "--backend", "onnxruntime", "--precision", "fp32,int8", "--no-peak",
                   "--data", f"npz:{root / 'data.npz'}", "--out", root / "bench", "--quiet")
    assert proc.returncode == 0, proc.stderr
    bench = json.loads((root / "bench" / "bench.json").read_text())
    assert {c["batch_size"] for c in bench["cells"]} == {1}  # the file's fixed batch
    assert "handed" in bench["settings"]["input"]
    pytest.importorskip("tritonclient")
    proc = run_cli("export", "--format", "triton", "--precision", "fp32", "--artifacts", art)
    assert proc.returncode == 0, proc.stderr
    config = (art / "triton" / "handed_onnxruntime_fp32" / "config.pbtxt").read_text()
    assert 'name: "images_in_0"' in config and 'name: "scores_out_0"' in config and "max_batch_size" not in config
    copied = onnx.load(str(art / "triton" / "handed_onnxruntime_fp32" / "1" / "model.onnx"))
    assert [i.name for i in copied.graph.input] == ["images_in_0"] and [o.name for o in copied.graph.output] == ["scores_out_0"]


@pytest.mark.parametrize("command", [["soak", "--duration", "1"], ["serve-cluster", "--nodes", "1", "--replicas", "1"]])
def test_commands_that_serve_the_built_in_only_refuse_another_model_before_any_work(handed, command):
    _, art, _ = handed
    importorskip = {"soak": "tritonclient", "serve-cluster": "ray"}[command[0]]
    pytest.importorskip(importorskip)
    proc = run_cli(*command, "--artifacts", art, timeout=120)
    assert_one_line_error(proc, "built-in CNN only", "handed", code=2)


def test_two_inputs_and_two_outputs_through_export_the_backends_and_the_gate(tmp_path):
    from toolkit.backends import registry
    from toolkit.files.spec_file import read_spec

    model = two_io_model(tmp_path / "two.onnx")
    rng = np.random.default_rng(3)
    data = {"image": rng.uniform(0, 1, size=(40, 1, 8, 8)).astype(np.float32),
            "features": rng.normal(size=(40, 6)).astype(np.float32)}
    np.savez(tmp_path / "two.npz", **data)
    art = tmp_path / "art"
    proc = run_cli("export", "--model", model, "--precision", "all", "--out", art, "--calibration-data", f"npz:{tmp_path / 'two.npz'}")
    assert proc.returncode == 0, proc.stderr
    spec = read_spec(art)
    assert [t.name for t in spec.inputs] == ["image", "features"] and spec.task.kind == "generic"
    for backend in ("onnxruntime", "openvino"):
        pytest.importorskip(backend)
        with registry.create_backend(backend, "fp32", art / "two.fp32.onnx", spec=spec) as b:
            out = b.run({k: v[:5] for k, v in data.items()})
            assert set(out) == {"scores", "embedding"} and out["scores"].shape == (5, 3) and out["embedding"].shape == (5, 8)
            with pytest.raises(ValueError, match="lacks inputs"):
                b.run({"image": data["image"][:5]})
    proc = run_cli("eval", "--artifacts", art, "--data", f"npz:{tmp_path / 'two.npz'}", "--backend", "onnxruntime,openvino",
                   "--batch-sizes", "1,16", "--report-dir", tmp_path / "rep")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "rep" / "parity.json").read_text())
    assert all({s["name"] for s in p["outputs"]} == {"scores", "embedding"} for p in report["pairs"])
    # Per-output limits override the precision's: an impossible one for the embedding fails the gate.
    proc = run_cli("eval", "--artifacts", art, "--data", f"npz:{tmp_path / 'two.npz'}", "--backend", "onnxruntime",
                   "--precision", "int8", "--output-tolerance", "embedding=0,1", "--report-dir", tmp_path / "rep")
    assert proc.returncode == 1 and "embedding: relative error" in proc.stdout
    # Data without one of the model's inputs: one line, exit 2.
    np.savez(tmp_path / "half.npz", image=data["image"])
    assert_one_line_error(run_cli("eval", "--artifacts", art, "--data", f"npz:{tmp_path / 'half.npz'}", "--backend", "onnxruntime",
                                  "--report-dir", tmp_path / "rep"), "features", code=2)


def test_random_inputs_are_a_smoke_test_not_a_parity_gate(handed):
    root, art, _ = handed
    proc = run_cli("eval", "--artifacts", art, "--data", "random:4", "--backend", "onnxruntime", "--precision", "fp32",
                   "--report-dir", root / "smoke")
    assert proc.returncode == 0, proc.stderr
    assert "NOT a parity gate" in proc.stdout
    assert "NOT a parity gate" in (root / "smoke" / "parity.md").read_text()


@pytest.mark.parametrize("kind, needle", [("four_d", "Flatten"), ("dynamic_spatial", "dynamic spatial")])
def test_models_the_toolkit_does_not_take_are_refused_in_one_line(tmp_path, kind, needle):
    model = handed_model(tmp_path / "m.onnx", four_d_output=kind == "four_d", dynamic_spatial=kind == "dynamic_spatial")
    proc = run_cli("export", "--model", model, "--precision", "fp32", "--out", tmp_path / "art", *(["--num-classes", "5"] if kind == "four_d" else []))
    assert_one_line_error(proc, needle, code=2)
    assert not (tmp_path / "art" / "model.json").exists()


def test_the_built_in_artifacts_need_no_model_json():
    from toolkit.files.spec_file import read_spec
    from toolkit.model import MNIST_CNN_SPEC

    assert not (REFERENCE / "model.json").exists()
    assert read_spec(REFERENCE) is MNIST_CNN_SPEC


def test_an_export_that_pins_a_dynamic_batch_axis_is_refused(tmp_path):
    from toolkit.errors import ModelFileError
    from toolkit.export.model_export import stamp
    from toolkit.files.spec_file import spec_from_onnx

    dynamic = onnx.load(str(two_io_model(tmp_path / "two.onnx")))
    spec = spec_from_onnx(dynamic, "two.onnx")
    assert spec.inputs[0].batch_dynamic
    stamp(dynamic.SerializeToString(), spec, "fp32", "0" * 64)  # symbolic: accepted
    pinned = onnx.load(str(tmp_path / "two.onnx"))
    pinned.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    with pytest.raises(ModelFileError, match="fixes the batch axis of 'image' at 4"):
        stamp(pinned.SerializeToString(), spec, "fp16", "0" * 64)


def test_bench_tune_searches_another_models_settings_gated_by_its_own_gate(tmp_path):
    model = two_io_model(tmp_path / "two.onnx")
    rng = np.random.default_rng(4)
    np.savez(tmp_path / "two.npz", image=rng.uniform(0, 1, size=(64, 1, 8, 8)).astype(np.float32),
             features=rng.normal(size=(64, 6)).astype(np.float32))
    art = tmp_path / "art"
    assert run_cli("export", "--model", model, "--precision", "fp32", "--out", art).returncode == 0
    proc = run_cli("bench", "--tune", "--budget", "6", "--artifacts", art, "--data", f"npz:{tmp_path / 'two.npz'}", "--backend", "onnxruntime",
                   "--precision", "fp32", "--batch-sizes", "8", "--out", tmp_path / "tune", "--quiet")
    assert proc.returncode == 0, proc.stderr
    (entry,) = json.loads((tmp_path / "tune" / "tuned.json").read_text())["entries"]
    assert (entry["backend"], entry["precision"], entry["batch_size"]) == ("onnxruntime", "fp32", 8)
    assert entry["trials"]  # candidates were timed
    if entry["options"] != entry["default_options"]:  # a chosen setting passed the gate for any model, on the data given
        assert entry["parity"]["status"] == "pass" and entry["parity"]["images"] == 64 and entry["parity"]["batch_sizes"] == [1, 64]
    else:
        assert entry["parity"]["status"] == "default settings"


def test_two_inputs_and_two_outputs_through_serve_and_the_triton_client(tmp_path):
    pytest.importorskip("tritonclient")
    from toolkit.backends import registry
    from toolkit.files.spec_file import read_spec
    from toolkit.serve import LocalServer, ServeConfig, check_serving_support

    try:
        check_serving_support()
    except Exception as exc:  # noqa: BLE001 - the serve extra's server is not here
        pytest.skip(f"no local Triton server: {exc}")
    model = two_io_model(tmp_path / "two.onnx")
    art = tmp_path / "art"
    assert run_cli("export", "--model", model, "--precision", "fp32", "--out", art).returncode == 0
    spec = read_spec(art)
    rng = np.random.default_rng(5)
    feeds = {"image": rng.uniform(0, 1, size=(6, 1, 8, 8)).astype(np.float32), "features": rng.normal(size=(6, 6)).astype(np.float32)}
    with registry.create_backend("onnxruntime", "fp32", art / "two.fp32.onnx", spec=spec) as local:
        expected = local.run(feeds)
    config = ServeConfig(pairs=(("onnxruntime", "fp32"),), http_port=0, grpc_port=0, metrics_port=0, artifacts_dir=str(art), threads=1)
    with LocalServer(config) as server:
        for url in (server.info.http_url, server.info.grpc_url):
            with registry.create_backend("triton", "fp32", url=url, spec=spec) as remote:  # the model's name from the spec
                got = remote.run(feeds)
            assert set(got) == {"scores", "embedding"}
            for name in got:
                np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)
        # The Triton client checks the served signature against the spec: another model's is refused.
        other = read_spec(art)
        import dataclasses

        other = dataclasses.replace(other, outputs=other.outputs[:1])
        with pytest.raises(Exception, match="signature"):
            with registry.create_backend("triton", "fp32", url=server.info.http_url, spec=other, model="two_onnxruntime_fp32"):
                pass


def test_the_built_in_model_on_other_data_than_mnist_takes_the_gate_for_any_model(tmp_path):
    from helpers import DATA_DIR

    from toolkit.data import load_split_uint8, to_model_input

    x, y = load_split_uint8("test", DATA_DIR)
    np.savez(tmp_path / "digits.npz", input=to_model_input(x[:64]), labels=y[:64].astype(np.int64))
    proc = run_cli("eval", "--artifacts", REFERENCE, "--checkpoint", REFERENCE / "mnist_cnn.pt", "--data", f"npz:{tmp_path / 'digits.npz'}",
                   "--backend", "pytorch,onnxruntime", "--precision", "fp32", "--report-dir", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "parity.json").read_text())
    assert report["reference"] == "pytorch fp32 (cpu)" and report["labelled"] and report["images"] == 64
    assert {p["backend"] for p in report["pairs"]} == {"pytorch", "onnxruntime"}


def _verdicts(report_dir):
    report = json.loads((report_dir / "parity.json").read_text())
    keep = ("backend", "precision", "status", "reason", "accuracy", "agreement", "outputs")
    return report["labelled"], report["images"], sorted(([p[k] for k in keep] for p in report["pairs"]), key=str)


def test_another_models_saved_outputs_are_gated_elsewhere_with_the_same_verdict_and_tampering_is_refused(tmp_path, handed):
    import shutil

    model = two_io_model(tmp_path / "two.onnx")
    rng = np.random.default_rng(5)
    np.savez(tmp_path / "two.npz", image=rng.uniform(0, 1, size=(24, 1, 8, 8)).astype(np.float32),
             features=rng.normal(size=(24, 6)).astype(np.float32))
    art, saved, key = tmp_path / "art", tmp_path / "saved", tmp_path / "key"
    key.write_bytes(bytes(range(32)))
    assert run_cli("export", "--model", model, "--precision", "all", "--out", art, "--calibration-data", f"npz:{tmp_path / 'two.npz'}").returncode == 0
    common = ("--artifacts", art, "--data", f"npz:{tmp_path / 'two.npz'}", "--backend", "onnxruntime", "--precision", "fp32,int8",
              "--batch-sizes", "1,8", "--output-tolerance", "embedding=1e-3,0.99999")  # int8 fails this: a mixed verdict
    direct = run_cli("eval", *common, "--save-outputs", saved, "--sign-key", key, "--report-dir", tmp_path / "direct")
    loaded = run_cli("eval", *common, "--load-outputs", saved, "--sign-key", key, "--report-dir", tmp_path / "loaded")
    assert direct.returncode == loaded.returncode == 1, direct.stdout + direct.stderr + loaded.stderr
    runtimes = [p["runtime"] for p in json.loads((tmp_path / "loaded" / "parity.json").read_text())["pairs"]]
    assert all("signature verified" in r for r in runtimes), runtimes
    labelled, images, pairs = _verdicts(tmp_path / "direct")
    assert (labelled, images) == (False, 24) and {p[2] for p in pairs} == {"pass", "fail"}
    assert _verdicts(tmp_path / "loaded") == (labelled, images, pairs)
    assert {s["name"] for s in pairs[0][6]} == {"scores", "embedding"}
    # Another key, other data, or an edited file (re-signed or not, manifest or not) are refused in one line.
    other = tmp_path / "other-key"
    other.write_bytes(bytes(range(1, 33)))
    assert_one_line_error(run_cli("eval", *common, "--load-outputs", saved, "--sign-key", other, "--report-dir", tmp_path / "x"),
                          "signature", code=2)
    short = common[:3] + (f"npz:{tmp_path / 'two.npz'}", *common[4:], "--limit", "16")
    assert_one_line_error(run_cli("eval", *short, "--load-outputs", saved, "--report-dir", tmp_path / "x"), "limit", code=2)
    edited = tmp_path / "edited"
    shutil.copytree(saved, edited)
    path = edited / "onnxruntime-int8.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["b8_o1"] = arrays["b8_o1"] * 0.5
    np.savez(path, **arrays)
    assert_one_line_error(run_cli("eval", *common, "--load-outputs", edited, "--report-dir", tmp_path / "x"), "manifest", code=2)
    (edited / "manifest.json").unlink()
    assert_one_line_error(run_cli("eval", *common, "--load-outputs", edited, "--report-dir", tmp_path / "x"), "SHA-256", code=2)
    # With labels (the handed classifier): the accuracy verdict survives the round trip too.
    root, handed_art, _ = handed
    labelled_args = ("--artifacts", handed_art, "--data", f"npz:{root / 'labelled.npz'}", "--backend", "onnxruntime", "--precision", "fp32,int8")
    assert run_cli("eval", *labelled_args, "--save-outputs", tmp_path / "hs", "--report-dir", tmp_path / "hd").returncode == 0
    assert run_cli("eval", *labelled_args, "--load-outputs", tmp_path / "hs", "--report-dir", tmp_path / "hl").returncode == 0
    assert _verdicts(tmp_path / "hl") == _verdicts(tmp_path / "hd") and _verdicts(tmp_path / "hd")[0] is True


@pytest.mark.timeout(240)
def test_the_load_benchmark_sends_every_input_and_checks_every_output_through_a_local_server(tmp_path):
    pytest.importorskip("tritonclient")
    from toolkit.serve import check_serving_support

    try:
        check_serving_support()
    except Exception as exc:  # noqa: BLE001 - the serve extra's server is not here
        pytest.skip(f"no local Triton server: {exc}")
    model = two_io_model(tmp_path / "two.onnx")
    art = tmp_path / "art"
    assert run_cli("export", "--model", model, "--precision", "fp32", "--out", art).returncode == 0
    proc = run_cli("bench", "--serve", "--concurrency", "1,2", "--batch-sizes", "1,8", "--duration", "0.5", "--threads", "1",
                   "--artifacts", art, "--backend", "onnxruntime", "--precision", "fp32", "--out", tmp_path / "load", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "load" / "load.json").read_text())
    variants = {c["variant"] for c in report["cells"]}
    assert variants == {"in-process", "triton http", "triton grpc"}, variants  # shared memory: the built-in's tensors only
    for cell in report["cells"]:
        assert cell["requests"] > 0 and cell["failed"] == 0 and cell["wrong"] == 0, cell
    # The check is real: a served model whose outputs differ from the in-process ones counts wrong responses.
    from toolkit.bench.model_load import OutputBatch

    ref = {"scores": np.ones((2, 3), np.float32), "embedding": np.zeros((2, 8), np.float32)}
    assert OutputBatch(ref).matches(dict(ref), 1e-4)
    assert not OutputBatch(ref).matches({**ref, "scores": ref["scores"] + 0.01}, 1e-4)
    assert not OutputBatch(ref).matches({"scores": ref["scores"]}, 1e-4)
