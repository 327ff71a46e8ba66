//! The dump thread's scheduling: in the idle class while requests are served, so a dump never
//! takes the core from them, and at nice 19 in the normal class when the load would starve it.

use std::io;

/// The dump writer's nice value when it is not (or cannot be) in the idle class.
const DUMP_THREAD_NICE: i32 = 19;

/// Whether a thread of this process may leave the idle class again (root, CAP_SYS_NICE, or an
/// RLIMIT_NICE that allows nice 19 — systemd's `LimitNICE=+19`). Probed on a throwaway thread,
/// because a thread that cannot leave `SCHED_IDLE` stays there for good.
pub(super) fn idle_class_is_reversible() -> bool {
    let probe = std::thread::spawn(|| {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler reads `param` during the call only; pid 0 is this thread.
        unsafe {
            libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) == 0
                && libc::setpriority(
                    libc::PRIO_PROCESS,
                    libc::gettid() as libc::id_t,
                    DUMP_THREAD_NICE,
                ) == 0
                && libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) == 0
        }
    });
    probe.join().unwrap_or(false)
}

/// Background (`true`): the `SCHED_IDLE` class, so the thread runs only when the event loop has
/// nothing to do — a dump on a node pinned to one core must not take the core from requests, and
/// even a nice-19 time slice is a millisecond of stall. Not background: the normal class at nice
/// 19, a small but certain share of a busy core, for a dump that the load would starve.
/// `thread_id` 0 is the calling thread.
pub(super) fn set_background(thread_id: i32, background: bool) {
    let param = libc::sched_param { sched_priority: 0 };
    let policy = if background {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    // SAFETY: sched_setscheduler reads `param` during the call only.
    let class_result = unsafe { libc::sched_setscheduler(thread_id, policy, &param) };
    let class_error = io::Error::last_os_error();
    let who = if thread_id == 0 {
        // SAFETY: gettid takes no arguments and cannot fail.
        unsafe { libc::gettid() }
    } else {
        thread_id
    };
    // SAFETY: setpriority takes no pointers; on Linux, PRIO_PROCESS with a thread id changes
    // that one thread's nice value.
    let nice_result =
        unsafe { libc::setpriority(libc::PRIO_PROCESS, who as libc::id_t, DUMP_THREAD_NICE) };
    if class_result != 0 || nice_result != 0 {
        tracing::warn!(
            "cannot set the dump thread's scheduling (background {background}): class: {class_error}; nice: {}",
            io::Error::last_os_error()
        );
    }
}
