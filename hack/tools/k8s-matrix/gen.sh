#!/usr/bin/env bash
# Writes hack/tools/k8s-matrix/vMAJOR.MINOR/go.mod (and go.sum) for one Kubernetes release of the
# version matrix (make test-versions): k8s.io/kubernetes at VERSION with its staging modules
# replaced by their published v0 twins, exactly as the main hack/tools/k8s module does for the
# newest release. Run it again to bump a minor's patch release.
#
#   hack/tools/k8s-matrix/gen.sh v1.30.14
set -euo pipefail
version=${1:?usage: gen.sh vMAJOR.MINOR.PATCH}
minor=$(echo "$version" | cut -d. -f1-2)
staging=v0.${version#v1.}
dir="$(cd "$(dirname "$0")" && pwd)/$minor"
mkdir -p "$dir"
gomod=$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
{
  echo "// The control plane of Kubernetes $version for make test-versions; written by ../gen.sh."
  echo "module github.com/flowauth/flowauth/hack/tools/k8s-matrix/$minor"
  echo
  echo "go 1.26.0"
  echo
  echo "replace ("
  grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging/' "$gomod" | awk -v v="$staging" '{print "\t" $1 " => " $1 " " v}'
  echo ")"
  echo
  echo "require k8s.io/kubernetes $version"
} >"$dir/go.mod"
cat >"$dir/tools.go" <<GO
//go:build tools

// Package tools pins the commands make test-versions builds from this module.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
(cd "$dir" && GOFLAGS=-mod=mod go mod tidy)
