#!/usr/bin/env bash
# make test-versions: the integration and end-to-end suites and the chart's install (both admission
# modes: policy where 1.36+ serves it, refused with the version below), each against
# the control plane of every Kubernetes minor of the matrix (hack/tools.sh: K8S_MATRIX_VERSIONS
# and K8S_VERSION), built from Go modules and cached by version. Prints a table of each version's
# result and time; fails if any version fails. VERSIONS="v1.30 v1.37" runs some of them.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
newest=$(sed -n 's/^K8S_VERSION=\(v[0-9]*\.[0-9]*\).*/\1/p' hack/tools.sh)
older=$(sed -n 's/^K8S_MATRIX_VERSIONS="\(.*\)"/\1/p' hack/tools.sh)
all=""
for v in $older; do all="$all $(echo "$v" | cut -d. -f1-2)"; done
all="$all $newest"
versions=${VERSIONS:-$all}
versions=${versions# }
hack/tools.sh control-plane
# shellcheck disable=SC2086 # a list of minors
hack/tools.sh control-plane-matrix $versions
hack/tools.sh helm

logs=$(mktemp -d "${TMPDIR:-/tmp}/flowauth-versions-XXXXXX")
results=()
failed=0
for minor in $versions; do
  assets="$root/bin/k8s-$minor"
  [ "$minor" = "$newest" ] && assets="$root/bin/k8s"
  if [ ! -x "$assets/kube-apiserver" ]; then
    echo "test-versions: no control plane for $minor in $assets (not in hack/tools.sh's matrix)" >&2
    exit 2
  fi
  server=$("$assets/kube-apiserver" --version | awk '{print $2}')
  echo "test-versions: $minor ($server): integration, e2e, chart install; log $logs/$minor.log"
  start=$(date +%s)
  status=pass
  # FLOWAUTH_KUBERNETES_VERSION makes the suites check that the API server they talk to is this one.
  if ! KUBEBUILDER_ASSETS="$assets" FLOWAUTH_KUBERNETES_VERSION="$server" go test -count=1 -timeout 20m \
    ./test/integration/... ./test/e2e/... >"$logs/$minor.log" 2>&1; then
    status=FAIL
  fi
  if ! KUBEBUILDER_ASSETS="$assets" FLOWAUTH_KUBERNETES_VERSION="$server" go test -count=1 -timeout 20m \
    -run 'TestEveryExampleInstallsAndUninstalls|TestKustomizeConfigApplies|TestInstalledChartServesWithItsOwnCertificate|TestAdmissionModeOnThisServer|TestPolicyModeInstallServesWithNoWebhook' ./test/chart >>"$logs/$minor.log" 2>&1; then
    status=FAIL
  fi
  took=$(($(date +%s) - start))
  if [ "$status" = FAIL ]; then
    failed=1
    grep -E -- '^(--- FAIL|FAIL|panic|\s+\S+_test.go:[0-9]+:)' "$logs/$minor.log" | head -30 >&2 || true
  fi
  results+=("$(printf '| %-6s | %-9s | %-4s | %4ss |' "$minor" "$server" "$status" "$took")")
done
echo
echo "| minor  | server    | result | time |"
echo "|--------|-----------|--------|------|"
printf '%s\n' "${results[@]}"
exit $failed
