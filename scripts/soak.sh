#!/usr/bin/env bash
# A soak outside CI: capline endpoint (release build) in front of a fast
# model, at a fixed request rate with 100 % sampling, for a while; the
# endpoint's RSS is sampled every 10 s, and the run ends with the figures
# the memory bound is judged by: RSS after warm-up (the first minute) against
# RSS at the end, and the largest sample.
# Usage: scripts/soak.sh [SECONDS] [RATE] [BODY_BYTES]
#   (default 600 s at 2000 requests/s with 1 KiB bodies; installs oha with cargo when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
SECS=${1:-600}
RATE=${2:-2000}
BODY=${3:-1024}
TOOLS="$HOME/.cache/capline/tools"
[ -x "$TOOLS/bin/oha" ] || env -u CARGO_TARGET_DIR cargo install oha --version 1.16.0 --locked --root "$TOOLS"
OHA="$TOOLS/bin/oha"
cargo build --release --locked -p capline-cli -p capline-benches --bin capline --bin fast-model
BIN="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MODEL=$(free_port); PORT=$(free_port); ADMIN=$(free_port)
"$BIN/fast-model" "$MODEL" & MODEL_PID=$!
cat >"$WORK/endpoint.json" <<JSON
{"EndpointName": "soak", "Listen": "127.0.0.1:$PORT", "AdminListen": "127.0.0.1:$ADMIN",
 "ProductionVariants": [{"VariantName": "AllTraffic", "ModelUrl": "http://127.0.0.1:$MODEL"}],
 "DataCaptureConfig": {"InitialSamplingPercentage": 100, "DestinationS3Uri": "file://$WORK/capture",
   "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
   "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]}},
 "Engine": {"SpoolDir": "$WORK/spool", "SegmentMaxAgeSeconds": 10}}
JSON
"$BIN/capline" endpoint --config "$WORK/endpoint.json" >"$WORK/endpoint.log" 2>&1 & EP_PID=$!
cleanup() {
  kill "$EP_PID" "$MODEL_PID" 2>/dev/null || true
  wait "$EP_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), timeout=0.2).close()" 2>/dev/null && break
  sleep 0.1
done
head -c "$BODY" /dev/zero | tr '\0' '7' >"$WORK/body"
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$EP_PID/status"; }
"$OHA" -q "$RATE" -c 16 -z "${SECS}s" --no-tui -m POST -T text/csv -D "$WORK/body" \
  "http://127.0.0.1:$PORT/endpoints/soak/invocations" >"$WORK/oha.txt" & OHA_PID=$!
echo "seconds rss_kib"
samples=()
t=0
while kill -0 "$OHA_PID" 2>/dev/null; do
  r=$(rss)
  samples+=("$r")
  echo "$t $r"
  sleep 10
  t=$((t + 10))
done
wait "$OHA_PID" || true
grep -E "Success rate|Requests/sec" "$WORK/oha.txt" || true
written=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^capline_records_written_total/ {print $2}')
n=${#samples[@]}
warm=${samples[6]:-${samples[0]}}
last=${samples[$((n - 1))]}
max=$(printf '%s\n' "${samples[@]}" | sort -n | tail -1)
echo "soak: $SECS s at $RATE req/s ($BODY B bodies, 100 % sampling): records written $written;" \
  "RSS after warm-up (60 s) $warm KiB, at the end $last KiB (ratio $(python3 -c "print(f'{$last / $warm:.3f}')")), largest $max KiB"
