#!/usr/bin/env bash
# The Python bindings, measured in one run:
# 1. capture() from Python against a Python team's afternoon version
#    (benches/python/capture_bench.py);
# 2. a FastAPI app under uvicorn (one worker) at a fixed request rate, three
#    ways: no capture, capline's ASGI middleware (100 % sampling), and
#    `capline endpoint` in front of the app with no middleware (100 %).
#    oha -q RATE, 8 connections, latency corrected; p50/p99 per way, medians
#    of REPS interleaved runs, and what each way adds to the first.
# Usage: scripts/bench-python.sh [SECONDS] [REPS] [RATE]
#   (expects the wheel installed in $PYVENV, default ~/.cache/capline/pyvenv,
#    with fastapi and uvicorn; installs oha with cargo when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
SECS=${1:-10}
REPS=${2:-3}
RATE=${3:-500}
PY=${PYVENV:-$HOME/.cache/capline/pyvenv}/bin/python
TOOLS="$HOME/.cache/capline/tools"
[ -x "$TOOLS/bin/oha" ] || env -u CARGO_TARGET_DIR cargo install oha --version 1.16.0 --locked --root "$TOOLS"
OHA="$TOOLS/bin/oha"
cargo build --release --locked -q -p capline-cli --bin capline
BIN="$CARGO_TARGET_DIR/release/capline"
lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print "cpu: " $2}'
echo "--- capture() from Python"
"$PY" benches/python/capture_bench.py "$REPS"

WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
capture_config() {
  cat <<JSON
{"EndpointName": "bench", "DataCaptureConfig": {"InitialSamplingPercentage": 100,
   "DestinationS3Uri": "file://$WORK/$1/capture",
   "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
   "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]}},
 "Engine": {"SpoolDir": "$WORK/$1/spool"}}
JSON
}
wait_up() { for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$1/ping" >/dev/null && return 0; sleep 0.1; done; echo "no server on $1"; exit 1; }
PLAIN=$(free_port); MW=$(free_port); EP=$(free_port)
"$PY" -m uvicorn bench_app:app --app-dir benches/python --port "$PLAIN" --log-level warning & PIDS+=($!)
CAPLINE_CONFIG=$(capture_config middleware) "$PY" -m uvicorn bench_app:app --app-dir benches/python --port "$MW" --log-level warning & PIDS+=($!)
cat >"$WORK/endpoint.json" <<JSON
{"EndpointName": "bench", "Listen": "127.0.0.1:$EP", "AdminListen": "127.0.0.1:$(free_port)",
 "ProductionVariants": [{"VariantName": "AllTraffic", "ModelUrl": "http://127.0.0.1:$PLAIN"}],
 "DataCaptureConfig": {"InitialSamplingPercentage": 100, "DestinationS3Uri": "file://$WORK/endpoint/capture",
   "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
   "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]}},
 "Engine": {"SpoolDir": "$WORK/endpoint/spool"}}
JSON
"$BIN" endpoint --config "$WORK/endpoint.json" >/dev/null & PIDS+=($!)
wait_up "$PLAIN"; wait_up "$MW"; wait_up "$EP"
printf '%s' "$(seq -s, 1 20)" >"$WORK/row"
run() { # URL -> "p50_us p99_us"
  "$OHA" -q "$RATE" -c 8 -z "${SECS}s" --no-tui --latency-correction --output-format json -m POST -T text/csv -D "$WORK/row" "$1" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); p=d["latencyPercentiles"]; print(round(p["p50"]*1e6), round(p["p99"]*1e6), round(d["summary"]["successRate"]*100, 2))'
}
echo "--- FastAPI under uvicorn at $RATE req/s for ${SECS}s, $REPS interleaved runs (p50 us, p99 us, success %)"
declare -A P50 P99
for rep in $(seq 1 "$REPS"); do
  for way in plain middleware endpoint; do
    case $way in
      plain) url="http://127.0.0.1:$PLAIN/invocations" ;;
      middleware) url="http://127.0.0.1:$MW/invocations" ;;
      endpoint) url="http://127.0.0.1:$EP/endpoints/bench/invocations" ;;
    esac
    read -r p50 p99 ok < <(run "$url")
    echo "run $rep $way: p50 $p50 us, p99 $p99 us, success $ok %"
    P50[$way]="${P50[$way]:-} $p50"; P99[$way]="${P99[$way]:-} $p99"
  done
done
median() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
base=$(median "${P50[plain]}")
for way in plain middleware endpoint; do
  m=$(median "${P50[$way]}"); n=$(median "${P99[$way]}")
  python3 -c "print(f'$way: p50 {$m} us (x{$m / $base:.3f} of no capture, +{$m - $base} us), p99 {$n} us')"
done
