"""Check a KServe manifest against KServe's own types, in a process of its own.

Run as `python tests/kserve_schema.py FILE`: prints the checked object as JSON (the SDK's
`to_dict()`) and exits 0, or prints `invalid: <path and reason>` and exits 1. The `kserve` SDK
registers its own copy of the Open Inference Protocol's protobuf package (`inference.*`), which
collides with tritonclient's in one process: the test suite imports tritonclient, so the SDK is
only ever imported here.

The SDK's generated models (V1beta1InferenceService and below, down to the Kubernetes V1Container)
mirror the InferenceService CRD's OpenAPI schema. Every key must be a field of its type, every value
of that field's type, and every object must construct (the SDK refuses missing required fields).
"""

from __future__ import annotations

import json
import re
import sys

PRIMITIVES = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object, "date": str, "datetime": str}


def _klass(name: str):
    import kserve
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
    import yaml

    doc = yaml.safe_load(text)
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService", "not an InferenceService"
    return build(doc, "V1beta1InferenceService", "InferenceService")


def main(path: str) -> int:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    try:
        isvc = check_inference_service(text)
    except (AssertionError, ValueError) as exc:
        print(f"invalid: {' '.join(str(exc).split())}")
        return 1
    print(json.dumps(isvc.to_dict(), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
