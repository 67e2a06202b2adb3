#!/usr/bin/env bash
# How deep the disk's queue of direct writes was: runs the throughput harness
# for one shape under `perf record` (the kernel's direct-I/O tracepoints
# only), then prints, for each run that wrote over 100 MB (the disk-limit
# probe before the uring run, the uring writer, the limit probe after, the
# pwrite path's I/O thread), its rate while its writes were in flight and
# the share of that time spent with 0, 1, 2, ... of its direct writes in
# flight, beside the harness's own rows. A write is in flight from the
# kernel's start of it (`iomap_dio_rw_begin`) to its completion
# (`iomap_dio_complete`, whose offset is the write's end).
# Usage: scripts/writer-queue.sh SHAPE [THROUGHPUT_BIN...]
#   SHAPE: csv_1k, json_16k or binary_64k; with several binaries (builds of
#   two commits, say), one run of each in the order given.
source "$(dirname "$0")/lib/traced-harness.sh"
for bin in "$@"; do
  echo "== $bin --only $SHAPE"
  perf record -q -m 1024 -o "$WORK/perf.data" \
    -e iomap:iomap_dio_rw_begin,iomap:iomap_dio_complete -a -- \
    "$bin" --only "$SHAPE" >"$WORK/out.txt" 2>&1
  grep -E "^cpu:|disk limit  |capline (uring|pwrite)  |disk busy" "$WORK/out.txt"
  perf script -i "$WORK/perf.data" -F comm,tid,time,event,trace 2>/dev/null >"$WORK/events.txt"
  python3 - "$WORK/events.txt" <<'PY'
import collections, re, sys

begun, writes = {}, []
for line in open(sys.argv[1]):
    m = re.match(r'\s*(.+?)\s+(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)', line)
    if not m:
        continue
    comm, t, name, rest = m.group(1), float(m.group(3)), m.group(4), m.group(5)
    ino = re.search(r'ino (\S+)', rest)
    off = re.search(r'offset (\S+)', rest)
    if not (ino and off):
        continue
    # Every direct I/O counts (the harness reads nothing with O_DIRECT): a
    # synchronous write (the pwrite path) does not print the WRITE flag.
    if name == 'iomap:iomap_dio_rw_begin':
        end = int(off.group(1), 16) + int(re.search(r'length (\S+)', rest).group(1), 16)
        # A start refused without waiting (NOWAIT) is begun again by an
        # io_uring worker: the first start counts.
        begun.setdefault((ino.group(1), end), (t, end - int(off.group(1), 16), comm))
    elif name == 'iomap:iomap_dio_complete':
        key = (ino.group(1), int(off.group(1), 16))
        if key in begun:
            b, n, who = begun.pop(key)
            writes.append((b, t, n, who))
writes.sort()
# Runs: writes no further than 50 ms apart.
runs, cur = [], []
for w in writes:
    if cur and w[0] - max(x[1] for x in cur[-8:]) > 0.05:
        runs.append(cur)
        cur = []
    cur.append(w)
if cur:
    runs.append(cur)
for r in runs:
    total = sum(w[2] for w in r)
    if total < 100e6:
        continue
    t0, t1 = r[0][0], max(w[1] for w in r)
    span = t1 - t0
    edges = sorted([(w[0], 1) for w in r] + [(w[1], -1) for w in r])
    depth, last, share = 0, t0, collections.Counter()
    for t, step in edges:
        share[depth] += t - last
        last, depth = t, depth + step
    who = collections.Counter(w[3] for w in r).most_common(1)[0][0]
    shares = ' '.join(f'{d}: {100 * s / span:.0f} %' for d, s in sorted(share.items()))
    print(f'  {who:<16} {total / span / 1e9:.2f} GB/s over {span * 1e3:.0f} ms, '
          f'{len(r)} writes of {total / len(r) / 2**20:.2f} MiB; time by writes in flight: {shares}')
PY
done
