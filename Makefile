# Fresh machine: `make demo` to see it run, `make test` to check everything.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The oldest prometheus-client pyproject.toml allows; the renderer's tests run on it too.
OLDEST_PROMETHEUS_CLIENT := 0.23.1
OLDEST := .venv-oldest
SUDO   := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
# Debian packages the tests and benchmarks use: prometheus/promtool, prometheus-pushgateway,
# wrk, curl, chromium.

.PHONY: demo test lint typecheck unit oldest bench dist system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(OLDEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST)
	$(OLDEST)/bin/pip install --quiet -e '.[dev]' 'prometheus-client==$(OLDEST_PROMETHEUS_CLIENT)'
	touch $@

system-deps:
	@missing=""; \
	command -v promtool >/dev/null || missing="$$missing prometheus"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v prometheus-pushgateway >/dev/null || missing="$$missing prometheus-pushgateway"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: $(VENV)/.installed
	$(BIN)/bigbrotr run demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy --strict

unit: $(VENV)/.installed-dev system-deps
	$(BIN)/pytest

# The renderer's parity tests again, on the oldest supported prometheus-client.
oldest: $(OLDEST)/.installed
	$(OLDEST)/bin/pytest -p no:cacheprovider tests/test_renderer.py tests/test_exposition_http.py

test: lint typecheck unit oldest

bench: $(VENV)/.installed-dev system-deps
	@for script in bench/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# The wheel to install bigbrotr into a project of your own: dist/bigbrotr-<version>-py3-none-any.whl
dist: $(VENV)/.installed
	rm -rf dist
	$(BIN)/pip wheel --quiet --no-deps --wheel-dir dist .
	@ls dist/*.whl

clean:
	rm -rf $(VENV) $(OLDEST) dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
