//! What waiting for Redis replicas costs an acknowledgement: stores COUNT new messages through
//! the bot's Redis store, CONCURRENCY at a time, with acknowledgements waiting for REPLICAS
//! replicas (0 = no WAIT), and prints the latency of one acknowledging write and the rate.
//! `bench/redis_wait.sh` starts a primary and a replica and runs it each way.
//! `cargo run --release --example redis_wait -- redis://127.0.0.1:6390 1 2000 1`

use std::sync::Arc;
use std::time::{Duration, Instant};

use abort_bot::store::{Accepted, RedisUrl, RedisWait, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = RedisUrl::parse(
        &args
            .next()
            .unwrap_or_else(|| "redis://127.0.0.1:6390".into()),
    )?;
    let replicas: u32 = args.next().as_deref().unwrap_or("1").parse()?;
    let count: usize = args.next().as_deref().unwrap_or("2000").parse()?;
    let concurrency: usize = args.next().as_deref().unwrap_or("1").parse()?;
    let wait = (replicas > 0).then_some(RedisWait {
        replicas,
        timeout: Duration::from_secs(1),
    });
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let store = Store::open_redis_waiting(&url, Duration::from_secs(3600), wait).await?;
        let run = format!("{:016x}", rand::random::<u64>());
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (store, run, next) = (store.clone(), run.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return Ok::<_, abort_bot::store::StoreError>(latencies);
                    }
                    let t = Instant::now();
                    let accepted = store
                        .accept_message(
                            format!("ev_{run}_{i}"),
                            format!("om_{run}_{i}"),
                            "{\"bench\":true}".into(),
                            1_700_000_000,
                        )
                        .await?;
                    latencies.push(t.elapsed());
                    assert!(matches!(accepted, Accepted::New(_)), "{accepted:?}");
                }
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await??);
        }
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let at = |q: f64| {
            let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
            latencies.get(i).map(|d| d.as_secs_f64() * 1e3).unwrap_or(0.0)
        };
        println!(
            "replicas={replicas} concurrency={concurrency} count={} p50={:.3}ms p99={:.3}ms max={:.3}ms rate={:.0}/s",
            latencies.len(),
            at(0.5),
            at(0.99),
            at(1.0),
            latencies.len() as f64 / elapsed.as_secs_f64()
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })
}
