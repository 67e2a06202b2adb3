#!/usr/bin/env bash
# Two builds of the throughput harness against each other, one shape, in
# alternated rounds: A then B, then B then A, and so on, so that neither
# always runs first into a host whose disk and CPUs drift by ±10 points
# between runs. Prints each round's io_uring row of both (share of the disk
# limit, records/s, capture() p99.9, the writer's CPU per record, the disk's
# busy share, the limit itself), then for each figure the two ranges and in
# how many rounds B was above A: a count of rounds, not a mean, because a
# single disturbed run moves a mean more than most changes do.
# Usage: scripts/ab-throughput.sh SHAPE ROUNDS BIN_A BIN_B [HARNESS_ARGS...]
#   SHAPE: csv_1k, json_16k or binary_64k (the harness's --only); each BIN a
#   throughput binary (`cargo build --release -p capline-benches --bin
#   throughput` at each commit, copied aside); HARNESS_ARGS go to both
#   (--capture-cpu 0, --shared). The full output is kept in $AB_LOG if set.
set -euo pipefail
if [ $# -lt 4 ]; then
  sed -n '2,14p' "$0"
  exit 2
fi
SHAPE=$1 ROUNDS=$2 A=$3 B=$4
shift 4
LOG=${AB_LOG:-$(mktemp)}
[ -n "${AB_LOG:-}" ] || trap 'rm -f "$LOG"' EXIT
: >"$LOG"
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
  for side in $order; do
    bin=$A
    [ "$side" = B ] && bin=$B
    echo "## round $r $side" >>"$LOG"
    "$bin" --only "$SHAPE" "$@" >>"$LOG" 2>&1
  done
done
python3 - "$LOG" "$A" "$B" <<'PY'
import re, sys

log, a, b = sys.argv[1:4]
runs = {}  # (round, side) -> figures
key = None
for line in open(log):
    m = re.match(r'## round (\d+) (A|B)', line)
    if m:
        key = (int(m.group(1)), m.group(2))
        runs[key] = {}
        continue
    if key is None:
        continue
    f = runs[key]
    if line.startswith('cpu:'):
        f['cpu'] = line.split(':', 1)[1].strip()
    m = re.search(r'disk limit\s+-\s+(\d+)', line)
    if m:
        f['limit MB/s'] = float(m.group(1))
    if re.match(r'\s*capline uring\s+\d', line):
        c = line.split()
        f['of limit %'] = float(c[4].rstrip('%'))
        f['records/s'] = float(c[2])
        f['p99.9 ns'] = float(c[8])
        if c[10] != '-':
            f['writer ns/rec'] = float(c[10])
    m = re.search(r'disk busy .* uring (\d+) %', line)
    if m:
        f['disk busy %'] = float(m.group(1))

rounds = sorted({r for r, _ in runs})
names = ['of limit %', 'records/s', 'p99.9 ns', 'writer ns/rec', 'disk busy %', 'limit MB/s']
cpu = next((f['cpu'] for f in runs.values() if 'cpu' in f), '?')
print(f"cpu: {cpu}; A = {a}; B = {b}")
print(f"{'round':<6} {'':<2} " + " ".join(f"{n:>13}" for n in names))
for r in rounds:
    for side in 'AB':
        f = runs.get((r, side), {})
        print(f"{r:<6} {side:<2} " + " ".join(
            f"{f[n]:>13.0f}" if n in f else f"{'-':>13}" for n in names))
print()
for n in names:
    pairs = [(runs[(r, 'A')].get(n), runs[(r, 'B')].get(n)) for r in rounds
             if (r, 'A') in runs and (r, 'B') in runs]
    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
    if not pairs:
        continue
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    above = sum(y > x for x, y in pairs)
    print(f"{n:<14} A {min(xs):.0f}–{max(xs):.0f}, B {min(ys):.0f}–{max(ys):.0f}; "
          f"B above A in {above} of {len(pairs)} rounds")
PY
