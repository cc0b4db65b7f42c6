//! Hostile and careless clients at the socket: connections that never finish, more connections
//! than the gateway serves, request targets the routes cannot serve, random request lines. The
//! tests talk raw TCP because the point is what the server does with bytes a client library
//! would never send.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::gateway::{ChildGateway, Dir, TestGateway};

/// Write `bytes`, then read until the server closes or `within` passes.
async fn exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(within, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the server has closed `s`: a read ends (EOF or reset) within `within`. Whatever the
/// server sent first is returned too.
async fn closed_within(s: &mut TcpStream, within: Duration) -> (bool, String) {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (true, String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (false, String::from_utf8_lossy(&out).into_owned()),
        }
    }
}

fn status_of(response: &str) -> Option<u16> {
    response.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test]
async fn idle_half_sent_and_stalled_connections_are_closed_while_health_answers() {
    routegate::http::conn::raise_fd_limit();
    let gw = TestGateway::spawn(|s| {
        s.http.header_timeout_ms = 1_000;
        s.http.body_timeout_ms = 1_000;
    })
    .await;
    let started = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..1_000 {
        idle.push(TcpStream::connect(gw.addr).await.expect("connect"));
    }
    let mut half_head = TcpStream::connect(gw.addr).await.unwrap();
    half_head
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: gw\r\nX-Slow: ")
        .await
        .unwrap();
    let mut stalled_body = TcpStream::connect(gw.addr).await.unwrap();
    stalled_body
        .write_all(
            b"POST /traffic/vehicles/v-1/positions HTTP/1.1\r\nHost: gw\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"latitu",
        )
        .await
        .unwrap();
    let mut kept_alive = TcpStream::connect(gw.addr).await.unwrap();
    kept_alive
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    kept_alive.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    // The probe answers throughout, on new connections, while the idle ones are still open.
    while started.elapsed() < Duration::from_millis(2_500) {
        let probe = gw.http.get(gw.url("/health/live")).send();
        let res = tokio::time::timeout(Duration::from_secs(1), probe)
            .await
            .expect("/health/live answers within a second")
            .expect("/health/live answers");
        assert_eq!(res.status(), 200);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let within = Duration::from_secs(2);
    let checks = idle.iter_mut().map(|s| closed_within(s, within));
    let closed = futures_util::future::join_all(checks).await;
    let still_open = closed.iter().filter(|(c, _)| !c).count();
    assert_eq!(
        still_open, 0,
        "idle connections still open after the header timeout"
    );
    assert!(
        closed_within(&mut half_head, within).await.0,
        "half-sent head still open"
    );
    assert!(
        closed_within(&mut kept_alive, within).await.0,
        "idle keep-alive still open"
    );
    let (closed, answer) = closed_within(&mut stalled_body, within).await;
    assert!(closed, "a stalled body keeps its connection");
    assert_eq!(status_of(&answer), Some(408), "{answer}");
    assert!(answer.contains("\"error\":\"body_timeout\""), "{answer}");
}

#[tokio::test]
async fn past_the_connection_cap_health_still_answers_and_the_rest_is_refused() {
    let gw = TestGateway::spawn(|s| {
        s.http.max_connections = 16;
        s.http.header_timeout_ms = 60_000;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // all accepted

    let probe = exchange(
        gw.addr,
        b"GET /health/live HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&probe), Some(200), "{probe}");
    let api = exchange(
        gw.addr,
        b"GET /traffic/routes HTTP/1.1\r\nHost: gw\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status_of(&api), Some(503), "{api}");
    assert!(api.to_ascii_lowercase().contains("retry-after: 1"), "{api}");
    assert!(api.contains("http.max_connections"), "{api}");
    assert!(api.to_ascii_lowercase().contains("x-request-id"), "{api}");

    // The spare slots taken too: a new connection is closed at once.
    for _ in 0..routegate::http::conn::PROBE_CONNECTIONS {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut late = TcpStream::connect(gw.addr).await.unwrap();
    assert!(closed_within(&mut late, Duration::from_secs(2)).await.0);

    // Freed slots are reused.
    held.clear();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = gw.get_json("/traffic/routes").await;
    assert_eq!(status, 200);
}

/// Request lines no client library would send, on the socket of a child process whose log is
/// read afterwards: every answer is a 4xx (or a closed connection for bytes that are not HTTP),
/// never a panic.
#[tokio::test]
async fn unroutable_and_random_request_lines_get_4xx_and_never_panic() {
    let dir = Dir::fresh();
    let log = dir.path().join("child.log");
    let mut gw = ChildGateway::spawn_logging(dir.path(), &[], &log).await;
    let addr = gw.addr;
    let ask = |bytes: Vec<u8>| async move { exchange(addr, &bytes, Duration::from_secs(3)).await };

    for (line, want) in [
        ("GET 127.0.0.1:80 HTTP/1.1", 400),
        ("CONNECT 127.0.0.1:80 HTTP/1.1", 405),
        ("OPTIONS * HTTP/1.1", 400),
    ] {
        let answer = ask(format!("{line}\r\nHost: gw\r\n\r\n").into_bytes()).await;
        assert_eq!(status_of(&answer), Some(want), "{line}: {answer}");
        assert!(answer.contains("\"error\":"), "{line}: not JSON: {answer}");
        assert!(
            answer.to_ascii_lowercase().contains("x-request-id"),
            "{answer}"
        );
    }
    let absolute = ask(b"GET http://gw/health/live HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec()).await;
    assert_eq!(status_of(&absolute), Some(200), "absolute-form: {absolute}");

    let mut rng = SmallRng::seed_from_u64(0x05ee_d0fb_17e5);
    for i in 0..400 {
        let request = random_request(&mut rng);
        let answer = ask(request.clone()).await;
        if let Some(status) = status_of(&answer) {
            assert!(
                status < 500,
                "request {i} {:?} got {status}: {answer}",
                String::from_utf8_lossy(&request)
            );
            assert!(
                answer.to_ascii_lowercase().contains("\r\nx-request-id: "),
                "request {i} {:?}: an answer without a request id: {answer}",
                String::from_utf8_lossy(&request)
            );
        }
    }
    let health = ask(b"GET /health/live HTTP/1.1\r\nHost: gw\r\n\r\n".to_vec()).await;
    assert_eq!(status_of(&health), Some(200), "{health}");
    gw.terminate().await;
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !logged.contains("panicked"),
        "the gateway panicked:\n{logged}"
    );
}

/// An answer's status, headers (lower case) and JSON body.
fn json_answer(answer: &str) -> (Option<u16>, String, serde_json::Value) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let body = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    (status_of(answer), head.to_ascii_lowercase(), body)
}

/// Heads hyper cannot parse (hyper answers those itself, before any route runs) get the API's
/// JSON error with a request id, on the first request of a connection or a later one, and the
/// connection is closed after it.
#[tokio::test]
async fn unparsable_heads_get_json_errors_with_a_request_id_and_never_panic() {
    let dir = Dir::fresh();
    let log = dir.path().join("child.log");
    let mut gw = ChildGateway::spawn_logging(dir.path(), &[], &log).await;
    let addr = gw.addr;
    let long_query = format!(
        "GET /health/live?q={} HTTP/1.1\r\nHost: gw\r\n\r\n",
        "a".repeat(100_000)
    );
    let many_headers = format!(
        "GET /health/live HTTP/1.1\r\nHost: gw\r\n{}\r\n",
        format!("X-Fill: {}\r\n", "b".repeat(1_000)).repeat(1_000)
    );
    let one_huge_header = format!(
        "GET /health/live HTTP/1.1\r\nHost: gw\r\nX-Fill: {}\r\n\r\n",
        "c".repeat(1 << 20)
    );
    let bad_length = "POST /traffic/routes/optimize HTTP/1.1\r\nHost: gw\r\n\
                      Content-Type: application/json\r\nContent-Length: 12abc\r\n\r\n{}";
    let two_lengths = "POST /traffic/routes/optimize HTTP/1.1\r\nHost: gw\r\n\
                       Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}";
    for (name, request, want, code) in [
        (
            "a 100 KB query string",
            long_query.as_str(),
            414,
            "uri_too_long",
        ),
        (
            "1 MB in 1,000 headers",
            &many_headers,
            431,
            "headers_too_large",
        ),
        ("a 1 MB header", &one_huge_header, 431, "headers_too_large"),
        ("a bad Content-Length", bad_length, 400, "bad_request"),
        ("two Content-Lengths", two_lengths, 400, "bad_request"),
    ] {
        let answer = exchange(addr, request.as_bytes(), Duration::from_secs(5)).await;
        let (status, head, body) = json_answer(&answer);
        assert_eq!(status, Some(want), "{name}: {answer}");
        assert_eq!(body["error"], code, "{name}: {answer}");
        assert!(body["message"].is_string(), "{name}: {answer}");
        assert!(head.contains("\r\nx-request-id: "), "{name}: {answer}");
        assert!(head.contains("\r\nconnection: close"), "{name}: {answer}");
    }

    // A client still sending after its head was refused may finish sending: the gateway reads
    // and discards the rest before it closes, so the close is no reset that could destroy the
    // answer before the client reads it.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let fill = "X-Fill: d\r\n".repeat(50_000);
    let mut sent = Vec::new();
    for part in [
        format!("GET /health/live HTTP/1.1\r\nHost: gw\r\n{fill}"),
        fill.clone(),
        fill,
    ] {
        sent.push(s.write_all(part.as_bytes()).await.map_err(|e| e.kind()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sent.iter().all(Result::is_ok), "sending failed: {sent:?}");
    let (closed, answer) = closed_within(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "{answer}");
    assert_eq!(
        json_answer(&answer).2["error"],
        "headers_too_large",
        "{answer}"
    );

    // The second request of a keep-alive connection: the first is served, the second refused.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut first))
        .await
        .expect("the first answer")
        .unwrap();
    let first = String::from_utf8_lossy(&first[..n]).into_owned();
    assert_eq!(status_of(&first), Some(200), "{first}");
    s.write_all(b"GET /health/live HTTP/1.1\r\nHost: gw\r\nContent-Length: -1\r\n\r\n")
        .await
        .unwrap();
    let (closed, second) = closed_within(&mut s, Duration::from_secs(5)).await;
    let (status, head, body) = json_answer(&second);
    assert!(closed, "the connection stays open after: {second}");
    assert_eq!(status, Some(400), "{second}");
    assert_eq!(body["error"], "bad_request", "{second}");
    assert!(head.contains("\r\nx-request-id: "), "{second}");

    let health = exchange(
        addr,
        b"GET /health/live HTTP/1.1\r\nHost: gw\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(status_of(&health), Some(200), "{health}");
    gw.terminate().await;
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        !logged.contains("panicked"),
        "the gateway panicked:\n{logged}"
    );
}

/// A request with a random method, target, version and headers, mostly near-valid HTTP.
fn random_request(rng: &mut SmallRng) -> Vec<u8> {
    const METHODS: &[&str] = &[
        "GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "get",
        "G\0T", "PRI", "X-CUSTOM", "",
    ];
    const TARGETS: &[&str] = &[
        "/",
        "*",
        "127.0.0.1:80",
        "gw:4000",
        "http://gw/traffic/routes",
        "https://[::1]:8/x",
        "//double",
        "/traffic/routes/%ff%00",
        "/traffic/routes/\u{7f}",
        "/traffic/../../etc",
        "/health/live?x=%",
        "/traffic/vehicles/v/positions",
        "/traffic/routes/ws",
        "?q=1",
        "/admin/queue/stats",
        "http://",
        "/openapi.json#frag",
    ];
    const VERSIONS: &[&str] = &[
        "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9.9", "http/1.1", "",
    ];
    const HEADERS: &[&str] = &[
        "Host: gw",
        "Host:",
        "Host: a\0b",
        "Content-Length: -1",
        "Content-Length: 99999999999999999999",
        "Content-Length: 5",
        "Transfer-Encoding: chunked",
        "Transfer-Encoding: gzip, chunked",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Expect: 100-continue",
        "Origin: null",
        "Authorization: Bearer \u{1b}]0;x\u{7}",
        "Content-Type: text/plain",
        ": empty-name",
        "X-Request-Id: \u{7f}\u{7f}",
        "Sec-WebSocket-Version: 13",
    ];
    let pick = |rng: &mut SmallRng, xs: &[&str]| xs[rng.random_range(0..xs.len())].to_string();
    let mut target = pick(rng, TARGETS);
    if rng.random_bool(0.2) {
        let n = rng.random_range(1..64);
        target = (0..n)
            .map(|_| rng.random_range(0x20u8..0x7f) as char)
            .collect();
    }
    let mut out = format!(
        "{} {} {}\r\n",
        pick(rng, METHODS),
        target,
        pick(rng, VERSIONS)
    );
    for _ in 0..rng.random_range(0..5) {
        out.push_str(&pick(rng, HEADERS));
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if rng.random_bool(0.1) {
        let at = rng.random_range(0..bytes.len());
        bytes[at] = rng.random();
    }
    if rng.random_bool(0.3) {
        bytes.extend_from_slice(b"hello");
    }
    bytes
}

fn stops_body(vehicle: &str, n: usize, compute_ms: u64) -> serde_json::Value {
    let stops: Vec<_> = (0..n)
        .map(|i| {
            serde_json::json!({"id": format!("s{i}"),
                "latitude": 43.70 + 0.0007 * ((i * 37) % 97) as f64,
                "longitude": 7.40 + 0.0009 * ((i * 53) % 89) as f64})
        })
        .collect();
    serde_json::json!({"vehicleId": vehicle, "stops": stops,
        "preferences": {"maxComputeMillis": compute_ms}})
}

/// Big optimize requests fill every solver turn and the queue of eight. A small request then
/// takes the place of the last big one (refused at once) and goes next: it waits for one
/// running solve, not for the queue. One more big request is refused at once instead of waiting
/// for its deadline.
#[tokio::test]
async fn a_small_optimize_goes_before_queued_big_ones_and_a_full_queue_is_refused_at_once() {
    let gw = TestGateway::spawn(|s| s.optimize.max_queued_solves = 8).await;
    let done: Arc<Mutex<Vec<(String, u16)>>> = Arc::default();
    let post = |label: String, body: serde_json::Value| {
        let (http, url, done) = (
            gw.http.clone(),
            gw.url("/traffic/routes/optimize"),
            done.clone(),
        );
        tokio::spawn(async move {
            let res = http.post(url).json(&body).send().await.expect("answered");
            let status = res.status().as_u16();
            done.lock().unwrap().push((label, status));
        })
    };
    let turns = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut bigs = Vec::new();
    for i in 0..turns + 8 {
        bigs.push(post(
            format!("big{i}"),
            stops_body(&format!("big-{i}"), 400, 1_500),
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // all in: one per turn, 8 waiting
    let small = post("small".into(), stops_body("small-1", 3, 1_500));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let extra = post("extra".into(), stops_body("big-extra", 400, 1_500));
    extra.await.unwrap();
    small.await.unwrap();
    for b in bigs {
        b.await.unwrap();
    }
    let done = done.lock().unwrap().clone();
    let at = |label: &str| done.iter().position(|(l, _)| l == label).unwrap();
    let bigs_before_small = done[..at("small")]
        .iter()
        .filter(|(l, s)| l.starts_with("big") && *s == 201)
        .count();
    assert!(
        bigs_before_small <= turns,
        "the small request waited for {bigs_before_small} big solves: {done:?}"
    );
    assert_eq!(done[at("small")].1, 201, "{done:?}");
    assert_eq!(done[at("extra")].1, 503, "{done:?}");
    let evicted = format!("big{}", turns + 7);
    assert_eq!(done[at(&evicted)].1, 503, "{done:?}");
    assert!(
        at("extra") < 2 && at(&evicted) < 2,
        "the refusals came first, before any solve ended: {done:?}"
    );
    let solved = done
        .iter()
        .filter(|(l, s)| l.starts_with("big") && *s == 201);
    assert_eq!(solved.count(), turns + 7, "{done:?}");
}
