//! A GPS-fix writer for crash tests: posts batches of fixes until the gateway stops answering
//! and records every fix whose request got 202.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::kafka::ConsumedRecord;

/// Fixes in one request.
pub const FIXES_PER_REQUEST: usize = 5;

/// `(vehicle id, fix timestamp in ms)`: unique per fix, so Kafka records can be matched to the
/// requests that were acknowledged.
pub type Fix = (String, i64);

/// POST batches for `vehicle` to `base` until a request fails to get an answer (the gateway
/// died); fix `n` is stamped `first_ms + n`. Any answer other than 202 fails the test.
pub async fn post_until_gone(
    base: String,
    vehicle: String,
    first_ms: i64,
    acked: Arc<Mutex<Vec<Fix>>>,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    for i in 0.. {
        let stamps: Vec<i64> = (0..FIXES_PER_REQUEST)
            .map(|j| first_ms + (i * FIXES_PER_REQUEST + j) as i64)
            .collect();
        let body: Vec<_> = stamps
            .iter()
            .enumerate()
            .map(|(j, ms)| {
                let ts = DateTime::<Utc>::from_timestamp_millis(*ms).unwrap();
                serde_json::json!({
                    "latitude": 40.7 + (j as f64) * 1e-4,
                    "longitude": -74.0,
                    "timestamp": ts.to_rfc3339(),
                })
            })
            .collect();
        let sent = client
            .post(format!("{base}/traffic/vehicles/{vehicle}/positions"))
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status() == 202 => acked
                .lock()
                .unwrap()
                .extend(stamps.iter().map(|ms| (vehicle.clone(), *ms))),
            Ok(r) => panic!("{vehicle}: unexpected answer {}", r.status()),
            Err(_) => return,
        }
    }
}

/// How often each fix appears among `vehicle.position` records read from Kafka.
pub fn count_fixes(records: &[ConsumedRecord]) -> HashMap<Fix, usize> {
    let mut seen: HashMap<Fix, usize> = HashMap::new();
    for r in records {
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        let ts = DateTime::parse_from_rfc3339(v["timestamp"].as_str().unwrap()).unwrap();
        let fix = (
            v["vehicleId"].as_str().unwrap().to_string(),
            ts.timestamp_millis(),
        );
        *seen.entry(fix).or_default() += 1;
    }
    seen
}
