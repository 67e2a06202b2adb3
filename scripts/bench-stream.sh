#!/usr/bin/env bash
# Streamed answers, direct against through capline endpoint at 100 % sampling,
# in one run (benches/stream.rs): a stand-in LLM server streaming OpenAI-style
# server-sent events, reached
# - directly on /v1/completions, and through capline's passthrough route;
# - directly on /invocations, and through InvokeEndpointWithResponseStream
#   (event-stream framing).
# Prints time to first and last byte (paced tokens) and tokens per second
# (no pause between tokens), with capline's ratios to direct.
# Usage: scripts/bench-stream.sh [SECONDS] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
SECS=${1:-10}
REPS=${2:-3}
cargo build --release --locked -p capline-cli -p capline-benches --bin capline --bin stream
BIN="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MODEL=$(free_port); PORT=$(free_port); ADMIN=$(free_port)
"$BIN/stream" model "$MODEL" & MODEL_PID=$!
cat >"$WORK/endpoint.json" <<JSON
{"EndpointName": "bench", "Listen": "127.0.0.1:$PORT", "AdminListen": "127.0.0.1:$ADMIN",
 "PassthroughRoutes": ["/v1/completions"],
 "ProductionVariants": [{"VariantName": "AllTraffic", "ModelUrl": "http://127.0.0.1:$MODEL"}],
 "DataCaptureConfig": {"InitialSamplingPercentage": 100, "DestinationS3Uri": "file://$WORK/capture",
   "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
   "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json", "text/event-stream"]}},
 "Engine": {"SpoolDir": "$WORK/spool"}}
JSON
"$BIN/capline" endpoint --config "$WORK/endpoint.json" >"$WORK/endpoint.log" 2>&1 & EP_PID=$!
trap 'kill $EP_PID $MODEL_PID 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$ADMIN/metrics" >/dev/null && break
  sleep 0.1
done
echo "commit: $(git rev-parse --short HEAD)"
"$BIN/stream" client --reps "$REPS" --seconds "$SECS" ${ONLY:+--only "$ONLY"} \
  --target "direct-passthrough=http://127.0.0.1:$MODEL/v1/completions" \
  --target "capline-passthrough=http://127.0.0.1:$PORT/v1/completions" \
  --target "direct-response-stream=http://127.0.0.1:$MODEL/invocations" \
  --target "capline-response-stream=http://127.0.0.1:$PORT/endpoints/bench/invocations-response-stream"
echo
curl -s "http://127.0.0.1:$ADMIN/metrics" | grep -E '^capline_endpoint_streams_total|^capline_(kept|sampled_out|records_written|dropped)_total' | grep -v ' 0$' || true
