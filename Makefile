# The README's commands. `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test check system-packages fuzz lint bandit bench bench-load audit openapi clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . || $(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# Debian packages the suite drives for real (chromium, nginx, wrk): installed when missing, as
# root or with sudo; otherwise a one-line message names them.
system-packages:
	@bash scripts/system-packages.sh

# The layers (import-linter contracts in pyproject.toml), ruff, and mypy --strict on the domain, the file
# readers and the renderers: CI gates on them through `make test`.
check: $(VENV)/.dev
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check .
	$(BIN)/mypy labinterp/core labinterp/render labinterp/files

# The real FHIR server the CDS Hooks fetch tests run on 127.0.0.1 (Medplum's FHIR router, pinned by its
# package-lock.json): installed here so that pytest itself downloads nothing. Defined before `test`, whose
# prerequisites are expanded as make reads them.
FHIR_SERVER := tests/fhirserver

test: $(VENV)/.dev system-packages check $(FHIR_SERVER)/node_modules/.installed
	$(BIN)/python -m pytest

$(FHIR_SERVER)/node_modules/.installed: $(FHIR_SERVER)/package-lock.json
	cd $(FHIR_SERVER) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# A longer fuzzing campaign than `make test` runs: the property-based tests named *fuzz* (CSV readers,
# HL7, FHIR, v1, batch, CDS Hooks), FUZZ_EXAMPLES examples each (make fuzz FUZZ_EXAMPLES=20000 for a night).
FUZZ_EXAMPLES ?= 2000
fuzz: $(VENV)/.dev
	LABINTERP_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider -k fuzz tests

bench: $(VENV)/.dev
	$(BIN)/python bench/run_all.py

# wrk, 60 s at 64 connections against a three-analyte panel; prints p99 and worker memory.
bench-load: $(VENV)/.dev
	$(BIN)/python bench/load.py

# Static security check of the code; CI gates on it. Skipped, with reasons: B101 (asserts that
# narrow types for mypy; the service never runs with python -O) and B606 (the CLI's execv of
# gunicorn with a fixed argument list, the non-shell form bandit recommends).
bandit: $(VENV)/.dev
	$(BIN)/bandit -q -r labinterp -s B101,B606

lint: check bandit

# Known advisories in the pinned requirements. Exits non-zero on a vulnerability; add
# AUDIT_FLAGS=--strict to fail also on a package that could not be audited.
AUDIT_FLAGS ?=
audit: $(VENV)/.dev
	$(BIN)/pip-audit -r requirements.txt -r requirements-dev.txt --no-deps --disable-pip --progress-spinner off $(AUDIT_FLAGS)

# Regenerate the committed OpenAPI document (a test checks it matches the code).
openapi: $(VENV)/.runtime
	$(BIN)/python -m labinterp.openapi > docs/openapi.json

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
