//! One client connection: connect, wait for `hello`, then count and timestamp every event.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

/// What one client saw.
#[derive(Debug, Default)]
pub struct Seen {
    pub vehicle: Option<usize>,
    pub events: u64,
    pub duplicates_or_disorder: u64,
    /// `(seq, receive time in µs since the epoch)` per event.
    pub received: Vec<(u64, i64)>,
    pub lagged: bool,
    pub closed_early: bool,
}

#[derive(Deserialize)]
struct Msg<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    seq: u64,
}

pub async fn client(
    url: String,
    vehicle: Option<usize>,
    gate: Arc<Semaphore>,
    ready: Arc<AtomicUsize>,
    stop: CancellationToken,
) -> Seen {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let url = match vehicle {
        Some(v) => format!("{url}?vehicleId=v{v}"),
        None => url,
    };
    let mut ws = loop {
        let permit = gate.acquire().await.expect("gate");
        match tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true).await {
            Ok((ws, _)) => break ws,
            Err(e) => {
                drop(permit);
                eprintln!("connect failed ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let mut seen = Seen {
        vehicle,
        ..Seen::default()
    };
    let mut last_seq = 0;
    let mut greeted = false;
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => break,
            msg = ws.next() => msg,
        };
        let Some(Ok(Message::Text(text))) = msg else {
            match msg {
                Some(Ok(_)) => continue,
                _ => {
                    seen.closed_early = true;
                    break;
                }
            }
        };
        let now_us = chrono::Utc::now().timestamp_micros();
        let Ok(m) = serde_json::from_str::<Msg>(&text) else {
            continue;
        };
        match m.kind {
            "hello" => {
                greeted = true;
                last_seq = m.seq;
                ready.fetch_add(1, Ordering::SeqCst);
            }
            "vehicle.position" if greeted => {
                if m.seq <= last_seq {
                    seen.duplicates_or_disorder += 1;
                }
                last_seq = m.seq;
                seen.events += 1;
                seen.received.push((m.seq, now_us));
            }
            "lagged" => seen.lagged = true,
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    seen
}
