#!/usr/bin/env bash
# Benchmark: one scenario of N caller/callee pairs (2N UAs, N calls at once) on loopback, from
# process start to verdict, with the peak memory (the engine-core issue's "2,000 pairs" figure).
# Usage: bench/pairs.sh [PAIRS] [RUNS] [BINARY...]
#   PAIRS   pairs in the scenario (default 2000)
#   RUNS    runs of each binary (default 3)
#   BINARY  callflow binaries to compare, side by side in the same minute (default: a release
#           build of this tree); e.g. a build of an older commit beside this one.
# Each run is bounded: N calls, each INVITE/180/200/ACK/BYE/200, then cleanup; every address is
# 127.0.0.1. Prints, per binary, the wall time and peak RSS (GNU time) of each run. With sipp
# installed, each round also times sipp's own client placing the same N calls at once (-l N,
# -r N) against a sipp UAS: the peer's figure in the same minutes (one socket for all calls,
# where each callflow UA here has its own).
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

uas_pid=""
if command -v sipp >/dev/null; then
  sipp -sn uas -i 127.0.0.1 -p 15099 -max_socket 10000 >/dev/null 2>&1 &
  uas_pid=$!
fi
trap 'rm -f "$file" "$file.time"; [ -n "$uas_pid" ] && kill "$uas_pid" 2>/dev/null' EXIT

for r in $(seq "$runs"); do
  if [ -n "$uas_pid" ]; then
    /usr/bin/time -o "$file.time" -f '%e %M %x' sipp -sn uac -i 127.0.0.1 -p 0 -m "$pairs" \
      -l "$pairs" -r "$pairs" -rp 1000 -d 0 -nostdin -timeout 60s 127.0.0.1:15099 \
      >/dev/null 2>&1 || true
    read -r secs kb code < <(tail -1 "$file.time")
    printf '%-40s run %d: %6.2f s  %6d MB peak RSS  exit %s\n' "sipp (-l $pairs -r $pairs)" "$r" "$secs" $((kb / 1024)) "$code"
  fi
  for bin in "${bins[@]}"; do
    /usr/bin/time -o "$file.time" -f '%e %M %x' "$bin" run -q "$file" >/dev/null 2>&1 || true
    read -r secs kb code < <(tail -1 "$file.time")
    printf '%-40s run %d: %6.2f s  %6d MB peak RSS  exit %s\n' "$bin" "$r" "$secs" $((kb / 1024)) "$code"
  done
done
