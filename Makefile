# slimrt: `make demo` runs the whole pipeline, `make test` runs lint and tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.slimrt-installed
TORCH_PIN := torch==2.13.0

.PHONY: setup data demo test lint bench-accuracy bench-export bench-runtime clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[train,plot,dev]'
	touch $(STAMP)

data:
	@bash scripts/ensure-data.sh

demo: setup
	$(BIN)/python -m slimrt.demo

lint: setup
	$(BIN)/ruff check .

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

bench-accuracy: setup
	$(BIN)/python benchmarks/accuracy.py --quick

# Benchmarks on a trained model: run `make demo` first (or pass MODEL=... ARTIFACT=...).
MODEL ?= demo-out/model.pt
ARTIFACT ?= demo-out/resnet20.slim

bench-export: setup
	$(BIN)/python benchmarks/export.py --model $(MODEL)

bench-runtime: setup
	$(BIN)/python benchmarks/runtime.py --artifact $(ARTIFACT)

clean:
	rm -rf $(VENV) build dist *.egg-info demo-out
