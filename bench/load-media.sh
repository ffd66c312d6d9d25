#!/usr/bin/env bash
# Benchmark (not a test): calls in flight, and what each costs in memory.
#  1. N calls at once with G.711 both ways for 8 s, each checked for loss (CheckMedia
#     max_loss 0): fixtures/load/media-call.yaml, --users N (both roles in one process: 2N RTP
#     streams of 50 packets a second).
#  2. The same number of calls without media (fixtures/load/long-call.yaml shortened to 8 s),
#     at N and 3N in flight: the memory per call in flight is the difference.
# Usage: bench/load-media.sh [N]   (default 1000). Every address is 127.0.0.1; every load is
# bounded (--calls).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-1000}"
cargo build --release -q -p callflow
cf=target/release/callflow
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed 's/timeout: 60s/timeout: 8s/' fixtures/load/long-call.yaml >"$tmp/long8.yaml"
report() {
  python3 - "$1" "$2" <<'PY'
import json, sys
s = json.load(open(sys.argv[2]))
print(f"{sys.argv[1]:<28} passed {s['calls']['passed']:>6} failed {s['calls']['failed']:>4} "
      f"in flight {s['concurrency']['max_in_flight']:>6} peak RSS {s['memory']['peak_rss_mb']:7.1f} MB "
      f"transactions {s['memory']['peak_transactions']:>6} setup p50 {s['latency_ms']['setup']['p50']:.2f} ms")
PY
}
"$cf" load fixtures/load/media-call.yaml -q --users "$n" --rate 500 --calls "$n" --summary "$tmp/media.json" >/dev/null || true
report "media, $n at once" "$tmp/media.json"
for k in "$n" $((3 * n)); do
  "$cf" load "$tmp/long8.yaml" -q --users "$k" --rate 1000 --calls "$k" --summary "$tmp/l$k.json" >/dev/null || true
  report "no media, $k at once" "$tmp/l$k.json"
done
