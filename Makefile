PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench ui

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: install
	$(BIN)/toolkit train --model vae --experiment demo
	$(BIN)/toolkit train --model ae --experiment demo
	@echo "Runs are in the MLflow experiment 'demo' (store: mlruns/). Browse them with: $(BIN)/toolkit ui"

test: install
	$(BIN)/pytest -q

bench: install
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/eval_speed.py

ui: install
	$(BIN)/toolkit ui
