# Mekong Trust Ledger. Every target creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo bench lint clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,lint]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m tools.devnet.demo

bench: $(STAMP)
	$(PY) -m tools.bench

lint: $(STAMP)
	$(PY) -m ruff check ledger credentials node tools tests
	$(PY) -m mypy ledger credentials node tools

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
