//! The gateway side, in the child process: `App` on a fresh data directory, and a producer
//! driven by the parent over stdin.

use std::io::Write as _;

use routegate::app::App;
use routegate::config::{Durability, Settings};
use routegate::events::{NewEvent, VEHICLE_POSITION};
use routegate::queue::Write;

pub async fn serve(durability: &str) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut s = Settings::default();
    s.http.bind = "127.0.0.1:0".into();
    s.storage.data_dir = dir.path().to_path_buf();
    s.kafka.brokers = vec!["127.0.0.1:9".into()];
    // Kafka is absent: let the circuit open once, during the warm-up, and stay open.
    s.kafka.breaker_failure_threshold = 1;
    s.kafka.breaker_cooldown_ms = 3_600_000;
    s.websocket.max_connections = 100_000;
    s.storage.durability = match durability {
        "interval" => Durability::Interval,
        _ => Durability::Strict,
    };
    let app = App::build(s).await?;
    let outbox = app.outbox();
    println!("addr {}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    // Commands from the parent, one per line (tokio's stdin needs a feature the crate lacks).
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            if line.map(|l| tx.send(l)).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["warmup"] => {
                append(&outbox, 0, 1, 1).await?;
                println!("ok");
            }
            ["produce", n, rate, batch, vehicles] => {
                let (n, rate, batch, vehicles): (u64, u64, u64, u64) =
                    (n.parse()?, rate.parse()?, batch.parse()?, vehicles.parse()?);
                let stamps = produce(&outbox, n, rate, batch, vehicles).await?;
                let stamps: Vec<String> = stamps
                    .iter()
                    .map(|(seq, created, durable)| format!("{seq},{created},{durable}"))
                    .collect();
                println!("produced {}", stamps.join(" "));
            }
            _ => break,
        }
        std::io::stdout().flush()?;
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// Append `batch` events (vehicles round-robin from `first`) in one write; returns each
/// one's seq and creation time.
async fn append(
    outbox: &routegate::queue::Outbox,
    first: u64,
    batch: u64,
    vehicles: u64,
) -> anyhow::Result<Vec<(u64, i64)>> {
    let events = (first..first + batch)
        .map(|n| {
            let vehicle = format!("v{}", n % vehicles);
            let payload = serde_json::json!({"vehicleId": vehicle, "n": n,
                "latitude": 40.7128, "longitude": -74.0060, "speedKmh": 42.5, "headingDeg": 90});
            NewEvent::now(
                VEHICLE_POSITION,
                "vehicle-position-events",
                &vehicle,
                None,
                &payload,
            )
        })
        .collect();
    let written = outbox
        .append(Write {
            events,
            records: vec![],
        })
        .await?;
    Ok(written.iter().map(|e| (e.seq, e.created_at_us)).collect())
}

/// `n` events at `rate`/s in writes of `batch`, round-robin over the vehicles; returns
/// `(seq, created, durable)` per event, durable being when its append returned (µs since
/// the epoch).
async fn produce(
    outbox: &routegate::queue::Outbox,
    n: u64,
    rate: u64,
    batch: u64,
    vehicles: u64,
) -> anyhow::Result<Vec<(u64, i64, i64)>> {
    let period = std::time::Duration::from_micros(1_000_000 * batch / rate);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut stamps = Vec::with_capacity(n as usize);
    for first in (0..n).step_by(batch as usize) {
        tick.tick().await;
        let written = append(outbox, first, batch.min(n - first), vehicles).await?;
        let durable = chrono::Utc::now().timestamp_micros();
        stamps.extend(
            written
                .into_iter()
                .map(|(seq, created)| (seq, created, durable)),
        );
    }
    Ok(stamps)
}
