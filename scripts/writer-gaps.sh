#!/usr/bin/env bash
# Where the io_uring writer leaves the disk without work: runs the throughput
# harness for one shape under `perf record` (kernel tracepoints only: io_uring
# submissions and completions, the writer's file syscalls and futex waits,
# context switches), then prints, from the uring run writer's first write to
# its last, the time during which none of its writes was in flight, split by
# what the writer was doing then (in which syscall, on or off a CPU, or in its
# own code), beside the harness's own uring row.
# Usage: scripts/writer-gaps.sh SHAPE [THROUGHPUT_BIN...]
#   SHAPE: csv_1k, json_16k or binary_64k; with several binaries (builds of
#   two commits, say), one run of each in the order given.
source "$(dirname "$0")/lib/traced-harness.sh"
EVENTS="io_uring:io_uring_submit_req,io_uring:io_uring_complete,sched:sched_switch"
for s in fallocate fdatasync fsync ftruncate io_uring_enter rename openat close futex; do
  EVENTS="$EVENTS,syscalls:sys_enter_$s,syscalls:sys_exit_$s"
done
for bin in "$@"; do
  echo "== $bin --only $SHAPE"
  perf record -q -m 4096 -o "$WORK/perf.data" -e "$EVENTS" -a -- "$bin" --only "$SHAPE" >"$WORK/out.txt" 2>&1
  grep -E "^cpu:|capline uring  " "$WORK/out.txt"
  perf script -i "$WORK/perf.data" -F comm,tid,cpu,time,event,trace 2>/dev/null >"$WORK/events.txt"
  python3 - "$WORK/events.txt" <<'PY'
import collections, re, sys

events = []
for line in open(sys.argv[1]):
    m = re.match(r'\s*(.+?)\s+(-?\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)', line)
    if m:
        events.append((float(m.group(4)), m.group(2), m.group(1), m.group(5), m.group(6)))
events.sort(key=lambda e: e[0])
# The uring run's writer: the capline-writer thread with the most submissions.
subs = collections.Counter(e[1] for e in events
                           if e[3] == 'io_uring:io_uring_submit_req' and e[2] == 'capline-writer')
if not subs:
    sys.exit('no io_uring submissions by a capline-writer thread (perf lost events?)')
writer = subs.most_common(1)[0][0]
mine = [e for e in events if e[1] == writer and e[3] == 'io_uring:io_uring_submit_req']
rings = {e[4].split(',')[0] for e in mine}
t0, t1 = mine[0][0], mine[-1][0]
in_flight, state, syscall, last = 0, 'on a CPU', None, None
gaps = collections.Counter()
for t, tid, comm, name, rest in events:
    if last is not None and in_flight == 0 and t0 <= last and t <= t1:
        what = f'in {syscall}' if syscall else 'in its own code'
        gaps[f'{what}, {state}'] += t - last
    last = t
    if name == 'io_uring:io_uring_submit_req' and tid == writer:
        in_flight += 1
    elif name == 'io_uring:io_uring_complete' and rest.split(',')[0] in rings:
        in_flight = max(0, in_flight - 1)
    elif name == 'sched:sched_switch':
        if f'prev_pid={writer} ' in rest:
            state = 'runnable (preempted)' if 'prev_state=R' in rest else 'asleep'
        if f'next_pid={writer} ' in rest:
            state = 'on a CPU'
    elif tid == writer and name.startswith('syscalls:sys_enter_'):
        syscall = name[len('syscalls:sys_enter_'):]
    elif tid == writer and name.startswith('syscalls:sys_exit_'):
        syscall = None
span = t1 - t0
idle = sum(gaps.values())
print(f'uring writer, first write to last: {span * 1e3:.1f} ms; no write in flight {idle * 1e3:.1f} ms ({100 * idle / span:.1f} %):')
for what, secs in gaps.most_common(8):
    print(f'  {secs * 1e3:7.1f} ms  {what}')
PY
done
