"""toolkit.files.onnx_file in-process: what an ONNX file must be before any runtime sees it.

Small graphs built here (a Reshape and a MatMul with this model's signature) keep these tests fast
and independent of the exports; the CLI-level cases (eval and bench refuse the same files with
one line, exit 2) are in test_battery.py."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from toolkit.errors import ModelFileError
from toolkit.files import onnx_file


def model(input_dims=("N", 1, 28, 28), output_dims=("N", 10), input_type=TensorProto.FLOAT, output_type=TensorProto.FLOAT,
          classes=10) -> onnx.ModelProto:
    weights = numpy_helper.from_array(np.zeros((784, classes), np.float32), "w")
    shape = numpy_helper.from_array(np.array([-1, 784], dtype=np.int64), "shape")
    nodes = [helper.make_node("Reshape", ["input", "shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", input_type, list(input_dims))],
                              [helper.make_tensor_value_info("logits", output_type, list(output_dims))], [weights, shape])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 9
    return m


def save(tmp_path, m: onnx.ModelProto | bytes, name="m.onnx"):
    path = tmp_path / name
    path.write_bytes(m if isinstance(m, bytes) else m.SerializeToString())
    return path


def refused(tmp_path, m, *words):
    path = save(tmp_path, m)
    with pytest.raises(ModelFileError) as err:
        onnx_file.load_checked(path)
    assert str(path) in str(err.value), "the message names the file"
    for word in words:
        assert word in str(err.value), str(err.value)
    return str(err.value)


def test_a_model_with_this_signature_is_accepted(tmp_path):
    loaded = onnx_file.load_checked(save(tmp_path, model()))
    assert [i.name for i in loaded.graph.input] == ["input"]
    m = model()
    m.metadata_props.add(key="precision", value="fp32")
    assert onnx_file.metadata(onnx_file.load_checked(save(tmp_path, m, "meta.onnx"))) == {"precision": "fp32"}


def test_missing_empty_oversized_and_garbage_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        onnx_file.load_checked(tmp_path / "none.onnx")
    with pytest.raises(ModelFileError, match="is empty"):
        onnx_file.load_checked(save(tmp_path, b"", "empty.onnx"))
    big = tmp_path / "big.onnx"
    with open(big, "wb") as fh:
        fh.truncate(onnx_file.MAX_ONNX_BYTES + 1)
    with pytest.raises(ModelFileError, match="byte limit"):
        onnx_file.load_checked(big)
    at_limit = tmp_path / "at-limit.onnx"
    with open(at_limit, "wb") as fh:
        fh.truncate(onnx_file.MAX_ONNX_BYTES)
    with pytest.raises(ModelFileError, match="not a valid ONNX file|empty graph"):  # size allowed, content refused
        onnx_file.load_checked(at_limit)
    refused(tmp_path, os.urandom(2048), "not a valid ONNX file")


def test_an_empty_graph_is_refused(tmp_path):
    m = model()
    del m.graph.node[:]
    refused(tmp_path, m, "empty graph")


def test_external_data_is_refused_before_anything_reads_it(tmp_path):
    m = model()
    tensor = m.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../etc/passwd"), ("offset", "0"), ("length", "4096")):
        tensor.external_data.add(key=key, value=value)
    refused(tmp_path, m, "external data", "w")


def test_custom_domains_and_epcontext_nodes_are_refused(tmp_path):
    custom = model()
    custom.graph.node[1].domain = "com.example"
    custom.opset_import.add(domain="com.example", version=1)
    refused(tmp_path, custom, "custom operator domains", "com.example")
    ep = model()
    ep.graph.node.insert(0, helper.make_node("EPContext", ["input"], ["blob"], ep_cache_context="native code"))
    refused(tmp_path, ep, "embeds an EPContext node")  # refused as such, not only by the checker


def test_a_model_the_checker_rejects_is_refused(tmp_path):
    m = model()
    m.graph.node.append(helper.make_node("NoSuchOperator", ["logits"], ["more"]))
    refused(tmp_path, m, "fails the ONNX checker")


@pytest.mark.parametrize("kwargs, words", [
    (dict(input_type=TensorProto.DOUBLE), ["input dtype DOUBLE"]),
    (dict(output_type=TensorProto.FLOAT16), ["output dtype FLOAT16"]),
    (dict(input_dims=("N", 1, 28, 27)), ["input shape"]),
    (dict(input_dims=("N", 3, 28, 28)), ["input shape"]),
    (dict(input_dims=(1, 28, 28)), ["input shape"]),
    (dict(input_dims=("N", 1, 28, 28, 1)), ["input shape"]),
    (dict(output_dims=("N", 11), classes=11), ["output shape"]),
    (dict(output_dims=("N",)), ["output shape"]),
    (dict(output_dims=("N", 10, 1)), ["output shape"]),
])
def test_any_other_signature_is_refused(tmp_path, kwargs, words):
    refused(tmp_path, model(**kwargs), "not this model's signature", *words)


def test_one_input_and_one_output_exactly(tmp_path):
    two_in = model()
    two_in.graph.input.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, [1]))
    refused(tmp_path, two_in, "2 inputs and 1 outputs")
    two_out = model()
    two_out.graph.output.append(helper.make_tensor_value_info("flat", TensorProto.FLOAT, ["N", 784]))
    refused(tmp_path, two_out, "1 inputs and 2 outputs")
    # initializers listed among the inputs (older exporters do this) are weights, not inputs
    listed = model()
    listed.graph.input.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [784, 10]))
    assert onnx_file.load_checked(save(tmp_path, listed))
