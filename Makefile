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
	$(BIN)/python studies/beta_sweep.py

test: install
	$(BIN)/pytest -q

bench: install
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/eval_speed.py
	$(BIN)/python benchmarks/sweep_throughput.py
	$(BIN)/python benchmarks/report_speed.py

ui: install
	$(BIN)/toolkit ui
