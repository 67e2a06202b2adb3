#!/usr/bin/env bash
# Issue 15's figures, each against a baseline measured in the same run:
# 1. the client-side latency of capline endpoint with one shadow variant
#    mirrored at 100 %, against the same endpoint config without the shadow
#    (oha at a fixed rate, latency corrected, 16 connections; 1 KiB CSV
#    bodies; capture at 100 % on every variant); medians of REPS interleaved
#    runs;
# 2. capline replay's throughput against a fast model, against oha sending
#    the same number of the same requests to the same model at the same
#    concurrency (the load generator's rate is the ceiling).
# Usage: scripts/bench-shadow-replay.sh [SECONDS] [REPS] [RATE] [RECORDS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
SECS=${1:-5}
REPS=${2:-3}
RATE=${3:-2000}
RECORDS=${4:-50000}
TOOLS="$HOME/.cache/capline/tools"
[ -x "$TOOLS/bin/oha" ] || env -u CARGO_TARGET_DIR cargo install oha --version 1.16.0 --locked --root "$TOOLS"
OHA="$TOOLS/bin/oha"
cargo build --release --locked -p capline-cli -p capline-benches --bin capline --bin fast-model
BIN="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MODEL=$(free_port); SHADOW=$(free_port)
"$BIN/fast-model" "$MODEL" & MODEL_PID=$!
"$BIN/fast-model" "$SHADOW" & SHADOW_PID=$!
PIDS="$MODEL_PID $SHADOW_PID"
trap 'kill $PIDS 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT

endpoint() { # NAME SHADOWS_JSON -> port (started in the background)
  local port admin
  port=$(free_port); admin=$(free_port)
  cat >"$WORK/$1.json" <<JSON
{"EndpointName": "bench", "Listen": "127.0.0.1:$port", "AdminListen": "127.0.0.1:$admin",
 "ProductionVariants": [{"VariantName": "AllTraffic", "ModelUrl": "http://127.0.0.1:$MODEL"}],
 "ShadowProductionVariants": $2,
 "DataCaptureConfig": {"InitialSamplingPercentage": 100, "DestinationS3Uri": "file://$WORK/capture-$1",
   "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
   "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"]}},
 "Engine": {"SpoolDir": "$WORK/spool-$1"}}
JSON
  "$BIN/capline" endpoint --config "$WORK/$1.json" >"$WORK/$1.log" 2>&1 &
  PIDS="$PIDS $!"
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/ping" >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "$port"
}
PLAIN=$(endpoint plain '[]')
SHADOWED=$(endpoint shadowed "[{\"VariantName\": \"Shadow-01\", \"SamplingPercentage\": 100, \"ModelUrl\": \"http://127.0.0.1:$SHADOW\"}]")

body="$WORK/body"
python3 -c "import sys; r = '0.25,17,3.5,1,0,0,1,42.0,'; sys.stdout.write((r * 200)[:1024])" >"$body"
fixed_rate() { # PORT -> "p50 p99" in microseconds (fails on any error)
  "$OHA" -m POST -D "$body" -T text/csv -q "$RATE" -z "${SECS}s" -c 16 --latency-correction -w \
    --no-tui --output-format json "http://127.0.0.1:$1/endpoints/bench/invocations" >"$WORK/oha.json"
  python3 - "$WORK/oha.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert set(d["statusCodeDistribution"]) == {"200"} and not d["errorDistribution"], d["statusCodeDistribution"]
p = d["latencyPercentiles"]
print(round(p["p50"] * 1e6), round(p["p99"] * 1e6))
PY
}
median() { tr ' ' '\n' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
echo "1. shadow mirroring: oha -q $RATE -c16 -z${SECS}s --latency-correction, 1 KiB CSV, capture 100 %; medians of $REPS interleaved runs"
p50s="" p99s="" s50s="" s99s=""
for _ in $(seq 1 "$REPS"); do
  read -r a b < <(fixed_rate "$PLAIN"); p50s+="$a "; p99s+="$b "
  read -r a b < <(fixed_rate "$SHADOWED"); s50s+="$a "; s99s+="$b "
  rm -rf "$WORK"/capture-*
done
P50=$(median <<<"${p50s% }"); P99=$(median <<<"${p99s% }")
S50=$(median <<<"${s50s% }"); S99=$(median <<<"${s99s% }")
printf '   no shadow:            p50 %6d us  p99 %6d us   (runs: %s | %s)\n' "$P50" "$P99" "${p50s% }" "${p99s% }"
printf '   shadow at 100 %%:      p50 %6d us  p99 %6d us   (runs: %s | %s)\n' "$S50" "$S99" "${s50s% }" "${s99s% }"
python3 -c "import sys; a, b, c, d = map(int, sys.argv[1:]); print(f'   shadow/no shadow:     p50 {c / a:.3f}x ({c - a:+d} us)  p99 {d / b:.3f}x ({d - b:+d} us)')" "$P50" "$P99" "$S50" "$S99"
curl -sf "http://127.0.0.1:$(python3 -c "import json; print(json.load(open('$WORK/shadowed.json'))['AdminListen'].split(':')[1])")/shadows"; echo

echo "2. replay: $RECORDS captured 1 KiB CSV requests to the fast model, concurrency 16, against oha -n $RECORDS -c16 with the same body"
python3 - "$WORK/replay-src" "$RECORDS" "$body" <<'PY'
import base64, json, os, sys, uuid
out, n, body = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read()
os.makedirs(out)
with open(os.path.join(out, "records.jsonl"), "w") as f:
    for i in range(n):
        f.write(json.dumps({"captureData": {
            "endpointInput": {"observedContentType": "text/csv", "mode": "INPUT", "data": body, "encoding": "CSV"},
            "endpointOutput": {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "0.5", "encoding": "CSV"}},
            "eventMetadata": {"eventId": str(uuid.uuid4()), "inferenceId": f"r-{i}", "inferenceTime": "2026-12-01T10:00:00Z"},
            "eventVersion": "0"}, separators=(",", ":")) + "\n")
PY
rps_replay="" rps_oha=""
for _ in $(seq 1 "$REPS"); do
  "$BIN/capline" replay "$WORK/replay-src" --to "http://127.0.0.1:$MODEL/invocations" --concurrency 16 \
    --report "$WORK/replay.json" >/dev/null 2>"$WORK/replay.err"
  rps_replay+="$(python3 -c "import json,sys; r = json.load(open(sys.argv[1])); assert r['answers']['exact'] == $RECORDS, r['answers']; print(round(r['requestsPerSecond']))" "$WORK/replay.json") "
  "$OHA" -m POST -D "$body" -T text/csv -n "$RECORDS" -c 16 --no-tui --output-format json \
    "http://127.0.0.1:$MODEL/invocations" >"$WORK/oha.json"
  rps_oha+="$(python3 -c "import json,sys; d = json.load(open(sys.argv[1])); assert set(d['statusCodeDistribution']) == {'200'}; print(round(d['summary']['requestsPerSec']))" "$WORK/oha.json") "
done
R=$(median <<<"${rps_replay% }"); O=$(median <<<"${rps_oha% }")
printf '   capline replay:  %7d requests/s  (runs: %s)\n' "$R" "${rps_replay% }"
printf '   oha (baseline):  %7d requests/s  (runs: %s)\n' "$O" "${rps_oha% }"
python3 -c "import sys; r, o = map(int, sys.argv[1:]); print(f'   replay/oha:      {r / o:.3f}x')" "$R" "$O"
