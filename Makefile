# The verbs users and CI type. `make run` and `make test` work on a fresh machine that has only
# the language toolchains: everything else is installed or built on first use.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
VENV := .venv
PYTHON := $(VENV)/bin/python
RIFFLE_DEBUG := target/debug/riffle
RIFFLE_RELEASE := target/release/riffle
FUZZ_SECONDS ?= 20

.PHONY: help run build release test lint crds crds-check unit client-tests fuzz e2e bench \
        cluster-up cluster-down cluster-load cluster-test clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

run: release ## Build and start the standalone server (Kinesis API on 127.0.0.1:4567, gRPC on :4568)
	$(RIFFLE_RELEASE) server

build: ## Build the debug binaries
	$(CARGO) build --workspace --all-targets

release: ## Build the optimized riffle binary
	$(CARGO) build --release -p riffle

test: lint unit client-tests fuzz e2e ## Everything CI checks
	@echo "make test: all checks passed"

lint: crds-check ## Formatting, clippy (warnings are errors) and generated files
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

crds: ## Regenerate the CRD YAML in crds/ from the operator's types
	$(CARGO) run --quiet -p riffle-operator --bin crdgen > crds/.riffle.dev_streams.yaml.tmp
	mv crds/.riffle.dev_streams.yaml.tmp crds/riffle.dev_streams.yaml

crds-check: crds ## Fail when the committed CRDs differ from the operator's types
	@git diff --exit-code -- crds/ || { echo "crds/ is stale: run make crds and commit the result" >&2; exit 1; }

unit: ## Rust unit and integration tests (the SDK tests start the riffle binary)
	$(CARGO) build -p riffle
	RIFFLE_BIN=$(CURDIR)/$(RIFFLE_DEBUG) $(CARGO) test --workspace

$(VENV)/.installed: dataplane/tests/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r dataplane/tests/requirements.txt
	touch $@

client-tests: $(VENV)/.installed ## boto3, AWS CLI and crash tests against the real server
	$(CARGO) build -p riffle
	RIFFLE_BIN=$(CURDIR)/$(RIFFLE_DEBUG) $(VENV)/bin/pytest dataplane/tests -q --timeout 300

fuzz: ## Run each fuzz target briefly (FUZZ_SECONDS each)
	./scripts/fuzz.sh $(FUZZ_SECONDS)

bench: ## Measure Riffle against kinesalite on this machine; prints a table of ratios
	./scripts/bench.sh

e2e: ## End-to-end suites on the real one-node cluster (started and stopped around them)
	e2e/run.sh

cluster-up: ## Start the one-node Kubernetes test cluster (builds it on first use)
	e2e/cluster/up.sh

cluster-down: ## Stop the test cluster and clean up the machine
	e2e/cluster/down.sh

cluster-load: ## Import an OCI image archive into the cluster: make cluster-load IMAGE=x.tar
	e2e/cluster/load.sh "$(IMAGE)"

cluster-test: ## Run a workload nobody in the project wrote on the test cluster
	e2e/cluster/smoke-test.sh

clean: ## Remove build outputs and local data
	$(CARGO) clean
	rm -rf data $(VENV)
