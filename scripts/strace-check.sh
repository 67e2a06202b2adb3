#!/usr/bin/env bash
# strace evidence for the capture path: over a 10^6-record run, the capturing
# thread makes no syscall between its begin/end markers, and the whole
# process (writer and uploader included) makes fewer than 1 syscall per 100
# records. Usage: scripts/strace-check.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace >/dev/null; }
cargo build --release --locked -q -p capline-benches --bin capture-loop
bin="$CARGO_TARGET_DIR/release/capture-loop"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
strace -f -qq -o "$work/trace" "$bin" "$N" "$work/run"
main=$(head -1 "$work/trace" | awk '{print $1}')
# One line per syscall: drop "resumed" halves of interrupted calls, signals and exits.
calls() { grep -v -e '<\.\.\. .* resumed>' -e '^[0-9]* *+++' -e '^[0-9]* *---' "$@"; }
total=$(calls "$work/trace" | wc -l)
in_loop=$(awk -v m="$main" '
  /capture-loop: begin/ { on = 1; next }
  /capture-loop: end/   { on = 0 }
  on && $1 == m && $0 !~ /resumed>/ { n++ }
  END { print n + 0 }' "$work/trace")
limit=$((N / 100))
echo "strace: $total syscalls in all threads for $N records (limit $limit); $in_loop by the capturing thread inside the loop"
calls "$work/trace" | sed -E 's/^[0-9]+ +//; s/\(.*//' | sort | uniq -c | sort -rn | head -12
if [ "$in_loop" -ne 0 ]; then
  echo "FAIL: the capture loop made syscalls:"; awk -v m="$main" '/capture-loop: begin/{on=1;next} /capture-loop: end/{on=0} on && $1==m' "$work/trace" | head
  exit 1
fi
if [ "$total" -ge "$limit" ]; then
  echo "FAIL: $total syscalls is not under 1 per 100 records"; exit 1
fi
echo "strace-check: ok"
