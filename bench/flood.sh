#!/usr/bin/env bash
# Memory under an OPTIONS flood: callflow runs a scenario that waits SECS seconds while sipp
# sends out-of-dialog OPTIONS at RATE per second to its UA; the resident size of callflow is read
# at the start and the end of the flood, for a plain run and for a run that draws reports
# (--out DIR: events.jsonl, ladder, pcap; --report-memory FLOOD_REPORT_MIB, default 128), and,
# side by side in the same run, for sipp answering the same flood (bench/options-answer.xml).
# Usage: [FLOOD_MODES="plain reports sipp"] [FLOOD_REPORT_MIB=128] bench/flood.sh [RATE] [SECS]
# (default 1000 30).
# Loopback only; bounded by SECS and by sipp's call count (RATE * SECS).
set -euo pipefail
cd "$(dirname "$0")/.."
rate="${1:-1000}"; secs="${2:-30}"
cargo build --release -q -p callflow
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
printf 'version: 1\nname: flooded\ninstances:\n  bob:\n    dn: "200"\n    steps:\n      - event: TIMEOUT\n        timeout: %ss\n' "$((secs + 3))" > "$dir/wait.yaml"
# The resident size in kB, or nothing once the process is gone.
rss() { awk '/VmRSS/ { print $2 }' "/proc/$1/status" 2>/dev/null || true; }
for mode in ${FLOOD_MODES:-plain reports sipp}; do
  port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  extra=()
  [ "$mode" = reports ] && extra=(--out "$dir/out" --report-memory "${FLOOD_REPORT_MIB:-128}")
  if [ "$mode" = sipp ]; then
    sipp -sf bench/options-answer.xml -i 127.0.0.1 -p "$port" -m $((rate * secs)) -nostdin \
      -timeout "$((secs + 5))s" > "$dir/$mode.log" 2>&1 &
  else
    target/release/callflow run -q --base-port "$port" --port-count 1 "${extra[@]}" "$dir/wait.yaml" > "$dir/$mode.log" 2>&1 &
  fi
  cf=$!
  sleep 1
  before=$(rss "$cf")
  timeout $((secs + 10)) sipp -sf bench/options-flood.xml -s bob -i 127.0.0.1 -p 0 "127.0.0.1:$port" \
    -r "$rate" -m $((rate * secs)) -nostdin -timeout "$((secs + 5))s" > /dev/null 2>&1 &
  sipp=$!
  # The resident size every 10 s of the flood: a plateau is state with a lifetime (rsipstack
  # keeps a completed server transaction 32 s, RFC 3261 Timer J), a slope is a leak.
  samples=""
  last=$before
  for _ in $(seq $((secs / 10))); do
    sleep 10
    now=$(rss "$cf"); last=${now:-$last}
    samples="$samples $(( last / 1024 ))"
  done
  wait "$sipp" || true
  after=$(rss "$cf"); after=${after:-$last}
  echo "$mode: MB every 10 s:$samples"
  wait "$cf" || true
  echo "$mode: RSS ${before} kB -> ${after} kB over ${secs} s at ${rate} OPTIONS/s: $(( (after - before) * 60 / secs / 1024 )) MB/min"
done
