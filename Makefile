# calroute — developer entry points. `make local` runs the product, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# A *working* Python 3.12 (the Lambda runtime): python3.12 on PATH, else pyenv's newest 3.12.x
# (a pyenv shim whose version is not active does not count). The app venv may fall back to python3.
PY312 := $(shell for c in python3.12 $$(command -v pyenv >/dev/null 2>&1 && for v in $$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12' | sort -rV); do echo $$(pyenv root)/versions/$$v/bin/python3.12; done); do $$c -c 'import sys; assert sys.version_info[:2] == (3, 12); print(sys.executable)' 2>/dev/null && break; done)
PYTHON312 ?= $(or $(PY312),python3)
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: help venv local test test-fast bench mutation mutation-sample lint validate build build-jwt sizecheck evaluate report clean

help:
	@echo "make local     run calroute locally (AWS emulation + API on 127.0.0.1:3000, demo user trained)"
	@echo "make test      install what tests need, check the import layering (lint-imports), run the whole suite"
	@echo "make bench     run the benchmarks (numbers to bench/results and docs/benchmarks.md)"
	@echo "make mutation  mutation testing of the critical modules (scores to docs/reliability.md; CPU heavy)"
	@echo "make validate  sam validate --lint + cfn-lint"
	@echo "make build     sam build (cross-built, trimmed layers) + size check"
	@echo "make build-jwt generate template.jwt.yaml (JWT authorizer), validate and sam build it"
	@echo "make evaluate  evaluate on the bundled real calendars"

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	@$(PY) -c 'import sys; assert sys.version_info[:2] >= (3, 12), "calroute needs Python 3.12+ (the Lambda runtime)"'
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

local: venv
	$(VENV)/bin/calroute local $(ARGS)

# lint-imports: the layering contracts of .importlinter (docs/architecture.md), before the tests
test: venv
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 2 --dist loadfile --durations=8 $(PYTEST_ARGS)

test-fast: venv
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -m "not slow" -x $(PYTEST_ARGS)

bench: venv
	$(PY) -m bench

# mutmut 3 per module (tools/calroute_dev/mutation/targets.toml); ARGS="--only ids gates" for some.
# CALROUTE_MUTATION_WORKERS (default 2) forked mutants at a time. The sample also runs in `make test`.
mutation: venv
	PYTHONPATH=tools $(PY) -m calroute_dev.mutation $(ARGS)

mutation-sample: venv
	PYTHONPATH=tools $(PY) -m calroute_dev.mutation --sample

evaluate: venv
	$(VENV)/bin/calroute evaluate --data data/users

report: venv
	$(VENV)/bin/calroute evaluate --data data/users --report docs/evaluation

# --- SAM (validate / build / sizecheck) ---------------------------------------------------------
# The sam CLI lives in its own venv (.venv-sam) so its pins never fight the app's. sam's python
# builder needs a *working* python3.12 on PATH (a pyenv shim that is not active does not count),
# and the layer Makefiles (BuildMethod: makefile) use $(PYTHON) only to run pip --platform/--target
# and layers/trim.py, so any Python with pip works there.
SAM_PY312 := $(PY312)
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_ENV := PATH="$(dir $(SAM_PY312)):$$PATH" PYTHON="$(abspath $(PY))" SAM_CLI_TELEMETRY=0

$(SAM_VENV)/.installed:
	@test -n "$(SAM_PY312)" || (echo "no working python3.12 found (PATH or pyenv)"; exit 1)
	@test -x $(SAM) || ($(SAM_PY312) -m venv $(SAM_VENV) && $(SAM_VENV)/bin/pip install -q aws-sam-cli)
	@touch $@

validate: venv $(SAM_VENV)/.installed
	$(SAM_ENV) $(SAM) validate --lint --region $(AWS_REGION)
	$(VENV)/bin/cfn-lint template.yaml

build: venv $(SAM_VENV)/.installed
	$(SAM_ENV) $(SAM) build --region $(AWS_REGION) --parallel
	$(PY) infra/sizecheck.py .aws-sam/build --smoke

# JWT variant: SAM cannot switch DefaultAuthorizer by parameter, so template.jwt.yaml is generated.
template.jwt.yaml: template.yaml infra/jwt/make_jwt_template.py venv
	$(PY) infra/jwt/make_jwt_template.py --template template.yaml --out $@

build-jwt: template.jwt.yaml $(SAM_VENV)/.installed
	$(SAM_ENV) $(SAM) validate --lint --region $(AWS_REGION) -t template.jwt.yaml
	$(SAM_ENV) $(SAM) build --region $(AWS_REGION) --parallel -t template.jwt.yaml
	$(PY) infra/sizecheck.py .aws-sam/build --smoke

sizecheck:
	$(PY) infra/sizecheck.py .aws-sam/build --smoke

clean:
	rm -rf .aws-sam .pytest_cache .hypothesis .import_linter_cache build *.egg-info
