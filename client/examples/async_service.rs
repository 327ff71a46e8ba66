//! A small tokio service on the async client: it writes and reads each kind of node.
//!
//! ```sh
//! scripts/cluster.sh start --dht 2 --logfiles 1 --queue 1     # prints the topology file
//! cargo run -p client --example async_service -- <topology file>
//! ```
//!
//! Many request handlers run at once (here: 32 tasks); all share one connection per node.

use client::asynchronous::{AsyncDhtClient, AsyncLogClient, AsyncQueueClient};
use client::logfiles::ValueFilter;
use client::{ClientError, ClientOptions, Topology};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn main() -> std::process::ExitCode {
    let path = PathBuf::from(std::env::args().nth(1).unwrap_or("cluster.toml".into()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("async_service: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(path)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("async_service: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(path: PathBuf) -> Result<(), Box<dyn std::error::Error>> {
    let topology = Topology::load(&path)?;
    let options = ClientOptions::default();
    let dht = AsyncDhtClient::from_topology(&topology, options.clone()).await?;
    let logs = AsyncLogClient::from_topology(&topology, options.clone()).await?;
    let queue = AsyncQueueClient::from_topology(&topology, options).await?;

    // Request handlers: each stores a profile, logs an event and queues a job.
    let handlers: Vec<_> = (0..32u64)
        .map(|user| {
            let (dht, logs, queue) = (dht.clone(), logs.clone(), queue.clone());
            tokio::spawn(async move { handle_signup(&dht, &logs, &queue, user).await })
        })
        .collect();
    for handler in handlers {
        handler.await??;
    }

    let profile = dht.get("profiles", 7).await?;
    println!(
        "profile 7: {:?}",
        profile.as_deref().map(String::from_utf8_lossy)
    );
    let mut events = logs.get_all("signups", &ValueFilter::All)?;
    let mut count = 0;
    while let Some(event) = events.next().await {
        let (timestamp, _) = event?;
        count += 1;
        if count == 1 {
            println!("first signup logged at {timestamp}");
        }
    }
    println!("{count} signups logged");
    let mut consumer = queue.consume("welcome_mails", "mailer", 0).await?;
    let mut jobs = 0;
    while let Some(job) = consumer.next(Duration::from_millis(500)).await? {
        jobs += 1;
        if jobs == 1 {
            println!("first job: {}", String::from_utf8_lossy(&job));
        }
    }
    consumer.stop().await?;
    println!("{jobs} welcome mails sent");
    Ok(())
}

async fn handle_signup(
    dht: &AsyncDhtClient,
    logs: &AsyncLogClient,
    queue: &AsyncQueueClient,
    user: u64,
) -> Result<(), ClientError> {
    let profile = format!("{{\"user\":{user}}}");
    dht.put("profiles", user, profile.as_bytes()).await?;
    let now_us = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64);
    logs.put("signups", now_us, profile.as_bytes()).await?;
    queue
        .push("welcome_mails", format!("mail user {user}").as_bytes())
        .await?;
    Ok(())
}
