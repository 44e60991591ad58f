# Two entry points do all set-up on a fresh machine: `make pipeline` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= dev,openvino,serve,cluster
TOOLKIT := $(BIN)/toolkit

.PHONY: install data pipeline test test-fast lint bench bench-quick bench-tune bench-train trt-check gpu-install gpu-check gpu-extras-check mutate clean soak serve-bench

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	$(TOOLKIT) data

# The whole pipeline: data, training, every ONNX precision, the parity gate, a quick benchmark.
pipeline: $(STAMP)
	$(TOOLKIT) data
	$(TOOLKIT) train
	$(TOOLKIT) export --format onnx --precision all
	$(TOOLKIT) eval
	$(TOOLKIT) bench --quick --out artifacts/bench-quick

# The test suite, including the full default training run and the parity gate on the committed checkpoint.
test: $(STAMP)
	$(TOOLKIT) data
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check toolkit tests

# The standard latency/throughput sweep over every available pair (a few minutes; needs the
# exports from `make pipeline`): bench.json/.md and plots in artifacts/bench/.
# With artifacts/bench/tuned.json present (`make bench-tune`), the sweep adds 'tuned' rows beside the defaults.
TUNED := $(wildcard artifacts/bench/tuned.json)
bench: $(STAMP)
	$(TOOLKIT) bench $(if $(TUNED),--config $(TUNED))

# The configuration search (7 minutes of budget, under 10 in all): artifacts/bench/tuned.json.
bench-tune: $(STAMP)
	$(TOOLKIT) bench --tune --budget 420

# A small sweep (under a minute), kept apart from the committed reference report.
bench-quick: $(STAMP)
	$(TOOLKIT) bench --quick --out artifacts/bench-quick

bench-train: $(STAMP)
	$(TOOLKIT) bench-train

# 60 s of load through a local Triton server (concurrency 16, mixed batch sizes): every response
# checked against in-process logits, the server's memory watched (docs/deployment.md).
soak: $(STAMP)
	$(TOOLKIT) soak --duration 60 --concurrency 16 --batch-sizes 1,8,64

# The serving figures: in-process vs a local Triton server over HTTP, gRPC and HTTP + shared memory.
serve-bench: $(STAMP)
	$(TOOLKIT) bench --serve --concurrency 1,4,16 --batch-sizes 1,256 --duration 3 --out artifacts/bench-serve

# Mutation testing of the functions that carry the guarantees (mutmut 3, installed on first use; test
# selection and settings in pyproject.toml [tool.mutmut]; docs/mutation.md). About 20-30
# minutes on 2 cores; every listed mutant is tested again on each run (results land in mutants/,
# `mutmut show <name>` prints one). A subset: make mutate MUTANTS='toolkit.compare.*'
MUTANTS ?= toolkit.compare.* toolkit.parity.x_judge_pair* toolkit.parity.x_tolerance_key* \
	toolkit.parity.x_override_tolerances* toolkit.parity.x*ParityReport*passed* toolkit.model.x_validate_batch* \
	toolkit.stats.* toolkit.files.store.* toolkit.files.onnx_file.* toolkit.files.checkpoint.x_load_state_dict* \
	toolkit.files.checkpoint.x_validate_state_dict* toolkit.files.engine_sidecar.x_read_record* \
	toolkit.files.engine_sidecar.x_verify_engine_file* toolkit.files.engine_sidecar.x__check_* \
	toolkit.files.engine_sidecar.x__read_engine_bytes* toolkit.files.engine_sidecar.x_load_verified_engine* \
	toolkit.bench.baseline.x_compare_to_baseline* \
	toolkit.files.outputs.* toolkit.parity.x__check_pair_names* toolkit.parity.x__loaded_pairs* \
	toolkit.diagnose.analysis.x_sqnr_db* toolkit.diagnose.analysis.x_judge* toolkit.diagnose.analysis.x_exposure_check* \
	toolkit.backends.triton.x*TritonBackend*_check_model* toolkit.backends.triton.x*TritonBackend*_signature* \
	toolkit.backends.triton.x*TritonBackend*served_precision* toolkit.backends.triton.x__config_precision*

mutate: data
	$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/python -m pip install --quiet --disable-pip-version-check 'mutmut>=3.8,<4'
	TOOLKIT_DATA_DIR=$(abspath $(or $(TOOLKIT_DATA_DIR),data)) $(BIN)/python -m mutmut run --max-children 2 $(foreach m,$(MUTANTS),'$(m)')
	$(BIN)/python -m mutmut results
	$(BIN)/python -m mutmut export-cicd-stats && cat mutants/mutmut-cicd-stats.json

trt-check:
	../shared/tools/trt-api-check toolkit

# --- a machine with an NVIDIA GPU (docs/gpu-tensorrt.md) --------------------------------------
# One CUDA stack in its own environment: CUDA=12 (driver r535+) or CUDA=13 (driver r580+).
# The CPU onnxruntime (a core dependency) and onnxruntime-gpu share the onnxruntime/ folder, so
# gpu-install removes the CPU one, then restores the files of the GPU build it overwrote (same
# version, no dependencies).
CUDA     ?= 12
GPU_VENV ?= .venv-gpu
GPU_BIN  := $(GPU_VENV)/bin

gpu-install:
	@case "$(CUDA)" in 12|13) ;; *) echo "error: CUDA must be 12 or 13, got '$(CUDA)'; pass CUDA=12 or CUDA=13" >&2; exit 2;; esac
	test -x $(GPU_BIN)/python || $(PYTHON) -m venv $(GPU_VENV)
	$(GPU_BIN)/python -m pip install --quiet --upgrade pip
	$(GPU_BIN)/python -m pip install -e '.[gpu-cu$(CUDA),dev]'
	$(GPU_BIN)/python -m pip uninstall -y onnxruntime
	$(GPU_BIN)/python -m pip install --force-reinstall --no-deps "onnxruntime-gpu==$$($(GPU_BIN)/python -c 'from importlib.metadata import version; print(version("onnxruntime-gpu"))')"
	$(GPU_BIN)/toolkit info

# Every GPU-marked test, the parity gate and a quick benchmark on each usable GPU backend:
# artifacts/gpu-check/gpu-check.json and .md (what ran, what was skipped and why, the numbers).
gpu-check:
	$(GPU_BIN)/toolkit data
	$(GPU_BIN)/toolkit gpu-check

# Resolve both GPU extras with pip's dry run (nothing installed, no GPU) and check each is one CUDA major.
gpu-extras-check:
	scripts/dry-run-gpu-extras build/gpu-extras

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build
