#!/usr/bin/env python3
# Where a group commit's time goes (docs/benchmarks.md, "Where an `always` round trip goes"):
# reads `perf script` of a node recorded with
#   perf record -o perf.data -e sched:sched_switch,sched:sched_wakeup,\
#     syscalls:sys_enter_fdatasync,syscalls:sys_exit_fdatasync,\
#     syscalls:sys_enter_pwrite64,syscalls:sys_exit_pwrite64 -p NODE_PID -- sleep 1
# (while a load runs) and prints the fdatasync durations, the gaps between one fdatasync's end
# and the next one's start (the disk idle), how long the sync thread waited to run once woken,
# and the loop's pwrite of each group:  perf script -i perf.data | scripts/fsync-timeline.py
import sys, re, statistics
fs_enter = {}
durs, gaps, delays = [], [], []
pw_enter = {}
pwrites = []
last_exit = None
wake_at = {}
sync_tid = None
for line in sys.stdin:
    m = re.match(r'\s*(\S+)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s*(.*)', line)
    if not m:
        continue
    comm, tid, cpu, ts, ev, rest = m.groups()
    ts = float(ts) * 1e6
    if ev.endswith('sys_enter_fdatasync'):
        sync_tid = tid
        fs_enter[tid] = ts
        if last_exit is not None:
            gaps.append(ts - last_exit)
    elif ev.endswith('sys_exit_fdatasync') and tid in fs_enter:
        durs.append(ts - fs_enter.pop(tid))
        last_exit = ts
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
        if m2 and m2.group(1) in wake_at and m2.group(1) == sync_tid:
            delays.append(ts - wake_at.pop(m2.group(1)))
def show(name, xs):
    if not xs:
        print(name, 'none'); return
    xs = sorted(xs)
    n = len(xs)
    print(f"{name}: n={n} p50 {xs[n//2]:.0f} us p90 {xs[n*9//10]:.0f} p99 {xs[n*99//100]:.0f} mean {statistics.mean(xs):.0f}")
show('fdatasync duration', durs)
show('gap between fdatasyncs (exit to next enter)', gaps)
show('sync thread wake-to-run', delays)
show('pwrite64 (the loop writing a group)', pwrites)
