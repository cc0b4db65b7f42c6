//! `GET /traffic/routes/ws` over real sockets: filters, resume across a restart, reset, lag,
//! liveness (and a client that floods pings without reading), auth, the connection limit and the close code at shutdown.
//!
//! Events are appended straight to the gateway's outbox (what the REST handlers do).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use routegate::events::{Envelope, NewEvent, VEHICLE_POSITION};
use routegate::queue::Write;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::harness::gateway::TestGateway;

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Generous: "eventually", on a shared and noisy machine.
const WAIT: Duration = Duration::from_secs(30);

/// Held by the tests that move tens of MiB through the gateway, so that the one measuring the
/// process's RSS does not count another's.
static MEMORY_HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn ws_path(query: &str) -> String {
    format!("/traffic/routes/ws{query}")
}

async fn connect(gw: &TestGateway, query: &str) -> Client {
    let (client, _) = tokio_tungstenite::connect_async(gw.ws_url(&ws_path(query)))
        .await
        .expect("websocket upgrade");
    client
}

/// The next message that is not a ping or pong: a JSON text, or `None` with the close frame.
async fn next(c: &mut Client) -> Result<Value, Option<(CloseCode, String)>> {
    loop {
        let msg = tokio::time::timeout(WAIT, c.next())
            .await
            .expect("a message within the wait");
        match msg {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).expect("JSON text")),
            Some(Ok(Message::Close(f))) => {
                return Err(f.map(|f| (f.code, f.reason.to_string())));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("websocket error: {e}"),
            None => return Err(None),
        }
    }
}

async fn next_json(c: &mut Client) -> Value {
    next(c).await.expect("a JSON message")
}

/// The next event (skipping `kafka.status` notices).
async fn next_event(c: &mut Client) -> Value {
    loop {
        let v = next_json(c).await;
        if v["type"] != "kafka.status" {
            return v;
        }
    }
}

async fn hello(c: &mut Client) -> Value {
    let v = next_json(c).await;
    assert_eq!(v["type"], "hello", "{v}");
    v
}

fn position(vehicle: &str, route: Option<&str>, n: u64) -> NewEvent {
    let payload = serde_json::json!({"vehicleId": vehicle, "routeId": route, "n": n});
    NewEvent::now(
        VEHICLE_POSITION,
        "vehicle-position-events",
        vehicle,
        route,
        &payload,
    )
}

async fn append(gw: &TestGateway, events: Vec<NewEvent>) -> Vec<Arc<Envelope>> {
    gw.outbox()
        .append(Write {
            events,
            records: vec![],
        })
        .await
        .expect("append")
}

fn seqs(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn clients_receive_only_the_events_their_vehicle_or_route_filter_selects() {
    let gw = TestGateway::spawn(|_| {}).await;
    let mut all = connect(&gw, "").await;
    let mut v1 = connect(&gw, "?vehicleId=v1").await;
    let mut r1 = connect(&gw, "?routeId=r1&vehicleId=").await;
    for c in [&mut all, &mut v1, &mut r1] {
        hello(c).await;
    }
    let batches = [
        position("v1", Some("r1"), 1),
        position("v2", Some("r1"), 2),
        position("v1", Some("r2"), 3),
        position("v2", None, 4),
        position("v1", Some("r1"), 5),
    ];
    let mut logged = Vec::new();
    for e in batches {
        logged.extend(append(&gw, vec![e]).await);
    }
    let mut received = Vec::new();
    for (c, n) in [(&mut all, 5), (&mut v1, 3), (&mut r1, 3)] {
        let mut events = Vec::new();
        for _ in 0..n {
            events.push(next_event(c).await);
        }
        received.push(events);
    }
    let s = |i: usize| logged[i].seq;
    assert_eq!(seqs(&received[0]), [s(0), s(1), s(2), s(3), s(4)]);
    assert_eq!(seqs(&received[1]), [s(0), s(2), s(4)]);
    assert_eq!(seqs(&received[2]), [s(0), s(1), s(4)]);

    let first = &received[0][0];
    assert_eq!(first["type"], "vehicle.position");
    assert_eq!(first["eventId"], logged[0].id.to_string());
    assert_eq!(first["vehicleId"], "v1");
    assert_eq!(first["routeId"], "r1");
    assert_eq!(first["data"], logged[0].payload_json());
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert!(received[0][3].get("routeId").is_none());
    gw.stop().await;
}

#[tokio::test]
async fn a_client_resuming_with_since_after_a_restart_gets_every_missed_event_once() {
    let gw = TestGateway::spawn(|_| {}).await;
    let mut client = connect(&gw, "?vehicleId=v1").await;
    hello(&mut client).await;
    let mut mixed = Vec::new();
    for n in 0..4 {
        mixed.push(position("v1", None, n));
        mixed.push(position("v2", None, n));
    }
    append(&gw, mixed).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(next_event(&mut client).await);
    }
    let since = seen.last().unwrap()["seq"].as_u64().unwrap();
    drop(client);

    let missed: Vec<_> = (4..10).map(|n| position("v1", None, n)).collect();
    append(&gw, missed).await;
    let gw = gw.restart().await;
    let expected_total = 10 + 50;
    let writer = {
        let outbox = gw.outbox().clone();
        tokio::spawn(async move {
            for n in 10..60 {
                let events = vec![position("v2", None, n), position("v1", None, n)];
                let w = Write {
                    events,
                    records: vec![],
                };
                outbox.append(w).await.expect("append");
            }
        })
    };
    let mut client = connect(&gw, &format!("?vehicleId=v1&since={since}")).await;
    let hi = hello(&mut client).await;
    assert_eq!(hi["seq"], since);
    while seen.len() < expected_total {
        let e = next_event(&mut client).await;
        assert_eq!(e["vehicleId"], "v1", "{e}");
        seen.push(e);
    }
    writer.await.unwrap();
    let ns: Vec<u64> = seen
        .iter()
        .map(|e| e["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..60).collect::<Vec<_>>(), "no gap, no duplicate");
    let s = seqs(&seen);
    assert!(s.windows(2).all(|w| w[0] < w[1]), "in seq order: {s:?}");
    gw.stop().await;
}

#[tokio::test]
async fn since_older_than_retention_gets_a_reset_and_then_live_events() {
    let gw = TestGateway::spawn(|s| {
        s.storage.log_retention_ms = 0;
        s.storage.log_retention_bytes = 0;
    })
    .await;
    append(&gw, (0..5).map(|n| position("v1", None, n)).collect()).await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    gw.outbox().prune().await.expect("prune");
    let mut client = connect(&gw, "?since=1").await;
    hello(&mut client).await;
    let reset = next_json(&mut client).await;
    assert_eq!(reset["type"], "reset", "{reset}");
    assert!(reset["data"]["oldestAvailable"].as_u64().unwrap() > 2);
    let resume = reset["seq"].as_u64().unwrap();
    let live = append(&gw, vec![position("v1", None, 99)]).await;
    let e = next_event(&mut client).await;
    assert_eq!(e["seq"], live[0].seq);
    assert!(live[0].seq > resume);

    let mut ahead = connect(&gw, "?since=1000000").await;
    hello(&mut ahead).await;
    let reset = next_json(&mut ahead).await;
    assert_eq!(reset["type"], "reset", "a since from another log: {reset}");
    gw.stop().await;
}

/// A client socket with a small receive buffer, so that a client that stops reading fills the
/// path to it after a few megabytes instead of tens.
async fn connect_small_window(gw: &TestGateway, query: &str) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let tcp = socket.connect(gw.addr).await.unwrap();
    let request = gw.ws_url(&ws_path(query)).into_client_request().unwrap();
    let (client, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(tcp))
        .await
        .expect("websocket upgrade");
    client
}

/// Events of [`burst_past_a_slow_client`], each with a 64 KiB blob.
const BURST: u64 = 240;

/// Connect a client that does not read yet and one that does, append [`BURST`] large events and
/// check that the reading one got all of them in order. Returns the slow client and the `seq`
/// of its `hello`.
async fn burst_past_a_slow_client(gw: &TestGateway) -> (Client, u64) {
    let mut slow = connect_small_window(gw, "").await;
    let start = hello(&mut slow).await["seq"].as_u64().unwrap();
    let mut steady = connect(gw, "").await;
    hello(&mut steady).await;
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        while (got.len() as u64) < BURST {
            got.push(next_event(&mut steady).await["data"]["n"].as_u64().unwrap());
        }
        got
    });
    let blob = "x".repeat(64 * 1024);
    for batch in 0..BURST / 4 {
        let events = (0..4)
            .map(|i| {
                let payload = serde_json::json!({"n": batch * 4 + i, "blob": blob});
                NewEvent::now(VEHICLE_POSITION, "t", "v1", None, &payload)
            })
            .collect();
        let w = Write {
            events,
            records: vec![],
        };
        gw.outbox()
            .append(w)
            .await
            .expect("ingest is never held up");
    }
    let steady_got = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(steady_got, (0..BURST).collect::<Vec<_>>());
    (slow, start)
}

/// `routegate_ws_catch_ups_total` on `/metrics` (0 before the first).
async fn catch_ups(gw: &TestGateway) -> u64 {
    let text = gw
        .http
        .get(gw.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix("routegate_ws_catch_ups_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_client_that_stops_reading_is_caught_up_on_its_connection_while_others_get_everything() {
    let _heavy = MEMORY_HEAVY.lock().await;
    let gw = TestGateway::spawn(|s| s.websocket.buffer_messages = 32).await;
    let before = catch_ups(&gw).await;
    let (mut slow, _) = burst_past_a_slow_client(&gw).await;
    let mut ns = Vec::new();
    while (ns.len() as u64) < BURST {
        let v = tokio::time::timeout(WAIT, next_json(&mut slow))
            .await
            .expect("the slow client gets the rest on its connection");
        let kind = v["type"].as_str().unwrap_or_default().to_string();
        assert_eq!(kind, VEHICLE_POSITION, "no lagged, no second hello");
        ns.push(v["data"]["n"].as_u64().unwrap());
    }
    assert_eq!(ns, (0..BURST).collect::<Vec<_>>(), "no gap, no duplicate");
    assert!(
        catch_ups(&gw).await > before,
        "the slow client fell behind and was caught up"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_client_too_far_behind_is_told_lagged_and_closed_while_others_get_everything() {
    let _heavy = MEMORY_HEAVY.lock().await;
    let gw = TestGateway::spawn(|s| {
        s.websocket.buffer_messages = 32;
        s.websocket.max_lag_events = 1;
    })
    .await;
    let (mut slow, start) = burst_past_a_slow_client(&gw).await;
    let mut slow_got = Vec::new();
    let lagged = loop {
        let v = next_json(&mut slow).await;
        if v["type"] == "lagged" {
            break v;
        }
        slow_got.push(v);
    };
    let last = slow_got
        .last()
        .map_or(start, |v| v["seq"].as_u64().unwrap());
    assert_eq!(lagged["seq"], last, "lagged names the last event delivered");
    assert!((slow_got.len() as u64) < BURST, "the slow client lagged");
    let close = next(&mut slow).await.expect_err("closed after lagged");
    assert_eq!(close.map(|c| c.0), Some(CloseCode::Library(4000)));

    let since = lagged["seq"].as_u64().unwrap();
    let mut resumed = connect(&gw, &format!("?since={since}")).await;
    hello(&mut resumed).await;
    let mut rest = Vec::new();
    while (slow_got.len() + rest.len()) < BURST as usize {
        rest.push(next_event(&mut resumed).await);
    }
    let ns: Vec<u64> = slow_got
        .iter()
        .chain(&rest)
        .map(|v| v["data"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        ns,
        (0..BURST).collect::<Vec<_>>(),
        "lagged then resumed: no gap, no duplicate"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_burst_larger_than_the_buffer_reaches_every_reading_client_without_lagging() {
    let gw = TestGateway::spawn(|s| s.websocket.buffer_messages = 4).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut c = connect(&gw, "").await;
        hello(&mut c).await;
        clients.push(c);
    }
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let mut ns = Vec::new();
                while ns.len() < 300 {
                    ns.push(next_event(&mut c).await["data"]["n"].as_u64().unwrap());
                }
                ns
            })
        })
        .collect();
    append(&gw, (0..300).map(|n| position("v1", None, n)).collect()).await;
    for r in readers {
        let ns = tokio::time::timeout(WAIT, r).await.unwrap().unwrap();
        assert_eq!(
            ns,
            (0..300).collect::<Vec<_>>(),
            "one batch of 300, buffer of 4"
        );
    }
    gw.stop().await;
}

/// A WebSocket peer that completes the handshake and then never answers anything.
async fn silent_peer(gw: &TestGateway) -> TcpStream {
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        ws_path(""),
        gw.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(tcp.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// Read raw server frames (unmasked) until a close frame; returns its code.
async fn close_code_of(tcp: &mut TcpStream) -> Option<u16> {
    loop {
        let b0 = tcp.read_u8().await.ok()?;
        let len = match tcp.read_u8().await.ok()? & 0x7f {
            126 => u64::from(tcp.read_u16().await.ok()?),
            127 => tcp.read_u64().await.ok()?,
            n => u64::from(n),
        };
        let mut payload = vec![0; len as usize];
        tcp.read_exact(&mut payload).await.ok()?;
        if b0 & 0x0f == 0x8 {
            return payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
        }
    }
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_is_closed() {
    let gw = TestGateway::spawn(|s| s.websocket.ping_interval_ms = 100).await;
    let mut peer = silent_peer(&gw).await;
    let code = tokio::time::timeout(WAIT, close_code_of(&mut peer))
        .await
        .expect("closed within the wait");
    assert_eq!(code, Some(4001));
    gw.stop().await;
}

/// This process's resident set (the gateway runs in it), from `/proc/self/status`.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in kB");
    kib * 1024
}

#[tokio::test]
async fn a_client_that_floods_pings_and_never_reads_is_closed_and_costs_bounded_memory() {
    let _heavy = MEMORY_HEAVY.lock().await;
    // The whole test process is measured and other tests run beside this one, so the bound is
    // generous: without the write-buffer cap the flood grew RSS by 64 MiB in under a second and
    // without limit (about 190 MB/s), far past this within CLOSED_WITHIN.
    const GROWTH: u64 = 256 * 1024 * 1024;
    const CLOSED_WITHIN: Duration = Duration::from_secs(10);
    let gw = TestGateway::spawn(|s| s.websocket.ping_interval_ms = 500).await;
    let before = rss_bytes();
    let peer = silent_peer(&gw).await;
    // Masked ping frames with a 125-byte payload (the largest a control frame may carry), a zero
    // mask: each one makes tungstenite queue a 127-byte pong.
    let mut frame = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
    frame.extend_from_slice(&[b'p'; 125]);
    let flood: Vec<u8> = frame.repeat(512);

    let health = {
        let (http, url) = (gw.http.clone(), gw.url("/health/live"));
        tokio::spawn(async move {
            loop {
                let res = tokio::time::timeout(Duration::from_secs(2), http.get(&url).send()).await;
                let status = res.ok().and_then(|r| r.ok()).map(|r| r.status().as_u16());
                assert_eq!(status, Some(200), "/health/live answers during the flood");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let started = std::time::Instant::now();
    // Writes until the gateway drops the connection (a write fails); never reads.
    let flooder = tokio::spawn(async move {
        let mut peer = peer;
        while peer.write_all(&flood).await.is_ok() {}
    });
    let mut peak = 0;
    let closed = loop {
        peak = peak.max(rss_bytes().saturating_sub(before));
        if flooder.is_finished() {
            break true;
        }
        if peak >= GROWTH || started.elapsed() > CLOSED_WITHIN {
            flooder.abort();
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = started.elapsed();
    assert!(!health.is_finished(), "the health checker stopped early");
    health.abort();
    assert!(
        peak < GROWTH,
        "gateway RSS grew by {} MiB within {took:?} of the flood",
        peak >> 20
    );
    assert!(
        closed,
        "the gateway did not close the connection within {CLOSED_WITHIN:?}"
    );
    eprintln!(
        "ping flood: closed after {took:?}, RSS peak growth {} KiB",
        peak >> 10
    );
    let (status, _) = gw.get_json("/health/live").await;
    assert_eq!(status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn with_tokens_the_upgrade_needs_one_as_a_header_or_a_subprotocol() {
    const TOKEN: &str = "ws-test-token-0123456789";
    let gw = TestGateway::spawn(|s| s.http.api_tokens = vec![TOKEN.into()]).await;
    let url = gw.ws_url(&ws_path(""));
    match tokio_tungstenite::connect_async(url.clone()).await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 401);
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"], "unauthorized");
        }
        other => panic!("expected 401, got {other:?}"),
    }

    let mut req = url.clone().into_client_request().unwrap();
    let offer = format!("routegate.v1, bearer.{TOKEN}");
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&offer).unwrap(),
    );
    let (mut client, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("accepted");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "routegate.v1");
    hello(&mut client).await;

    let mut req = url.into_client_request().unwrap();
    let bearer = format!("Bearer {TOKEN}");
    req.headers_mut()
        .insert("authorization", HeaderValue::from_str(&bearer).unwrap());
    let (mut client, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("accepted");
    hello(&mut client).await;
    gw.stop().await;
}

#[tokio::test]
async fn over_the_connection_limit_the_upgrade_is_refused_with_503() {
    let gw = TestGateway::spawn(|s| s.websocket.max_connections = 2).await;
    let mut a = connect(&gw, "").await;
    let mut b = connect(&gw, "").await;
    hello(&mut a).await;
    hello(&mut b).await;
    match tokio_tungstenite::connect_async(gw.ws_url(&ws_path(""))).await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), 503);
            assert!(resp.headers().contains_key("retry-after"));
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"], "unavailable");
        }
        other => panic!("expected 503, got {other:?}"),
    }
    a.close(None).await.unwrap();
    while next(&mut a).await.is_ok() {}
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut c = loop {
        match tokio_tungstenite::connect_async(gw.ws_url(&ws_path(""))).await {
            Ok((c, _)) => break c,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the freed slot was never reusable: {e}"),
        }
    };
    hello(&mut c).await;
    gw.stop().await;
}

#[tokio::test]
async fn at_shutdown_every_client_gets_close_code_1001() {
    let gw = TestGateway::spawn(|_| {}).await;
    let mut clients = Vec::new();
    for q in ["", "?vehicleId=v1", "?routeId=r1&since=0"] {
        let mut c = connect(&gw, q).await;
        hello(&mut c).await;
        clients.push(c);
    }
    let stopping = tokio::spawn(gw.stop());
    for c in &mut clients {
        let close = loop {
            match next(c).await {
                Ok(_) => continue,
                Err(close) => break close,
            }
        };
        assert_eq!(close.map(|c| c.0), Some(CloseCode::Away));
        // Reading on sends the client's half of the closing handshake.
        while tokio::time::timeout(WAIT, c.next())
            .await
            .unwrap()
            .is_some()
        {}
    }
    tokio::time::timeout(WAIT, stopping).await.unwrap().unwrap();
}

#[tokio::test]
async fn kafka_connectivity_changes_reach_every_client_as_kafka_status() {
    let gw = TestGateway::spawn(|s| s.kafka.breaker_failure_threshold = 1).await;
    let mut client = connect(&gw, "?vehicleId=nobody").await;
    let hi = hello(&mut client).await;
    assert_eq!(hi["data"]["protocol"], "routegate.v1");
    append(&gw, vec![position("v1", None, 0)]).await;
    let status = loop {
        let v = next_json(&mut client).await;
        if v["type"] == "kafka.status" && v["data"]["circuit"] == "open" {
            break v;
        }
    };
    assert_eq!(status["data"]["reachable"], false);
    assert!(status["seq"].is_u64());
    gw.stop().await;
}
