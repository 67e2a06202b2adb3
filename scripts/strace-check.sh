#!/usr/bin/env bash
# strace evidence for the capture path and the writer, per I/O mode:
# - the capturing thread makes no syscall between its begin/end markers;
# - the whole process (writer and uploader included) makes fewer than
#   1 syscall per 100 records;
# - segment files are opened with O_DIRECT;
# - in uring mode writes go through io_uring_enter (no pwrite64); in pwrite
#   mode they are pwrite64 calls (no io_uring at all).
# Usage: scripts/strace-check.sh [N] [MODES...]   (default: 1000000 uring pwrite)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
shift || true
MODES=("${@:-uring}")
[ $# -gt 0 ] || MODES=(uring pwrite)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace >/dev/null; }
# CAPLINE_LOOP_BIN runs another build's capture-loop (to compare builds).
if [ -n "${CAPLINE_LOOP_BIN:-}" ]; then
  bin=$CAPLINE_LOOP_BIN
else
  cargo build --release --locked -q -p capline-benches --bin capture-loop
  bin="$CARGO_TARGET_DIR/release/capture-loop"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One line per syscall: drop "resumed" halves of interrupted calls, signals and exits.
calls() { grep -v -e '<\.\.\. .* resumed>' -e '^[0-9]* *+++' -e '^[0-9]* *---' "$@"; }
fail() { echo "FAIL ($mode): $*"; exit 1; }

for mode in "${MODES[@]}"; do
  rm -rf "$work/run" "$work/trace"
  strace -f -qq -o "$work/trace" "$bin" "$N" "$work/run" "$mode"
  main=$(head -1 "$work/trace" | awk '{print $1}')
  total=$(calls "$work/trace" | wc -l)
  in_loop=$(awk -v m="$main" '
    /capture-loop: begin/ { on = 1; next }
    /capture-loop: end/   { on = 0 }
    on && $1 == m && $0 !~ /resumed>/ { n++ }
    END { print n + 0 }' "$work/trace")
  limit=$((N / 100))
  segments=$(grep -c 'spool/active/.*O_CREAT|O_EXCL' "$work/trace" || true)
  direct=$(grep 'spool/active/.*O_CREAT|O_EXCL' "$work/trace" | grep -c 'O_DIRECT[|)]' || true)
  enters=$(calls "$work/trace" | grep -c ' io_uring_enter(' || true)
  pwrites=$(calls "$work/trace" | grep -c ' pwrite64(' || true)
  echo "strace ($mode): $total syscalls in all threads for $N records (limit $limit); $in_loop by the capturing thread inside the loop; $direct of $segments segment opens with O_DIRECT; $enters io_uring_enter, $pwrites pwrite64"
  calls "$work/trace" | sed -E 's/^[0-9]+ +//; s/\(.*//' | sort | uniq -c | sort -rn | awk 'NR <= 8'
  [ "$in_loop" -eq 0 ] || fail "the capture loop made syscalls"
  [ "$total" -lt "$limit" ] || fail "$total syscalls is not under 1 per 100 records"
  [ "$segments" -gt 0 ] && [ "$direct" -eq "$segments" ] || fail "segments not opened with O_DIRECT"
  case "$mode" in
    uring) [ "$enters" -gt 0 ] && [ "$pwrites" -eq 0 ] || fail "writes did not go through io_uring" ;;
    pwrite) [ "$pwrites" -gt 0 ] && [ "$enters" -eq 0 ] || fail "writes did not use pwrite" ;;
  esac
done
echo "strace-check: ok"
