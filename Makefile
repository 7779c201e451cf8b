# Steward. `make run` starts the portal with demo data; `make test` runs the whole suite.
# Both create .venv and install the project on first use; later runs reinstall only when
# pyproject.toml has changed (a stamp file under .venv remembers the last install).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
INSTALLED := $(VENV)/.installed
INSTALLED_DEV := $(VENV)/.installed-dev

.DEFAULT_GOAL := help
.PHONY: help run test bench lint screenshot install install-dev

help:
	@echo "make run         the portal on http://127.0.0.1:$(PORT)/ with web, worker and beat (Ctrl-C stops all)"
	@echo "make test        the whole test suite (pytest)"
	@echo "make lint        ruff check"
	@echo "make bench       the gate, the inbox, metric imports, scorecards and the policy simulator under load (PostgreSQL, gunicorn, wrk)"
	@echo "make screenshot  docs/dashboard.png from the demo data"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	@touch $@

$(INSTALLED_DEV): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $@ $(INSTALLED)

install: $(INSTALLED)
install-dev: $(INSTALLED_DEV)

# DJANGO_DEBUG=1 unless you set it: a local run needs no secret and serves static files itself.
# With DJANGO_DEBUG=0 you also need DJANGO_SECRET_KEY and DJANGO_ALLOWED_HOSTS (see README);
# static files are collected and the demo data is not loaded.
run: $(INSTALLED)
	@set -e; \
	export DJANGO_DEBUG="$${DJANGO_DEBUG-1}" STEWARD_PORT="$(PORT)" PATH="$(CURDIR)/$(BIN):$$PATH"; \
	case "$$(echo "$$DJANGO_DEBUG" | tr A-Z a-z)" in 1|true|yes|on) debug=1 ;; *) debug= ;; esac; \
	[ -n "$$debug" ] || python manage.py collectstatic --noinput --verbosity 0; \
	python manage.py migrate --noinput; \
	if [ -n "$$debug" ]; then python manage.py seed_demo; \
	else echo "DJANGO_DEBUG is off: no demo data loaded (its passwords are public)."; fi; \
	echo; \
	echo "Steward is starting on http://127.0.0.1:$(PORT)/$${debug:+ — log in with a demo account above}."; \
	echo "Web server, Celery worker and Celery beat run below; Ctrl-C stops all three."; \
	echo; \
	exec honcho start -f Procfile

test: $(INSTALLED_DEV)
	$(BIN)/pytest $(PYTEST_ARGS)

# The benchmarks (tests/perf/): the gate against a bare Django baseline, then the review inbox
# with 100,000 pending items. PostgreSQL on 127.0.0.1 (or STEWARD_BENCH_DATABASE_URL) and wrk,
# which is installed from Debian's packages when missing.
bench: $(INSTALLED_DEV)
	@command -v wrk >/dev/null || { echo "Installing wrk, the load generator (apt-get)..."; \
	  apt-get install -y -q wrk >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }; }
	$(BIN)/python -m tests.perf.gate
	$(BIN)/python -m tests.perf.inbox
	$(BIN)/python -m tests.perf.metrics_import
	$(BIN)/python -m tests.perf.scorecards
	$(BIN)/python -m tests.perf.simulate

lint: $(INSTALLED_DEV)
	$(BIN)/ruff check .

screenshot: $(INSTALLED_DEV)
	$(BIN)/python tests/e2e/screenshot.py
