#!/usr/bin/env bash
# Runs the steps of make test or make demo one after another, printing one line per step: its
# number out of the total, what it does, and when it ends, its result and time, plus a line a
# minute while a step runs (the first run builds tools for many minutes). Everything a step prints
# (the Go toolchain's downloads and builds, the tests' output) goes to a log file of its own,
# bin/logs/NAME/NN-step.log, whose folder is named at the start; a step that fails has the end of
# its log shown, and stops the run.
#
#   hack/steps.sh NAME "what it does=command" ...
#
# A step whose text starts with "!" prints to the terminal instead of its log (the demo's
# result); "go: downloading" lines still go to the log.
set -uo pipefail
name=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
logs="$root/bin/logs/$name"
rm -rf "$logs"
mkdir -p "$logs"
total=$#
started=$SECONDS

elapsed() {
  local s=$1
  if [ "$s" -ge 60 ]; then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

# report RC: the step's closing line; a failure shows the end of its log and ends the run.
report() {
  local rc=$1 took pkgs
  took=$(elapsed $((SECONDS - start)))
  if [ "$rc" -ne 0 ]; then
    echo "[$n/$total] $label: FAILED after $took (exit $rc)"
    # The failed tests and what they said first, then the end of the log.
    if grep -q -E -- '--- FAIL' "$log"; then
      echo "  failed tests (from $log):"
      grep -E -- '--- FAIL|^\s+\S+_test\.go:[0-9]+:' "$log" | head -n 60 | sed 's/^/    /'
    fi
    echo "  the end of $log:"
    tail -n 60 "$log" | sed 's/^/    /' 
    echo "make $name: failed at step $n of $total after $(elapsed $((SECONDS - started))); every step's output: $logs/"
    exit "$rc"
  fi
  # go test's summary: how many packages passed.
  pkgs=$(grep -c '^ok  ' "$log" 2>/dev/null || true)
  if [ "${pkgs:-0}" -gt 0 ]; then
    echo "[$n/$total] $label: ok in $took ($pkgs package$( [ "$pkgs" -eq 1 ] || echo s))"
  else
    echo "[$n/$total] $label: ok in $took"
  fi
}

# The terminal, for the steps that print to it.
exec 3>&1 4>&2
echo "make $name: $total steps; what they print goes to $logs/"
n=0
for step in "$@"; do
  n=$((n + 1))
  label=${step%%=*}
  cmd=${step#*=}
  shown=false
  if [ "${label:0:1}" = "!" ]; then
    shown=true
    label=${label:1}
  fi
  log="$logs/$(printf '%02d' "$n")-$(echo "$label" | tr -c 'a-zA-Z0-9\n' '-' | tr -s '-' | cut -c1-40 | sed 's/-$//').log"
  echo "[$n/$total] $label"
  start=$SECONDS
  if $shown; then
    # Its output to the terminal (fd 3), its errors to the log and, but for Go's chatter, the terminal.
    (
      set -o pipefail
      (cd "$root" && eval "$cmd") 2>&1 >&3 | tee -a "$log" | { grep -v --line-buffered '^go: \(downloading\|finding\|extracting\)' >&4 || true; }
    ) &
  else
    (cd "$root" && eval "$cmd") >"$log" 2>&1 &
  fi
  pid=$!
  # One line a minute while it runs.
  (
    while sleep 60; do
      kill -0 "$pid" 2>/dev/null || exit 0
      echo "[$n/$total] ... still running ($(elapsed $((SECONDS - start))))"
    done
  ) &
  ticker=$!
  wait "$pid"
  rc=$?
  kill "$ticker" 2>/dev/null
  wait "$ticker" 2>/dev/null
  report "$rc"
done
echo "make $name: all $total steps passed in $(elapsed $((SECONDS - started)))"
