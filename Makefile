# Herald's two front doors: `make demo` and `make test`. Both build their own venv.
# Python 3.13: pyenv's 3.13.0 (the machine's python3 is older), else a python3.13 on PATH.
IS_313 := -c 'import sys; assert sys.version_info[:2] == (3, 13)'
PYTHON_313 := $(shell \
	if env PYENV_VERSION=3.13.0 python3 $(IS_313) 2>/dev/null; then echo "env PYENV_VERSION=3.13.0 python3"; \
	elif python3.13 $(IS_313) 2>/dev/null; then echo python3.13; \
	else echo "no-python-3.13-found"; fi)
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: install browser demo test lint bench clean schema

install: $(STAMP)

$(STAMP): pyproject.toml
	@if ! $(PY) $(IS_313) 2>/dev/null; then \
		rm -rf $(VENV) && $(PYTHON_313) -m venv $(VENV); fi
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e . --group test
	rm -f $(VENV)/.installed-* && touch $@

# Runs Herald on SQLite with a demo tenant, a background worker and the FCM sandbox.
# Other ports and options: make demo ARGS="--port 8001 --sandbox-port 9199" (manage.py demo --help).
# Herald refuses the repository's public SECRET_KEY, so the demo makes one of its own once
# (var/demo-secret-key, never committed) unless SECRET_KEY is set.
demo: install
	@mkdir -p var && [ -s var/demo-secret-key ] || \
		$(PY) -c 'import secrets; print(secrets.token_urlsafe(50))' > var/demo-secret-key
	FCM_SANDBOX_ENABLED=1 SECRET_KEY="$${SECRET_KEY:-$$(cat var/demo-secret-key)}" $(PY) manage.py demo $(ARGS)

# Browser tests drive Debian's Chromium through Playwright (never a downloaded browser).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Debian's chromium for the browser tests"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium >/dev/null; }

# Lint, then the whole suite. DATABASE_URL / REDIS_URL choose the services.
test: install browser lint
	$(PY) -m pytest $(PYTEST_ARGS)

# The pre-commit hooks (.pre-commit-config.yaml) over the whole tree: ruff check, then the
# ruff check and ruff format --check, as the pre-commit hooks run them (LINT_FORMAT=0 skips
# the format check, for a quick look at lint alone).
LINT_FORMAT ?= 1
lint: install
	$(VENV)/bin/ruff check .
	@if [ "$(LINT_FORMAT)" = 1 ]; then $(VENV)/bin/ruff format --check .; \
	else echo "ruff format --check skipped (LINT_FORMAT=0)"; fi

clean:
	rm -rf $(VENV) herald.sqlite3* .pytest_cache

# Rewrite the pinned OpenAPI snapshots (tests/openapi-schema.*.yaml) after an intended API change.
schema: install
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py spectacular --file tests/openapi-schema.sqlite.yaml
	DJANGO_SETTINGS_MODULE=tests.settings DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
		$(PY) manage.py spectacular --file tests/openapi-schema.postgresql.yaml
