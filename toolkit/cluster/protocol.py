"""The Open Inference Protocol (v2) over HTTP, as the cluster endpoint speaks it: request parsing,
response bodies, and the metadata, config and statistics documents the `triton` client backend asks
for. Pure functions on bytes and dicts (no Ray, no web framework), so they are tested on their own.

Both request encodings tritonclient and other v2 clients send are accepted: plain JSON (`data` as a
flat or nested list) and Triton's binary tensor extension (header `Inference-Header-Content-Length`:
the JSON part's length, then the raw tensor bytes of each input whose `parameters.binary_data_size`
is set, in order). An output is answered in binary when the request asks for it
(`parameters.binary_data: true` on the output, or `binary_data_output` on the request), else in JSON.
Every refusal is a `V2Error` with an HTTP status and one line fit for the client.
"""

from __future__ import annotations

import json

import numpy as np

from toolkit.model import IMAGE_SHAPE, INPUT_NAME, NUM_CLASSES, OUTPUT_NAME

HEADER_LENGTH = "inference-header-content-length"
PLATFORM = "toolkit_ray_serve"
_MAX_HEADER_BYTES = 1 << 20  # the JSON part of a request; tensors travel in the binary part or as data


class V2Error(Exception):
    """A request the endpoint refuses: `status` is the HTTP status, the message one line."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(" ".join(message.split())[:300])


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


def model_metadata(name: str) -> dict:
    return {
        "name": name, "versions": ["1"], "platform": PLATFORM,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *IMAGE_SHAPE]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, NUM_CLASSES]}],
    }


def model_config(name: str, precision: str, max_batch: int, sha256: str, replicas: str) -> dict:
    """A Triton-style model configuration: what the `triton` client reads (max_batch_size, the
    precision parameter) plus the served file's digest and the replica setting."""
    return {
        "name": name, "platform": PLATFORM, "backend": "ray_serve", "max_batch_size": max_batch,
        "input": [{"name": INPUT_NAME, "data_type": "TYPE_FP32", "dims": list(IMAGE_SHAPE)}],
        "output": [{"name": OUTPUT_NAME, "data_type": "TYPE_FP32", "dims": [NUM_CLASSES]}],
        "parameters": {"toolkit_precision": {"string_value": precision}, "toolkit_sha256": {"string_value": sha256},
                       "ray_serve_replicas": {"string_value": replicas}},
    }


def parse_infer_request(body: bytes, header_length: str | None, max_batch: int) -> tuple[np.ndarray, bool]:
    """(batch as float32 (N,1,28,28), answer in binary?) from an infer request; V2Error(400) for
    anything that is not exactly this model's one input."""
    if header_length is not None:
        try:
            json_len = int(header_length)
        except ValueError:
            raise V2Error(400, f"header Inference-Header-Content-Length is {header_length[:40]!r}, not a byte count") from None
        if not 0 < json_len <= min(len(body), _MAX_HEADER_BYTES):
            raise V2Error(400, f"Inference-Header-Content-Length {json_len} does not fit a body of {len(body)} bytes")
        head, binary = body[:json_len], memoryview(body)[json_len:]
    else:
        head, binary = body, memoryview(b"")
    try:
        request = json.loads(head)
    except (ValueError, UnicodeDecodeError):
        raise V2Error(400, "the request body is not JSON (nor a JSON header with Inference-Header-Content-Length)") from None
    if not isinstance(request, dict):
        raise V2Error(400, "the request must be a JSON object with an 'inputs' list")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise V2Error(400, f"the request must have exactly one input named {INPUT_NAME!r}")
    tensor = inputs[0]
    if tensor.get("name") != INPUT_NAME:
        raise V2Error(400, f"unknown input {str(tensor.get('name'))[:60]!r}; this model's input is {INPUT_NAME!r}")
    if tensor.get("datatype") != "FP32":
        raise V2Error(400, f"input {INPUT_NAME!r} has datatype {str(tensor.get('datatype'))[:20]!r}, expected FP32")
    shape = tensor.get("shape")
    if (not isinstance(shape, list) or len(shape) != 4 or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
            or tuple(shape[1:]) != IMAGE_SHAPE):
        raise V2Error(400, f"input {INPUT_NAME!r} has shape {str(shape)[:60]}, expected [N, 1, 28, 28]")
    n = shape[0]
    if not 1 <= n <= max_batch:
        raise V2Error(400, f"batch of {n} images is outside 1..{max_batch} (the model's max_batch_size)")
    count = n * int(np.prod(IMAGE_SHAPE))
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise V2Error(400, "input parameters must be a JSON object")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if size != count * 4 or len(binary) != size:
            raise V2Error(400, f"binary input has {len(binary)} bytes (declared {str(size)[:20]}), expected {count * 4} for shape {shape}")
        batch = np.frombuffer(binary, dtype="<f4").reshape(shape).astype(np.float32)
    else:
        if len(binary):
            raise V2Error(400, "binary data follows the header, and no input declares binary_data_size")
        data = tensor.get("data")
        if not isinstance(data, list):
            raise V2Error(400, f"input {INPUT_NAME!r} has no 'data' list (nor binary_data_size)")
        try:
            flat = np.asarray(data, dtype=np.float32).ravel()
        except (ValueError, TypeError):
            raise V2Error(400, f"input {INPUT_NAME!r} data is not a list of numbers") from None
        if flat.size != count:
            raise V2Error(400, f"input {INPUT_NAME!r} has {flat.size} values, expected {count} for shape {shape}")
        batch = flat.reshape(shape)
    outputs = request.get("outputs") or []
    if not isinstance(outputs, list):
        raise V2Error(400, "'outputs' must be a list")
    for out in outputs:
        if not isinstance(out, dict) or out.get("name") != OUTPUT_NAME:
            raise V2Error(400, f"unknown output requested; this model's output is {OUTPUT_NAME!r}")
    request_params = request.get("parameters") or {}
    wants_binary = bool(request_params.get("binary_data_output")) if isinstance(request_params, dict) else False
    wants_binary = wants_binary or any(bool((o.get("parameters") or {}).get("binary_data")) for o in outputs)
    return batch, wants_binary


def infer_response(name: str, request_id: str | None, logits: np.ndarray, binary: bool) -> tuple[bytes, dict]:
    """(body, extra headers) for the logits; binary per Triton's extension when asked."""
    out = {"name": OUTPUT_NAME, "datatype": "FP32", "shape": list(logits.shape)}
    doc = {"model_name": name, "model_version": "1", "outputs": [out]}
    if request_id:
        doc["id"] = str(request_id)[:128]
    if not binary:
        out["data"] = logits.ravel().tolist()
        return json.dumps(doc).encode(), {"content-type": "application/json"}
    raw = np.ascontiguousarray(logits, dtype="<f4").tobytes()
    out["parameters"] = {"binary_data_size": len(raw)}
    head = json.dumps(doc).encode()
    return head + raw, {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(head))}


def request_id(body: bytes, header_length: str | None) -> str | None:
    """The request's `id`, echoed in the answer (best effort: None when the JSON part is unreadable)."""
    try:
        head = body[: int(header_length)] if header_length is not None else body
        doc = json.loads(head)
        return doc.get("id") if isinstance(doc, dict) else None
    except (ValueError, TypeError):
        return None
