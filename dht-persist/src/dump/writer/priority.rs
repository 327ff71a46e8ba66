//! The dump thread's share of the CPU: how a dump runs beside requests on the same core, and how
//! it still finishes when requests saturate that core.
//!
//! Three modes ([`WriterMode`]), chosen by the node ([`super::DumpThread::set_mode`]):
//! - `Background`: the `SCHED_IDLE` class. The writer runs whenever the event loop waits for
//!   input and a request never waits for it (a waking normal-class thread preempts an idle-class
//!   one at once). On a saturated core it gets almost nothing.
//! - `Paced`: the normal class (nice 0), working in quanta of at most [`QUANTUM`] and sleeping
//!   after each so that it uses at most [`PACED_SHARE_PERCENT`] % of the core. A request waits
//!   at most one quantum (plus the one unit of work that ends it: a shard read or one block), and
//!   a dump of 10M records still completes in well under a minute
//!   (docs/benchmarks.md, "latency while dumping").
//! - `Full`: the normal class, no pacing, and every CPU (the shutdown dump, when no request
//!   competes): the writer and its writing thread (`pipeline`) may leave the core the node was
//!   pinned to, since the pinning is there for requests and none are served any more.
//!
//! A process that may not leave `SCHED_IDLE` again (no CAP_SYS_NICE, RLIMIT_NICE below nice 0)
//! never enters it: its writer stays in the normal class and is paced whenever it is not `Full`.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The most a paced writer works before it sleeps: the longest a request waits for it.
pub const QUANTUM: Duration = Duration::from_micros(150);
/// The share of a core a paced writer uses at most. 10 %: a request's queueing grows by about
/// 1/(1 - 0.1) = 1.11× (p99 target: 2× idle), while a 10M-record dump (~3.5 s of one core with
/// LZ4, ~1 s without) completes in about 35 s (target: 60 s).
pub const PACED_SHARE_PERCENT: u32 = 10;

/// How the writer shares the CPU (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WriterMode {
    Background = 0,
    Paced = 1,
    Full = 2,
}

impl WriterMode {
    pub(super) fn from_u8(value: u8) -> WriterMode {
        match value {
            0 => WriterMode::Background,
            1 => WriterMode::Paced,
            _ => WriterMode::Full,
        }
    }
}

/// Whether a thread of this process may leave the idle class again for the normal class at
/// nice 0 (root, CAP_SYS_NICE, or an RLIMIT_NICE that allows nice 0 — systemd's
/// `LimitNICE=+0`). Probed on a throwaway thread, because a thread that cannot leave
/// `SCHED_IDLE` stays there for good.
pub(super) fn idle_class_is_reversible() -> bool {
    let probe = std::thread::spawn(|| {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads `param` during the call only; pid 0 is this thread.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0
                && libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) == 0
        }
    });
    probe.join().unwrap_or(false)
}

/// Puts thread `thread_id` (0: the calling thread) in the scheduling class of `mode`: the idle
/// class for `Background` (only when `idle_allowed`), the normal class at nice 0 otherwise.
pub(super) fn apply_mode(thread_id: i32, mode: WriterMode, idle_allowed: bool) {
    let policy = if mode == WriterMode::Background && idle_allowed {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    // A paced writer asks for a time slice of one quantum: on kernels with EEVDF slices (6.12+)
    // a thread with a short slice preempts the running one when it wakes, so the writer's
    // quanta come when due (the share it was given) and each stays as short as promised.
    // Other kernels ignore the request for this class.
    let slice_ns = if mode == WriterMode::Paced {
        QUANTUM.as_nanos() as u64
    } else {
        0
    };
    if !set_class(thread_id, policy, slice_ns) {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads `param` during the call only.
        if unsafe { libc::sched_setscheduler(thread_id, policy, &param) } != 0 {
            tracing::warn!(
                "cannot set the dump thread's scheduling class ({mode:?}): {}",
                io::Error::last_os_error()
            );
        }
    }
    if mode == WriterMode::Full {
        allow_every_cpu(thread_id);
    }
}

/// `sched_setattr`: `policy` at nice 0, with a requested slice of `slice_ns` (0: the default).
/// Whether it succeeded.
fn set_class(thread_id: i32, policy: i32, slice_ns: u64) -> bool {
    let attr = libc::sched_attr {
        size: std::mem::size_of::<libc::sched_attr>() as u32,
        sched_policy: policy as u32,
        sched_flags: 0,
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: slice_ns,
        sched_deadline: 0,
        sched_period: 0,
    };
    // SAFETY: the kernel reads `attr.size` bytes of `attr` during the call only.
    let result = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            thread_id,
            &attr as *const libc::sched_attr,
            0,
        )
    };
    result == 0
}

/// Lets thread `thread_id` (and the threads it starts from now on) run on every CPU of the
/// machine (the kernel keeps it within the process's cpuset). A failure only costs speed.
fn allow_every_cpu(thread_id: i32) {
    // SAFETY: sysconf takes no pointers.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.clamp(1, 1024) as usize;
    // SAFETY: cpu_set_t is plain data; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..cpus.min(libc::CPU_SETSIZE as usize) {
        // SAFETY: `cpu` is below CPU_SETSIZE, inside the set.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: sched_setaffinity reads `set` (of the size given) during the call only.
    let result = unsafe { libc::sched_setaffinity(thread_id, std::mem::size_of_val(&set), &set) };
    if result != 0 {
        tracing::warn!(
            "cannot let the dump thread use every CPU: {}",
            io::Error::last_os_error()
        );
    }
}

/// The CPU time the calling thread has used, in nanoseconds.
pub(super) fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `now`, which lives through the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) } != 0 {
        return 0;
    }
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// Paces the writer: called after every unit of work (a shard read, a block written).
#[derive(Debug)]
pub(super) struct Pacer {
    quantum_started: Instant,
}

impl Pacer {
    pub(super) fn new() -> Pacer {
        Pacer {
            quantum_started: Instant::now(),
        }
    }

    /// Publishes the thread's CPU time to `cpu_ns` (the node's measure of the share the writer
    /// gets); when `paced` and the quantum is used up, sleeps long enough that the quantum was
    /// at most [`PACED_SHARE_PERCENT`] % of the time since it started.
    pub(super) fn after_unit(&mut self, paced: bool, cpu_ns: &AtomicU64) {
        cpu_ns.store(thread_cpu_ns(), Ordering::Relaxed);
        let worked = self.quantum_started.elapsed();
        if !paced {
            self.quantum_started = Instant::now();
            return;
        }
        if worked < QUANTUM {
            return;
        }
        // Wall time, not CPU time: time the writer lost to preemption inside the quantum
        // counts as work, so the share can only come out smaller.
        let rest = worked * (100 - PACED_SHARE_PERCENT) / PACED_SHARE_PERCENT;
        std::thread::sleep(rest);
        self.quantum_started = Instant::now();
    }
}
