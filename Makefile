# The README's two set-up commands. Both work on a fresh machine with Python 3.11+.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: serve test install install-test lint bench

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(PY)
	$(PIP) install -q -e .

install-test: $(PY)
	$(PIP) install -q -e '.[test]'

# Install, then run the server on its embedded defaults (SQLite in ./data, built-in fake WeChat API).
serve: install
	$(VENV)/bin/frontdoor serve

# Install everything the tests need, check style, run every test (SQLite and PostgreSQL).
test: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -q

bench: install
	$(PY) -m bench.webhook
