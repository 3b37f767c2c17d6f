#!/usr/bin/env bash
# Builds the tools that tests, lint and the demo need from Go modules into bin/, each cached by a
# version stamp so only the first run (or a version bump) pays. No binary is downloaded: the local
# control plane (etcd, kube-apiserver, kube-controller-manager, kubectl) and helm are compiled from
# the tools modules under hack/tools/, which are kept apart from the project's go.mod because their
# dependency graphs are huge and conflict with ours. Recipe: ../shared/control-plane.md.
#
#   hack/tools.sh control-plane   # bin/k8s/{etcd,kube-apiserver,kube-controller-manager,kubectl}
#   hack/tools.sh helm            # bin/helm
#   hack/tools.sh golangci-lint   # bin/golangci-lint
#   hack/tools.sh govulncheck     # bin/govulncheck
#   hack/tools.sh vulndb          # bin/vulndb: the Go vulnerability database, offline
#   hack/tools.sh benchstat       # bin/benchstat
#   hack/tools.sh all
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.22.0
GOLANGCI_LINT_VERSION=v2.15.0
GOVULNCHECK_VERSION=v1.9.0
# The Go vulnerability database as published in the golang.org/x/vulndb module (data/osv), so
# govulncheck needs no network beyond the module proxy. Bump to get newer advisories.
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
mkdir -p "$bin/k8s"

# fresh STAMP VALUE: true when the stamp file already records VALUE (nothing to build).
fresh() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
say() { echo "hack/tools.sh: $*" >&2; }

control_plane() {
  local stamp="$bin/k8s/.stamp" want="k8s=$K8S_VERSION etcd=$ETCD_VERSION"
  if fresh "$stamp" "$want" && [ -x "$bin/k8s/kube-apiserver" ] && [ -x "$bin/k8s/etcd" ]; then return; fi
  say "building the local control plane ($want) from Go modules; the first build takes several minutes"
  local v=$K8S_VERSION minor
  minor=$(echo "$v" | cut -d. -f2)
  # Without these -X flags the API server reports v0.0.0-master, which breaks helm's kubeVersion
  # checks and makes kubectl print version-skew warnings.
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/client-go/pkg/version.gitVersion=$v"
  rm -f "$stamp"
  (cd "$root/hack/tools/etcd" && go build -ldflags "-s -w" -o "$bin/k8s/etcd" go.etcd.io/etcd/server/v3) &
  local etcd_pid=$!
  (cd "$root/hack/tools/k8s" && go build -ldflags "$ldflags" -o "$bin/k8s/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
  wait "$etcd_pid"
  echo "$want" >"$stamp"
}

helm() {
  # helm's idea of the cluster version (for `helm template`, `helm lint` and kubeVersion checks) is
  # set at link time, as helm's own Makefile does from the client-go it is built with; without it,
  # helm assumes Kubernetes 1.20 and the chart's kubeVersion (>=1.30) refuses to render.
  local kmajor=1 kminor
  kminor=$(cd "$root/hack/tools/helm" && go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)
  local stamp="$bin/.helm.stamp" want="$HELM_VERSION k8s=1.$kminor"
  if fresh "$stamp" "$want" && [ -x "$bin/helm" ]; then return; fi
  say "building helm $HELM_VERSION from Go modules"
  local p=helm.sh/helm/v3/pkg
  (cd "$root/hack/tools/helm" && go build -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
-X $p/chartutil.k8sVersionMajor=$kmajor -X $p/chartutil.k8sVersionMinor=$kminor \
-X $p/lint/rules.k8sVersionMajor=$kmajor -X $p/lint/rules.k8sVersionMinor=$kminor" \
    -o "$bin/helm" helm.sh/helm/v3/cmd/helm)
  echo "$want" >"$stamp"
}

# go_install NAME PACKAGE VERSION: plain `go install pkg@version` into bin/, for tools whose
# go.mod has no local replaces.
go_install() {
  local name=$1 pkg=$2 version=$3 stamp="$bin/.$1.stamp"
  if fresh "$stamp" "$version" && [ -x "$bin/$name" ]; then return; fi
  say "building $name $version from Go modules"
  GOBIN="$bin" go install "$pkg@$version"
  echo "$version" >"$stamp"
}

# vulndb indexes the OSV files of the pinned golang.org/x/vulndb module into the layout that
# `govulncheck -db file://...` reads, with the module's own cmd/indexdb.
vulndb() {
  local stamp="$bin/.vulndb.stamp"
  if fresh "$stamp" "$VULNDB_VERSION" && [ -f "$bin/vulndb/index/db.json" ]; then return; fi
  say "building the Go vulnerability database $VULNDB_VERSION from the golang.org/x/vulndb module"
  local src
  src=$(cd "$root/hack/tools/vulndb" && go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  (cd "$root/hack/tools/vulndb" && go build -o "$bin/indexdb" golang.org/x/vulndb/cmd/indexdb)
  rm -rf "$bin/vulndb"
  "$bin/indexdb" -vulns "$src/data/osv" -out "$bin/vulndb"
  echo "$VULNDB_VERSION" >"$stamp"
}

case "${1:-all}" in
control-plane) control_plane ;;
helm) helm ;;
golangci-lint) go_install golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$GOLANGCI_LINT_VERSION" ;;
govulncheck) go_install govulncheck golang.org/x/vuln/cmd/govulncheck "$GOVULNCHECK_VERSION" ;;
benchstat) go_install benchstat golang.org/x/perf/cmd/benchstat "$BENCHSTAT_VERSION" ;;
vulndb) vulndb ;;
all)
  control_plane
  helm
  go_install golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$GOLANGCI_LINT_VERSION"
  go_install govulncheck golang.org/x/vuln/cmd/govulncheck "$GOVULNCHECK_VERSION"
  vulndb
  ;;
*)
  say "unknown tool '$1' (control-plane, helm, golangci-lint, govulncheck, vulndb, benchstat, all)"
  exit 2
  ;;
esac
