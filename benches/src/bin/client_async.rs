//! The async client against the blocking one, same node, same work: C concurrent callers (C
//! threads of the blocking `DhtClient`, or C tasks of `AsyncDhtClient` on a multi-thread tokio
//! runtime of T workers), each doing one request at a time (put, then get) for S seconds.
//! Both clients drive one connection per node through the same I/O thread, so the difference
//! is what waiting costs: a thread parked on a channel, or a task awaiting one.
//!
//! `cargo run --release -p benches --bin client_async -- ADDR [CALLERS] [SECONDS] [WORKERS]`
//! (defaults: 16 callers, 5 s, 2 workers); ADDR is a running dhtnode owning the whole space.

use client::asynchronous::AsyncDhtClient;
use client::{ClientOptions, DhtClient};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VALUE: &[u8] = &[b'v'; 100];
const KEYSPACE: u64 = 100_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: SocketAddr = args
        .next()
        .ok_or("usage: client_async ADDR [CALLERS] [SECONDS] [WORKERS]")?
        .parse()?;
    let callers: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(16);
    let seconds: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(5);
    let workers: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(2);
    let run_for = Duration::from_secs(seconds);
    let dht = Arc::new(DhtClient::connect(&[addr], ClientOptions::default())?);
    for key in 0..KEYSPACE {
        dht.put("bench", key, VALUE)?;
    }
    println!("| client | callers | ops/s (put+get, 1 in flight per caller) |");
    println!("|---|---|---|");
    let blocking = blocking_run(&dht, callers, run_for);
    println!("| blocking DhtClient, {callers} threads | {callers} | {blocking:.0} |");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let asynchronous = runtime.block_on(async_run(dht, callers, run_for));
    println!(
        "| AsyncDhtClient, {callers} tasks on {workers} workers | {callers} | {asynchronous:.0} |"
    );
    Ok(())
}

/// The next key of caller `caller` (a spread over the keyspace, different per caller).
fn key_of(caller: u64, op: u64) -> u64 {
    (caller * 7919 + op * 104_729) % KEYSPACE
}

fn blocking_run(dht: &Arc<DhtClient>, callers: u64, run_for: Duration) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..callers)
        .map(|caller| {
            let (dht, stop, done) = (dht.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                let mut op = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = key_of(caller, op);
                    dht.put("bench", key, VALUE).expect("put");
                    dht.get("bench", key).expect("get").expect("present");
                    op += 1;
                }
                done.fetch_add(op * 2, Ordering::Relaxed);
            })
        })
        .collect();
    std::thread::sleep(run_for);
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("caller thread");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn async_run(dht: Arc<DhtClient>, callers: u64, run_for: Duration) -> f64 {
    let dht = AsyncDhtClient::from_blocking(dht);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|caller| {
            let (dht, stop) = (dht.clone(), stop.clone());
            tokio::spawn(async move {
                let mut op = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = key_of(caller, op);
                    dht.put("bench", key, VALUE).await.expect("put");
                    dht.get("bench", key).await.expect("get").expect("present");
                    op += 1;
                }
                op * 2
            })
        })
        .collect();
    tokio::time::sleep(run_for).await;
    stop.store(true, Ordering::Relaxed);
    let mut done = 0;
    for task in tasks {
        done += task.await.expect("caller task");
    }
    done as f64 / started.elapsed().as_secs_f64()
}
