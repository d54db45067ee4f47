#!/usr/bin/env bash
# Runs every fuzz target in the repository for a bounded time (FUZZTIME,
# default 15s each). New crashers land in the package's testdata/fuzz and
# fail the run; commit them as regression tests.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime="${FUZZTIME:-15s}"
git ls-files '*_test.go' | xargs grep -l '^func Fuzz' | while read -r f; do
  pkg="./$(dirname "$f")"
  grep -o '^func Fuzz[A-Za-z0-9_]*' "$f" | sed 's/^func //' | while read -r target; do
    echo "fuzz $pkg $target ($fuzztime)"
    # -fuzzminimizetime 1x: the targets that run a server (DHCP handler,
    # iSCSI connection) use goroutines, so their coverage differs from run
    # to run; the engine took nearly every input for new coverage and spent
    # the whole budget minimizing it (7 executions in 15 s instead of
    # thousands). Crashers are then saved as found, not minimized.
    out="$(mktemp)"
    run() { go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 1x "$pkg" >"$out" 2>&1; }
    # The engine itself sometimes ends with "context deadline exceeded" and
    # no failing input when a worker is slow to stop on a busy machine:
    # that is not a finding, so it gets one more run.
    if ! run && grep -q "context deadline exceeded" "$out" && ! grep -q "Failing input written" "$out"; then
      echo "fuzz $target: the engine timed out stopping (no failing input); once more"
      run && true
    fi
    if grep -q "^ok" "$out"; then
      tail -3 "$out"
      rm -f "$out"
    else
      tail -40 "$out"
      rm -f "$out"
      echo "fuzz $target found a failure: its input is in $pkg/testdata/fuzz/$target"
      exit 1
    fi
  done
done
