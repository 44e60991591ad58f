# Two entry points do all set-up on a fresh machine: `make pipeline` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= dev,openvino,serve
TOOLKIT := $(BIN)/toolkit

.PHONY: install data pipeline test test-fast lint bench bench-quick bench-train trt-check clean soak serve-bench

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
bench: $(STAMP)
	$(TOOLKIT) bench

# A small sweep (under a minute), kept apart from the committed reference report.
bench-quick: $(STAMP)
	$(TOOLKIT) bench --quick --out artifacts/bench-quick

bench-train: $(STAMP)
	$(TOOLKIT) bench-train

# 60 s of load through a local Triton server (concurrency 16, mixed batch sizes): every response
# checked against in-process logits, the server's memory watched (README, Deployment).
soak: $(STAMP)
	$(TOOLKIT) soak --duration 60 --concurrency 16 --batch-sizes 1,8,64

# The serving figures: in-process vs a local Triton server over HTTP, gRPC and HTTP + shared memory.
serve-bench: $(STAMP)
	$(TOOLKIT) bench --serve --concurrency 1,4,16 --batch-sizes 1,256 --duration 3 --out artifacts/bench-serve

trt-check:
	../shared/tools/trt-api-check toolkit

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
