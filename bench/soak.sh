#!/usr/bin/env bash
# Soak: run scenarios repeatedly (release build, loopback, bounded by RUNS) and keep the output
# of every failing run. Usage: bench/soak.sh RUNS FILE... ; failures land in target/soak/.
set -uo pipefail
cd "$(dirname "$0")/.."
runs="$1"; shift
cargo build --release -q -p callflow || exit 2
mkdir -p target/soak
total_fail=0
for f in "$@"; do
  (
    fails=0
    for i in $(seq "$runs"); do
      out=$(timeout 60 target/release/callflow run -v "$f" 2>&1)
      if [ $? -ne 0 ]; then
        fails=$((fails + 1))
        printf '%s\n' "$out" > "target/soak/$(basename "$f").$i.log"
      fi
    done
    echo "$f: $fails/$runs failed"
    [ "$fails" -eq 0 ]
  ) &
done
for job in $(jobs -p); do wait "$job" || total_fail=1; done
exit "$total_fail"
