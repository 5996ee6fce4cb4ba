PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_PACKAGES := postgresql chromium  # a PostgreSQL server (multi-machine study test), a browser (UI tests)

.PHONY: install data test-packages demo test bench ui dashboard ui-screenshots

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,dashboard]'
	touch $(STAMP)

# The real Fashion-MNIST: found where it is, else Debian's package (as root or with password-less
# sudo), else torchvision's download into ./data; else `toolkit data` says what to do and fails.
data: install
	@$(BIN)/toolkit data --no-download >/dev/null 2>&1 || scripts/system-install dataset-fashion-mnist || true
	$(BIN)/toolkit data

test-packages:
	scripts/system-install $(TEST_PACKAGES)

# three seeds, not the study's five: what they resolve is said in the report
demo: install data
	$(BIN)/python studies/beta_sweep.py --seeds 3

test: install data test-packages
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -q

bench: install data
	$(BIN)/python benchmarks/training_share.py
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/eval_speed.py
	$(BIN)/python benchmarks/sweep_throughput.py
	$(BIN)/python benchmarks/report_speed.py
	$(BIN)/python benchmarks/ui_start.py
	$(BIN)/python benchmarks/model_logging.py

ui: install
	$(BIN)/toolkit ui

dashboard: install
	$(BIN)/toolkit dashboard

# reports/ui/: the browser tests run on this checkout's store (the β sweep of `make demo`), keeping their screenshots
ui-screenshots: install test-packages
	TOOLKIT_UI_STORE=. TOOLKIT_UI_STUDY=beta-sweep TOOLKIT_SCREENSHOTS=reports/ui $(BIN)/pytest -q tests/test_browser.py
