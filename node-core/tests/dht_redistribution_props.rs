//! Property tests for the dht redistribution bodies (docs/protocol.md §6.3, §6.6-6.9): every
//! encoder/decoder pair round-trips, every decoder returns `Ok`/`Err` on arbitrary bytes without
//! panicking, and a Redistribute that passes its check leaves no position of the node's current
//! range without an owner.

use node_core::protocol::dht::{
    first_uncovered, split_range, GetAllRequest, GetAllScope, HashRange, RedistBatchReply,
    RedistributeDone, RedistributeRequest, RedistributeTarget, RedistributionProgress,
    RedistributionState,
};
use proptest::collection::vec;
use proptest::prelude::*;
use std::net::SocketAddr;

fn range() -> impl Strategy<Value = HashRange> {
    prop_oneof![
        Just(HashRange::EMPTY),
        Just(HashRange::FULL),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| HashRange::new(a.min(b), a.max(b))),
    ]
}

fn target() -> impl Strategy<Value = RedistributeTarget> {
    (any::<[u8; 4]>(), any::<u16>(), range()).prop_map(|(ip, port, range)| RedistributeTarget {
        address: SocketAddr::from((ip, port)),
        range,
    })
}

fn progress() -> impl Strategy<Value = RedistributionProgress> {
    (any::<u64>(), any::<u64>(), any::<u64>(), "[ -~]{0,200}").prop_map(
        |(moved, total, failures, last_error)| RedistributionProgress {
            moved,
            total,
            failures,
            last_error,
        },
    )
}

proptest! {
    #[test]
    fn redistribution_bodies_round_trip(
        request_range in range(),
        targets in vec(target(), 0..20),
        progress in progress(),
        running in any::<bool>(),
        instance in any::<u64>(),
        counts in any::<[u64; 3]>(),
    ) {
        let request = RedistributeRequest { range: request_range, targets };
        let mut out = Vec::new();
        request.encode(&mut out);
        prop_assert_eq!(RedistributeRequest::decode(&out), Ok(request));

        out.clear();
        progress.encode(&mut out);
        prop_assert_eq!(RedistributionProgress::decode(&out), Ok(progress.clone()));

        let state = RedistributionState { range: request_range, running, instance, progress };
        out.clear();
        state.encode(&mut out);
        prop_assert_eq!(RedistributionState::decode(&out), Ok(state));

        let reply = RedistBatchReply { stored: counts[0], present: counts[1], instance: counts[2] };
        out.clear();
        reply.encode(&mut out);
        prop_assert_eq!(RedistBatchReply::decode(&out), Ok(reply));

        let done = RedistributeDone { moved: counts[0], stranded: counts[1] };
        out.clear();
        done.encode(&mut out);
        prop_assert_eq!(RedistributeDone::decode(&out), Ok(done));
    }

    #[test]
    fn redistribution_decoders_never_panic(bytes in vec(any::<u8>(), 0..300)) {
        let _ = RedistributeRequest::decode(&bytes);
        let _ = RedistributionProgress::decode(&bytes);
        let _ = RedistributionState::decode(&bytes);
        let _ = RedistBatchReply::decode(&bytes);
        let _ = RedistributeDone::decode(&bytes);
        let _ = GetAllRequest::decode(&bytes);
    }

    #[test]
    fn get_all_scopes_round_trip(keys_only in any::<bool>(), scope in 0u8..3, resume in any::<Option<u64>>()) {
        let scope = [GetAllScope::All, GetAllScope::InsideRange, GetAllScope::OutsideRange][scope as usize];
        let request = GetAllRequest { channel: "ch", keys_only, resume_after: resume, filter: b"f", scope };
        let mut out = Vec::new();
        request.encode(&mut out);
        prop_assert_eq!(GetAllRequest::decode(&out), Ok(request));
    }

    /// A request that passes the check covers the current range: every position a record of it
    /// can have belongs to the new range or to a target.
    #[test]
    fn a_checked_redistribution_leaves_no_record_without_an_owner(
        current in range(),
        cuts in vec(any::<u64>(), 0..4),
        probes in vec(any::<u64>(), 1..50),
    ) {
        // The current range split at random points into the node's part and the targets'.
        let mut parts = split_range(current, cuts.len() + 1);
        let mine = parts.remove(0);
        let targets: Vec<RedistributeTarget> = parts
            .into_iter()
            .filter(|range| !range.is_empty())
            .enumerate()
            .map(|(i, range)| RedistributeTarget {
                address: SocketAddr::from(([127, 0, 0, 1], 10_000 + i as u16)),
                range,
            })
            .collect();
        let request = RedistributeRequest { range: mine, targets };
        prop_assert_eq!(request.check(current), Ok(()));
        for probe in probes {
            let position = if current.is_empty() { probe } else {
                current.min + probe % (current.max - current.min).saturating_add(1).max(1)
            };
            if current.is_empty() {
                continue;
            }
            let owned = request.range.min <= position && position <= request.range.max
                || request.targets.iter().any(|t| t.range.min <= position && position <= t.range.max);
            prop_assert!(owned, "position {position:#x} of {current} has no owner");
        }
        // Without its last target, a split range leaves a gap that the check finds.
        if let Some(dropped) = request.targets.last().copied() {
            let mut short = request.clone();
            short.targets.pop();
            prop_assert!(short.check(current).is_err());
            let all: Vec<HashRange> = std::iter::once(short.range)
                .chain(short.targets.iter().map(|t| t.range))
                .collect();
            let (from, _) = first_uncovered(current, &all).expect("a gap");
            prop_assert!(dropped.range.min <= from && from <= dropped.range.max);
        }
    }
}
