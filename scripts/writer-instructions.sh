#!/usr/bin/env bash
# The writer thread's instructions per record, counted by callgrind: the
# `paced` bench (1 KiB + 1 KiB CSV pairs, all kept) run under
# `valgrind --tool=callgrind --separate-threads=yes`, and the thread that
# ran `Writer::run` divided by the records kept. Instruction counts stay the
# same from run to run where timings on a shared host do not, so two builds
# compare on one line each (their figures differ by a few hundred
# instructions out of millions between runs: wake-ups follow the clock).
# Usage: scripts/writer-instructions.sh [PACED_BIN...]   (default: this tree's)
#   RATE and SECS (default 2000 and 2) set the records: RATE * SECS.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
if [ $# -eq 0 ]; then
  cargo build --release --locked -p capline-benches --bin paced
  set -- "$CARGO_TARGET_DIR/release/paced"
fi
command -v valgrind >/dev/null 2>&1 || apt-get install -y -q valgrind
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
trap 'rm -rf "$WORK"' EXIT
echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
for bin in "$@"; do
  rm -f "$WORK"/cg.*
  out=$(valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$WORK/cg.%p" \
    "$bin" --rate "${RATE:-2000}" --secs "${SECS:-2}" --dir "$WORK" 2>/dev/null)
  kept=$(sed -n 's/.*(\([0-9]*\) kept).*/\1/p' <<<"$out")
  file=$(grep -l 'capline::writer::Writer::run' "$WORK"/cg.*-* | head -1)
  total=$(sed -n 's/^summary: //p' "$file")
  echo "$bin: writer thread $total instructions for $kept records: $((total / kept)) a record"
done
