# Two commands on a fresh machine:  make demo   (the demo recipe on Fashion-MNIST → tables 3-6, compare, plots, report.html)
#                                   make test   (the test suite)
VENV ?= .venv
PYTHON ?= python3
CORES ?= $(shell nproc 2>/dev/null || echo 2)
# torch from this machine's local wheel store; override for another platform, e.g. TORCH="torch torchvision"
TORCH ?= torch==2.14.1 torchvision==0.29.1
BIN := $(VENV)/bin
FMNIST_DIRS := /usr/share/datasets/fashion-mnist data/FashionMNIST/raw

.PHONY: demo test lint install fashion-mnist clean-results

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

fashion-mnist:
	@for d in $(FMNIST_DIRS); do [ -d $$d ] && exit 0; done; \
	echo "Fashion-MNIST not found; installing Debian's dataset-fashion-mnist"; \
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else sudo apt-get update -qq && sudo apt-get install -y -qq dataset-fashion-mnist; fi

# the report is rebuilt only when a table or figure is newer than it (a second make demo does nothing)
demo: install fashion-mnist
	PATH=$(abspath $(BIN)):$$PATH snakemake --cores $(CORES)
	@if [ ! -f report.html ] || [ -n "$$(find tables -newer report.html -print -quit)" ]; then \
		PATH=$(abspath $(BIN)):$$PATH snakemake --report report.html; fi
	@for t in table4 table5 table6 table3 table8 compare; do echo; echo "## tables/$$t.md"; cat tables/$$t.md; done
	@echo; echo "HTML report: $(abspath report.html)"

test: install
	$(BIN)/python -m pytest -q

# snakefmt finds nothing to change; Snakemake's linter finds only the lints README "Lint" justifies
lint: install
	$(BIN)/snakefmt --check workflow/
	$(BIN)/python -m pytest -q tests/test_lint.py

clean-results:
	rm -rf results tables
