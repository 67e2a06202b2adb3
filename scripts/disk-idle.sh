#!/usr/bin/env bash
# When the disk sits idle under the io_uring writer, and why: runs the
# throughput harness for one shape under `perf record` (block requests,
# io_uring submissions, the kernel's direct writes, wake-ups and context
# switches), then prints for the uring run (its writer's first submission to
# its last):
# - the share of time the block device had no write in flight, split by
#   whether one of the writer's direct writes was still open in the kernel
#   then (submitted, not yet complete: its data written, its completion
#   work, such as ext4's conversion of unwritten extents, not yet done) or
#   none was (the writer had not submitted the next one);
# - the cache flushes the device received, their durations, and the rate
#   writes completed at while a flush was in flight and while none was;
# - how long the kernel workers that complete direct writes waited between
#   being woken and running, and what ran on their CPU meanwhile;
# - the longest idle gaps, with what happened in each.
# Usage: scripts/disk-idle.sh SHAPE [THROUGHPUT_BIN...] (as writer-gaps.sh)
#   GAPS=N prints the N longest gaps (default 3).
source "$(dirname "$0")/lib/traced-harness.sh"
EVENTS=block:block_rq_issue,block:block_rq_complete,io_uring:io_uring_submit_req
EVENTS=$EVENTS,iomap:iomap_dio_rw_begin,iomap:iomap_dio_complete
EVENTS=$EVENTS,sched:sched_switch,sched:sched_wakeup
EVENTS=$EVENTS,ext4:ext4_truncate_enter,ext4:ext4_fallocate_enter
for bin in "$@"; do
  echo "== $bin --only $SHAPE"
  perf record -q -m 4096 -o "$WORK/perf.data" -e "$EVENTS" -a -- \
    "$bin" --only "$SHAPE" >"$WORK/out.txt" 2>&1
  grep -E "^cpu:|disk limit  |capline uring  " "$WORK/out.txt"
  perf script -i "$WORK/perf.data" -F comm,tid,cpu,time,event,trace 2>/dev/null >"$WORK/events.txt"
  python3 - "$WORK/events.txt" "${GAPS:-3}" <<'PY'
import collections, re, sys

rows = []
for line in open(sys.argv[1]):
    m = re.match(r'\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)', line)
    if m:
        rows.append((float(m.group(4)), m.group(1), m.group(2), int(m.group(3)),
                     m.group(5), m.group(6)))
rows.sort(key=lambda r: r[0])
# The uring run's writer: the capline-writer thread with the most submissions.
subs = collections.defaultdict(list)
for t, comm, tid, cpu, ev, arg in rows:
    if ev == 'io_uring:io_uring_submit_req' and comm.startswith('capline-wr'):
        subs[tid].append(t)
if not subs:
    sys.exit('no io_uring submission by a capline-writer thread')
writer = max(subs, key=lambda k: len(subs[k]))
a, b = min(subs[writer]), max(subs[writer])
span = b - a
req = re.compile(r' (\S+) (?:\d+ )?\(\) (\d+) \+ (\d+)')

writes_at_dev = 0   # write requests at the device
dio_open = 0        # the writer's direct writes begun, not complete
last = a
idle_open = idle_none = 0.0
gaps = []
gap_start = None
flush_q, flushes = [], []
for t, comm, tid, cpu, ev, arg in rows:
    if t < a or t > b:
        continue
    if ev.startswith('block:'):
        m = req.search(arg)
        if not m:
            continue
        kind = m.group(1)
        if kind.startswith('F'):
            if ev.endswith('issue'):
                flush_q.append(t)
            elif flush_q:
                flushes.append((flush_q.pop(0), t))
            continue
        if not kind.startswith('W') or m.group(3) == '0':
            continue
    if writes_at_dev == 0 and t > last:
        if dio_open > 0:
            idle_open += t - last
        else:
            idle_none += t - last
    last = t
    if ev == 'block:block_rq_issue':
        if writes_at_dev == 0 and gap_start is not None:
            gaps.append((t - gap_start, gap_start, t))
        writes_at_dev += 1
    elif ev == 'block:block_rq_complete':
        writes_at_dev = max(0, writes_at_dev - 1)
        if writes_at_dev == 0:
            gap_start = t
    elif ev == 'iomap:iomap_dio_rw_begin' and (tid == writer or comm.startswith('iou-wrk')):
        dio_open += 1
    elif ev == 'iomap:iomap_dio_complete':
        dio_open = max(0, dio_open - 1)
print(f'uring writer, first submission to last: {span * 1e3:.1f} ms')
print(f'  no write at the device: {(idle_open + idle_none) * 1e3:.1f} ms '
      f'({(idle_open + idle_none) / span * 100:.0f} %): with a direct write still open in '
      f'the kernel {idle_open * 1e3:.1f} ms, with none {idle_none * 1e3:.1f} ms')

# Flushes, and the write rate with and without one in flight.
spans = []
for s, e in sorted(flushes):
    if spans and s <= spans[-1][1]:
        spans[-1][1] = max(spans[-1][1], e)
    else:
        spans.append([s, e])
def in_flush(t):
    return any(s <= t <= e for s, e in spans)
inside = outside = 0
for t, comm, tid, cpu, ev, arg in rows:
    if a <= t <= b and ev == 'block:block_rq_complete':
        m = req.search(arg)
        if m and m.group(1).startswith('W'):
            n = int(m.group(3)) * 512
            if in_flush(t):
                inside += n
            else:
                outside += n
durs = sorted(e - s for s, e in flushes)
flush_time = sum(e - s for s, e in spans)
if durs:
    print(f'  cache flushes: {len(durs)}, p50 {durs[len(durs) // 2] * 1e3:.2f} ms, '
          f'p90 {durs[int(len(durs) * 0.9)] * 1e3:.2f} ms, longest {durs[-1] * 1e3:.2f} ms; '
          f'one in flight {flush_time / span * 100:.0f} % of the time')
    if flush_time > 0 and span > flush_time:
        print(f'  writes completed at {inside / flush_time / 1e6:.0f} MB/s while a flush was '
              f'in flight, {outside / (span - flush_time) / 1e6:.0f} MB/s while none was')

# The workers that complete direct writes: woken, then run how much later.
completers = {tid for t, comm, tid, cpu, ev, arg in rows
              if ev == 'iomap:iomap_dio_complete' and comm.startswith('kworker')
              and a <= t <= b}
woken = {}
delays = []
by_cpu_runner = collections.Counter()
running = {}
for t, comm, tid, cpu, ev, arg in rows:
    if ev == 'sched:sched_switch':
        m = re.search(r'next_comm=(.+?) next_pid=(\d+)', arg)
        if m:
            running[cpu] = m.group(1)
            if m.group(2) in woken:
                w, wcpu, runner = woken.pop(m.group(2))
                if a <= w <= b:
                    delays.append((t - w, runner))
    elif ev == 'sched:sched_wakeup':
        m = re.search(r'pid=(\d+) .*target_cpu=(\d+)', arg)
        if m and m.group(1) in completers:
            c = int(m.group(2))
            woken[m.group(1)] = (t, c, running.get(c, '?'))
if delays:
    d = sorted(x for x, _ in delays)
    long = [r for x, r in delays if x > 0.001]
    who = collections.Counter(long).most_common(2)
    print(f'  direct-write completion workers: woken {len(d)} times, ran after '
          f'p50 {d[len(d) // 2] * 1e6:.0f} µs, p90 {d[int(len(d) * 0.9)] * 1e6:.0f} µs, '
          f'longest {d[-1] * 1e3:.2f} ms; over 1 ms {len(long)} times, their CPU then running '
          + ', '.join(f'{r} ({n})' for r, n in who))

gaps.sort(reverse=True)
for d, s, e in gaps[:int(sys.argv[2])]:
    print(f'  -- idle {d * 1e3:.2f} ms at +{(s - a) * 1e3:.1f} ms:')
    for t, comm, tid, cpu, ev, arg in rows:
        if s - 0.0002 <= t <= e + 0.0001 and not ev.startswith('block:'):
            if ev == 'sched:sched_switch' and 'kworker' not in arg:
                continue
            print(f'     +{(t - a) * 1e3:8.3f} ms cpu{cpu} {comm[:16]:16} '
                  f'{ev.split(":")[1]:22} {arg[:90]}')
PY
done
