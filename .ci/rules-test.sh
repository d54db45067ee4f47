#!/usr/bin/env bash
# Checks and unit-tests the example Prometheus alert rules
# (examples/observability/alerts.yml) with promtool (Debian package
# prometheus, installed by .ci/run). The dashboard and the rules' metric
# names are checked against the code by `go test ./examples/observability/`.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v promtool >/dev/null || { echo "rules-test: promtool not found (apt-get install prometheus)" >&2; exit 1; }

promtool check rules examples/observability/alerts.yml
promtool test rules examples/observability/alerts_test.yml
