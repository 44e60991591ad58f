# Two entry points do all set-up on a fresh machine: `make pipeline` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS ?= dev,openvino
TOOLKIT := $(BIN)/toolkit

.PHONY: install data pipeline test test-fast lint bench bench-quick bench-tune bench-train trt-check clean

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

trt-check:
	../shared/tools/trt-api-check toolkit

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
