#!/usr/bin/env bash
# Cross-compiles for the platforms DLS ships besides linux/amd64 (make
# release), so a Linux-only call cannot creep back in: go build and go vet
# (which type-checks the tests too) for freebsd/amd64 and linux/arm64, and
# every package's test binary built for freebsd/amd64 (go test -exec true:
# built and linked, not run: this machine cannot run FreeBSD binaries).
# The e2e lab and the bench tools need Linux namespaces and are Linux-only
# by their build tags. Run by .ci/run and make cross-check.
set -euo pipefail
cd "$(dirname "$0")/.."
go="${GO:-go}"

for target in freebsd/amd64 linux/arm64; do
  export GOOS="${target%/*}" GOARCH="${target#*/}"
  echo "-- $target: build, vet"
  $go build ./...
  $go vet ./...
done

export GOOS=freebsd GOARCH=amd64
echo "-- freebsd/amd64: every test binary"
# -exec true: each package's test binary is linked, then "run" by true.
$go test -count=1 -exec true ./... >/dev/null
