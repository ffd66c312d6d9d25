#!/usr/bin/env bash
# Benchmark (not a test): callflow's load mode against sipp, side by side in the same run.
# Steps the call rate; at each step runs four pairs, each a generator (UAC) and a callee (UAS),
# two processes, on loopback, one after the other:
#   sipp->sipp  callflow->sipp  sipp->callflow  callflow->callflow
# Short calls (INVITE/100/180/200/ACK, BYE/200 at once), 4 MB socket buffers on both sides.
# Per pair and step: calls made, failures, retransmissions, achieved rate, CPU seconds per
# 1,000 calls (both processes), peak RSS (the larger), setup p50/p99 (INVITE to 200, from the
# generator: sipp's -trace_rtt, callflow's --summary). Then each pair's highest clean rate (no
# failure, no retransmission).
#
# Usage: bench/load-vs-sipp.sh [SECONDS] [RATE...]
#   SECONDS  per step (default 10)
#   RATE     calls per second (default 1000 2000 4000 8000 12000 16000)
# Every load is bounded (-m / --calls = RATE x SECONDS, and sipp's -timeout); every address is
# 127.0.0.1. Needs sipp (sip-tester), GNU time and python3. CALLFLOW_ARGS adds flags to every
# callflow load (for example `--threads 1`).
# BENCH_UA=/path/to/bench_ua adds a fifth pair, sipp->rsipstack: the benchmark UA of the
# rsipstack crate callflow pins (its src/bin/bench_ua.rs, feature `bench`; build it yourself
# from the crate's source, this repository does not), answering with nothing but rsipstack:
# the floor under callflow's callee. It listens on 0.0.0.0 (it has no address option); sipp
# reaches it on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-10}"
shift $(( $# > 0 ? 1 : 0 ))
rates=("$@")
[ "${#rates[@]}" -gt 0 ] || rates=(1000 2000 4000 8000 12000 16000)
command -v sipp >/dev/null || { echo "bench/load-vs-sipp.sh needs sipp (apt-get install sip-tester)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench/load-vs-sipp.sh needs GNU time (apt-get install time)" >&2; exit 2; }
cargo build --release -q -p callflow
cf="$PWD/target/release/callflow"
read -r -a cf_args <<<"${CALLFLOW_ARGS:-}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"; jobs -p | xargs -r kill 2>/dev/null' EXIT
uas_port=25160
buf=4194304

cat >"$tmp/to-sipp.yaml" <<EOF
version: 1
name: to sipp
instances:
  alice:
    dn: "100"
    steps:
      - command: MakeCall
        target: sip:service@127.0.0.1:$uas_port
      - command: Release
EOF

# Runs one pair at one rate; prints its row.
pair() {
  local name="$1" rate="$2" calls=$(( $2 * secs ))
  local gen="$tmp/gen.time" peer="$tmp/peer.time" uas_pid="" setup=""
  rm -f "$tmp"/*.csv "$tmp/summary.json" "$gen" "$peer"
  case "$name" in
    callflow-\>sipp|sipp-\>sipp)
      /usr/bin/time -o "$peer" -f '%U %S %M' sipp -sn uas -i 127.0.0.1 -p "$uas_port" \
        -buff_size "$buf" -m "$calls" -nostdin -timeout "$((secs + 30))s" >/dev/null 2>&1 &
      uas_pid=$! ;;
    sipp-\>rsipstack)
      /usr/bin/time -o "$peer" -f '%U %S %M' "$BENCH_UA" -m server -p "$uas_port" >/dev/null 2>&1 &
      uas_pid=$! ;;
    sipp-\>callflow|callflow-\>callflow)
      /usr/bin/time -o "$peer" -f '%U %S %M' "$cf" load fixtures/load/answer.yaml -q "${cf_args[@]}" \
        --calls "$calls" --base-port "$uas_port" --port-count 1 \
        --summary "$tmp/uas.json" >/dev/null 2>&1 &
      uas_pid=$! ;;
  esac
  sleep 0.5 # the callee's socket is up (a bench, not a test: nothing to wait on)
  case "$name" in
    sipp-\>*)
      # timeout(1) too: a sipp uac whose calls failed was seen to outlive its own -timeout.
      (cd "$tmp" && /usr/bin/time -o "$gen" -f '%U %S %M' timeout "$((secs + 40))" sipp -sn uac -i 127.0.0.1 -p 0 \
        -buff_size "$buf" -r "$rate" -m "$calls" -d 0 -trace_stat -stf stat.csv -fd 3600 \
        -trace_rtt -rtt_freq 1 -nostdin -timeout "$((secs + 30))s" "127.0.0.1:$uas_port" \
        >/dev/null 2>&1) || true ;;
    callflow-\>sipp|callflow-\>callflow)
      # Two processes, like the sipp pairs: this one calls, an answering callflow (or sipp)
      # answers on the callee's port.
      /usr/bin/time -o "$gen" -f '%U %S %M' "$cf" load "$tmp/to-sipp.yaml" -q "${cf_args[@]}" --rate "$rate" \
        --calls "$calls" --summary "$tmp/summary.json" >/dev/null 2>&1 || true ;;
  esac
  # bench_ua never ends by itself: stopped under time(1), which then reports it.
  [ "$name" = "sipp->rsipstack" ] && { pkill -TERM -P "$uas_pid" 2>/dev/null || true; }
  [ -n "$uas_pid" ] && { wait "$uas_pid" 2>/dev/null || true; }
  python3 - "$name" "$rate" "$calls" "$tmp" <<'PY'
import csv, glob, json, os, sys
name, rate, calls, tmp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def usage(path):
    try:
        u, s, m = open(path).read().split()[-3:]
        return float(u) + float(s), int(m)
    except Exception:
        return 0.0, 0
cpu, rss = usage(os.path.join(tmp, "gen.time"))
pcpu, prss = usage(os.path.join(tmp, "peer.time"))
made = failed = retrans = 0
achieved = p50 = p99 = float("nan")
if name.startswith("sipp"):
    rows = list(csv.reader(open(os.path.join(tmp, "stat.csv")), delimiter=";")) if os.path.exists(os.path.join(tmp, "stat.csv")) else []
    if len(rows) >= 2:
        h, last = rows[0], rows[-1]
        col = lambda k: last[h.index(k)] if k in h else "0"
        made = int(col("SuccessfulCall(C)")) + int(col("FailedCall(C)"))
        failed = int(col("FailedCall(C)"))
        retrans = int(col("Retransmissions(C)"))
        elapsed = col("ElapsedTime(C)")
        try:
            hh, mm, ss = elapsed.split(":")[:3]
            t = int(hh) * 3600 + int(mm) * 60 + float(ss)
            achieved = made / t if t else float("nan")
        except Exception:
            pass
    rtts = []
    for f in glob.glob(os.path.join(tmp, "*_rtt.csv")):
        for line in open(f).read().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try: rtts.append(float(parts[1]))
                except ValueError: pass
    if rtts:
        rtts.sort()
        p50, p99 = rtts[len(rtts) // 2], rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
else:
    try:
        s = json.load(open(os.path.join(tmp, "summary.json")))
        made, failed = s["calls"]["attempted"], s["calls"]["failed"]
        retrans = s["retransmissions"]["sent"] + s["retransmissions"]["received"]
        achieved = s["rate"]["achieved"]
        p50, p99 = s["latency_ms"]["setup"]["p50"], s["latency_ms"]["setup"]["p99"]
    except Exception:
        pass
clean = made == calls and failed == 0 and retrans == 0
per_k = (cpu + pcpu) / made * 1000 if made else float("nan")
print(f"{name:<20} {rate:>6} {made:>7} {failed:>6} {retrans:>7} {achieved:>9.1f} {per_k:>10.3f} {max(rss, prss) / 1024:>8.1f} {p50:>9.3f} {p99:>9.3f}  {'clean' if clean else '-'}")
PY
}

pairs=("sipp->sipp" "callflow->sipp" "sipp->callflow" "callflow->callflow")
if [ -n "${BENCH_UA:-}" ]; then
  [ -x "$BENCH_UA" ] || { echo "BENCH_UA=$BENCH_UA is not an executable" >&2; exit 2; }
  pairs+=("sipp->rsipstack")
fi
printf '%-20s %6s %7s %6s %7s %9s %10s %8s %9s %9s\n' pair rate calls failed retrans achieved "cpu_s/1k" "rss_MB" "setup_p50" "setup_p99"
for rate in "${rates[@]}"; do
  for name in "${pairs[@]}"; do
    pair "$name" "$rate"
  done
done | tee "$tmp/rows.txt"
echo
echo "highest clean rate (all calls made, no failure, no retransmission):"
for name in "${pairs[@]}"; do
  best=$(awk -v n="$name" '$1 == n && $NF == "clean" { r = $2 } END { print r + 0 }' "$tmp/rows.txt")
  printf '  %-20s %s/s\n' "$name" "$best"
done
