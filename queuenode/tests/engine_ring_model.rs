//! Property test: random push / pop / take / ack / give-back / reopen sequences against a
//! `VecDeque` model of the unacknowledged records.

use proptest::prelude::*;
use queuenode::engine::ring::{record_bytes, Ring, RingError, Span, SyncMode};
use std::collections::VecDeque;
use std::path::Path;

#[derive(Debug, Clone)]
enum Op {
    Push(usize),
    Pop,
    /// Take up to n and acknowledge at once.
    TakeAck(usize),
    /// Take up to n and give them straight back (no change).
    TakeGiveBack(usize),
    /// Take up to n and keep them out (when nothing is held).
    Hold(usize),
    /// Acknowledge (true) or give back (false) the held batch.
    Release(bool),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..700).prop_map(Op::Push),
        3 => Just(Op::Pop),
        1 => (1usize..5).prop_map(Op::TakeAck),
        1 => (1usize..5).prop_map(Op::TakeGiveBack),
        1 => (1usize..5).prop_map(Op::Hold),
        1 => any::<bool>().prop_map(Op::Release),
        1 => Just(Op::Reopen),
    ]
}

fn open(path: &Path) -> Ring {
    let (ring, cut) = Ring::open(path, SyncMode::OnClose).expect("reopen");
    assert_eq!(cut, 0);
    ring
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn ring_matches_a_vecdeque_model(ops in proptest::collection::vec(op(), 1..400)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.ring");
        let capacity = 8192u64;
        let mut ring = Some(Ring::create(&path, capacity, SyncMode::OnClose).expect("create"));
        // Every record between the ring's head and tail, oldest first, with whether it was
        // acknowledged (an acknowledged record behind a held one keeps its place until the held
        // one is acknowledged; a restart before that delivers it again). The held batch is the
        // first `held.1` entries.
        let mut model: VecDeque<(Vec<u8>, bool)> = VecDeque::new();
        let mut held: Option<(Span, usize)> = None;
        let mut counter = 0u32;
        let live = |model: &VecDeque<(Vec<u8>, bool)>, skip: usize| -> Vec<usize> {
            (skip..model.len()).filter(|&i| !model[i].1).collect()
        };
        for op in ops {
            let r = ring.as_mut().expect("ring");
            let skip = held.map_or(0, |h| h.1);
            match op {
                Op::Push(len) => {
                    counter += 1;
                    let mut value = counter.to_le_bytes().to_vec();
                    value.resize(len.max(4), (counter % 200) as u8);
                    match r.push(&value) {
                        Ok(_) => model.push_back((value, false)),
                        Err(RingError::Full { .. }) => {
                            let free = capacity - r.size().used_bytes;
                            prop_assert!(free < 2 * record_bytes(value.len() as u64));
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
                Op::Pop => {
                    let got = r.pop().expect("pop");
                    let want = live(&model, skip).first().map(|&i| {
                        model[i].1 = true;
                        model[i].0.clone()
                    });
                    prop_assert_eq!(got, want);
                }
                Op::TakeAck(n) | Op::TakeGiveBack(n) => {
                    let ack = matches!(op, Op::TakeAck(_));
                    let next: Vec<usize> = live(&model, skip).into_iter().take(n).collect();
                    match r.take(n, u64::MAX) {
                        None => prop_assert!(next.is_empty()),
                        Some((span, values)) => {
                            // A batch may stop early (at an acknowledged span behind a
                            // returned one), never at nothing.
                            prop_assert!(!values.is_empty() && values.len() <= next.len());
                            let next = &next[..values.len()];
                            let want: Vec<Vec<u8>> =
                                next.iter().map(|&i| model[i].0.clone()).collect();
                            prop_assert_eq!(&values, &want);
                            if ack {
                                r.ack(span).expect("ack");
                                for &i in next {
                                    model[i].1 = true;
                                }
                            } else {
                                r.give_back(span).expect("give back");
                            }
                        }
                    }
                }
                Op::Hold(n) => {
                    // Only from a clean front, so the held batch is the model's first entries.
                    if held.is_none() && model.iter().all(|e| !e.1) {
                        if let Some((span, values)) = r.take(n, u64::MAX) {
                            let want: Vec<Vec<u8>> =
                                model.iter().take(values.len()).map(|e| e.0.clone()).collect();
                            prop_assert!(values.len() <= n);
                            prop_assert_eq!(&values, &want);
                            held = Some((span, values.len()));
                        }
                    }
                }
                Op::Release(ack) => {
                    if let Some((span, count)) = held.take() {
                        if ack {
                            r.ack(span).expect("ack");
                            for entry in model.iter_mut().take(count) {
                                entry.1 = true;
                            }
                        } else {
                            r.give_back(span).expect("give back");
                        }
                    }
                }
                Op::Reopen => {
                    drop(ring.take());
                    ring = Some(open(&path));
                    // Handed-out records come back after a restart, and so do acknowledged
                    // ones still behind them.
                    held = None;
                    for entry in model.iter_mut() {
                        entry.1 = false;
                    }
                }
            }
            if held.is_none() {
                while model.front().is_some_and(|e| e.1) {
                    model.pop_front();
                }
            } else {
                // Head cannot pass the held batch.
            }
            let r = ring.as_ref().expect("ring");
            let unacked: Vec<&Vec<u8>> = model.iter().filter(|e| !e.1).map(|e| &e.0).collect();
            prop_assert_eq!(r.len(), unacked.len() as u64);
            let value_bytes: u64 = unacked.iter().map(|v| v.len() as u64).sum();
            prop_assert_eq!(r.size().value_bytes, value_bytes);
        }
        let model: Vec<Vec<u8>> = model.into_iter().filter(|e| !e.1).map(|e| e.0).collect();
        let mut r = ring.take().expect("ring");
        r.give_back_all();
        let mut rest = Vec::new();
        while let Some(v) = r.pop().expect("pop") {
            rest.push(v);
        }
        prop_assert_eq!(rest, model);
    }
}
