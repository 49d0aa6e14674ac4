#!/usr/bin/env bash
# Shows that the handler resumes where the previous invocation stopped:
# setup publishes 8 jobs, the handler runs twice with at most 5 jobs per
# run, and each job must be processed exactly once (1..5, then 6..8).
# Needs a running bridge (JETWAY_HTTP_URL, default http://127.0.0.1:8080).
set -euo pipefail
cd "$(dirname "$0")"
export JETWAY_JOBS="${JETWAY_JOBS:-8}" JETWAY_MAX="${JETWAY_MAX:-5}"

node setup.js
echo "== run 1"
run1="$(node handler.js)"
echo "$run1"
echo "== run 2"
run2="$(node handler.js)"
echo "$run2"

seqs="$(printf '%s\n%s\n' "$run1" "$run2" | sed -n 's/^processed seq=\([0-9]*\) .*/\1/p')"
repeated="$(sort -n <<<"$seqs" | uniq -d | tr '\n' ' ')"
count="$(sort -nu <<<"$seqs" | grep -c .)"
if [ -n "$repeated" ]; then
  echo "FAIL: processed more than once: $repeated"
  exit 1
fi
if [ "$count" -ne "$JETWAY_JOBS" ]; then
  echo "FAIL: $count distinct jobs processed, want $JETWAY_JOBS"
  exit 1
fi
echo "OK: $count jobs, each processed once across two runs"
