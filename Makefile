# The README's two set-up commands. Both work on a fresh machine with Python 3.11+.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: serve test install install-test browser pg-client lint bench

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

install: $(PY)
	$(PIP) install -q -e .

install-test: $(PY) browser pg-client
	$(PIP) install -q -e '.[test]'

# The browser tests (tests/e2e) drive Debian's Chromium through Playwright (never `playwright install`: it downloads
# browsers); the font makes Chinese render. Installed with apt-get only when missing; sudo only when not root.
BROWSER_PACKAGES := chromium fonts-wqy-microhei
CHINESE_FONT := /usr/share/fonts/truetype/wqy/wqy-microhei.ttc
NO_BROWSER := install $(BROWSER_PACKAGES) yourself, or the browser tests skip (and fail in CI)
browser:
	@if ! command -v chromium >/dev/null 2>&1 || [ ! -e $(CHINESE_FONT) ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "no apt-get: $(NO_BROWSER)"; \
	    exit 0; \
	  fi; \
	  sudo=; if [ "$$(id -u)" != 0 ]; then \
	    command -v sudo >/dev/null 2>&1 || { echo "not root and no sudo: $(NO_BROWSER)"; exit 0; }; \
	    sudo=sudo; \
	  fi; \
	  apt="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get"; \
	  echo "installing $(BROWSER_PACKAGES) for the browser tests"; \
	  $$apt install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null 2>&1 \
	    || { $$apt update -qq >/dev/null && $$apt install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; }; \
	fi

# The backup tests (tests/test_backup_restore.py) run pg_dump and pg_restore: Debian's postgresql-client, installed
# with apt-get only when pg_dump is missing, as the browser above.
NO_PG_CLIENT := install postgresql-client yourself, or the PostgreSQL backup test skips (and fails in CI)
pg-client:
	@if ! command -v pg_dump >/dev/null 2>&1 || ! command -v pg_restore >/dev/null 2>&1; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "no apt-get: $(NO_PG_CLIENT)"; \
	    exit 0; \
	  fi; \
	  sudo=; if [ "$$(id -u)" != 0 ]; then \
	    command -v sudo >/dev/null 2>&1 || { echo "not root and no sudo: $(NO_PG_CLIENT)"; exit 0; }; \
	    sudo=sudo; \
	  fi; \
	  apt="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get"; \
	  echo "installing postgresql-client for the backup tests"; \
	  $$apt install -y -qq --no-install-recommends postgresql-client >/dev/null 2>&1 \
	    || { $$apt update -qq >/dev/null && $$apt install -y -qq --no-install-recommends postgresql-client >/dev/null; }; \
	fi

# Install, then run the server on its embedded defaults (SQLite in ./data, built-in fake WeChat API).
serve: install
	$(VENV)/bin/frontdoor serve

# Install everything the tests need (Chromium too, for tests/e2e), check style, run every test (SQLite and PostgreSQL).
test: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest -q

bench: install
	$(PY) -m bench.webhook
