# Herald's two front doors: `make demo` and `make test`. Both build their own venv.
# Python 3.13: python3.13 if it is on PATH, else pyenv's 3.13.0.
PYTHON_313 := $(shell command -v python3.13 2>/dev/null || echo "env PYENV_VERSION=3.13.0 python3")
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@if ! $(PY) -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then \
		rm -rf $(VENV) && $(PYTHON_313) -m venv $(VENV); fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . --group test
	rm -f $(VENV)/.installed-* && touch $@

# Runs Herald on SQLite with a demo tenant, a background worker and the FCM sandbox.
demo: install
	$(PY) manage.py demo

# Lint, then the whole suite. DATABASE_URL / REDIS_URL choose the services.
test: install lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) herald.sqlite3* .pytest_cache
