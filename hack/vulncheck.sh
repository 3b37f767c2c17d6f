#!/usr/bin/env bash
# govulncheck on what ships: the webhook binary built as the Dockerfile builds it (same Go
# version, same flags), scanned in binary mode against the offline Go vulnerability database
# (hack/tools.sh vulndb). Exits non-zero on any finding. The Go toolchain named in the Dockerfile
# is fetched through the module proxy by GOTOOLCHAIN, like any module.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
hack/tools.sh govulncheck
hack/tools.sh vulndb
go_version=$(sed -n 's/^FROM golang:\([0-9.]*\) AS build$/\1/p' Dockerfile)
if [ -z "$go_version" ]; then
  echo "hack/vulncheck.sh: no 'FROM golang:<version> AS build' line in the Dockerfile" >&2
  exit 2
fi
mkdir -p bin/vulncheck
echo "hack/vulncheck.sh: building cmd/webhook with go$go_version as the image does" >&2
GOTOOLCHAIN="go$go_version" CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o bin/vulncheck/webhook ./cmd/webhook
bin/govulncheck -db "file://$root/bin/vulndb" -mode binary bin/vulncheck/webhook
