# Two commands do everything on a fresh machine with Python 3.11+:
#   make demo   set up .venv, run the example studies with the daemon, show them live
#   make test   set up .venv, run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The venv is rebuilt whenever pyproject.toml changes (the stamp is older than it).
STAMP := $(VENV)/.installed
EXTRAS ?= dev,tensorflow,ray
DEMO_DIR ?= build/demo

.PHONY: demo test venv clean help

help:
	@echo "make demo   run the example studies with the daemon (creates .venv)"
	@echo "make test   run the test suite (creates .venv)"
	@echo "make clean  remove .venv and build/"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "hpod needs Python 3.11 or newer ($(PYTHON) is older); run make PYTHON=python3.11"; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py --folder $(DEMO_DIR)

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build
