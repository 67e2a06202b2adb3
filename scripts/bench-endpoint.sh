#!/usr/bin/env bash
# capline endpoint against a fast model, in the same run as two baselines:
# the model called directly, and nginx as a plain reverse proxy (keep-alive
# upstream, no capture) in front of the same model. For 1 KiB and 64 KiB
# bodies, at sampling 0 % and 100 %:
# - throughput at saturation (wrk, 16 connections), as ratios to direct and to nginx;
# - latency at a fixed request rate below saturation (oha -q, latency
#   corrected, 16 connections): p50/p99/p99.9 and what each proxy adds.
# Every figure is the median of REPS interleaved runs, the three targets in
# an order that turns from one run to the next.
# Usage: [SIZES="1024 65536"] scripts/bench-endpoint.sh [SECONDS] [REPS] [RATE]
#   (installs wrk and nginx with apt, oha with cargo, when missing)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
SECS=${1:-5}
REPS=${2:-3}
RATE=${3:-2000}
TOOLS="$HOME/.cache/capline/tools"
command -v wrk >/dev/null 2>&1 || apt-get install -y -q wrk
command -v nginx >/dev/null 2>&1 || apt-get install -y -q nginx-light
[ -x "$TOOLS/bin/oha" ] || env -u CARGO_TARGET_DIR cargo install oha --version 1.16.0 --locked --root "$TOOLS"
OHA="$TOOLS/bin/oha"
cargo build --release --locked -p capline-cli -p capline-benches --bin capline --bin fast-model
BIN="$CARGO_TARGET_DIR/release"
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MODEL=$(free_port); PORT=$(free_port); ADMIN=$(free_port); NGINX=$(free_port)
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
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  upstream model { server 127.0.0.1:$MODEL; keepalive 64; }
  server {
    listen 127.0.0.1:$NGINX;
    client_max_body_size 6m;
    client_body_buffer_size 128k;
    location = /endpoints/bench/invocations {
      proxy_pass http://model/invocations;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" & NGINX_PID=$!
trap 'kill $MODEL_PID $EP_PID $NGINX_PID 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/ping" >/dev/null 2>&1 && break
  sleep 0.1
done

DIRECT="http://127.0.0.1:$MODEL /invocations"
VIA_NGINX="http://127.0.0.1:$NGINX /endpoints/bench/invocations"
VIA_CAPLINE="http://127.0.0.1:$PORT /endpoints/bench/invocations"

saturate() { # BASE PATH BYTES -> rps (fails on any error)
  local line
  line=$(BODY_BYTES=$3 TARGET_PATH=$2 wrk -t1 -c16 -d"${SECS}s" --latency -s benches/endpoint_post.lua "$1" | grep '^RESULT')
  [[ $line == *"errors=0 non2xx=0"* ]] || { echo "wrk against $1$2: $line" >&2; exit 1; }
  sed 's/^RESULT rps=\([0-9]*\).*/\1/' <<<"$line"
}
fixed_rate() { # BASE PATH BODY_FILE -> "p50 p99 p999" in microseconds (fails on any error)
  "$OHA" -m POST -D "$3" -T text/csv -q "$RATE" -z "${SECS}s" -c 16 --latency-correction -w \
    --no-tui --output-format json "$1$2" >"$WORK/oha.json"
  python3 - "$WORK/oha.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
codes = d["statusCodeDistribution"]
assert set(codes) == {"200"} and not d["errorDistribution"], (codes, d["errorDistribution"])
p = d["latencyPercentiles"]
print(" ".join(str(round(p[k] * 1e6)) for k in ("p50", "p99", "p99.9")))
PY
}
median() { tr ' ' '\n' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

echo "fast model: hyper, one worker, answers 0.5; nginx 1.22 (one worker, keep-alive upstream) as the proxy baseline"
echo "throughput: wrk -t1 -c16 -d${SECS}s; latency: oha -q $RATE -c16 -z${SECS}s --latency-correction -w; medians of $REPS runs"
printf '%-6s %-5s | %-27s | %-22s | %-33s | %-33s | %s\n' body samp \
  "rps: direct nginx capline" "capline/direct /nginx" "p50/p99/p99.9 us: direct" "nginx (added vs direct)" "capline (added vs direct)"
for bytes in ${SIZES:-1024 65536}; do
  body="$WORK/body-$bytes"
  row="0.25,17,3.5,1,0,0,1,42.0,"
  python3 -c "import sys; r = sys.argv[1]; n = int(sys.argv[2]); sys.stdout.write((r * (n // len(r) + 1))[:n])" "$row" "$bytes" >"$body"
  for pct in 0 100; do
    "$BIN/capline" ctl --admin "127.0.0.1:$ADMIN" set AllTraffic --sampling "$pct" >/dev/null
    declare -A rps=() lat=()
    for r in $(seq 1 "$REPS"); do
      # The order turns each run, so that no target always runs first or
      # last into a host that drifts within a run.
      order=(direct nginx capline capline direct nginx nginx capline direct)
      for t in "${order[@]:$((3 * ((r - 1) % 3))):3}"; do
        case $t in direct) target=$DIRECT ;; nginx) target=$VIA_NGINX ;; capline) target=$VIA_CAPLINE ;; esac
        # shellcheck disable=SC2086
        rps[$t]+="$(saturate $target "$bytes") "
        # shellcheck disable=SC2086
        read -r a b c < <(fixed_rate $target "$body")
        lat[$t.50]+="$a "; lat[$t.99]+="$b "; lat[$t.999]+="$c "
        # Delivered capture files go, so the disk never nears the watermark.
        rm -rf "$WORK/capture"
      done
    done
    declare -A m=()
    for t in direct nginx capline; do
      m[$t]=$(median <<<"${rps[$t]% }")
      for q in 50 99 999; do m[$t.$q]=$(median <<<"${lat[$t.$q]% }"); done
    done
    printf '%-6s %-5s | %7s %7s %7s     | %5s %% %5s %%         | %8s %8s %8s        | %s %s %s (%+d %+d %+d) | %s %s %s (%+d %+d %+d)\n' \
      "$bytes" "$pct%" "${m[direct]}" "${m[nginx]}" "${m[capline]}" \
      "$((100 * m[capline] / m[direct]))" "$((100 * m[capline] / m[nginx]))" \
      "${m[direct.50]}" "${m[direct.99]}" "${m[direct.999]}" \
      "${m[nginx.50]}" "${m[nginx.99]}" "${m[nginx.999]}" \
      "$((m[nginx.50] - m[direct.50]))" "$((m[nginx.99] - m[direct.99]))" "$((m[nginx.999] - m[direct.999]))" \
      "${m[capline.50]}" "${m[capline.99]}" "${m[capline.999]}" \
      "$((m[capline.50] - m[direct.50]))" "$((m[capline.99] - m[direct.99]))" "$((m[capline.999] - m[direct.999]))"
    unset rps lat m
  done
done
"$BIN/capline" ctl --admin "127.0.0.1:$ADMIN" metrics | grep -E '^capline_(kept|sampled_out|dropped_[a-z_]+)\{' || true
