"""A Triton Inference Server endpoint as a backend: the client side, HTTP or gRPC (`tritonclient`).

Its "model file" is an endpoint: a URL (`http://host:8000`, `grpc://host:8001`; `https://` and
`grpcs://` use TLS; a bare `host:port` is HTTP) and a model name. Loading checks that the server
answers, that the model is ready, and that its signature is this toolkit's (input `input` FP32
[-1,1,28,28], output `logits` FP32 [-1,10]) before any batch is sent. Every call has a timeout, so a
server that stops answering fails the call with one line instead of hanging; a batch larger than
the model's `max_batch_size` is sent in slices.

Optional: `shared_memory=True` passes tensors through Triton's system shared-memory extension
instead of the socket (same machine only; needs the server's access token, since PyTriton
restricts that endpoint).

Model names: the toolkit names a served or exported model `mnist_<backend>_<precision>`
(`model_name`), so the same `--model` works against `toolkit serve` and a cluster serving the
repository from `toolkit export --format triton`.

Another model than the built-in (a `spec`): its signature is checked input by input and output by
output against the spec (names as the repository writes them: `triton_tensor_name`), and feed
dicts go out as one request per slice. It runs over 400 lines because both paths share one connection,
timeout and error handling; the built-in's shared-memory path stays as it was.
"""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from toolkit.backends.base import Backend
from toolkit.errors import InputError, ModelFileError, ToolkitError, UnavailableError
from toolkit.model import IMAGE_SHAPE, INPUT_NAME, NUM_CLASSES, OUTPUT_NAME

MODEL_PREFIX = "mnist"
DEFAULT_TIMEOUT_S = 30.0
TOKEN_ENV = "TOOLKIT_TRITON_TOKEN"
ACCESS_HEADER = "triton-access-token"  # PyTriton's header for its restricted endpoints
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"  # Triton's gRPC server expects restricted-protocol headers so prefixed
EXPECTED_INPUT = (INPUT_NAME, "FP32", (-1, *IMAGE_SHAPE))
EXPECTED_OUTPUT = (OUTPUT_NAME, "FP32", (-1, NUM_CLASSES))
_NAME_OK = re.compile(r"^[A-Za-z0-9_.-]+$")


def model_name(backend: str, precision: str, spec=None) -> str:
    """The Triton model name the toolkit gives a (backend, precision) pair, served or exported:
    `mnist_<backend>_<precision>` for the built-in CNN, `<model name>_<backend>_<precision>` for another."""
    prefix = MODEL_PREFIX if spec is None or spec.source == "mnist-cnn" else re.sub(r"[^A-Za-z0-9_.-]", "_", spec.name)
    return f"{prefix}_{backend}_{precision}"


def triton_tensor_name(name: str) -> str:
    """A tensor name as the Triton repository writes it: '/' and ':' (common in exported graphs)
    and anything else outside letters, digits and '_' become '_'."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def triton_names(spec) -> dict[str, str]:
    """Spec tensor name -> the repository's; refuses two names that collapse into one."""
    names = {t.name: triton_tensor_name(t.name) for t in spec.inputs + spec.outputs}
    if len(set(names.values())) != len(names):
        raise InputError(f"model {spec.name}'s tensor names {sorted(names)} collide once made valid for Triton",
                         "rename the model's inputs and outputs (letters, digits, '_')")
    return names


def spec_signature(spec) -> tuple:
    """The signature Triton's metadata shows for `spec`'s model served from the toolkit's repository."""
    from tritonclient.utils import np_to_triton_dtype

    names = triton_names(spec)

    def one(t):
        return (names[t.name], np_to_triton_dtype(t.np_dtype), tuple(t.shape))

    return tuple(one(t) for t in spec.inputs), tuple(one(t) for t in spec.outputs)


def parse_model_name(name: str) -> tuple[str, str] | None:
    """(backend, precision) from a name `model_name` made; None for any other name."""
    if not name.startswith(MODEL_PREFIX + "_") or "_" not in name[len(MODEL_PREFIX) + 1 :]:
        return None
    backend, precision = name[len(MODEL_PREFIX) + 1 :].rsplit("_", 1)
    return (backend, precision) if backend and precision else None


@dataclass(frozen=True)
class Endpoint:
    protocol: str  # "http" | "grpc"
    address: str  # host:port
    ssl: bool
    model: str

    @property
    def url(self) -> str:
        return f"{self.protocol}{'s' if self.ssl else ''}://{self.address}"

    @property
    def model_url(self) -> str:
        return f"{self.url}/v2/models/{self.model}"


def parse_endpoint(url: str, model: str) -> Endpoint:
    """Validate a URL and model name; bad ones are InputError (nothing is contacted)."""
    if not url or not isinstance(url, str):
        raise InputError("the triton backend needs a server URL", "pass --url http://HOST:8000 or grpc://HOST:8001")
    if not model or not _NAME_OK.match(model):
        raise InputError(f"model name {model!r} is not a Triton model name", "pass --model NAME (letters, digits, _ . -)")
    raw = url if "://" in url else f"http://{url}"
    parts = urlsplit(raw)
    schemes = {"http": ("http", False), "https": ("http", True), "grpc": ("grpc", False), "grpcs": ("grpc", True)}
    if parts.scheme not in schemes:
        raise InputError(f"URL {url!r} has scheme {parts.scheme!r}", "use http://, https://, grpc:// or grpcs://")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        raise InputError(f"URL {url!r} is not SCHEME://HOST:PORT", "pass e.g. --url http://127.0.0.1:8000 (gRPC: grpc://127.0.0.1:8001)")
    protocol, ssl = schemes[parts.scheme]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Endpoint(protocol, f"{host}:{port}", ssl, model)


def _one_line(exc: BaseException) -> str:
    message = exc.message() if hasattr(exc, "message") and callable(exc.message) else str(exc)
    text = " ".join(str(message or "").split())
    return (text or type(exc).__name__)[:240]


def _config_precision(config: dict) -> str | None:
    value = ((config.get("parameters") or {}).get("toolkit_precision") or {}).get("string_value")
    return value if isinstance(value, str) and value else None


def _status(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    try:
        return str(status() if callable(status) else status or "")
    except Exception:  # noqa: BLE001 - best effort
        return ""


class TritonBackend(Backend):
    """Runs batches on a Triton server. `model_path` is ignored: the endpoint is (url, model)."""

    name = "triton"
    device = "remote"
    OPTIONS = None  # the endpoint's keyword arguments; the server's own settings are not searched here

    def __init__(self, model_path=None, precision: str = "fp32", threads: int | None = None, *, url: str = "", model: str = "",
                 timeout_s: float = DEFAULT_TIMEOUT_S, shared_memory: bool = False, token: str | None = None, **options):
        self.endpoint = parse_endpoint(url, model or model_name("onnxruntime", precision, options.get("spec")))
        super().__init__("", precision, threads=threads, **options)
        self.builtin = self.spec.source == "mnist-cnn"
        self.model_path = self.endpoint.model_url  # what reports show as the model's "file"
        if not (timeout_s and timeout_s > 0):
            raise InputError(f"--timeout must be positive, got {timeout_s}", "pass e.g. --timeout 30")
        self.timeout_s = float(timeout_s)
        self.shared_memory = shared_memory
        self.token = token if token is not None else os.environ.get(TOKEN_ENV)
        self.client = None
        self.max_batch = 0
        self.server_version = ""
        self._shm = None

    # -- loading -------------------------------------------------------------------------------
    def _connect(self):
        ep = self.endpoint
        if ep.protocol == "http":
            import tritonclient.http as client_module

            return client_module.InferenceServerClient(ep.address, ssl=ep.ssl, connection_timeout=self.timeout_s,
                                                       network_timeout=self.timeout_s)
        import tritonclient.grpc as client_module

        return client_module.InferenceServerClient(ep.address, ssl=ep.ssl)

    def _call(self, what: str, fn, *args, **kwargs):
        """One request with this backend's timeout; every failure becomes a one-line ToolkitError."""
        if self.endpoint.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s
        try:
            return fn(*args, **kwargs)
        except ToolkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - tritonclient, gevent, grpc and socket errors alike
            raise ToolkitError(f"Triton at {self.endpoint.url} failed {what} for model {self.endpoint.model!r} ({_one_line(exc)})",
                               "check that the server is running (`toolkit serve`) and --url/--model") from None

    def _load(self) -> None:
        self._connect_live()
        try:
            self._check_model()
        except BaseException:
            self.close()
            raise
        if self.shared_memory:
            self._setup_shared_memory()

    def _connect_live(self) -> None:
        """A client of a live server, or UnavailableError."""
        ep = self.endpoint
        try:
            self.client = self._connect()
            live = self.client.is_server_live(**({"client_timeout": self.timeout_s} if ep.protocol == "grpc" else {}))
        except Exception as exc:  # noqa: BLE001 - connection refused, DNS, TLS, timeout
            self.close()
            raise UnavailableError(f"no Triton server answers at {ep.url} ({_one_line(exc)})",
                                   "start one with `toolkit serve`, or check --url (HTTP: 8000, gRPC: 8001 by default)") from None
        if not live:
            self.close()
            raise UnavailableError(f"the Triton server at {ep.url} is not live", "check the server's log")

    def _check_model(self) -> None:
        ep = self.endpoint
        try:
            kwargs = {"as_json": True, "client_timeout": self.timeout_s} if ep.protocol == "grpc" else {}
            meta = self.client.get_model_metadata(ep.model, **kwargs)
        except Exception as exc:  # noqa: BLE001
            if "unknown model" in _one_line(exc) or _status(exc) in ("404", "StatusCode.NOT_FOUND"):
                raise InputError(f"model {ep.model!r} is not served at {ep.url} ({_one_line(exc)})",
                                 "pass --model with a name the server lists (`toolkit serve` prints them)") from None
            raise ToolkitError(f"Triton at {ep.url} did not describe model {ep.model!r} ({_one_line(exc)})", "check the server") from None
        named = parse_model_name(ep.model)
        if named and named[1] != self.precision:
            raise InputError(f"model {ep.model!r} at {ep.url} is {named[1]} (by its name), not {self.precision}",
                             f"pass --precision {named[1]}, or the {self.precision} model")
        ready = self._call("a readiness request", self.client.is_model_ready, ep.model)
        if not ready:
            raise InputError(f"model {ep.model!r} at {ep.url} is not ready", "check the server's log; it may still be loading")
        if not self.builtin:
            self._check_spec_signature(meta)
        signature = self._signature(meta) if self.builtin else None
        expected = (EXPECTED_INPUT, EXPECTED_OUTPUT)
        if self.builtin and signature != expected:
            raise ModelFileError(
                f"model {ep.model!r} at {ep.url} has signature {self._describe(signature)}, expected {self._describe(expected)}",
                "serve this toolkit's model (`toolkit serve`, or the repository from `toolkit export --format triton`)",
            )
        kwargs = {"as_json": True} if ep.protocol == "grpc" else {}
        config = self._model_config()
        self.max_batch = int(config.get("max_batch_size", 0) or 0)
        served_precision = _config_precision(config)
        if served_precision and served_precision != self.precision:
            raise InputError(f"model {ep.model!r} at {ep.url} is {served_precision}, not {self.precision}",
                             f"pass --precision {served_precision}, or the model of that precision")
        self.server_version = str(self._call("a server metadata request", self.client.get_server_metadata, **kwargs).get("version", ""))

    def _check_spec_signature(self, meta: dict) -> None:
        """Another model: every input and output (names as the repository writes them, datatypes, shapes)."""
        def described(tensors):
            return tuple((t.get("name"), t.get("datatype"), tuple(int(d) for d in t.get("shape", []))) for t in tensors or [])

        want_in, want_out = spec_signature(self.spec)
        got_in, got_out = described(meta.get("inputs")), described(meta.get("outputs"))
        if sorted(got_in) != sorted(want_in) or sorted(got_out) != sorted(want_out):
            ep = self.endpoint
            raise ModelFileError(f"model {ep.model!r} at {ep.url} has signature {list(got_in)} -> {list(got_out)}, "
                                 f"expected {list(want_in)} -> {list(want_out)} (model {self.spec.name})",
                                 "serve the repository `toolkit export --format triton` wrote for this model")
        self._triton_names = triton_names(self.spec)

    def _model_config(self) -> dict:
        kwargs = {"as_json": True} if self.endpoint.protocol == "grpc" else {}
        config = self._call("a configuration request", self.client.get_model_config, self.endpoint.model, **kwargs)
        return config.get("config", config)  # gRPC wraps it

    def served_precision(self) -> str | None:
        """The precision the served model's configuration records (`toolkit_precision`, written by
        `toolkit export --format triton` and `toolkit serve`), else the one its name says; None when
        neither does. Asks the server without loading the model's signature checks."""
        self._connect_live()
        try:
            recorded = _config_precision(self._model_config())
        except ToolkitError:
            recorded = None  # an older server or an unknown model: said by the load that follows
        finally:
            self.close()
        named = parse_model_name(self.endpoint.model)
        return recorded or (named[1] if named else None)

    @staticmethod
    def _signature(meta: dict) -> tuple:
        def one(tensors):
            if not isinstance(tensors, list) or len(tensors) != 1:
                return ("?", "?", ())
            t = tensors[0]
            return (t.get("name"), t.get("datatype"), tuple(int(d) for d in t.get("shape", [])))

        return one(meta.get("inputs")), one(meta.get("outputs"))

    @staticmethod
    def _describe(signature: tuple) -> str:
        (iname, itype, ishape), (oname, otype, oshape) = signature
        return f"{iname} {itype} {list(ishape)} -> {oname} {otype} {list(oshape)}"

    def _auth_headers(self) -> dict:
        if not self.token:
            return {}
        key = ACCESS_HEADER if self.endpoint.protocol == "http" else GRPC_HEADER_PREFIX + ACCESS_HEADER
        return {key: self.token}

    # -- shared memory ----------------------------------------------------------------------------
    def _setup_shared_memory(self) -> None:
        import tritonclient.utils.shared_memory as shm

        if not self.builtin:
            raise InputError(f"shared memory is implemented for the built-in CNN only, not {self.spec.name}", "drop shared_memory")
        if not self.token:
            raise InputError("shared memory needs the server's access token (a restricted endpoint)",
                             f"set {TOKEN_ENV} (toolkit serve --token-file writes it)")
        capacity = self.max_batch or 1024
        tag = f"toolkit-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        in_bytes, out_bytes = capacity * int(np.prod(IMAGE_SHAPE)) * 4, capacity * NUM_CLASSES * 4
        regions = []
        try:
            for suffix, size in (("in", in_bytes), ("out", out_bytes)):
                name = f"{tag}-{suffix}"
                handle = shm.create_shared_memory_region(name, f"/{name}", size)
                regions.append((name, handle, size))
                self._call("registering shared memory", self.client.register_system_shared_memory, name, f"/{name}", size,
                           headers=self._auth_headers())
        except BaseException:
            for name, handle, _ in regions:
                self._release_region(name, handle)
            raise
        self._shm = {"capacity": capacity, "in": regions[0], "out": regions[1]}

    def _release_region(self, name: str, handle) -> None:
        import tritonclient.utils.shared_memory as shm

        try:
            if self.client is not None:
                kwargs = {"client_timeout": self.timeout_s} if self.endpoint.protocol == "grpc" else {}
                self.client.unregister_system_shared_memory(name, headers=self._auth_headers(), **kwargs)
        except Exception:  # noqa: BLE001 - the server may be gone; the local region goes regardless
            pass
        try:
            shm.destroy_shared_memory_region(handle)
        except Exception:  # noqa: BLE001
            pass

    # -- inference ----------------------------------------------------------------------------
    def _run_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n = len(next(iter(feeds.values())))
        limit = self.max_batch or n
        parts = [self._infer_feeds({k: v[i : i + limit] for k, v in feeds.items()}) for i in range(0, n, limit)]
        return parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _infer_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Another model's request: every input and output by the repository's names."""
        from tritonclient.utils import np_to_triton_dtype

        ep = self.endpoint
        if ep.protocol == "http":
            import tritonclient.http as mod
        else:
            import tritonclient.grpc as mod
        names = self._triton_names
        inputs = []
        for t in self.spec.inputs:
            array = feeds[t.name]
            inp = mod.InferInput(names[t.name], list(array.shape), np_to_triton_dtype(array.dtype))
            inp.set_data_from_numpy(array, **({"binary_data": True} if ep.protocol == "http" else {}))
            inputs.append(inp)
        outputs = [mod.InferRequestedOutput(names[t.name], **({"binary_data": True} if ep.protocol == "http" else {}))
                   for t in self.spec.outputs]
        result = self._call("an inference request", self.client.infer, ep.model, inputs, outputs=outputs)
        n = len(next(iter(feeds.values())))
        out = {}
        for t in self.spec.outputs:
            got = result.as_numpy(names[t.name])
            if got is None or got.shape[:1] != (n,) or got.dtype != t.np_dtype:
                raise ToolkitError(f"Triton at {ep.url} model {ep.model!r} returned {None if got is None else (got.shape, str(got.dtype))} "
                                   f"for {t.name}, expected ({n}, ...) {t.dtype}")
            out[t.name] = got
        return out

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if not self.builtin:
            return self._run_feeds({self.input_name: batch})[self.output_name]
        limit = self.max_batch or len(batch)
        if self._shm is not None:
            limit = min(limit, self._shm["capacity"])
        if len(batch) <= limit:
            return self._infer(batch)
        return np.concatenate([self._infer(batch[i : i + limit]) for i in range(0, len(batch), limit)])

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        ep = self.endpoint
        if ep.protocol == "http":
            import tritonclient.http as mod
        else:
            import tritonclient.grpc as mod
        inp = mod.InferInput(INPUT_NAME, list(batch.shape), "FP32")
        out = mod.InferRequestedOutput(OUTPUT_NAME, **({"binary_data": True} if ep.protocol == "http" else {}))
        n = batch.shape[0]
        if self._shm is not None:
            import tritonclient.utils.shared_memory as shm

            in_name, in_handle, _ = self._shm["in"]
            out_name, out_handle, _ = self._shm["out"]
            shm.set_shared_memory_region(in_handle, [batch])
            inp.set_shared_memory(in_name, batch.nbytes)
            out.set_shared_memory(out_name, n * NUM_CLASSES * 4)
            self._call("an inference request", self.client.infer, ep.model, [inp], outputs=[out])
            logits = shm.get_contents_as_numpy(out_handle, np.float32, [n, NUM_CLASSES]).copy()
        else:
            if ep.protocol == "http":
                inp.set_data_from_numpy(batch, binary_data=True)
            else:
                inp.set_data_from_numpy(batch)
            result = self._call("an inference request", self.client.infer, ep.model, [inp], outputs=[out])
            logits = result.as_numpy(OUTPUT_NAME)
        if logits is None or logits.shape != (n, NUM_CLASSES) or logits.dtype != np.float32:
            got = None if logits is None else (logits.shape, str(logits.dtype))
            raise ToolkitError(f"Triton at {ep.url} model {ep.model!r} returned {got}, expected ({n}, {NUM_CLASSES}) float32")
        return logits

    # -- statistics (restricted endpoint) -------------------------------------------------------
    def statistics(self) -> dict | None:
        """The model's cumulative statistics from the server (needs the access token on PyTriton
        servers), as the HTTP JSON; None when the server refuses them."""
        if self.client is None:
            self.load()
        kwargs = {"headers": self._auth_headers()}
        if self.endpoint.protocol == "grpc":
            kwargs.update(as_json=True, client_timeout=self.timeout_s)
        try:
            stats = self.client.get_inference_statistics(self.endpoint.model, **kwargs)
        except Exception:  # noqa: BLE001 - restricted or unsupported: the benchmark reports "not available"
            return None
        for model in stats.get("model_stats", []):
            if model.get("name") == self.endpoint.model:
                return model
        return None

    def runtime_version(self) -> str:
        return f"triton {self.server_version or '?'} via {self.endpoint.protocol}{' + shared memory' if self.shared_memory else ''}"

    def details(self) -> dict:
        return {"url": self.endpoint.url, "model": self.endpoint.model, "protocol": self.endpoint.protocol,
                "shared_memory": self.shared_memory, "timeout_s": self.timeout_s, "max_batch_size": self.max_batch}

    def close(self) -> None:
        if self._shm is not None:
            for key in ("in", "out"):
                name, handle, _ = self._shm[key]
                self._release_region(name, handle)
            self._shm = None
        if self.client is not None:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001 - closing a client of a dead server
                pass
            self.client = None
        super().close()
