# Fresh machine: `make demo` to see it run, `make test` to check everything.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
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

# Every runtime dependency, and the testing extra, at the lowest version pyproject.toml
# allows ("name>=X" read as "name==X"): the pins are read from the bounds, so a bound and
# its test cannot drift apart. The other dev extras come at their usual versions.
define LOWEST_PINS
import re, sys, tomllib
with open("pyproject.toml", "rb") as file:
    project = tomllib.load(file)["project"]
for dependency in project["dependencies"] + project["optional-dependencies"]["testing"]:
    bound = re.fullmatch(r"([A-Za-z0-9._-]+)>=([0-9][0-9.]*)", dependency)
    if bound is None:
        sys.exit(f"pyproject.toml: dependency {dependency!r}: expected NAME>=VERSION")
    print(f"{bound[1]}=={bound[2]}")
endef
export LOWEST_PINS

$(OLDEST)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST)
	$(PYTHON) -c "$$LOWEST_PINS" > $(OLDEST)/lowest.new && mv $(OLDEST)/lowest.new $(OLDEST)/lowest.txt
	$(OLDEST)/bin/pip install --quiet -e '.[dev]' -r $(OLDEST)/lowest.txt
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

# The seed contract, the renderer, the HTTP adapters, the config, YAML, logging and
# basic-auth code and the testing kit again, on those lowest versions.
oldest: $(OLDEST)/.installed
	@cat $(OLDEST)/lowest.txt
	$(OLDEST)/bin/pytest -p no:cacheprovider tests/test_metrics.py tests/test_base_service.py \
		tests/test_renderer.py tests/test_exposition_http.py tests/test_server.py \
		tests/test_asgi.py tests/test_adapters.py tests/test_config.py tests/test_yaml.py \
		tests/test_logger.py tests/test_metrics_config.py tests/test_service_config.py \
		tests/test_web_config.py tests/test_testing.py tests/test_schedule.py tests/test_cycle.py

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
