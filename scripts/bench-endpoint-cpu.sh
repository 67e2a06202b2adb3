#!/usr/bin/env bash
# CPU time per request of `capline endpoint` builds, in the same run: each
# given capline binary in turn proxies wrk's load (16 connections, 1 KiB CSV,
# sampling 0 %) to the fast model; prints requests/s and the CPU time per
# request (user + system, from /proc) of capline and of the model.
# Usage: scripts/bench-endpoint-cpu.sh SECONDS ROUNDS CAPLINE_BIN...
#   e.g. two builds of two commits: A/B, rounds interleaved.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
SECS=$1; ROUNDS=$2; shift 2
command -v wrk >/dev/null 2>&1 || apt-get install -y -q wrk
cargo build --release --locked -p capline-benches --bin fast-model
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MODEL=$(free_port)
"$CARGO_TARGET_DIR/release/fast-model" "$MODEL" & MODEL_PID=$!
trap 'kill $MODEL_PID 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
for round in $(seq 1 "$ROUNDS"); do
  for bin in "$@"; do
    port=$(free_port); admin=$(free_port)
    rm -rf "$WORK/spool"
    cat >"$WORK/endpoint.json" <<JSON
{"EndpointName": "bench", "Listen": "127.0.0.1:$port", "AdminListen": "127.0.0.1:$admin",
 "ProductionVariants": [{"VariantName": "AllTraffic", "ModelUrl": "http://127.0.0.1:$MODEL"}],
 "DataCaptureConfig": {"InitialSamplingPercentage": 0, "DestinationS3Uri": "file://$WORK/capture",
   "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]},
 "Engine": {"SpoolDir": "$WORK/spool"}}
JSON
    "$bin" endpoint --config "$WORK/endpoint.json" >/dev/null & ep=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ping" >/dev/null 2>&1 && break; sleep 0.1; done
    m0=$(ticks "$MODEL_PID"); e0=$(ticks "$ep")
    line=$(BODY_BYTES=1024 TARGET_PATH=/endpoints/bench/invocations wrk -t1 -c16 -d"${SECS}s" \
      -s benches/endpoint_post.lua "http://127.0.0.1:$port" | grep '^RESULT')
    m1=$(ticks "$MODEL_PID"); e1=$(ticks "$ep")
    kill "$ep"; wait "$ep" 2>/dev/null || true
    [[ $line == *"errors=0 non2xx=0"* ]] || { echo "$bin: $line"; exit 1; }
    rps=$(sed 's/^RESULT rps=\([0-9]*\).*/\1/' <<<"$line")
    n=$((rps * SECS))
    printf 'round %s  %-40s rps %6s  CPU per request: capline %s us, model %s us\n' "$round" "$bin" "$rps" \
      "$(( (e1 - e0) * 1000000 / HZ / n ))" "$(( (m1 - m0) * 1000000 / HZ / n ))"
  done
done
