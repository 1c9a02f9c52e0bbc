# Two entry points for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU-only machines: make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu (same torch version)
TORCH_INDEX ?=

.PHONY: demo test lint docs bench install clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e .[all,dev]
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/latentcomp demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

test: $(STAMP) lint docs
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -x -n auto --durations=15

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) out site
