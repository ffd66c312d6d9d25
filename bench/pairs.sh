#!/usr/bin/env bash
# Benchmark: one scenario of N caller/callee pairs (2N UAs, N calls at once) on loopback, from
# process start to verdict, with the peak memory (the engine-core issue's "2,000 pairs" figure).
# Usage: bench/pairs.sh [PAIRS] [RUNS] [BINARY...]
#   PAIRS   pairs in the scenario (default 2000)
#   RUNS    runs of each binary (default 3)
#   BINARY  callflow binaries to compare, side by side in the same minute (default: a release
#           build of this tree); e.g. a build of an older commit beside this one.
# Each run is bounded: N calls, each INVITE/180/200/ACK/BYE/200, then cleanup; every address is
# 127.0.0.1. Prints, per binary, the wall time and peak RSS (GNU time) of each run.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs="${1:-2000}"
runs="${2:-3}"
shift $(( $# > 2 ? 2 : $# ))
bins=("$@")
if [ "${#bins[@]}" -eq 0 ]; then
  cargo build --release -q -p callflow
  bins=(target/release/callflow)
fi
[ -x /usr/bin/time ] || { echo "bench/pairs.sh needs GNU time (apt-get install time)" >&2; exit 2; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

file="$(mktemp --suffix=.yaml)"
trap 'rm -f "$file" "$file.time"' EXIT
{
  echo "version: 1"
  echo "name: $pairs pairs"
  echo "instances:"
  for i in $(seq 0 $((pairs - 1))); do
    printf '  c%d:\n    dn: "%d"\n    steps:\n      - command: MakeCall\n        target: e%d\n        timeout: 60s\n      - command: Release\n' "$i" $((100000 + i)) "$i"
    printf '  e%d:\n    dn: "%d"\n    steps:\n      - event: INCOMING\n        timeout: 60s\n      - command: Answer\n      - event: DISCONNECTED\n        timeout: 60s\n' "$i" $((200000 + i))
  done
} >"$file"

for r in $(seq "$runs"); do
  for bin in "${bins[@]}"; do
    /usr/bin/time -o "$file.time" -f '%e %M %x' "$bin" run -q "$file" >/dev/null 2>&1 || true
    read -r secs kb code < <(tail -1 "$file.time")
    printf '%-40s run %d: %6.2f s  %6d MB peak RSS  exit %s\n' "$bin" "$r" "$secs" $((kb / 1024)) "$code"
  done
done
