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
        cluster-up cluster-down cluster-load cluster-test clean \
        images deploy undeploy chart-lint

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

run: release ## Build and start the standalone server (Kinesis API on 127.0.0.1:4567, gRPC on :4568)
	$(RIFFLE_RELEASE) server

build: ## Build the debug binaries
	$(CARGO) build --workspace --all-targets

release: ## Build the optimized riffle binary
	$(CARGO) build --release -p riffle

test: lint chart-lint unit client-tests fuzz e2e ## Everything CI checks
	@echo "make test: all checks passed"

lint: crds-check ## Formatting, clippy (warnings are errors) and generated files
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

crds: ## Regenerate the CRD YAML in crds/ (and the chart's copy) from the operator's types
	$(CARGO) run --quiet -p riffle-operator --bin crdgen > crds/.riffle.dev_streams.yaml.tmp
	mv crds/.riffle.dev_streams.yaml.tmp crds/riffle.dev_streams.yaml
	charts/riffle/scripts/sync-crds.sh

crds-check: crds ## Fail when the committed CRDs differ from the operator's types
	@git diff --exit-code -- crds/ charts/riffle/crds/ || { echo "crds/ is stale: run make crds and commit the result" >&2; exit 1; }

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

# Where `make deploy` installs: the e2e cluster by default. On kind:
#   make deploy DEPLOY_LOAD=e2e/kind/load.sh DEPLOY_KUBECONFIG=$PWD/e2e/.cluster/kind/kubeconfig
DEPLOY_KUBECONFIG ?= $(CURDIR)/e2e/.cluster/kubeconfig
DEPLOY_LOAD ?= e2e/cluster/load.sh
DEPLOY_NAMESPACE ?= riffle-system
KUBECTL ?= $(if $(wildcard e2e/.cluster/bin/kubectl),$(CURDIR)/e2e/.cluster/bin/kubectl,kubectl)

images: ## Build static riffle and riffle-operator images as OCI archives in target/images
	images/build.sh

deploy: images ## Import the images into the test cluster and install the chart (waits for Ready)
	$(DEPLOY_LOAD) target/images/riffle.tar target/images/riffle-operator.tar
	@# Helm installs CRDs only on the first install; an upgrade must bring them up to date too.
	KUBECONFIG=$(DEPLOY_KUBECONFIG) $(KUBECTL) apply --server-side --force-conflicts -f charts/riffle/crds/
	KUBECONFIG=$(DEPLOY_KUBECONFIG) scripts/helm.sh upgrade --install riffle charts/riffle \
	    --namespace $(DEPLOY_NAMESPACE) --create-namespace \
	    --set image.tag=$$(cat target/images/TAG) --wait --timeout 5m || \
	    { KUBECONFIG=$(DEPLOY_KUBECONFIG) KUBECTL=$(KUBECTL) scripts/why-not-ready.sh $(DEPLOY_NAMESPACE); exit 1; }

undeploy: ## Uninstall the chart and delete its namespace (the Stream CRD and Streams stay)
	@if KUBECONFIG=$(DEPLOY_KUBECONFIG) $(KUBECTL) get streams.riffle.dev -A --no-headers 2>/dev/null | grep -q .; then \
	    echo "undeploy: Streams still exist; without the operator their deletion will wait for it"; fi
	KUBECONFIG=$(DEPLOY_KUBECONFIG) scripts/helm.sh uninstall riffle --namespace $(DEPLOY_NAMESPACE) --ignore-not-found --wait
	KUBECONFIG=$(DEPLOY_KUBECONFIG) $(KUBECTL) delete namespace $(DEPLOY_NAMESPACE) --ignore-not-found --wait

chart-lint: ## helm lint and strict kubeconform validation of the chart, offline
	charts/riffle/tests/lint.sh
