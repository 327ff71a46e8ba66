//! The clock of requests' handling times (GetStats' `mean_us`/`max_us`, the latency buckets,
//! stats.log): read once per request, so its cost is per request. Where the CPU's time-stamp
//! counter ticks at a constant rate and the kernel itself keeps time with it (clocksource
//! `tsc`: the kernel checked that the counters of all CPUs agree), a bare `rdtsc` scaled to ns
//! stands in for `clock_gettime(CLOCK_MONOTONIC)`: the vDSO call fences and scales the same
//! counter (48 ns against 24 ns back to back in the benchmark VM, docs/benchmarks.md "queue:
//! margin"). Elsewhere, and until the scale is known, it is CLOCK_MONOTONIC.
//!
//! The scale (ns per tick, in 32.32 fixed point) is measured against CLOCK_MONOTONIC over the
//! whole time since the loop started, again on every tick, so it only gets more exact; readings
//! stay on CLOCK_MONOTONIC's scale (the base reading plus the scaled ticks since), so a run of
//! frames that straddled a change of scale would still see a small, not a wild, difference.

/// The span of the first measurement of the scale: long enough that the two clocks' reading
/// times (tens of ns) are within 0.01 % of it.
const MIN_CALIBRATION_NS: u64 = 20_000_000;

/// Reads requests' handling times: see the module doc.
pub(super) struct RequestClock {
    /// ns per TSC tick << 32; 0 while the TSC is not used (not usable, or not yet measured).
    ns_per_tick_q32: u64,
    /// Whether the TSC may be used at all (checked once).
    tsc_usable: bool,
    /// The readings both clocks gave at the start, the base of every measurement and reading.
    base_tsc: u64,
    base_ns: u64,
    /// When the kernel's clocksource was last checked (once a second at most: a file read).
    source_checked_ns: u64,
}

impl RequestClock {
    pub(super) fn new() -> RequestClock {
        let tsc_usable = tsc::usable();
        let (base_tsc, base_ns) = if tsc_usable {
            // A start that was preempted between its readings only leaves the TSC off until a
            // tick whose readings were not (calibrate measures from this base).
            paired_readings().unwrap_or((tsc::read(), monotonic_ns()))
        } else {
            (0, monotonic_ns())
        };
        RequestClock {
            ns_per_tick_q32: 0,
            tsc_usable,
            base_tsc,
            base_ns,
            source_checked_ns: base_ns,
        }
    }

    /// Now, in ns on CLOCK_MONOTONIC's scale; only differences of two readings mean anything.
    #[inline]
    pub(super) fn now_ns(&self) -> u64 {
        if self.ns_per_tick_q32 == 0 {
            return monotonic_ns();
        }
        let ticks = tsc::read().wrapping_sub(self.base_tsc);
        if ticks > MAX_TICKS {
            // The counter went back (a reset at resume, a migration): this reading would be
            // wild; the next calibration turns the TSC off.
            return monotonic_ns();
        }
        let since_base = (u128::from(ticks) * u128::from(self.ns_per_tick_q32)) >> 32;
        self.base_ns.wrapping_add(since_base as u64)
    }

    /// Measures the TSC's scale again over the time since the start (called every tick). A
    /// reading that makes no sense (the counter went back, or the monotonic clock stood still),
    /// or a kernel that stopped keeping time with the TSC (its watchdog found it unstable),
    /// turns the TSC off for good.
    pub(super) fn calibrate(&mut self) {
        if !self.tsc_usable {
            return;
        }
        // Readings preempted between the two clocks would skew the scale: try the next tick.
        let Some((now_tsc, now_ns)) = paired_readings() else {
            return;
        };
        if now_ns.saturating_sub(self.source_checked_ns) >= SOURCE_CHECK_INTERVAL_NS {
            self.source_checked_ns = now_ns;
            if !tsc::usable() {
                self.turn_tsc_off(
                    "the kernel no longer keeps time with the CPU's time-stamp counter",
                );
                return;
            }
        }
        let ticks = now_tsc.wrapping_sub(self.base_tsc);
        let elapsed_ns = now_ns.saturating_sub(self.base_ns);
        if elapsed_ns < MIN_CALIBRATION_NS {
            return;
        }
        match scale_q32(elapsed_ns, ticks) {
            Some(scale) => self.ns_per_tick_q32 = scale,
            None => self.turn_tsc_off(&format!(
                "the CPU's time-stamp counter disagrees with the monotonic clock \
                 ({ticks} ticks in {elapsed_ns} ns)"
            )),
        }
    }

    fn turn_tsc_off(&mut self, why: &str) {
        tracing::warn!("{why}; timing requests with the monotonic clock");
        self.tsc_usable = false;
        self.ns_per_tick_q32 = 0;
    }
}

/// How often the kernel's clocksource is checked again.
const SOURCE_CHECK_INTERVAL_NS: u64 = 1_000_000_000;

/// The most ticks a reading may be past the base: more means the counter went back.
const MAX_TICKS: u64 = 1 << 62;

/// The longest the two clocks' readings of one pair may take: a pair that took longer was
/// preempted in between, and would skew the scale by the delay.
const MAX_PAIR_READING_NS: u64 = 20_000;

/// The TSC and the monotonic clock read at (nearly) one moment: the TSC between two monotonic
/// readings, paired with their midpoint; `None` when the readings took too long.
fn paired_readings() -> Option<(u64, u64)> {
    let before_ns = monotonic_ns();
    let ticks = tsc::read();
    let after_ns = monotonic_ns();
    let took_ns = after_ns.checked_sub(before_ns)?;
    (took_ns <= MAX_PAIR_READING_NS).then_some((ticks, before_ns + took_ns / 2))
}

/// `elapsed_ns / ticks` in 32.32 fixed point, when it is plausible: a counter between 10 MHz and
/// 100 GHz.
fn scale_q32(elapsed_ns: u64, ticks: u64) -> Option<u64> {
    if ticks == 0 || ticks > MAX_TICKS {
        return None;
    }
    let scale = (u128::from(elapsed_ns) << 32) / u128::from(ticks);
    let plausible = (1u128 << 32) / 100..=(100u128 << 32);
    plausible.contains(&scale).then_some(scale as u64)
}

/// The monotonic clock (`Instant`'s, CLOCK_MONOTONIC) in ns: an `Instant` difference costs ~80
/// instructions per request (the `timespec` subtraction and the `Duration` conversions), this
/// one ~15 plus the vDSO call.
pub(super) fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec; CLOCK_MONOTONIC exists on every Linux, so
    // the call cannot fail (a failure would leave 0: a handling time of 0, nothing worse).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    debug_assert!(
        now.tv_sec >= 0 && now.tv_nsec >= 0,
        "a monotonic clock is positive"
    );
    (now.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(now.tv_nsec as u64)
}

#[cfg(target_arch = "x86_64")]
mod tsc {
    /// The kernel's clock source, which names `tsc` only when the kernel found the counters of
    /// all CPUs in step and stable.
    const CLOCKSOURCE: &str = "/sys/devices/system/clocksource/clocksource0/current_clocksource";

    /// Whether the TSC ticks at a constant rate through frequency changes and sleep states
    /// (CPUID 0x8000_0007 EDX bit 8, "invariant TSC") and the kernel keeps time with it.
    pub(super) fn usable() -> bool {
        use std::arch::x86_64::__cpuid;
        let max_extended = __cpuid(0x8000_0000).eax;
        let invariant = max_extended >= 0x8000_0007 && __cpuid(0x8000_0007).edx & (1 << 8) != 0;
        invariant && std::fs::read_to_string(CLOCKSOURCE).is_ok_and(|source| source.trim() == "tsc")
    }

    #[inline]
    pub(super) fn read() -> u64 {
        // SAFETY: RDTSC exists on every x86_64 CPU and only reads the counter. It is not
        // ordered with the loads around it, which shifts a reading by a few ns at most.
        unsafe { std::arch::x86_64::_rdtsc() }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod tsc {
    pub(super) fn usable() -> bool {
        false
    }

    pub(super) fn read() -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_follow_the_monotonic_clock() {
        let mut clock = RequestClock::new();
        let start = std::time::Instant::now();
        while start.elapsed().as_nanos() < u128::from(MIN_CALIBRATION_NS) + 5_000_000 {
            std::hint::spin_loop();
        }
        // Where the TSC may be used (this benchmark VM), it is after a calibration whose two
        // readings were not preempted apart (a loaded machine may take a few tries).
        for _ in 0..1000 {
            clock.calibrate();
            if clock.ns_per_tick_q32 != 0 || !clock.tsc_usable {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert_eq!(clock.tsc_usable, clock.ns_per_tick_q32 != 0);
        // Whichever clock it reads (the TSC where usable), 50 ms of sleep reads as 50 ms, give
        // or take a loaded machine's scheduling (never less: the sleep lasts at least that).
        let before = clock.now_ns();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let elapsed_ns = clock.now_ns().wrapping_sub(before);
        assert!(
            (49_000_000..5_000_000_000).contains(&elapsed_ns),
            "50 ms read as {elapsed_ns} ns"
        );
    }

    /// A counter that went back (below the base) must not give a wild reading: the monotonic
    /// clock answers instead.
    #[test]
    fn a_counter_behind_its_base_reads_the_monotonic_clock() {
        let clock = RequestClock {
            ns_per_tick_q32: 1 << 32,
            tsc_usable: true,
            base_tsc: tsc::read().wrapping_add(1 << 40),
            base_ns: 0,
            source_checked_ns: 0,
        };
        let before = monotonic_ns();
        let reading = clock.now_ns();
        let after = monotonic_ns();
        assert!(
            (before..=after).contains(&reading),
            "{reading} not within {before}..={after}"
        );
    }

    #[test]
    fn implausible_scales_are_refused() {
        assert_eq!(scale_q32(1_000, 0), None);
        assert_eq!(scale_q32(1_000_000_000, 1), None, "1 Hz");
        assert_eq!(scale_q32(1, 1_000_000_000), None, "1 THz");
        // 3 GHz: a third of a ns per tick.
        let third = scale_q32(1_000_000_000, 3_000_000_000).unwrap();
        assert_eq!(third, (1u64 << 32) / 3);
    }
}
