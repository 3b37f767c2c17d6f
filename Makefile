# flowauth. `make help` lists the targets. Tools (the local control plane, helm, golangci-lint)
# are built from Go modules into bin/ by hack/tools.sh, cached by version: only the first run pays.

SHELL := /usr/bin/env bash -o pipefail
export KUBEBUILDER_ASSETS := $(CURDIR)/bin/k8s
GOLANGCI_LINT := $(CURDIR)/bin/golangci-lint

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: fmt
fmt: ## Format the code with gofmt.
	gofmt -w $$(git ls-files '*.go')

.PHONY: fmt-check
fmt-check: ## Fail if gofmt would change a file.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: tools-lint ## Run golangci-lint (config: .golangci.yml).
	$(GOLANGCI_LINT) run ./...

.PHONY: vulncheck
vulncheck: ## govulncheck (offline database from Go modules) on the webhook binary as the image builds it.
	hack/vulncheck.sh

.PHONY: build
build: ## Build the webhook binary into bin/webhook.
	go build -o bin/webhook ./cmd/webhook

.PHONY: run
run: ## Run the webhook locally without a cluster (certs from bin/certs: tls.crt, tls.key).
	go run ./cmd/webhook --cluster-connection=false --namespace-defaults=false --cert-dir=bin/certs

##@ Test

.PHONY: test
test: ## Everything CI runs, a line a step (their output in bin/logs/test/): format, vet, lint, govulncheck, unit, integration, e2e, chart and node tests.
	@hack/steps.sh test \
	  "format check (gofmt)=$(MAKE) -s --no-print-directory fmt-check" \
	  "go vet=$(MAKE) -s --no-print-directory vet" \
	  "golangci-lint (built from Go modules on the first run)=$(MAKE) -s --no-print-directory lint" \
	  "govulncheck on the webhook binary (built with its database on the first run)=$(MAKE) -s --no-print-directory vulncheck" \
	  "unit tests=$(MAKE) -s --no-print-directory test-unit" \
	  "the local control plane: etcd, kube-apiserver, kube-controller-manager, kubectl (built on the first run)=$(MAKE) -s --no-print-directory tools-control-plane" \
	  "integration tests (real etcd and kube-apiserver)=$(MAKE) -s --no-print-directory test-integration" \
	  "end-to-end tests (webhook binary, Job controller, kubectl apply)=$(MAKE) -s --no-print-directory test-e2e" \
	  "helm and promtool (built on the first run)=$(MAKE) -s --no-print-directory tools-helm tools-promtool" \
	  "chart tests (lint, render, install, alerts)=$(MAKE) -s --no-print-directory test-chart" \
	  "the node, cosign, monitoring and Prefect 3: kubelet, containerd, registry, probe image, Prometheus and its operator, kube-state-metrics, Prefect's pinned venv (built on the first run)=$(MAKE) -s --no-print-directory tools-node tools-cosign tools-monitoring tools-prefect" \
	  "node tests (root: one node, three, then monitoring)=$(MAKE) -s --no-print-directory test-node"

.PHONY: test-unit
test-unit: ## Unit tests (pure packages, golden files).
	go test -count=1 ./pkg/... ./cmd/... ./hack/plugin-dist ./hack/release ./test/localcluster ./test/docs

.PHONY: test-integration
test-integration: tools-control-plane ## Integration tests against a real etcd + kube-apiserver.
	go test -count=1 ./test/integration/...

.PHONY: test-e2e
test-e2e: tools-control-plane ## End-to-end: webhook binary, Job controller, kubectl apply of examples/.
	go test -count=1 ./test/e2e/...

.PHONY: test-chart
test-chart: tools-control-plane tools-helm tools-promtool ## Helm chart and config/: lint, render, install into the API server, e2e with self-managed TLS.
	go test -count=1 ./test/chart/...

.PHONY: test-node
test-node: tools-control-plane tools-helm tools-node tools-cosign tools-monitoring tools-prefect ## On a real node (root): the chart's image serving in-cluster, example flow runs authenticating, Prefect 3's server, worker and flow runs, restarts losing nothing.
	go test -count=1 -p 1 -timeout 30m ./test/node/...

.PHONY: test-versions
test-versions: ## Integration, e2e and the chart's install against each Kubernetes minor of the matrix (1.30, 1.33, 1.35, 1.36, 1.37; control planes built from Go modules, cached); VERSIONS="v1.30" for some.
	VERSIONS="$(VERSIONS)" hack/test-versions.sh

FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 30s); a crash is saved under testdata/fuzz/ and becomes a regression test.
	go test -run '^$$' -fuzz '^FuzzServe$$' -fuzztime $(FUZZTIME) ./pkg/admission
	go test -run '^$$' -fuzz '^FuzzReviewHandlerAnswersAsControllerRuntime$$' -fuzztime $(FUZZTIME) ./pkg/admission
	go test -run '^$$' -fuzz '^FuzzAnnotations$$' -fuzztime $(FUZZTIME) ./pkg/mutate
	go test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./pkg/secretmap
	go test -run '^$$' -fuzz '^FuzzNameShapeMatchesThePattern$$' -fuzztime $(FUZZTIME) ./pkg/secretmap

.PHONY: update-golden
update-golden: tools-helm ## Rewrite the golden files (pkg/mutate, rendered chart) after an intended change.
	go test ./pkg/mutate -update
	go test ./pkg/policy -update
	go test ./test/chart -run TestRenderedChartMatchesGolden -update
	go test ./test/docs -run 'TestValuesReferenceIsCurrent|TestBoundsReferenceIsCurrent' -update
	go test ./cmd/webhook -run TestFlagsReferenceIsCurrent -update
	go test ./cmd/kubectl-flowauth -run TestHelpOnThePageIsTheHelp -update

##@ Performance

# RESULTS: the page the harnesses write their reports into (each its own section, dated, with the
# commit and machine); RESULTS= prints without writing.
RESULTS ?= docs/performance.md

.PHONY: bench
bench: ## Benchmarks of the hot path (decode, mutate, patch, encode) per harness profile, benchstat-ready.
	@mkdir -p bin
	go test -run '^$$' -bench . -benchmem -count 6 ./pkg/admission | tee bin/bench.txt

.PHONY: loadtest
loadtest: ## Load harness (../shared/bench) against the floor, the limit and flowauth on loopback; prints the ratio table and writes it into docs/performance.md (ARGS="-profile plain -cpuprofile out" for more).
	go run ./hack/loadtest -bench $(or $(BENCH_DIR),../shared/bench/admload) -results "$(RESULTS)" $(ARGS)

.PHONY: burst
burst: tools-control-plane ## 2,000 flow-run pods through the local API server four ways (no webhook, floor, patched limit, flowauth), alternating; pods/s, create p50/p99, CPU per pod, ratios, written into docs/performance.md (ARGS="-profile out" for CPU profiles).
	go run ./hack/burst -bench $(or $(BENCH_DIR),../shared/bench/admload) -results "$(RESULTS)" $(ARGS)

.PHONY: scale
scale: tools-control-plane ## Key lookup in a large cluster (1,000 namespaces, 50,000 Secrets, 1,000 Helm releases of 500 KiB, 10,000 ConfigMaps): webhook ready time, peak/settled RSS, admission p50/p99 against an empty cluster, API server peak, WatchList on and off, a relist, back-to-back Secret+pod, written into docs/performance.md (ARGS=-quick for the small size).
	go run ./hack/scale -results "$(RESULTS)" $(ARGS)

.PHONY: hostile
hostile: tools-control-plane ## Hostile reviews (each list a pod or Job can carry, up to 3 MiB) sent to the webhook binary alone and 8 at once, without a cluster connection and then with one (namespaces, key lookup, Events against the local control plane, with refused pods of megabyte owner names, forged namespaces, 8,000 ConfigMaps of 16 KiB of key names): answer time and size, peak RSS above rest, Events stored, API requests, longest log line; fails past 1 s, 64 KiB, 16 MiB or a 4 KiB log line (ARGS="-mode standalone", or "-webhook-bin old -report-only" to measure another build; needs root or the same user for /proc/PID/clear_refs); written into docs/performance.md.
	go run ./hack/hostile -results "$(RESULTS)" $(ARGS)

.PHONY: soak
soak: ## 10 minutes of mixed load at a fixed rate with secret-map reloads; fails on any error or RSS growth (SOAK_DURATION to change).
	go run ./hack/soak -d $(or $(SOAK_DURATION),10m)

##@ Demo

PREFECT ?= 3
MODE ?= webhook

.PHONY: demo
demo: ## A flow run on a local node (root): flowauth installed by its chart, a Prefect 3 server, work pool, deployment and worker, the run completing, what prefect-aws and prefect-gcp found (PREFECT=1: a Prefect 1 flow-run Job applied with kubectl; MODE=policy: admission policies, no flowauth pod). Without root: the injected pod as stored.
	@hack/steps.sh demo \
	  "the local control plane: etcd, kube-apiserver, kube-controller-manager, kubectl (built on the first run)=$(MAKE) -s --no-print-directory tools-control-plane" \
	  "helm (built on the first run)=$(MAKE) -s --no-print-directory tools-helm" \
	  "the node: kubelet, containerd, registry, probe image (built on the first run)=$(MAKE) -s --no-print-directory tools-node" \
	  $(if $(filter 3,$(PREFECT)),"Prefect 3: its pinned venv (installed on the first run)=$(MAKE) -s --no-print-directory tools-prefect") \
	  "the demo's harness=go build -o bin/demo ./hack/demo" \
	  "!the demo: flowauth installed by its chart ($(MODE) mode), a Prefect $(PREFECT) flow run on the node=bin/demo -prefect $(PREFECT) -mode $(MODE)"

##@ kubectl plugin

.PHONY: install-plugin
install-plugin: ## Install kubectl-flowauth into $$(go env GOPATH)/bin (or GOBIN): then `kubectl flowauth --help`.
	go install ./cmd/kubectl-flowauth

.PHONY: plugin-dist
plugin-dist: ## The plugin's archives per platform and the krew manifest (.krew.yaml rendered with their sha256) in bin/dist.
	go run ./hack/plugin-dist

##@ Local cluster

NODES ?= 1
MONITORING ?=
# MONITORING=1 (or true, yes) asks for it; 0, false or nothing does not.
monitoring := $(filter 1 true yes,$(MONITORING))

.PHONY: cluster
cluster: tools-control-plane tools-helm tools-node $(if $(monitoring),tools-monitoring) ## A local cluster (root) of NODES nodes (default 1, up to 4) with flowauth installed from the local registry's image, left running; prints KUBECONFIG. MONITORING=1 adds the Prometheus Operator, Prometheus and kube-state-metrics, scraping flowauth with its alerts loaded.
	@go build -o bin/cluster ./hack/cluster
	@bin/cluster -nodes $(NODES) $(if $(monitoring),-monitoring) up

.PHONY: cluster-down
cluster-down: ## Stop `make cluster` and remove everything it put on this machine.
	@go build -o bin/cluster ./hack/cluster
	@bin/cluster down

##@ Tools

.PHONY: tools
tools: ## Build every tool into bin/ (cached by version).
	hack/tools.sh all

.PHONY: tools-control-plane
tools-control-plane:
	@hack/tools.sh control-plane

.PHONY: tools-monitoring
tools-monitoring:
	@hack/tools.sh monitoring

.PHONY: tools-node
tools-node:
	@hack/tools.sh node
	@hack/tools.sh probe-rootfs

.PHONY: tools-prefect
tools-prefect:
	@hack/tools.sh prefect

.PHONY: tools-lint
tools-lint:
	@hack/tools.sh golangci-lint

.PHONY: tools-promtool
tools-promtool:
	@hack/tools.sh promtool

.PHONY: tools-cosign
tools-cosign:
	@hack/tools.sh cosign

.PHONY: tools-helm
tools-helm:
	@hack/tools.sh helm

##@ Release

.PHONY: release
release: tools-helm tools-cosign ## Build, push and sign a release: make release VERSION=x.y.z REGISTRY=host/path (COSIGN_KEY=cosign.key, COSIGN_PASSWORD): multi-arch image by digest, SBOM attestation, chart on OCI, plugin archives, checksums (bin/release/VERSION).
	@test -n "$(VERSION)" -a -n "$(REGISTRY)" || { echo "usage: make release VERSION=x.y.z REGISTRY=host/path [COSIGN_KEY=cosign.key]"; exit 2; }
	go run ./hack/release -version $(VERSION) -registry $(REGISTRY) $(if $(COSIGN_KEY),-key $(COSIGN_KEY)) $(ARGS)

##@ Image

CONTAINER_TOOL ?= docker
IMG ?= flowauth/flowauth:dev

.PHONY: image
image: ## Build the container image $(IMG) with $(CONTAINER_TOOL) (static binary on scratch, non-root).
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: clean
clean: ## Remove built binaries (keeps the cached tools in bin/).
	rm -rf bin/webhook bin/demo
