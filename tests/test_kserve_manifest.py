"""Both KServe manifests the toolkit writes, checked against KServe's own types: the `kserve` SDK's
generated models (V1beta1InferenceService and below, down to the Kubernetes V1Container), which
mirror the InferenceService CRD's OpenAPI schema. Every key must be a field of its type, every value
of that field's type, and every object must construct (the SDK refuses missing required fields)."""

from __future__ import annotations

import re

import pytest
from helpers import REFERENCE, run_cli

kserve = pytest.importorskip("kserve", reason="the kserve SDK (cluster extra) is not installed")
yaml = pytest.importorskip("yaml")

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "date": str, "datetime": str}


def _klass(name: str):
    import kubernetes.client

    found = getattr(kserve, name, None) or getattr(kubernetes.client, name, None)
    assert found is not None, f"no KServe or Kubernetes type {name}"
    return found


def build(value, type_name: str, where: str):
    """The SDK object for `value` as `type_name`; AssertionError naming the path for anything off-schema."""
    if type_name in PRIMITIVES:
        assert isinstance(value, PRIMITIVES[type_name]) and not (type_name == "int" and isinstance(value, bool)), \
            f"{where}: {value!r} is not {type_name}"
        return value
    if m := re.fullmatch(r"[lL]ist\[(.+)\]", type_name):
        assert isinstance(value, list), f"{where}: expected a list"
        return [build(v, m.group(1), f"{where}[{i}]") for i, v in enumerate(value)]
    if m := re.fullmatch(r"dict\(str, (.+)\)|Dict\[str, (.+)\]", type_name):
        assert isinstance(value, dict), f"{where}: expected a mapping"
        return {k: build(v, m.group(1) or m.group(2), f"{where}.{k}") for k, v in value.items()}
    klass = _klass(type_name)
    assert isinstance(value, dict), f"{where}: expected a {type_name} mapping"
    by_key = {key: attr for attr, key in klass.attribute_map.items()}
    unknown = sorted(set(value) - set(by_key))
    assert not unknown, f"{where}: {unknown} are not fields of {type_name}"
    kwargs = {by_key[k]: build(v, klass.openapi_types[by_key[k]], f"{where}.{k}") for k, v in value.items()}
    return klass(**kwargs)


def check_inference_service(text: str):
    doc = yaml.safe_load(text)
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    return build(doc, "V1beta1InferenceService", "InferenceService")


def test_the_checker_refuses_what_kserve_would():
    good = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: x}\nspec: {predictor: {minReplicas: 1}}\n"
    check_inference_service(good)
    with pytest.raises(AssertionError, match="replicas"):
        check_inference_service(good.replace("minReplicas", "replicas"))
    with pytest.raises(AssertionError, match="not int"):
        check_inference_service(good.replace("minReplicas: 1", "minReplicas: one"))
    with pytest.raises(ValueError):  # a container without its required name
        check_inference_service(good.replace("{minReplicas: 1}", "{containers: [{image: x}]}"))


def test_the_triton_repository_manifest_is_a_valid_inference_service():
    from toolkit.export.triton import kserve_manifest

    isvc = check_inference_service(kserve_manifest("mnist", []))
    assert isvc.spec.predictor.model.protocol_version == "v2"


def test_the_ray_serve_manifest_is_a_valid_inference_service(tmp_path):
    out = tmp_path / "mnist-ray.yaml"
    proc = run_cli("serve-cluster", "--kserve-manifest", out, "--replicas", "2", "--artifacts", REFERENCE, timeout=120)
    assert proc.returncode == 0, proc.stderr
    isvc = check_inference_service(out.read_text())
    container = isvc.spec.predictor.containers[0]
    assert container.command == ["toolkit", "serve-cluster"] and "--replicas" in container.args
    assert container.ports[0].container_port == 8080 and container.readiness_probe.http_get.path == "/v2/health/ready"
    assert isvc.metadata.name == "mnist-ray"
