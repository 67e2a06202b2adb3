#!/usr/bin/env bash
# CPU time per request of `capline endpoint` builds, in the same run: each
# given capline binary in turn proxies wrk's load (16 connections, 1 KiB CSV,
# sampling $SAMPLING %, default 0; $HTTP_THREADS serving threads when set, for builds that have the setting)
# to the fast model; prints requests/s and the CPU time per
# request (user + system, from /proc) of capline and of the model, the
# proxy's split of it into user and system time, its context switches per
# request (all its threads), and the TCP segments the host sent per request
# (`nstat`'s TcpOutSegs: each data segment and each bare ACK, over loopback).
# The word `nginx` in place of a binary measures nginx (one worker,
# keep-alive upstream, no capture) as a plain proxy to the same model.
# Usage: scripts/bench-endpoint-cpu.sh SECONDS ROUNDS CAPLINE_BIN|nginx...
#   e.g. two builds of two commits: A/B, rounds interleaved.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
SECS=$1; ROUNDS=$2; shift 2
command -v wrk >/dev/null 2>&1 || apt-get install -y -q wrk
command -v nginx >/dev/null 2>&1 || apt-get install -y -q nginx-light
cargo build --release --locked -p capline-benches --bin fast-model
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
MODEL=$(free_port)
"$CARGO_TARGET_DIR/release/fast-model" "$MODEL" & MODEL_PID=$!
trap 'kill $MODEL_PID 2>/dev/null || true; wait 2>/dev/null; rm -rf "$WORK"' EXIT
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
split_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
switches() { cat /proc/"$1"/task/*/status | awk '/^(non)?voluntary_ctxt_switches/ {n += $2} END {print n}'; }
command -v nstat >/dev/null 2>&1 || apt-get install -y -q iproute2
HZ=$(getconf CLK_TCK)
THREADS_JSON=""
[ -n "${HTTP_THREADS:-}" ] && THREADS_JSON="\"HttpThreads\": $HTTP_THREADS,"
for round in $(seq 1 "$ROUNDS"); do
  for bin in "$@"; do
    port=$(free_port); admin=$(free_port)
    rm -rf "$WORK/spool"
    cat >"$WORK/endpoint.json" <<JSON
{"EndpointName": "bench", "Listen": "127.0.0.1:$port", "AdminListen": "127.0.0.1:$admin", $THREADS_JSON
 "ProductionVariants": [{"VariantName": "AllTraffic", "ModelUrl": "http://127.0.0.1:$MODEL"}],
 "DataCaptureConfig": {"InitialSamplingPercentage": ${SAMPLING:-0}, "DestinationS3Uri": "file://$WORK/capture",
   "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}]},
 "Engine": {"SpoolDir": "$WORK/spool"}}
JSON
    if [ "$bin" = nginx ]; then
      mkdir -p "$WORK/nginx"
      cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $WORK/nginx/nginx.pid; error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy;
  upstream model { server 127.0.0.1:$MODEL; keepalive 64; }
  server { listen 127.0.0.1:$port; client_max_body_size 6m; client_body_buffer_size 128k;
    location = /endpoints/bench/invocations { proxy_pass http://model/invocations;
      proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
      nginx -c "$WORK/nginx/nginx.conf" & ep=$!
      for _ in $(seq 1 100); do worker=$(pgrep -P "$ep" || true); [ -n "$worker" ] && break; sleep 0.1; done
      sleep 0.2
      measured=$worker # the worker does the proxying; the master only waits
    else
      "$bin" endpoint --config "$WORK/endpoint.json" >/dev/null & ep=$!
      for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/ping" >/dev/null 2>&1 && break; sleep 0.1; done
      measured=$ep
    fi
    m0=$(ticks "$MODEL_PID"); e0=$(ticks "$measured")
    read -r u0 s0 < <(split_ticks "$measured"); c0=$(switches "$measured")
    nstat -n >/dev/null
    line=$(BODY_BYTES=1024 TARGET_PATH=/endpoints/bench/invocations wrk -t1 -c16 -d"${SECS}s" \
      -s benches/endpoint_post.lua "http://127.0.0.1:$port" | grep '^RESULT')
    m1=$(ticks "$MODEL_PID"); e1=$(ticks "$measured")
    read -r u1 s1 < <(split_ticks "$measured"); c1=$(switches "$measured")
    segs=$(nstat -z TcpOutSegs | awk '$1 == "TcpOutSegs" {print $2}')
    kill "$ep"; wait "$ep" 2>/dev/null || true
    [[ $line == *"errors=0 non2xx=0"* ]] || { echo "$bin: $line"; exit 1; }
    rps=$(sed 's/^RESULT rps=\([0-9]*\).*/\1/' <<<"$line")
    n=$((rps * SECS))
    per() { awk -v t="$1" -v hz="$HZ" -v n="$n" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}'; }
    printf 'round %s  %-40s rps %6s  CPU per request: proxy %s us (user %s, system %s), model %s us; proxy switches %s, TCP segments %s per request\n' \
      "$round" "$bin" "$rps" "$(per $((e1 - e0)))" "$(per $((u1 - u0)))" "$(per $((s1 - s0)))" "$(per $((m1 - m0)))" \
      "$(awk -v c=$((c1 - c0)) -v n="$n" 'BEGIN {printf "%.2f", c / n}')" \
      "$(awk -v c="$segs" -v n="$n" 'BEGIN {printf "%.2f", c / n}')"
  done
done
