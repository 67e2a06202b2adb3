#!/usr/bin/env bash
# The capture path's criterion groups (benches/capture.rs), summarized: each
# function's median per call and its ratio to the channel baseline and, in the
# sampled-in groups, to memcpy (the bare copy of the same bytes into a reused
# buffer) and to handoff (the same copy into a window a thread on the other
# core reads at each drain), all from this one run, with the CPU model and
# the commit; then the same calls with the bodies handed over as Bytes
# (capture_shared) against the copying call and memcpy.
# Usage: scripts/bench-capture.sh [extra criterion args, e.g. --sample-size 50]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
rm -rf "$CARGO_TARGET_DIR/criterion/capture_"*
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
cargo bench --locked -p capline-benches --bench capture -- "$@" >"$LOG" 2>&1 || { tail -40 "$LOG"; exit 1; }
python3 - "$CARGO_TARGET_DIR/criterion" "$(git rev-parse --short HEAD)" <<'PY'
import json, os, sys
root, commit = sys.argv[1], sys.argv[2]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"cpu: {cpu}, {os.cpu_count()} CPUs; commit {commit}")
print(f"{'group':<36} {'capline':>10} {'channel':>10} {'memcpy':>10} {'handoff':>10} {'vs channel':>11} {'vs memcpy':>10} {'vs handoff':>10}")
def median(group, fn):
    p = os.path.join(root, group, fn, "new", "estimates.json")
    return json.load(open(p))["median"]["point_estimate"] if os.path.exists(p) else None
groups = sorted(g for g in os.listdir(root) if g.startswith("capture_"))
def fmt(ns):
    return "-" if ns is None else (f"{ns:.2f} ns" if ns < 100 else f"{ns:.0f} ns")
for g in groups:
    c, b, m, h = (median(g, f) for f in ("capline", "channel", "memcpy", "handoff"))
    rb = f"{c / b:.3f}x" if c and b else "-"
    rm = f"{c / m:.3f}x" if c and m else "-"
    rh = f"{c / h:.3f}x" if c and h else "-"
    diff = f" ({c - b:+.2f} ns)" if c and b and c < 100 else ""
    print(f"{g.replace('capture_', 'capture/', 1):<36} {fmt(c):>10} {fmt(b):>10} {fmt(m):>10} {fmt(h):>10} {rb:>11}{diff} {rm:>10} {rh:>10}")
print()
print("bodies handed over as Bytes (capture_shared):")
print(f"{'group':<36} {'shared':>10} {'capline':>10} {'memcpy':>10} {'vs capline':>11} {'vs memcpy':>10}")
for g in groups:
    sh, c, m = (median(g, f) for f in ("capline_shared", "capline", "memcpy"))
    if sh is None:
        continue
    rc = f"{sh / c:.3f}x" if c else "-"
    rm = f"{sh / m:.3f}x" if m else "-"
    print(f"{g.replace('capture_', 'capture/', 1):<36} {fmt(sh):>10} {fmt(c):>10} {fmt(m):>10} {rc:>11} {rm:>10}")
PY
