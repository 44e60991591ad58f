"""toolkit.model_sources and toolkit.export.torch_onnx in-process: models from factories (a file or a
module), torchvision architectures and the built-in, their specs found by running them, weights
checked against the module, the fp32 ONNX export with a symbolic batch; every bad input refused
with one line (a ToolkitError, exit 2). Tiny models from tests/user_models.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import user_models as um
from helpers import assert_one_line_exception as one_line

from toolkit.errors import CheckpointError, InputError
from toolkit.model_sources import LoadedModel, load_torch_model, parse_input_option, torch_outputs
from toolkit.spec import TensorSpec

RESIDUAL = f"{um.FILE}:residual_bn_net"
TWO = f"{um.FILE}:two_in_two_out"


def inputs(texts):
    return [parse_input_option(t) for t in texts]


@pytest.fixture(scope="module")
def residual() -> LoadedModel:
    return load_torch_model(RESIDUAL, inputs=inputs(um.RESIDUAL_BN_INPUTS))


@pytest.fixture(scope="module")
def two() -> LoadedModel:
    return load_torch_model(TWO, inputs=inputs(um.TWO_IN_TWO_OUT_INPUTS), outputs=um.TWO_IN_TWO_OUT_OUTPUTS)


def feeds_for(spec, n, seed=0):
    rng = np.random.default_rng(seed)
    return {t.name: rng.random((n, *t.shape[1:]), dtype=np.float32) for t in spec.inputs}


# --- --input ------------------------------------------------------------------------------------

def test_parse_input_option():
    assert parse_input_option("input:float32:[-1,3,224,224]") == TensorSpec("input", "float32", (-1, 3, 224, 224))
    assert parse_input_option("ids:int64:[N, 16]:[0,999]") == TensorSpec("ids", "int64", (-1, 16), (0.0, 999.0))
    for bad, needle in [("input:[1,2]", "is not name:dtype"), ("x:float32:[a,2]", "malformed"), ("x:float32:[1,2]:[3,1]", "malformed"),
                        ("x:floaty:[1,2]", "unknown dtype"), ("x:float32:[-1,0]", "positive size")]:
        with pytest.raises(InputError) as excinfo:
            parse_input_option(bad)
        one_line(excinfo, needle)


# --- factories ----------------------------------------------------------------------------------

def test_a_file_factory_gives_a_spec_found_by_running_it(residual):
    spec = residual.spec
    assert spec.name == "residual_bn_net" and spec.source == RESIDUAL and residual.weights_sha256 is None
    assert spec.inputs == (TensorSpec("input", "float32", (-1, 3, 16, 16)),)
    assert spec.outputs == (TensorSpec("logits", "float32", (-1, 10)),)
    assert (spec.task.kind, spec.task.num_classes) == ("classification", 10)
    assert not residual.module.training
    feeds = feeds_for(spec, 5)
    with torch.no_grad():
        direct = um.residual_bn_net()(torch.from_numpy(feeds["input"])).numpy()
    np.testing.assert_array_equal(torch_outputs(residual, feeds)["logits"], direct)


def test_a_module_factory_and_num_classes_passed_to_the_factory():
    loaded = load_torch_model("user_models:residual_bn_net", inputs=inputs(um.RESIDUAL_BN_INPUTS), num_classes=4, name="tiny")
    assert loaded.spec.name == "tiny" and loaded.spec.outputs[0].shape == (-1, 4) and loaded.spec.task.num_classes == 4


def test_dynamic_spatial_axes_stay_dynamic_in_the_spec():
    loaded = load_torch_model(RESIDUAL, inputs=inputs(["input:float32:[-1,3,-1,-1]"]))
    assert loaded.spec.outputs[0].shape == (-1, 10)
    assert torch_outputs(loaded, {"input": np.zeros((2, 3, 20, 12), np.float32)})["logits"].shape == (2, 10)


def test_two_inputs_two_outputs(two):
    spec = two.spec
    assert [t.name for t in spec.inputs] == ["image", "features"]
    assert [(t.name, t.shape) for t in spec.outputs] == [("logits", (-1, 10)), ("embedding", (-1, 6))]
    got = torch_outputs(two, feeds_for(spec, 3))
    assert got["logits"].shape == (3, 10) and got["embedding"].shape == (3, 6)
    unnamed = load_torch_model(TWO, inputs=inputs(um.TWO_IN_TWO_OUT_INPUTS))
    assert [t.name for t in unnamed.spec.outputs] == ["output_0", "output_1"]
    with pytest.raises(InputError) as excinfo:
        load_torch_model(TWO, inputs=inputs(um.TWO_IN_TWO_OUT_INPUTS), outputs=["only"])
    one_line(excinfo, "1 outputs", "returns 2")


FACTORIES = '''
import torch
from torch import nn

class DictOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(5, 3)
    def forward(self, features):
        y = self.fc(features)
        return {"scores": y, "energy": y.sum(1, keepdim=True)}

def dict_out():
    return DictOut()

def regression():
    return nn.Sequential(nn.Linear(5, 1))

def not_a_module():
    return 42

def broken():
    raise ValueError("bad factory")

class BatchTwo(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(12, 2)
    def forward(self, x):
        return self.fc(x.view(2, -1))  # the batch size as a constant

def batch_two():
    return BatchTwo()

class DataDependent(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x

def data_dependent():
    return DataDependent()
'''


@pytest.fixture(scope="module")
def factories(tmp_path_factory):
    path = tmp_path_factory.mktemp("factories") / "models.py"
    path.write_text(FACTORIES)
    return path


def test_outputs_named_by_dict_keys_and_linear_inputs_inferred(factories):
    loaded = load_torch_model(f"{factories}:dict_out")
    assert loaded.spec.inputs == (TensorSpec("features", "float32", (-1, 5)),)
    assert [(t.name, t.shape) for t in loaded.spec.outputs] == [("scores", (-1, 3)), ("energy", (-1, 1))]
    assert loaded.spec.task.kind == "classification" and loaded.spec.task.num_classes == 3
    regression = load_torch_model(f"{factories}:regression")
    assert regression.spec.task.kind == "generic" and regression.spec.outputs[0].name == "output"
    assert load_torch_model(f"{factories}:dict_out", task="generic").spec.task.kind == "generic"


def test_bad_factories_are_refused_with_one_line(factories, tmp_path):
    cases = [
        (f"{tmp_path / 'missing.py'}:make", "does not exist"),
        (f"{factories}:nothing", "has no function 'nothing'"),
        (f"{factories}:not_a_module", "returned int, not a torch.nn.Module"),
        (f"{factories}:broken", "raised ValueError: bad factory"),
        ("no_such_package_xyz.models:make", "cannot be imported"),
        ("resnet", "is not a model source"),
        ("torchvision:no_such_net", "torchvision has no architecture"),
    ]
    for source, needle in cases:
        with pytest.raises(InputError) as excinfo:
            load_torch_model(source)
        one_line(excinfo, needle)


def test_inputs_that_do_not_match_the_model_are_refused():
    with pytest.raises(InputError) as excinfo:
        load_torch_model(RESIDUAL)
    one_line(excinfo, "cannot infer the inputs", "--input input:float32:[-1,3,H,W]")
    with pytest.raises(InputError) as excinfo:
        load_torch_model(RESIDUAL, inputs=inputs(["input:float32:[-1,1,16,16]"]))
    one_line(excinfo, "--input input:float32:[-1,1,16,16] does not match model", "RuntimeError")
    with pytest.raises(InputError) as excinfo:
        load_torch_model(TWO, inputs=inputs(um.TWO_IN_TWO_OUT_INPUTS[:1]))
    one_line(excinfo, "does not match model", "TypeError")
    with pytest.raises(InputError) as excinfo:
        load_torch_model(RESIDUAL, inputs=inputs(um.RESIDUAL_BN_INPUTS), name="my model")
    one_line(excinfo, "not usable in file names")
    with pytest.raises(InputError) as excinfo:
        load_torch_model(TWO, inputs=inputs(um.TWO_IN_TWO_OUT_INPUTS), num_classes=7)  # its factory takes no num_classes
    one_line(excinfo, "has 10 classes, the task says 7")


# --- weights ------------------------------------------------------------------------------------

def test_weights_load_with_the_checkpoint_checks(tmp_path, residual):
    trained = um.residual_bn_net()
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.5)
    path = tmp_path / "w.pt"
    torch.save(trained.state_dict(), path)
    loaded = load_torch_model(RESIDUAL, inputs=inputs(um.RESIDUAL_BN_INPUTS), weights=str(path))
    assert loaded.weights_sha256 and len(loaded.weights_sha256) == 64
    assert torch.equal(loaded.module.fc.bias, trained.fc.bias)
    feeds = feeds_for(loaded.spec, 2)
    assert not np.allclose(torch_outputs(loaded, feeds)["logits"], torch_outputs(residual, feeds)["logits"])


def test_weights_for_another_architecture_are_refused(tmp_path):
    torch.save(um.two_in_two_out().state_dict(), tmp_path / "other.pt")
    with pytest.raises(CheckpointError) as excinfo:
        load_torch_model(RESIDUAL, inputs=inputs(um.RESIDUAL_BN_INPUTS), weights=str(tmp_path / "other.pt"))
    one_line(excinfo, "is not a state_dict of model", "missing", "unexpected")
    torch.save(um.residual_bn_net(num_classes=5).state_dict(), tmp_path / "five.pt")
    with pytest.raises(CheckpointError) as excinfo:
        load_torch_model(RESIDUAL, inputs=inputs(um.RESIDUAL_BN_INPUTS), weights=str(tmp_path / "five.pt"))
    one_line(excinfo, "fc.weight has shape (5, 8), expected (10, 8)")
    state = um.residual_bn_net().state_dict()
    state["stem.1.num_batches_tracked"] = state["stem.1.num_batches_tracked"].float()
    torch.save(state, tmp_path / "float_counter.pt")
    with pytest.raises(CheckpointError) as excinfo:
        load_torch_model(RESIDUAL, inputs=inputs(um.RESIDUAL_BN_INPUTS), weights=str(tmp_path / "float_counter.pt"))
    one_line(excinfo, "expected an integer tensor")
    with pytest.raises(CheckpointError) as excinfo:
        load_torch_model(RESIDUAL, inputs=inputs(um.RESIDUAL_BN_INPUTS), weights=str(tmp_path / "none.pt"))
    one_line(excinfo, "does not exist", "--weights")


# --- torchvision and the built-in --------------------------------------------------------------

def test_torchvision_architecture_random_init_with_a_seed():
    a = load_torch_model("torchvision:mobilenet_v3_small", num_classes=10, seed=1)
    b = load_torch_model("torchvision:mobilenet_v3_small", num_classes=10, seed=1)
    c = load_torch_model("torchvision:mobilenet_v3_small", num_classes=10, seed=2)
    assert a.spec.name == "mobilenet_v3_small" and a.spec.source == "torchvision:mobilenet_v3_small"
    assert a.spec.inputs == (TensorSpec("input", "float32", (-1, 3, 224, 224)),)
    assert a.spec.outputs == (TensorSpec("logits", "float32", (-1, 10)),) and a.weights_sha256 is None
    assert a.spec.preprocessing.size == (224, 224) and a.spec.preprocessing.resize == 256
    assert torch.equal(a.module.classifier[-1].weight, b.module.classifier[-1].weight)
    assert not torch.equal(a.module.classifier[-1].weight, c.module.classifier[-1].weight)


def test_a_torchvision_builder_with_a_backbone_downloads_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # where torchvision would put fetched weights
    loaded = load_torch_model("torchvision:lraspp_mobilenet_v3_large", num_classes=3,
                              inputs=inputs(["input:float32:[-1,3,64,64]"]))
    assert [(t.name, t.shape) for t in loaded.spec.outputs] == [("out", (-1, 3, 64, 64))]
    assert loaded.spec.task.kind == "generic"  # --num-classes here is the segmentation head's, not a class-score output
    assert not any(tmp_path.rglob("*"))
    assert loaded.spec.preprocessing.size == (64, 64) and loaded.spec.preprocessing.resize == 73  # the preset scaled to --input


def test_the_builtin_is_the_checkpoint_with_its_spec(tmp_path):
    from helpers import REFERENCE

    from toolkit.model import MNIST_CNN_SPEC

    checkpoint = REFERENCE / "mnist_cnn.pt"
    loaded = load_torch_model("mnist-cnn", weights=str(checkpoint))
    assert loaded.spec is MNIST_CNN_SPEC and loaded.weights_sha256
    (tmp_path / "bad.pt").write_bytes(b"")
    with pytest.raises(CheckpointError) as excinfo:
        load_torch_model("mnist-cnn", weights=str(tmp_path / "bad.pt"))
    one_line(excinfo, "is empty", "toolkit train")


# --- fp32 ONNX export ---------------------------------------------------------------------------

def onnx_outputs(model_bytes, feeds):
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds), strict=True))


@pytest.mark.parametrize("which", ["residual", "two"])
def test_export_matches_pytorch_at_any_batch(which, residual, two):
    import onnx

    from toolkit.export.torch_onnx import export_torch_fp32

    loaded = {"residual": residual, "two": two}[which]
    model_bytes = export_torch_fp32(loaded)
    graph = onnx.load_from_string(model_bytes).graph
    assert [i.name for i in graph.input] == [t.name for t in loaded.spec.inputs]
    assert [o.name for o in graph.output] == [t.name for t in loaded.spec.outputs]
    assert all(v.type.tensor_type.shape.dim[0].dim_param == "batch" for v in list(graph.input) + list(graph.output))
    for n in (1, 7):
        feeds = feeds_for(loaded.spec, n, seed=n)
        ref, got = torch_outputs(loaded, feeds), onnx_outputs(model_bytes, feeds)
        for name in ref:
            np.testing.assert_allclose(got[name], ref[name], rtol=0, atol=1e-5)


def test_modules_that_do_not_export_are_refused_with_one_line(factories):
    from toolkit.export.torch_onnx import export_torch_fp32

    # A literal batch size is caught before the export: the second dummy batch (3) breaks it.
    with pytest.raises(InputError) as excinfo:
        load_torch_model(f"{factories}:batch_two", inputs=inputs(["x:float32:[-1,2,3]"]))
    one_line(excinfo, "does not match model")
    dependent = load_torch_model(f"{factories}:data_dependent", inputs=inputs(["x:float32:[-1,4]"]), task="generic")
    with pytest.raises(InputError) as excinfo:
        export_torch_fp32(dependent)
    one_line(excinfo, "cannot be exported to ONNX")
