#!/usr/bin/env python3
# Where a group commit's time goes (docs/benchmarks.md, "Where an `always` round trip goes"):
# reads `perf script` of a node recorded with
#   perf record -o perf.data -e sched:sched_switch,sched:sched_wakeup,\
#     syscalls:sys_enter_fdatasync,syscalls:sys_exit_fdatasync,\
#     syscalls:sys_enter_pwrite64,syscalls:sys_exit_pwrite64 -p NODE_PID -- sleep 1
# (while a load runs) and prints the fdatasync durations and rate, how many were in flight at
# once (one with main's Syncer; several with one per sync thread, as on branch issue-18g), the
# disk's idle gaps (from the moment no fdatasync is in flight to the next one's start) and their
# share of the recording,
# how long a sync thread waited to run once woken, and the loop's pwrite of each group:
#   perf script -i perf.data | scripts/fsync-timeline.py
# Changes per fdatasync: the load's ops/s divided by the fdatasyncs per second printed here.
import sys, re, statistics
fs_enter = {}
durs, gaps, delays = [], [], []
pw_enter = {}
pwrites = []
idle_since = None
in_flight = 0
# Time-weighted count of fdatasyncs in flight, from the first fdatasync to the last exit.
weighted, last_change, first_ts, last_ts = 0.0, None, None, None
wake_at = {}
sync_tids = set()


def change_in_flight(ts, by):
    global in_flight, weighted, last_change
    if last_change is not None:
        weighted += in_flight * (ts - last_change)
    last_change = ts
    in_flight += by


for line in sys.stdin:
    m = re.match(r'\s*(\S+)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)', line)
    if not m:
        continue
    comm, tid, cpu, ts, ev, rest = m.groups()
    ts = float(ts) * 1e6
    if ev.endswith('sys_enter_fdatasync'):
        sync_tids.add(tid)
        fs_enter[tid] = ts
        first_ts = ts if first_ts is None else first_ts
        if in_flight == 0 and idle_since is not None:
            gaps.append(ts - idle_since)
        change_in_flight(ts, 1)
    elif ev.endswith('sys_exit_fdatasync') and tid in fs_enter:
        durs.append(ts - fs_enter.pop(tid))
        change_in_flight(ts, -1)
        last_ts = ts
        if in_flight == 0:
            idle_since = ts
    elif ev.endswith('sys_enter_pwrite64'):
        pw_enter[tid] = ts
    elif ev.endswith('sys_exit_pwrite64') and tid in pw_enter:
        pwrites.append(ts - pw_enter.pop(tid))
    elif ev.endswith('sched_wakeup'):
        m2 = re.search(r'pid=(\d+)', rest)
        if m2:
            wake_at[m2.group(1)] = ts
    elif ev.endswith('sched_switch'):
        m2 = re.search(r'next_pid=(\d+)', rest)
        if m2 and m2.group(1) in wake_at and m2.group(1) in sync_tids:
            delays.append(ts - wake_at.pop(m2.group(1)))


def show(name, xs):
    if not xs:
        print(name, 'none'); return
    xs = sorted(xs)
    n = len(xs)
    print(f"{name}: n={n} p50 {xs[n//2]:.0f} us p90 {xs[n*9//10]:.0f} p99 {xs[n*99//100]:.0f} mean {statistics.mean(xs):.0f}")


show('fdatasync duration', durs)
show('disk idle: no fdatasync in flight, until the next starts', gaps)
if first_ts is not None and last_ts is not None and last_ts > first_ts:
    span = last_ts - first_ts
    print(f"fdatasyncs: {len(durs) / span * 1e6:.0f} per second over {span / 1e6:.3f} s, "
          f"{weighted / span:.2f} in flight on average, idle {sum(gaps) / span:.1%} of the time, "
          f"{len(sync_tids)} sync threads seen")
show('sync thread wake-to-run', delays)
show('pwrite64 (the loop writing a group)', pwrites)
