# msgtrack: `make run` starts the local stack with demo data; `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20

.PHONY: run test lint typecheck unit integration e2e infrastructure browser bench reliability mutation clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/msgtrack serve --demo

test: lint typecheck unit integration e2e infrastructure browser

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

e2e: $(STAMP)
	$(BIN)/pytest -q tests/e2e

# The dashboard in Debian's chromium (/usr/bin/chromium, installed by .ci/run), against `msgtrack serve`.
browser: $(STAMP)
	$(BIN)/pytest -q tests/browser

# The CDK app: synthesized once (functions bundled for arm64 without Docker), then checked by
# Template assertions, cdk-nag and cfn-lint. No AWS credentials needed.
infrastructure: $(STAMP)
	$(BIN)/pytest -q tests/infrastructure

# RELIABILITY.md, regenerated from what the fault, load and bad-input tests record (tests/reliability.py).
RELIABILITY_LOG := $(CURDIR)/.reliability.jsonl
reliability: $(STAMP)
	rm -f $(RELIABILITY_LOG)
	MSGTRACK_RELIABILITY_OUT=$(RELIABILITY_LOG) $(BIN)/pytest -q tests/unit tests/integration tests/e2e
	MSGTRACK_RELIABILITY_OUT=$(RELIABILITY_LOG) $(BIN)/python -m tests.reliability

# Mutation testing (mutmut, configured in pyproject.toml [tool.mutmut]) of the modules where a bug costs
# most; not part of `make test`. Writes tests/mutation_results.md (which `make reliability` appends) and its
# section of RELIABILITY.md, survivors explained from tests/mutation_survivors.toml. A full run outlasts a
# session on 2 cores (5,445 mutants at the last count: batch.py 1771, workflow.py 1186, links.py 793, runner.py 568; a
# surviving workflow mutant runs every workflow test it reaches, minutes of CPU), so the verdicts are kept in git
# (tests/mutation_verdicts.json, tests/mutation_verdicts.py): a run starts from them, checks only the
# mutants of functions whose code changed and those never checked, and saves what it decided (a run stopped
# by hand: `.venv/bin/python -m tests.mutation_verdicts save`); the report of a run cut short says how many
# are left. FRESH=1 checks every mutant again (a kept verdict does not see a test removed or weakened);
# RECHECK=1 checks the kept survivors again (they do not see a test added since).
# Measured 2026-12-06 under `nice -n 19` on 2 cores shared with 5 engineers' runs (load 6-11): 10-12 min
# before the first mutant (generating the mutants, the statistics run and the clean run); the 1346
# mutants of tokens, cursors, the redirect's tracking and links in about 25 min; batch and workflow
# mutants at 10-12 a minute. MUTATION_CHILDREN sets the parallel test processes.
MUTATION_CHILDREN ?= 2
mutation: $(STAMP)
	rm -rf mutants
	$(if $(FRESH),,$(BIN)/python -m tests.mutation_verdicts restore $(if $(RECHECK),--recheck-survivors))
	start=$$(date +%s); $(BIN)/mutmut run --max-children $(MUTATION_CHILDREN); status=$$?; \
		$(BIN)/python -m tests.mutation_verdicts save && \
		$(BIN)/python -m tests.mutation_report --partial --seconds $$(( $$(date +%s) - start )) && exit $$status

# BENCHMARKS.md, rewritten from every figure (bench/run.py); pytracking is the peer, installed here only.
bench: $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check 'pytracking[html]==0.2.2'
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache cdk.out mutants
