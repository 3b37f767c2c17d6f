#!/usr/bin/env bash
# Builds the tools that tests, lint, the demo and the local node need from Go modules, each into a
# folder of the user's cache named after its version, and links it into the clone's bin/. So only
# the first build on a machine pays: a version bump builds anew, and a fresh clone on the same
# machine (as CI makes) finds what an earlier clone built. No binary is downloaded: everything is
# compiled from the tools modules under hack/tools/, kept apart from the project's go.mod because
# their dependency graphs are huge and conflict with ours. Recipes: ../shared/control-plane.md and
# ../shared/node.md.
#
#   hack/tools.sh control-plane   # bin/k8s/{etcd,kube-apiserver,kube-controller-manager,kubectl}
#   hack/tools.sh control-plane-matrix [v1.MINOR...]
#                                 # bin/k8s-v1.MINOR/ for each older release of the version matrix,
#                                 # or those named (make test-versions; modules in hack/tools/k8s-matrix/)
#   hack/tools.sh node            # bin/node/: kubelet, kube-scheduler, kube-proxy, containerd (+ shim,
#                                 # ctr), crictl, registry, cni/; and runc, iptables, conntrack from Debian
#   hack/tools.sh probe-rootfs    # bin/probe-rootfs.tar.gz: Debian with python3, boto3, google-auth
#   hack/tools.sh helm            # bin/helm
#   hack/tools.sh golangci-lint   # bin/golangci-lint
#   hack/tools.sh govulncheck     # bin/govulncheck
#   hack/tools.sh vulndb          # bin/vulndb: the Go vulnerability database, offline
#   hack/tools.sh benchstat       # bin/benchstat
#   hack/tools.sh promtool        # bin/promtool
#   hack/tools.sh cosign          # bin/cosign: signs and verifies releases (make release)
#   hack/tools.sh monitoring      # bin/monitoring/: prometheus, operator, prometheus-config-reloader,
#                                 # kube-state-metrics and the operator's CRDs (make cluster MONITORING=1,
#                                 # the node suite's monitoring tests)
#   hack/tools.sh prefect         # bin/prefect/: Prefect 3 (server, worker, prefect-aws, prefect-gcp) in a
#                                 # venv from hack/tools/prefect/requirements.txt, and the same packages as
#                                 # a layer for the flow-run image (Prefect's tests and make demo PREFECT=3)
#   hack/tools.sh prefect-lock    # writes hack/tools/prefect/requirements.txt anew from requirements.in
#   hack/tools.sh all             # everything but the node's parts (those need root)
#
# FLOWAUTH_TOOLS_DIR moves the cache (default: $XDG_CACHE_HOME/flowauth/tools, else
# ~/.cache/flowauth/tools).
set -euo pipefail

K8S_VERSION=v1.37.2
# The older releases make test-versions runs against (the newest is K8S_VERSION). Each has its
# module in hack/tools/k8s-matrix/vMAJOR.MINOR, written by hack/tools/k8s-matrix/gen.sh. They build
# with this machine's Go: Go keeps compiling old modules by the language version their go.mod
# names, so no older toolchain is needed (see docs/install.md, "Kubernetes versions").
K8S_MATRIX_VERSIONS="v1.30.14 v1.33.13 v1.35.4 v1.36.3"
ETCD_VERSION=v3.6.16
HELM_VERSION=v3.22.0
GOLANGCI_LINT_VERSION=v2.15.0
GOVULNCHECK_VERSION=v1.9.0
# The Go vulnerability database as published in the golang.org/x/vulndb module (data/osv), so
# govulncheck needs no network beyond the module proxy. Bump to get newer advisories.
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da
# promtool checks and unit-tests the chart's alerting rules (Prometheus' module: v0.316.0 is 3.16).
PROMTOOL_VERSION=v0.316.0
# cosign signs the release's image, SBOM attestation and chart with a key (make release), and
# verifies them in the node tests.
COSIGN_VERSION=v2.6.5
# Monitoring as operators install it (kube-prometheus-stack's parts): Prometheus from the same
# module as promtool, the Prometheus Operator (its module in hack/tools/prometheus-operator) and
# kube-state-metrics.
PROMETHEUS_VERSION=$PROMTOOL_VERSION
PROMETHEUS_OPERATOR_VERSION=v0.85.0
KUBE_STATE_METRICS_VERSION=v2.20.0
# The node (the versions are also in hack/tools/{containerd,cni,crictl,registry}/go.mod).
CONTAINERD_VERSION=v2.4.2
CNI_PLUGINS_VERSION=v1.10.0
CRICTL_VERSION=v1.37.0
DISTRIBUTION_VERSION=v3.1.2
# The flow-run probe image's root filesystem: Debian's own client libraries, so the probe shows
# what a real flow run's boto3 and google-auth find. The suite is the machine's own (its apt
# sources are the only mirror reachable).
PROBE_SUITE=bookworm
PROBE_PACKAGES=python3,python3-boto3,python3-google-auth,ca-certificates

# Prefect 3's Python: 3.11, the minor of the flow-run image's Debian (bookworm), so that one set of
# installed packages (compiled extensions included) serves the worker here and the flow run there.
# Prefect 3.9 needs 3.11 or later. PREFECT_PYTHON names another interpreter of that minor.
PREFECT_PYTHON_MINOR=3.11

root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin"
tools="${FLOWAUTH_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/flowauth/tools}"
mkdir -p "$bin" "$tools"

say() { echo "hack/tools.sh: $*" >&2; }

# cached KEY LINK BUILD...: runs BUILD with $out set to a fresh folder unless the cache already has
# a complete $tools/KEY, then makes bin/LINK point at it (LINK "" links nothing). A build that
# fails or is interrupted leaves nothing behind that a later run would take for complete, and two
# clones building the same KEY at once both end with one complete folder.
cached() {
  local key=$1 link=$2
  shift 2
  local dir="$tools/$key"
  if [ ! -f "$dir/.complete" ]; then
    out=$(mktemp -d "$tools/.$key.XXXXXX")
    chmod 755 "$out"
    trap 'rm -rf "$out"' EXIT
    "$@"
    touch "$out/.complete"
    rm -rf "$dir"
    mv -T "$out" "$dir" 2>/dev/null || rm -rf "$out"
    trap - EXIT
  fi
  if [ -n "$link" ]; then
    rm -rf "${bin:?}/$link"
    ln -s "$dir" "$bin/$link"
  fi
}

k8s_ldflags() {
  # Without these -X flags the API server reports v0.0.0-master, which breaks helm's kubeVersion
  # checks and makes kubectl print version-skew warnings.
  local v=${1:-$K8S_VERSION} minor
  minor=$(echo "$v" | cut -d. -f2)
  echo "-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1 \
-X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean \
-X k8s.io/client-go/pkg/version.gitVersion=$v"
}

build_control_plane() {
  say "building the local control plane (k8s $K8S_VERSION, etcd $ETCD_VERSION) from Go modules; the first build takes several minutes"
  (cd "$root/hack/tools/etcd" && go build -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3) &
  local etcd_pid=$!
  (cd "$root/hack/tools/k8s" && go build -ldflags "$(k8s_ldflags)" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
  wait "$etcd_pid"
}

# debian_packages PKG...: installs the Debian packages whose commands the node needs, when missing.
debian_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  if [ "$(id -u)" != 0 ]; then
    # Not fatal here: the node's tests say why they cannot run (and fail under CI=true).
    say "not installing Debian's ${missing[*]}: that needs root (the node's tests and make cluster need root anyway)"
    return 1
  fi
  say "installing ${missing[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

build_node() {
  say "building the node (kubelet, kube-scheduler, kube-proxy $K8S_VERSION, containerd $CONTAINERD_VERSION, CNI $CNI_PLUGINS_VERSION, crictl $CRICTL_VERSION, registry $DISTRIBUTION_VERSION) from Go modules"
  (cd "$root/hack/tools/k8s" && go build -ldflags "$(k8s_ldflags)" -o "$out/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy)
  # containerd without the snapshotters that need cgo or kernel parts this machine lacks.
  (cd "$root/hack/tools/containerd" && CGO_ENABLED=0 go build -tags "no_btrfs no_devmapper no_zfs" -ldflags "-s -w \
-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" -o "$out/" \
    github.com/containerd/containerd/v2/cmd/containerd github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
    github.com/containerd/containerd/v2/cmd/ctr)
  mkdir -p "$out/cni"
  (cd "$root/hack/tools/cni" && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$out/cni/" \
    github.com/containernetworking/plugins/plugins/main/bridge github.com/containernetworking/plugins/plugins/main/loopback \
    github.com/containernetworking/plugins/plugins/ipam/host-local)
  (cd "$root/hack/tools/crictl" && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$out/" sigs.k8s.io/cri-tools/cmd/crictl)
  (cd "$root/hack/tools/registry" && CGO_ENABLED=0 go build -ldflags "-s -w" -o "$out/" github.com/distribution/distribution/v3/cmd/registry)
}

# The mirror is whatever this machine's apt sources name: nothing outside them is reachable.
build_probe_rootfs() {
  local sources=/etc/apt/sources.list.d/debian.sources
  [ -f "$sources" ] || sources=/etc/apt/sources.list
  say "building the probe image's root filesystem ($PROBE_SUITE: $PROBE_PACKAGES) with mmdebstrap; about a minute"
  mmdebstrap --quiet --variant=apt --include="$PROBE_PACKAGES" --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$PROBE_SUITE" "$out/rootfs.tar.gz" "$sources"
}

helm() {
  # helm's idea of the cluster version (for `helm template`, `helm lint` and kubeVersion checks) is
  # set at link time, as helm's own Makefile does from the client-go it is built with; without it,
  # helm assumes Kubernetes 1.20 and the chart's kubeVersion (>=1.30) refuses to render.
  local kminor
  kminor=$(cd "$root/hack/tools/helm" && go list -m -f '{{.Version}}' k8s.io/client-go | cut -d. -f2)
  build_helm() {
    say "building helm $HELM_VERSION from Go modules"
    local p=helm.sh/helm/v3/pkg
    (cd "$root/hack/tools/helm" && go build -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
-X $p/chartutil.k8sVersionMajor=1 -X $p/chartutil.k8sVersionMinor=$kminor \
-X $p/lint/rules.k8sVersionMajor=1 -X $p/lint/rules.k8sVersionMinor=$kminor" \
      -o "$out/helm" helm.sh/helm/v3/cmd/helm)
  }
  cached "helm-$HELM_VERSION-k8s1.$kminor" .helm build_helm
  ln -sf .helm/helm "$bin/helm"
}

# go_install NAME PACKAGE VERSION: plain `go install pkg@version`, for tools whose go.mod has no
# local replaces.
go_install() {
  local name=$1 pkg=$2 version=$3
  build_go_install() {
    say "building $name $version from Go modules"
    GOBIN="$out" go install "$pkg@$version"
  }
  cached "$name-$version" ".$name" build_go_install
  ln -sf ".$name/$name" "$bin/$name"
}

# vulndb indexes the OSV files of the pinned golang.org/x/vulndb module into the layout that
# `govulncheck -db file://...` reads, with the module's own cmd/indexdb.
vulndb() {
  build_vulndb() {
    say "building the Go vulnerability database $VULNDB_VERSION from the golang.org/x/vulndb module"
    local src
    src=$(cd "$root/hack/tools/vulndb" && go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    (cd "$root/hack/tools/vulndb" && go build -o "$out/indexdb" golang.org/x/vulndb/cmd/indexdb)
    "$out/indexdb" -vulns "$src/data/osv" -out "$out/db"
  }
  cached "vulndb-$VULNDB_VERSION" .vulndb build_vulndb
  ln -sfn .vulndb/db "$bin/vulndb"
}

# build_monitoring: one program after another. Side by side they would compile the packages they
# share twice (none is cached yet on a first build): a first make demo with its tools built side by
# side took 26 minutes against 22.5 one after another.
build_monitoring() {
  say "building Prometheus $PROMETHEUS_VERSION, the Prometheus Operator $PROMETHEUS_OPERATOR_VERSION and kube-state-metrics $KUBE_STATE_METRICS_VERSION from Go modules; several minutes"
  (cd "$root/hack/tools/prometheus-operator" && CGO_ENABLED=0 go build -ldflags "-s -w \
-X github.com/prometheus/common/version.Version=${PROMETHEUS_OPERATOR_VERSION#v}" -o "$out/" \
    github.com/prometheus-operator/prometheus-operator/cmd/operator \
    github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader)
  CGO_ENABLED=0 GOBIN="$out" go install -ldflags "-s -w \
-X github.com/prometheus/common/version.Version=${KUBE_STATE_METRICS_VERSION#v}" "k8s.io/kube-state-metrics/v2@$KUBE_STATE_METRICS_VERSION"
  # Prometheus without its web UI's assets (the builtinassets tag): the tests and the runbooks use
  # its HTTP API, and the assets are built by npm, not Go. With Kubernetes service discovery only
  # (its build tags): the cloud SDKs of the other twenty-odd would double the build.
  # Prometheus' Go module v0.3MM.P is Prometheus 3.MM.P: the operator picks its flags by the latter.
  local n=${PROMETHEUS_VERSION#v0.}
  local release="$((${n%%.*} / 100)).$((${n%%.*} % 100)).${n#*.}"
  echo "v$release" >"$out/prometheus-version"
  CGO_ENABLED=0 GOBIN="$out" go install -tags remove_all_sd,enable_kubernetes_sd -ldflags "-s -w \
-X github.com/prometheus/common/version.Version=$release" "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
  # The operator's CRDs and the upstream ClusterRoles of the three, from their modules.
  local op ksm
  op=$(cd "$root/hack/tools/prometheus-operator" && go list -m -f '{{.Dir}}' github.com/prometheus-operator/prometheus-operator)
  ksm=$(go mod download -json "k8s.io/kube-state-metrics/v2@$KUBE_STATE_METRICS_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  mkdir -p "$out/crds" "$out/rbac"
  cp "$op"/example/prometheus-operator-crd/*.yaml "$out/crds/"
  cp "$op/example/rbac/prometheus-operator/prometheus-operator-cluster-role.yaml" "$op/example/rbac/prometheus/prometheus-cluster-role.yaml" \
    "$out/rbac/"
  cp "$ksm/examples/standard/cluster-role.yaml" "$out/rbac/kube-state-metrics-cluster-role.yaml"
  chmod -R u+w "$out/crds" "$out/rbac"
}

monitoring() {
  cached "monitoring-prometheus-$PROMETHEUS_VERSION-operator-$PROMETHEUS_OPERATOR_VERSION-ksm-$KUBE_STATE_METRICS_VERSION" monitoring build_monitoring
}

control_plane() { cached "k8s-$K8S_VERSION-etcd-$ETCD_VERSION" k8s build_control_plane; }

# control_plane_matrix: each older release's kube-apiserver, kube-controller-manager and kubectl,
# with the newest control plane's etcd (the v3 API every release since 1.22 speaks).
control_plane_matrix() {
  control_plane
  local v minor
  for v in $K8S_MATRIX_VERSIONS; do
    minor=$(echo "$v" | cut -d. -f1-2)
    # Only the minors asked for (all without arguments).
    if [ $# -gt 0 ] && [[ " $* " != *" $minor "* ]]; then
      continue
    fi
    build_matrix_release() {
      say "building the control plane of Kubernetes $v from Go modules (make test-versions); several minutes"
      (cd "$root/hack/tools/k8s-matrix/$minor" && go build -ldflags "$(k8s_ldflags "$v")" -o "$out/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl)
      cp "$bin/k8s/etcd" "$out/etcd"
    }
    cached "k8s-$v-etcd-$ETCD_VERSION" "k8s-$minor" build_matrix_release
  done
}

node() {
  debian_packages runc iptables conntrack iproute2 || true
  cached "node-$K8S_VERSION-containerd-$CONTAINERD_VERSION-cni-$CNI_PLUGINS_VERSION-crictl-$CRICTL_VERSION-registry-$DISTRIBUTION_VERSION" node build_node
}

probe_rootfs() {
  debian_packages mmdebstrap || return 0
  cached "probe-rootfs-$PROBE_SUITE-$(echo "$PROBE_PACKAGES" | sha256sum | cut -c1-12)" .probe-rootfs build_probe_rootfs
  ln -sf .probe-rootfs/rootfs.tar.gz "$bin/probe-rootfs.tar.gz"
}

# prefect_python: an interpreter of PREFECT_PYTHON_MINOR from this machine.
prefect_python() {
  local py
  for py in ${PREFECT_PYTHON:-} "python$PREFECT_PYTHON_MINOR" /usr/bin/python3; do
    if command -v "$py" >/dev/null && [ "$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$PREFECT_PYTHON_MINOR" ]; then
      echo "$py"
      return
    fi
  done
  say "Prefect's venv needs Python $PREFECT_PYTHON_MINOR (the flow-run image's; Debian: apt-get install python3 python3-venv), or PREFECT_PYTHON naming one"
  return 1
}

# build_prefect: the venv the server and worker run from, and the flow-run image's layer: the
# same site-packages under /opt/prefect, a venv whose interpreter is the image's /usr/bin/python3.
# The venv's scripts name the folder it ends in ($final), not the one it is built in.
build_prefect() {
  local py=$1 final=$2 req="$root/hack/tools/prefect/requirements.txt"
  say "installing Prefect 3 ($(grep -E '^prefect(-[a-z]+)?==' "$req" | tr '\n' ' ')) into a venv with $py; about a minute"
  "$py" -m venv "$out/venv"
  # --no-deps: exactly the locked set, then pip check proves it complete and consistent.
  "$out/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$req"
  "$out/venv/bin/pip" check >/dev/null
  grep -rlI -- "$out" "$out/venv/bin" | xargs -r sed -i "s|$out|$final|g"
  local stage="$out/stage/opt/prefect" site
  site=$(cd "$out/venv" && echo lib/python*/site-packages)
  mkdir -p "$stage/bin" "$stage/$(dirname "$site")"
  cp -al "$out/venv/$site" "$stage/$site"
  printf 'home = /usr/bin\ninclude-system-site-packages = false\nversion = %s\n' "$PREFECT_PYTHON_MINOR" >"$stage/pyvenv.cfg"
  ln -s /usr/bin/python3 "$stage/bin/python"
  printf '#!/opt/prefect/bin/python\nimport sys\nfrom prefect.cli import app\nsys.exit(app())\n' >"$stage/bin/prefect"
  chmod 755 "$stage/bin/prefect"
  tar -C "$out/stage" --owner=0 --group=0 --numeric-owner --sort=name -czf "$out/flow-run-layer.tar.gz" opt
  rm -rf "$out/stage"
}

prefect() {
  local py key
  py=$(prefect_python)
  key="prefect-py$PREFECT_PYTHON_MINOR-$(sha256sum <"$root/hack/tools/prefect/requirements.txt" | cut -c1-12)"
  cached "$key" prefect build_prefect "$py" "$tools/$key"
}

prefect_lock() {
  local py tmp
  py=$(prefect_python)
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$py" -m venv "$tmp/venv"
  "$tmp/venv/bin/pip" install --quiet --disable-pip-version-check -r "$root/hack/tools/prefect/requirements.in"
  { echo "# Written by \`hack/tools.sh prefect-lock\` from requirements.in: every package of its venv, pinned."
    "$tmp/venv/bin/pip" freeze; } >"$root/hack/tools/prefect/requirements.txt"
}

case "${1:-all}" in
control-plane) control_plane ;;
control-plane-matrix) shift; control_plane_matrix "$@" ;;
node) node ;;
probe-rootfs) probe_rootfs ;;
helm) helm ;;
golangci-lint) go_install golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$GOLANGCI_LINT_VERSION" ;;
govulncheck) go_install govulncheck golang.org/x/vuln/cmd/govulncheck "$GOVULNCHECK_VERSION" ;;
benchstat) go_install benchstat golang.org/x/perf/cmd/benchstat "$BENCHSTAT_VERSION" ;;
promtool) go_install promtool github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_VERSION" ;;
cosign) go_install cosign github.com/sigstore/cosign/v2/cmd/cosign "$COSIGN_VERSION" ;;
vulndb) vulndb ;;
monitoring) monitoring ;;
prefect) prefect ;;
prefect-lock) prefect_lock ;;
all)
  control_plane
  helm
  go_install golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$GOLANGCI_LINT_VERSION"
  go_install govulncheck golang.org/x/vuln/cmd/govulncheck "$GOVULNCHECK_VERSION"
  vulndb
  go_install promtool github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_VERSION"
  go_install cosign github.com/sigstore/cosign/v2/cmd/cosign "$COSIGN_VERSION"
  ;;
*)
  say "unknown tool '$1' (control-plane, control-plane-matrix, node, probe-rootfs, helm, golangci-lint, govulncheck, vulndb, benchstat, promtool, cosign, monitoring, prefect, prefect-lock, all)"
  exit 2
  ;;
esac
