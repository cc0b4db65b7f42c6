//! A dashboard client in the terminal: follows the live WebSocket and prints one line per update.
//!
//! ```sh
//! cargo run --example ws_follow                                   # every event
//! cargo run --example ws_follow -- --vehicle 53ac84a9-ddcc-4a1c-a153-e9738c026e03
//! cargo run --example ws_follow -- --url ws://depot-7:4000 --route "$ROUTE" --token "$TOKEN"
//! ```
//!
//! It connects to `GET /traffic/routes/ws` with the `routegate.v1` subprotocol (and
//! `Authorization: Bearer` when given a token), remembers the `seq` of every message it has
//! printed, and after a drop reconnects with `since=<seq>` (backoff 0.5 s doubling to 10 s):
//! the gateway replays what was missed, so no event is lost or printed twice, across gateway
//! restarts too. `reset` (the missed range is no longer in the gateway's log) is printed as such:
//! a real client reloads its state over REST there. `lagged` (this client fell behind) is
//! followed by a close, and the client resumes at once. Ctrl-C closes the connection cleanly.

use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};

#[derive(Debug, Parser)]
#[command(about = "Follow routegate's live updates, resuming after a disconnect")]
struct Args {
    /// The gateway (ws://, wss://, or http:// which is turned into ws://).
    #[arg(long, default_value = "ws://127.0.0.1:4000")]
    url: String,
    /// Only this vehicle's events.
    #[arg(long)]
    vehicle: Option<String>,
    /// Only this route's events.
    #[arg(long)]
    route: Option<String>,
    /// API token, when the gateway requires one.
    #[arg(long, env = "ROUTEGATE_TOKEN")]
    token: Option<String>,
    /// Start by replaying the events after this sequence number.
    #[arg(long)]
    since: Option<u64>,
    /// Print each message's JSON as received.
    #[arg(long)]
    raw: bool,
}

const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How a connection ended.
enum End {
    /// Closed or failed: reconnect after the backoff.
    Dropped,
    /// `lagged`: reconnect at once.
    Lagged,
    /// Ctrl-C.
    Stop,
    /// The gateway refused the upgrade for good (400, 401, 403, 404).
    Refused,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut since = args.since;
    let mut backoff = BACKOFF_MIN;
    loop {
        let (end, greeted) = follow(&args, &mut since).await;
        match end {
            End::Stop => return std::process::ExitCode::SUCCESS,
            End::Refused => return std::process::ExitCode::FAILURE,
            End::Lagged => continue,
            End::Dropped => {}
        }
        if greeted {
            backoff = BACKOFF_MIN;
        }
        let wait = jittered(backoff);
        eprintln!(
            "-- reconnecting in {:.1} s with since={}",
            wait.as_secs_f64(),
            since.map_or("-".into(), |s| s.to_string())
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = tokio::signal::ctrl_c() => return std::process::ExitCode::SUCCESS,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One connection: print until it ends. `since` follows every message handled. Returns how it
/// ended and whether the gateway said hello (then the backoff starts over).
async fn follow(args: &Args, since: &mut Option<u64>) -> (End, bool) {
    let url = match ws_url(args, *since) {
        Ok(u) => u,
        Err(e) => {
            eprintln!("-- {e}");
            return (End::Refused, false);
        }
    };
    let mut req = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("-- bad url {url}: {e}");
            return (End::Refused, false);
        }
    };
    let h = req.headers_mut();
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("routegate.v1"),
    );
    if let Some(t) = &args.token {
        match HeaderValue::from_str(&format!("Bearer {t}")) {
            Ok(v) => drop(h.insert("authorization", v)),
            Err(_) => {
                eprintln!("-- the token is not a valid header value");
                return (End::Refused, false);
            }
        }
    }
    let mut ws = match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => ws,
        Err(tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            eprintln!("-- upgrade refused: {} {body}", resp.status());
            let fatal = matches!(resp.status().as_u16(), 400 | 401 | 403 | 404);
            return (if fatal { End::Refused } else { End::Dropped }, false);
        }
        Err(e) => {
            eprintln!("-- cannot connect to {url}: {e}");
            return (End::Dropped, false);
        }
    };
    let mut greeted = false;
    loop {
        let msg = tokio::select! {
            m = ws.next() => m,
            _ = tokio::signal::ctrl_c() => {
                let _ = ws.close(None).await;
                return (End::Stop, greeted);
            }
        };
        match msg {
            Some(Ok(Message::Text(text))) => {
                let Ok(m) = serde_json::from_str::<Value>(&text) else {
                    eprintln!("-- not JSON: {text}");
                    continue;
                };
                if args.raw {
                    println!("{text}");
                } else {
                    println!("{}", line(&m));
                }
                let kind = m["type"].as_str().unwrap_or_default();
                greeted |= kind == "hello";
                if let Some(seq) = m["seq"].as_u64() {
                    *since = Some(seq);
                }
                if kind == "lagged" {
                    let _ = ws.close(None).await;
                    return (End::Lagged, greeted);
                }
            }
            Some(Ok(Message::Close(frame))) => {
                match frame {
                    Some(f) => eprintln!("-- closed by the gateway: {} {}", f.code, f.reason),
                    None => eprintln!("-- closed by the gateway"),
                }
                return (End::Dropped, greeted);
            }
            Some(Ok(_)) => {} // pings are answered by tungstenite
            Some(Err(e)) => {
                eprintln!("-- connection lost: {e}");
                return (End::Dropped, greeted);
            }
            None => return (End::Dropped, greeted),
        }
    }
}

fn ws_url(args: &Args, since: Option<u64>) -> Result<reqwest::Url, String> {
    let base = args.url.trim_end_matches('/');
    let base = match base.split_once("://") {
        Some(("http", rest)) => format!("ws://{rest}"),
        Some(("https", rest)) => format!("wss://{rest}"),
        Some(("ws" | "wss", _)) => base.to_string(),
        _ => return Err(format!("--url {base}: expected ws://host:port")),
    };
    let mut url = reqwest::Url::parse(&format!("{base}/traffic/routes/ws"))
        .map_err(|e| format!("--url {base}: {e}"))?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(v) = &args.vehicle {
            q.append_pair("vehicleId", v);
        }
        if let Some(r) = &args.route {
            q.append_pair("routeId", r);
        }
        if let Some(s) = since {
            q.append_pair("since", &s.to_string());
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    Ok(url)
}

/// Between 80% and 120% of `d`, so that many clients do not reconnect in step.
fn jittered(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d.mul_f64(0.8 + 0.4 * (f64::from(nanos % 1000) / 1000.0))
}

/// One line for a message.
fn line(m: &Value) -> String {
    let kind = m["type"].as_str().unwrap_or("?");
    let seq = m["seq"].as_u64().map_or("-".into(), |s| s.to_string());
    let at = m["time"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or_else(|| "--:--:--".into(), |t| t.format("%H:%M:%S").to_string());
    let d = &m["data"];
    let what = match kind {
        "hello" => format!(
            "connected: head {}, Kafka circuit {} ({})",
            d["head"],
            text(&d["kafka"]["circuit"]),
            reachable(&d["kafka"])
        ),
        "route.optimized" => format!(
            "route {} of {} planned: {} stops, {:.1} km, {:.0} min",
            text(&m["routeId"]),
            text(&m["vehicleId"]),
            d["optimizedStops"].as_array().map_or(0, Vec::len),
            d["totalDistanceMeters"].as_f64().unwrap_or(0.0) / 1000.0,
            d["totalDurationSeconds"].as_f64().unwrap_or(0.0) / 60.0
        ),
        "route.updated" => route_updated(m, d),
        "vehicle.position" => position(m, d),
        "kafka.status" => format!("Kafka circuit {} ({})", text(&d["circuit"]), reachable(d)),
        "reset" => format!(
            "RESET: events before {} are gone ({}); reload state over REST",
            d["oldestAvailable"],
            text(&d["reason"])
        ),
        "lagged" => format!(
            "LAGGED: fell behind ({}); resuming from {seq}",
            text(&d["reason"])
        ),
        _ => m.to_string(),
    };
    format!("{at} {seq:>8} {kind:<16} {what}")
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn reachable(v: &Value) -> &'static str {
    if v["reachable"].as_bool() == Some(true) {
        "reachable"
    } else {
        "unreachable"
    }
}

fn route_updated(m: &Value, d: &Value) -> String {
    let c = &d["change"];
    let change = match c["type"].as_str() {
        Some("stop_status") => format!(
            "stop {} {} -> {}",
            text(&c["stopId"]),
            text(&c["from"]),
            text(&c["to"])
        ),
        Some("reoptimized") => format!("re-planned, {} stops left", c["remainingStops"]),
        _ => "updated".into(),
    };
    format!(
        "route {}: {change}; route {}",
        text(&m["routeId"]),
        text(&d["status"])
    )
}

fn position(m: &Value, d: &Value) -> String {
    let mut s = format!(
        "vehicle {} at {:.5}, {:.5}",
        text(&m["vehicleId"]),
        d["latitude"].as_f64().unwrap_or(f64::NAN),
        d["longitude"].as_f64().unwrap_or(f64::NAN)
    );
    if let Some(v) = d["speedKmh"].as_f64() {
        s += &format!(" {v:.0} km/h");
    }
    if let Some(next) = d["nextStopId"].as_str() {
        s += &format!(", next {next}");
        if let Some(eta) = d["nextStopEta"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            s += &format!(" at {}", eta.format("%H:%M"));
        }
    }
    if let Some(delay) = d["delaySeconds"].as_f64() {
        s += &format!(" ({:+.0} min)", delay / 60.0);
    }
    s
}
