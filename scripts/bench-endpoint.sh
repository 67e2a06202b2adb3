#!/usr/bin/env bash
# capline endpoint against a fast model, direct and through capline, in the
# same run: added latency (p50/p99/p99.9) and the throughput ratio, at
# sampling 0 % and 100 %, for 1 KiB and 64 KiB request bodies.
# Usage: scripts/bench-endpoint.sh [SECONDS]   (installs wrk if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
SECS=${1:-8}
command -v wrk >/dev/null 2>&1 || apt-get install -y -q wrk
cargo build --release --locked -p capline-cli -p capline-benches --bin capline --bin fast-model
BIN="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MODEL=$(free_port); PORT=$(free_port); ADMIN=$(free_port)
"$BIN/fast-model" "$MODEL" & MODEL_PID=$!
cat >"$WORK/endpoint.json" <<JSON
{"EndpointName": "bench", "Listen": "127.0.0.1:$PORT", "AdminListen": "127.0.0.1:$ADMIN",
 "ProductionVariants": [{"VariantName": "AllTraffic", "ModelUrl": "http://127.0.0.1:$MODEL"}],
 "DataCaptureConfig": {"InitialSamplingPercentage": 0, "DestinationS3Uri": "file://$WORK/capture",
   "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
   "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]}},
 "Engine": {"SpoolDir": "$WORK/spool"}}
JSON
"$BIN/capline" endpoint --config "$WORK/endpoint.json" >"$WORK/endpoint.log" & EP_PID=$!
trap 'kill $MODEL_PID $EP_PID 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/ping" >/dev/null 2>&1 && break
  sleep 0.1
done
run() { # URL PATH BYTES -> "rps p50 p99 p999"
  BODY_BYTES=$3 TARGET_PATH=$2 wrk -t1 -c16 -d"${SECS}s" --latency -s benches/endpoint_post.lua "$1" |
    sed -n 's/^RESULT rps=\([0-9]*\) p50=\([0-9]*\) p99=\([0-9]*\) p999=\([0-9]*\) errors=\([0-9]*\) non2xx=\([0-9]*\)/\1 \2 \3 \4 \5 \6/p'
}
echo "wrk -t1 -c16 -d${SECS}s; one fast model (hyper, answers 0.5); latency in microseconds"
printf '%-8s %-9s | %-34s | %-34s | %s\n' body sampling "direct: rps p50 p99 p99.9" "capline: rps p50 p99 p99.9" "added p50/p99/p99.9, throughput"
for bytes in 1024 65536; do
  for pct in 0 100; do
    "$BIN/capline" ctl --admin "127.0.0.1:$ADMIN" set AllTraffic --sampling "$pct" >/dev/null
    read -r d_rps d_50 d_99 d_999 d_err d_bad < <(run "http://127.0.0.1:$MODEL" /invocations "$bytes")
    read -r c_rps c_50 c_99 c_999 c_err c_bad < <(run "http://127.0.0.1:$PORT" /endpoints/bench/invocations "$bytes")
    [ "$((d_err + d_bad + c_err + c_bad))" -eq 0 ] || { echo "errors: direct $d_err/$d_bad capline $c_err/$c_bad"; exit 1; }
    printf '%-8s %-9s | %8s %8s %8s %8s | %8s %8s %8s %8s | +%s/+%s/+%s us, %s %%\n' \
      "$bytes" "$pct %" "$d_rps" "$d_50" "$d_99" "$d_999" "$c_rps" "$c_50" "$c_99" "$c_999" \
      "$((c_50 - d_50))" "$((c_99 - d_99))" "$((c_999 - d_999))" "$((100 * c_rps / d_rps))"
  done
done
"$BIN/capline" ctl --admin "127.0.0.1:$ADMIN" metrics | grep -E '^capline_(kept|sampled_out|dropped_ring_full)\{' || true
