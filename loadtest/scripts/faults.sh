#!/usr/bin/env bash
# faults.sh — the fault-injection suite (issue #15) in release mode, one case at a
# time, and its table in loadtest/results/faults.md.
#
#   faults.sh [--debug]
#
# Runs `cargo test --release -p floodgate --test faults` and
# `cargo test --release -p floodgate-control --test faults` with `--nocapture
# --test-threads=1`; each case appends its row to the table (FLOODGATE_FAULTS_TABLE).
# Every case is bounded (a few seconds; the client gives up on a request after 10 s)
# and fails on a lost request, so a failing case shows in the exit status; the rows
# of the cases that ran are written either way. Real processes on loopback only; the
# load is a few hundred requests per second, not a benchmark.
#
# CARGO can name a wrapper, e.g. CARGO="flock /tmp/cargo-build.lock cargo" on a shared
# machine (the build then holds the lock; the runs do not).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

profile=(--release)
label="release"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --debug) profile=(); label="debug"; shift ;;
    *) die "unknown option $1" ;;
  esac
done
read -r -a cargo <<<"${CARGO:-cargo}"
cd "$ROOT"

log "building the suite ($label)…"
"${cargo[@]}" test "${profile[@]}" -p floodgate --test faults --no-run >&2 \
  || die "cargo test --no-run -p floodgate failed"
"${cargo[@]}" test "${profile[@]}" -p floodgate-control --test faults --no-run >&2 \
  || die "cargo test --no-run -p floodgate-control failed"

rows="$(mktemp)"
trap 'rm -f "$rows"' EXIT
status=0
export FLOODGATE_FAULTS_TABLE="$rows"
for pkg in floodgate floodgate-control; do
  log "running $pkg's fault cases…"
  cargo test "${profile[@]}" -p "$pkg" --test faults -- --nocapture --test-threads=1 >&2 \
    || { log "$pkg: a case failed"; status=1; }
done

mkdir -p "$ROOT/loadtest/results"
out="$ROOT/loadtest/results/faults.md"
{
  echo "# Fault-injection suite"
  echo
  echo "\`bash loadtest/scripts/faults.sh\` ($label build), $(date -u '+%Y-%m-%d %H:%M UTC'),"
  echo "$(nproc) cores ($(uname -m)), $(git rev-parse --short HEAD 2>/dev/null || echo '?')."
  echo "Lost = no answer within the client's 10 s timeout; errors are every outcome that is"
  echo "not a complete 2xx, by status and \`x-floodgate-reason\`; normal traffic is the"
  echo "requests beside the fault (healthy route); RSS is the proxy's VmHWM (— where the"
  echo "proxy runs inside the test process)."
  echo
  echo "| case | sent | answered | lost | errors by reason (status + x-floodgate-reason) | normal-traffic success | peak RSS |"
  echo "|---|---:|---:|---:|---|---:|---:|"
  cat "$rows"
} >"$out"
cat "$out"
log "table: $out"
exit "$status"
