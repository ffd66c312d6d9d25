#!/usr/bin/env bash
# Benchmark: the bundled basic call, from process start to verdict (release build, loopback).
# Usage: bench/basic-call.sh [RUNS]   (needs hyperfine: apt-get install hyperfine)
# Each run is one two-party call: INVITE/100/180/200/ACK/BYE/200 plus cleanup. Bounded by RUNS.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-50}"
cargo build --release -q -p callflow
bin=target/release/callflow
"$bin" run -q fixtures/basic-call.yaml >/dev/null   # a valid run first
if command -v hyperfine >/dev/null; then
  hyperfine --warmup 3 --runs "$runs" -N "$bin run -q fixtures/basic-call.yaml" \
    "$bin run -q fixtures/basic-call.json" "$bin validate fixtures/basic-call.yaml"
else
  start=$(date +%s%N)
  for _ in $(seq "$runs"); do "$bin" run -q fixtures/basic-call.yaml >/dev/null; done
  end=$(date +%s%N)
  echo "mean per run: $(( (end - start) / runs / 1000 )) us over $runs runs (install hyperfine for statistics)"
fi
