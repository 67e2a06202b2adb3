#!/usr/bin/env bash
# How long the writer thread waits on its segment files in the kernel, on a
# disk whose syncs take milliseconds: the `paced` bench (1 KiB + 1 KiB CSV
# pairs at RATE a second for SECS seconds, default 20000 and 5) writing to
# an ext4 file system on a loop device without direct I/O, so that each
# flush of the device writes its backing file out (a sync then does real
# work, as on network block storage), under `perf trace -s`. Prints, for the
# writer thread (the one that calls `fallocate`: it preallocates each
# segment, on both I/O paths; `perf trace` may name it after the process;
# with IO=pwrite its writes are `capline-io`'s, and its waits for them are
# futex waits, not counted here),
# its calls on its segment files and the spool's directories (`fdatasync`, `fsync`,
# `ftruncate`, the renames, `fallocate`, `io_uring_enter`): how many, their
# total and their longest, and all of them summed.
# Usage: scripts/writer-syncs.sh [PACED_BIN...]   (default: this tree's)
#   ROUNDS (default 1) runs the binaries in turn that many times, the order
#   reversed every other round; IO (default auto) is the bench's `--io`.
#   Needs root (losetup, mount).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/capline/target}
if [ $# -eq 0 ]; then
  cargo build --release --locked -p capline-benches --bin paced
  set -- "$CARGO_TARGET_DIR/release/paced"
fi
command -v perf >/dev/null 2>&1 || apt-get install -y -q linux-perf
WORK=$(mktemp -d -p "${BENCH_DIR:-/var/tmp}")
LOOP=
cleanup() {
  umount "$WORK/mnt" 2>/dev/null || true
  [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
truncate -s 3G "$WORK/disk.img"
LOOP=$(losetup -f --show --direct-io=off "$WORK/disk.img")
mkfs.ext4 -q "$LOOP"
mkdir "$WORK/mnt"
mount "$LOOP" "$WORK/mnt"
echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)"
bins=("$@")
for round in $(seq 1 "${ROUNDS:-1}"); do
  order=("${bins[@]}")
  if [ $((round % 2)) -eq 0 ]; then
    order=()
    for ((i = ${#bins[@]} - 1; i >= 0; i--)); do order+=("${bins[i]}"); done
  fi
  for bin in "${order[@]}"; do
    dir=$(mktemp -d -p "$WORK/mnt")
    perf trace -s -o "$WORK/trace.txt" -- "$bin" --rate "${RATE:-20000}" --secs "${SECS:-5}" \
      --io "${IO:-auto}" --dir "$dir" >"$WORK/out.txt" 2>&1
    rm -rf "$dir"
    echo "round $round: $bin: $(grep '^paced:' "$WORK/out.txt" | cut -d';' -f1)"
    python3 - "$WORK/trace.txt" <<'PY'
import re, sys

threads, cur = {}, None
for line in open(sys.argv[1]):
    m = re.match(r'\s*(.+?) \((\d+)\), \d+ events', line)
    if m:
        cur = threads.setdefault(m.group(2), {})
        continue
    f = line.split()
    if cur is not None and len(f) >= 7 and f[1].isdigit():
        cur[f[0]] = (int(f[1]), float(f[3]), float(f[6]))
writer = [t for t in threads.values() if 'fallocate' in t]
if len(writer) != 1:
    sys.exit(f'expected one writer thread, found {len(writer)}')
w = writer[0]
total = longest = 0.0
for name in ('fdatasync', 'fsync', 'ftruncate', 'rename', 'renameat', 'renameat2',
             'fallocate', 'io_uring_enter'):
    if name not in w and name != 'fdatasync':
        continue
    calls, ms, mx = w.get(name, (0, 0.0, 0.0))
    total += ms
    longest = max(longest, mx)
    print(f'  writer {name:15} {calls:5} calls {ms:9.1f} ms, longest {mx:7.2f} ms')
print(f'  writer all             {total:21.1f} ms, longest {longest:7.2f} ms')
PY
  done
done
