# clinrl — developer entry points. Each target creates/updates .venv itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test demo clean

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
	$(BIN)/python -m pytest tests

demo: $(STAMP)
	$(BIN)/clinrl demo --out runs/demo

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
