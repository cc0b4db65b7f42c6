//! The load: the peer driver's GPS fixes (its `gps.lua`, ported byte for byte), POSTed over
//! keep-alive HTTP/1.1 connections in a closed loop, as `wrk -c<conns>` does.
//!
//! One request per vehicle is prepared up front (1,000 vehicles, N fixes each), so the loop
//! only clones a `Bytes`. Each connection is a hyper `client::conn::http1` connection of its
//! own (no pool, no URL parsing) that sends its next request as soon as the previous answer is
//! read, until the deadline; the request in flight at the deadline is finished and counted, so
//! "accepted" is every 2xx answer the server sent, and Kafka must hold at least that many events.
//! Latency is per request (send → whole answer read), like wrk's.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;

/// Distinct vehicles, as in `gps.lua`.
pub const VEHICLES: usize = 1000;
/// Longest wait for one answer (wrk's `--timeout 30s`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Which server the requests are shaped for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `POST /traffic/vehicles/{vehicleId}/positions`.
    Routegate,
    /// `POST /` of Fluent Bit's `http` input.
    FluentBit,
}

/// One GPS fix, exactly as `gps.lua` formats it (~330 bytes).
fn fix(vid: &str, v: usize, j: usize) -> String {
    format!(
        concat!(
            r#"{{"vehicleId":"{}","latitude":{:.6},"longitude":{:.6},"#,
            r#""timestamp":"2026-12-01T09:{:02}:{:02}.{:03}Z","speedKmh":{:.1},"headingDeg":{:.1},"#,
            r#""accuracyM":4.5,"altitudeM":12.3,"odometerKm":123456.7,"fuelPct":62.5,"engineOn":true,"#,
            r#""driverId":"driver-{:06}","source":"obd2-gps-v3","fixType":"3d","satellites":11}}"#
        ),
        vid,
        40.7 + v as f64 * 1e-4,
        -74.0 + j as f64 * 1e-4,
        v % 60,
        j % 60,
        (v * 7) % 1000,
        (20 + j) as f64,
        ((v * 13) % 360) as f64,
        v
    )
}

/// The prepared requests: (path, body) for vehicles 1..=1000, `per_request` fixes each (a bare
/// object for 1, an array otherwise).
pub fn requests(shape: Shape, per_request: usize) -> Vec<(String, Bytes)> {
    (1..=VEHICLES)
        .map(|v| {
            let vid = format!("{v:08x}-0000-4000-8000-{v:012x}");
            let fixes: Vec<String> = (1..=per_request).map(|j| fix(&vid, v, j)).collect();
            let body = match per_request {
                1 => fixes[0].clone(),
                _ => format!("[{}]", fixes.join(",")),
            };
            let path = match shape {
                Shape::Routegate => format!("/traffic/vehicles/{vid}/positions"),
                Shape::FluentBit => "/".to_string(),
            };
            (path, Bytes::from(body))
        })
        .collect()
}

/// What one load run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests answered 2xx.
    pub accepted: u64,
    /// Requests answered with another status.
    pub rejected: u64,
    /// Connect errors, timeouts and broken connections.
    pub errors: u64,
    /// From the first request to the last answer.
    pub elapsed: Duration,
    /// Per-request latency in microseconds, sorted.
    latencies_us: Vec<u32>,
}

impl Outcome {
    /// The `q` quantile of the request latency (nearest rank), in milliseconds.
    pub fn latency_ms(&self, q: f64) -> Option<f64> {
        let n = self.latencies_us.len();
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n.max(1));
        self.latencies_us.get(rank - 1).map(|&us| us as f64 / 1e3)
    }
}

/// Runs `conns` closed-loop connections against `addr` for `duration`.
pub async fn run(
    addr: SocketAddr,
    requests: Arc<Vec<(String, Bytes)>>,
    conns: usize,
    duration: Duration,
) -> Outcome {
    let started = Instant::now();
    let end = started + duration;
    // A JoinSet, so that an interrupted benchmark (its future dropped) aborts the connections.
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..conns {
        let requests = requests.clone();
        // Spread the connections over the vehicles, as wrk's threads start at random ones.
        let first = c * requests.len() / conns.max(1);
        tasks.spawn(connection(addr, requests, first, end));
    }
    let mut all = Outcome::default();
    while let Some(one) = tasks.join_next().await {
        let one = one.expect("a load connection panicked");
        all.accepted += one.accepted;
        all.rejected += one.rejected;
        all.errors += one.errors;
        all.latencies_us.extend(one.latencies_us);
    }
    all.elapsed = started.elapsed();
    all.latencies_us.sort_unstable();
    all
}

async fn connection(
    addr: SocketAddr,
    requests: Arc<Vec<(String, Bytes)>>,
    mut next: usize,
    end: Instant,
) -> Outcome {
    let mut out = Outcome {
        latencies_us: Vec::with_capacity(1 << 14),
        ..Outcome::default()
    };
    let mut conn: Option<SendRequest<Full>> = None;
    while Instant::now() < end {
        let sender = match &mut conn {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => conn.insert(s),
                Err(e) => {
                    out.errors += 1;
                    complain(&format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (path, body) = &requests[next];
        next = (next + 1) % requests.len();
        let t0 = Instant::now();
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange(sender, path, body)).await {
            Ok(Ok(status)) => {
                let us = t0.elapsed().as_micros().min(u32::MAX as u128) as u32;
                out.latencies_us.push(us);
                if status.is_success() {
                    out.accepted += 1;
                } else {
                    out.rejected += 1;
                    complain(&format!("answer {status}"));
                }
            }
            Ok(Err(e)) => {
                out.errors += 1;
                complain(&format!("request: {e}"));
                conn = None;
            }
            Err(_) => {
                out.errors += 1;
                complain("request: no answer in 30 s");
                conn = None;
            }
        }
    }
    out
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Sends one request and reads the whole answer; returns its status.
async fn exchange(
    sender: &mut SendRequest<Full>,
    path: &str,
    body: &Bytes,
) -> anyhow::Result<StatusCode> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, "127.0.0.1")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Full(Some(body.clone())))?;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let mut body = resp.into_body();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        frame?;
    }
    Ok(status)
}

/// Prints the first few failures of a run to stderr (the counts are in the report).
fn complain(what: &str) {
    static SHOWN: AtomicU64 = AtomicU64::new(0);
    if SHOWN.fetch_add(1, Ordering::Relaxed) < 5 {
        eprintln!("  load: {what}");
    }
}

/// A request body of one chunk (http-body-util's `Full`, which the crate does not depend on).
#[derive(Debug)]
struct Full(Option<Bytes>);

impl Body for Full {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|b| Ok(Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |b| b.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fix_is_formatted_like_gps_lua() {
        let (path, body) = &requests(Shape::Routegate, 1)[0];
        assert_eq!(
            path,
            "/traffic/vehicles/00000001-0000-4000-8000-000000000001/positions"
        );
        let expected = r#"{"vehicleId":"00000001-0000-4000-8000-000000000001","latitude":40.700100,"longitude":-73.999900,"timestamp":"2026-12-01T09:01:01.007Z","speedKmh":21.0,"headingDeg":13.0,"accuracyM":4.5,"altitudeM":12.3,"odometerKm":123456.7,"fuelPct":62.5,"engineOn":true,"driverId":"driver-000001","source":"obd2-gps-v3","fixType":"3d","satellites":11}"#;
        assert_eq!(std::str::from_utf8(body).unwrap(), expected);
    }

    #[test]
    fn a_batch_is_an_array_and_fluent_bit_gets_the_root_path() {
        let reqs = requests(Shape::FluentBit, 10);
        assert_eq!(reqs.len(), VEHICLES);
        let v: serde_json::Value = serde_json::from_slice(&reqs[999].1).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 10);
        assert_eq!(reqs[999].0, "/");
    }
}
