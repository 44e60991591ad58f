"""Both KServe manifests the toolkit writes, checked against KServe's own types (the `kserve` SDK's
V1beta1InferenceService and below) by tests/kserve_schema.py in a process of its own: the SDK's
protobuf package collides with tritonclient's in one process."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REFERENCE, run_cli

if importlib.util.find_spec("kserve") is None:
    pytest.skip("the kserve SDK (cluster extra) is not installed", allow_module_level=True)

CHECKER = Path(__file__).with_name("kserve_schema.py")


def check(text: str, tmp_path: Path) -> tuple[bool, dict | str]:
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    proc = subprocess.run([sys.executable, str(CHECKER), str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    out = proc.stdout.strip().splitlines()[-1]
    return (True, json.loads(out)) if proc.returncode == 0 else (False, out)


def test_the_checker_refuses_what_kserve_would(tmp_path):
    good = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: x}\nspec: {predictor: {minReplicas: 1}}\n"
    assert check(good, tmp_path)[0]
    ok, why = check(good.replace("minReplicas", "replicas"), tmp_path)
    assert not ok and "replicas" in why and "not fields" in why
    ok, why = check(good.replace("minReplicas: 1", "minReplicas: one"), tmp_path)
    assert not ok and "not int" in why
    ok, why = check(good.replace("{minReplicas: 1}", "{containers: [{image: x}]}"), tmp_path)  # a container without its required name
    assert not ok


def test_the_triton_repository_manifest_is_a_valid_inference_service(tmp_path):
    from toolkit.export.triton import kserve_manifest

    ok, isvc = check(kserve_manifest("mnist", []), tmp_path)
    assert ok, isvc
    assert isvc["spec"]["predictor"]["model"]["protocol_version"] == "v2"


def test_the_ray_serve_manifest_is_a_valid_inference_service(tmp_path):
    out = tmp_path / "mnist-ray.yaml"
    proc = run_cli("serve-cluster", "--kserve-manifest", out, "--replicas", "2", "--artifacts", REFERENCE, timeout=120)
    assert proc.returncode == 0, proc.stderr
    ok, isvc = check(out.read_text(), tmp_path)
    assert ok, isvc
    container = isvc["spec"]["predictor"]["containers"][0]
    assert container["command"] == ["toolkit", "serve-cluster"] and "--replicas" in container["args"]
    assert container["ports"][0]["container_port"] == 8080 and container["readiness_probe"]["http_get"]["path"] == "/v2/health/ready"
    assert isvc["metadata"]["name"] == "mnist-ray"
