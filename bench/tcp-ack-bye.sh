#!/usr/bin/env bash
# The gap between the ACK and the BYE of a call over TCP, as the callee receives them (the
# fixture hangs up right after the answer): Nagle's algorithm with delayed ACKs makes it ~40 ms,
# TCP_NODELAY well under 1 ms. Usage: bench/tcp-ack-bye.sh [RUNS] (default 20).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
cargo build --release -q -p callflow
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
for i in $(seq 1 "$runs"); do
  ./target/release/callflow run -q --events "$dir/$i.jsonl" fixtures/basic-call-tcp.yaml >/dev/null
done
python3 - "$dir" "$runs" <<'PY'
import json, statistics, sys
d, runs = sys.argv[1], int(sys.argv[2])
gaps = []
for i in range(1, runs + 1):
    ack = bye = None
    for line in open(f"{d}/{i}.jsonl"):
        e = json.loads(line)
        if e["event"]["type"] != "sip_message":
            continue
        m = e["event"]["data"]
        if m["ua"] == "bob" and m["direction"] == "received":
            if m.get("method") == "ACK" and ack is None:
                ack = e["ts_us"]
            if m.get("method") == "BYE" and bye is None:
                bye = e["ts_us"]
    if ack and bye:
        gaps.append((bye - ack) / 1000)
print(f"{len(gaps)} calls over TCP: ACK to BYE median {statistics.median(gaps):.3f} ms, max {max(gaps):.3f} ms")
PY
