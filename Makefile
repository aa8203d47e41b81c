# Everyday commands for Callboard: a virtualenv, system packages, tests, checks, the
# local stack. Everything runs from the repository root; `make help` lists the targets.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pyproject.toml is the list of Python dependencies: reinstall whenever it changes.
VENV_STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv deps test check fmt up down demo bench soak clean

help:
	@echo "make venv   - create $(VENV) and install callboard with its dev dependencies"
	@echo "make deps   - install PostgreSQL, Java, Maven, Prometheus, Chromium, a CJK font if missing; fetch Kafka jars"
	@echo "make test   - run the test suite (real Kafka and PostgreSQL, started locally)"
	@echo "make check  - ruff lint, ruff format check, mypy"
	@echo "make fmt    - format and autofix with ruff"
	@echo "make up     - run Kafka, PostgreSQL and the three services in the background"
	@echo "make down   - stop everything 'make up' started"
	@echo "make demo   - run the demo against a local stack"
	@echo "make bench  - run the pipeline and adapter benchmarks"
	@echo "make soak   - a million events through faults, ending exact (SOAK_ARGS='--events 30000': quick)"
	@echo "make clean  - stop the stack, remove the virtualenv, local state and caches"

$(VENV_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(VENV_STAMP)

# Debian's postgresql package would create and start a "main" cluster on port 5432, in
# the way of `make up`; createcluster.conf turns that off before the package arrives, and
# UCF_FORCE_CONFFOLD keeps it when the package installs its own version of the file.
deps: venv
	@packages=""; \
	if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		packages="$$packages postgresql"; \
	fi; \
	command -v java >/dev/null 2>&1 || packages="$$packages default-jre-headless"; \
	command -v mvn >/dev/null 2>&1 || packages="$$packages maven"; \
	command -v promtool >/dev/null 2>&1 || packages="$$packages prometheus"; \
	[ -x /usr/bin/chromium ] || packages="$$packages chromium"; \
	fc-list 2>/dev/null | grep -qi "wqy\|cjk" || packages="$$packages fonts-wqy-microhei"; \
	if [ -n "$$packages" ]; then \
		echo "installing system packages:$$packages"; \
		if [[ "$$packages" == *postgresql* && ! -e /etc/postgresql-common/createcluster.conf ]]; then \
			$(SUDO) mkdir -p /etc/postgresql-common; \
			echo "create_main_cluster = false" | $(SUDO) tee /etc/postgresql-common/createcluster.conf >/dev/null; \
		fi; \
		$(SUDO) apt-get update; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive UCF_FORCE_CONFFOLD=1 \
			apt-get install -y --no-install-recommends $$packages; \
	fi
	$(BIN)/python -c 'from devstack.kafka import ensure_kafka_jars; ensure_kafka_jars()'

test: venv deps
	$(BIN)/python -m pytest -q

check: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

up: venv deps
	$(BIN)/callboard up

down: venv
	$(BIN)/callboard down

demo: venv deps
	$(BIN)/callboard demo

bench: venv deps
	$(BIN)/python -m bench.pipeline
	$(BIN)/python -m bench.adapters

# Not part of `make test`: its own three-node Kafka cluster, PostgreSQL and services, about
# half an hour on two cores (bench/soak.py).
SOAK_ARGS ?=
soak: venv deps
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

clean:
	if [ -x $(BIN)/callboard ]; then $(BIN)/callboard down; fi
	rm -rf $(VENV) .callboard build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
