//! The whole router without a socket: the OpenAPI table against the real routes, the error
//! contract, and a property test that throws random and mutated requests at it.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use serde_json::{Value, json};
use warp::http::Method;

use super::*;
use crate::config::{Durability, Settings};
use crate::store::Topics;

pub(super) struct Rig {
    pub api: Api,
    _dir: tempfile::TempDir,
}

pub(super) fn rig(adjust: impl FnOnce(&mut Settings)) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings::default();
    s.storage.data_dir = dir.path().to_path_buf();
    s.storage.durability = Durability::Interval;
    adjust(&mut s);
    let outbox = Outbox::open(dir.path(), &s.storage, store::TREES).unwrap();
    let topics = Topics {
        route_optimized: "opt".into(),
        route_updated: "upd".into(),
        vehicle_position: "pos".into(),
    };
    let params = crate::optimize::Params {
        max_stops: s.optimize.max_stops as usize,
        ..Default::default()
    };
    let delivery: Arc<crate::delivery::Status> = Arc::default();
    let ws = super::ws::Hub::start(
        outbox.clone(),
        delivery.clone(),
        &s.websocket,
        s.http.max_string_length as usize,
        tokio_util::sync::CancellationToken::new(),
    );
    let api = Api {
        roads: None,
        lifecycle: Arc::default(),
        outbox: outbox.clone(),
        delivery,
        consumers: Arc::default(),
        metrics: crate::metrics::install(),
        ws,
        store: Store::new(outbox, topics, params, store::RecordLimit::from(&s.kafka)),
        tokens: Tokens::load(&s.http.api_tokens, "")
            .unwrap()
            .with_origins(&s.http.cors_origins),
        rate: RateLimiter::new(s.http.rate_limit_per_second, s.http.rate_limit_burst),
        limits: Limits::from_config(&s.http),
        admission: crate::http::admission::Admission::new(s.http.max_in_flight as usize),
        cors_origins: s.http.cors_origins.clone(),
    };
    Rig { api, _dir: dir }
}

/// A time the API accepts (inside `http.max_timestamp_*`).
fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339()
}

pub(super) fn seed() -> Value {
    json!({"vehicleId":"53ac84a9-ddcc-4a1c-a153-e9738c026e03","stops":[
        {"id":"stop-1","latitude":40.7128,"longitude":-74.0060,"address":"New York, NY"},
        {"id":"stop-2","latitude":40.7589,"longitude":-73.9851,"address":"Times Square, NY"}],
        "preferences":{"avoidTolls":false,"avoidHighways":false,"optimizeFor":"time"}})
}

async fn call(api: &Api, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut req = warp::test::request().method(method).path(path);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").json(b);
    }
    let res = req.reply(&routes(api.clone())).await;
    let body = serde_json::from_slice(res.body()).unwrap_or(Value::Null);
    (res.status().as_u16(), body)
}

#[tokio::test]
async fn the_seed_request_plans_a_route_that_can_be_read_back() {
    let r = rig(|_| {});
    let (status, route) = call(&r.api, "POST", "/traffic/routes/optimize", Some(&seed())).await;
    assert_eq!(status, 201, "{route}");
    assert_eq!(route["status"], "planned");
    let id = route["routeId"].as_str().unwrap();
    let (status, read) = call(&r.api, "GET", &format!("/traffic/routes/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(read["eventId"], route["eventId"]);
}

/// Endpoints another branch serves; the probe skips them until that branch is merged.
#[tokio::test]
async fn every_documented_endpoint_is_served_by_the_router() {
    let r = rig(|_| {});
    let (_, route) = call(&r.api, "POST", "/traffic/routes/optimize", Some(&seed())).await;
    let id = route["routeId"].as_str().unwrap().to_string();
    for e in openapi::ENDPOINTS {
        let (method, template) = e.split_once(' ').unwrap();
        let path = template
            .replace("{routeId}", &id)
            .replace("{stopId}", "stop-1")
            .replace("{vehicleId}", "v1")
            .replace("{seq}", "1");
        let body = (method != "GET").then(|| json!({}));
        let (status, body) = call(&r.api, method, &path, body.as_ref()).await;
        assert_ne!(status, 405, "{e}: {body}");
        assert!(
            !(status == 404 && body["message"] == "no such route"),
            "{e} is documented but the router does not serve it"
        );
    }
}

#[tokio::test]
async fn client_mistakes_are_4xx_json_naming_the_field() {
    let r = rig(|_| {});
    let mut bad = seed();
    bad["stops"][1]["latitude"] = json!("north");
    let (status, body) = call(&r.api, "POST", "/traffic/routes/optimize", Some(&bad)).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("stops[1].latitude")),
        "{body}"
    );
    bad["stops"][1]["latitude"] = json!(91.0);
    let (status, body) = call(&r.api, "POST", "/traffic/routes/optimize", Some(&bad)).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("stops[1].latitude")),
        "{body}"
    );
    let (status, body) = call(
        &r.api,
        "POST",
        "/traffic/routes/optimize",
        Some(&json!({"stops": []})),
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("vehicleId")),
        "{body}"
    );
    let missing = format!("/traffic/routes/{}", uuid::Uuid::now_v7());
    let (status, body) = call(&r.api, "GET", &missing, None).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, _) = call(&r.api, "DELETE", "/traffic/routes", None).await;
    assert_eq!(status, 405);
    let (status, body) = call(&r.api, "GET", "/traffic/routes?limit=0", None).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("limit")));
    let (status, body) = call(&r.api, "GET", "/traffic/routes?cursor=zz", None).await;
    assert_eq!((status, body["field"].as_str()), (400, Some("cursor")));
}

/// A misspelt field is a 400 naming it, not a default taken in silence; the seed passes.
#[tokio::test]
async fn unknown_request_fields_are_400_naming_them() {
    let r = rig(|_| {});
    let (status, body) = call(&r.api, "POST", "/traffic/routes/optimize", Some(&seed())).await;
    assert_eq!(status, 201, "the seed request has no unknown field: {body}");
    let cases = [
        (
            "/stops/1",
            "serviceMinute",
            json!(5),
            "stops[1].serviceMinute",
        ),
        (
            "/preferences",
            "optimiseFor",
            json!("time"),
            "preferences.optimiseFor",
        ),
        ("", "roundtrip", json!(true), "roundtrip"),
    ];
    for (at, name, value, field) in cases {
        let mut bad = seed();
        bad.pointer_mut(at).unwrap()[name] = value;
        let (status, body) = call(&r.api, "POST", "/traffic/routes/optimize", Some(&bad)).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (400, Some(field)),
            "{body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains("unknown field"),
            "{body}"
        );
    }
    let route = body["routeId"].as_str().unwrap();
    let patch = format!("/traffic/routes/{route}/stops/stop-1");
    let typo = json!({"status": "arrived", "notes": "gate 4"});
    let (status, body) = call(&r.api, "PATCH", &patch, Some(&typo)).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("notes")),
        "{body}"
    );
    // GPS fixes stay open: devices send fields of their own (accuracy, odometer, ...).
    let now = chrono::Utc::now().to_rfc3339();
    let fix = json!({"latitude": 1.0, "longitude": 2.0, "timestamp": now,
                     "accuracyM": 4.5, "odometerKm": 123456.7});
    let positions = "/traffic/vehicles/v1/positions";
    let (status, body) = call(&r.api, "POST", positions, Some(&fix)).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_413() {
    let r = rig(|s| s.http.max_body_bytes = 1024);
    let mut big = seed();
    big["stops"][0]["address"] = json!("x".repeat(900));
    big["stops"][1]["address"] = json!("y".repeat(900));
    let (status, body) = call(&r.api, "POST", "/traffic/routes/optimize", Some(&big)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload_too_large"))
    );
}

#[tokio::test]
async fn tokens_guard_traffic_routes_but_not_probes() {
    let r = rig(|s| s.http.api_tokens = vec!["secret-token-123".into()]);
    let routes = routes(r.api.clone());
    let res = warp::test::request()
        .path("/traffic/routes")
        .reply(&routes)
        .await;
    assert_eq!(res.status(), 401);
    let res = warp::test::request()
        .path("/traffic/routes/kafka-health")
        .reply(&routes)
        .await;
    assert_eq!(res.status(), 401);
    let res = warp::test::request()
        .path("/traffic/routes")
        .header("authorization", "Bearer secret-token-123")
        .reply(&routes)
        .await;
    assert_eq!(res.status(), 200);
    let res = warp::test::request()
        .path("/health/live")
        .reply(&routes)
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn cors_preflight_is_answered_for_an_allowed_origin_only() {
    let r = rig(|s| s.http.cors_origins = vec!["https://dash.example".into()]);
    let routes = routes(r.api.clone());
    let preflight = |origin: &'static str| {
        warp::test::request()
            .method("OPTIONS")
            .path("/traffic/routes/optimize")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
    };
    let res = preflight("https://dash.example").reply(&routes).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://dash.example"
    );
    let res = preflight("https://evil.example").reply(&routes).await;
    assert_eq!(res.status(), 403);
    assert!(check_cors(&["*".into(), "http://a.b:8080".into()]).is_ok());
    assert!(check_cors(&["not an origin".into()]).is_err());
}

#[tokio::test]
async fn with_cors_origins_set_the_gateways_own_pages_still_read_and_write() {
    let r = rig(|s| s.http.cors_origins = vec!["https://dash.example".into()]);
    let routes = routes(r.api.clone());
    let from = |origin: &'static str, method: &'static str, path: &'static str| {
        warp::test::request()
            .method(method)
            .path(path)
            .header("host", "gw.example:4000")
            .header("origin", origin)
            .header("content-type", "application/json")
    };
    let own = "http://gw.example:4000";
    let res = from(own, "POST", "/traffic/routes/optimize")
        .json(&seed())
        .reply(&routes)
        .await;
    assert_eq!(res.status(), 201, "{:?}", res.body());
    let res = from(own, "GET", "/traffic/routes").reply(&routes).await;
    assert_eq!(res.status(), 200, "{:?}", res.body());
    let res = from(own, "GET", "/no/such/path").reply(&routes).await;
    assert_eq!(
        res.status(),
        404,
        "an error on the own-origin branch keeps its status"
    );
    let res = from("https://evil.example", "POST", "/traffic/routes/optimize")
        .json(&seed())
        .reply(&routes)
        .await;
    assert_eq!(res.status(), 403, "a foreign origin is still refused");
    let res = from("https://dash.example", "GET", "/traffic/routes")
        .reply(&routes)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()["access-control-allow-origin"],
        "https://dash.example"
    );
}

/// A random JSON value, biased towards the API's own member names.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        prop_oneof![
            Just(1e300),
            Just(-0.0),
            Just(91.0),
            Just(-181.0),
            Just(60001.0)
        ]
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
        prop_oneof![
            Just(now_rfc3339()),
            Just("0000-01-01T00:00:00+14:00".to_string()),
            Just("9999-12-31T23:59:59-12:00".to_string()),
            Just("arrived".to_string()),
            Just("completed".to_string()),
            Just("pending".to_string()),
            Just("distance".to_string()),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((member(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn member() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "vehicleId",
            "stops",
            "id",
            "latitude",
            "longitude",
            "address",
            "serviceMinutes",
            "timeWindow",
            "start",
            "end",
            "roundTrip",
            "departureTime",
            "preferences",
            "optimizeFor",
            "maxComputeMillis",
            "status",
            "at",
            "note",
            "timestamp",
            "speedKmh",
            "headingDeg",
        ])
        .prop_map(str::to_string),
        "\\PC{0,8}",
    ]
}

/// `seed` with up to three members replaced by random values or removed.
fn mutated(seed: Value) -> impl Strategy<Value = Value> {
    let edits = prop_oneof![Just(0usize), Just(0), 1..4usize];
    edits
        .prop_flat_map(|n| {
            prop::collection::vec(
                (any::<prop::sample::Index>(), prop::option::of(json_value())),
                n,
            )
        })
        .prop_map(move |edits| {
            let mut v = seed.clone();
            for (at, new) in edits {
                let mut pointers = Vec::new();
                pointers_of(&v, String::new(), &mut pointers);
                let p = at.get(&pointers).clone();
                set(&mut v, &p, new);
            }
            v
        })
}

/// A documented endpoint with plausible parameters and a (possibly mutated) plausible body.
fn endpoint_request(route_id: String) -> impl Strategy<Value = (Method, String, Vec<u8>)> {
    let id = prop_oneof![Just(route_id), Just(uuid::Uuid::nil().to_string())];
    let stop = prop_oneof![
        Just("stop-1".to_string()),
        Just("stop-2".to_string()),
        "[a-z%0-9]{0,6}"
    ];
    let writes = openapi::ENDPOINTS.iter().filter(|e| !e.starts_with("GET "));
    let weighted: Vec<&str> = openapi::ENDPOINTS
        .iter()
        .chain(writes.clone())
        .chain(writes)
        .copied()
        .collect();
    (prop::sample::select(weighted), id, stop).prop_flat_map(|(e, id, stop)| {
        let (method, template) = e.split_once(' ').unwrap();
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let path = template
            .replace("{routeId}", &id)
            .replace("{stopId}", &stop)
            .replace("{vehicleId}", "53ac84a9-ddcc-4a1c-a153-e9738c026e03")
            .replace("{seq}", "1");
        let body = if template.ends_with("optimize") {
            seed()
        } else if template.ends_with("{stopId}") {
            json!({"status": "arrived", "note": "gate 3", "at": now_rfc3339()})
        } else if template.ends_with("positions") {
            json!([{"latitude": 40.72, "longitude": -74.0, "timestamp": now_rfc3339(), "speedKmh": 20}])
        } else {
            Value::Null
        };
        mutated(body).prop_map(move |b| {
            let bytes = if b.is_null() { Vec::new() } else { serde_json::to_vec(&b).unwrap() };
            (method.clone(), path.clone(), bytes)
        })
    })
}

fn pointers_of(v: &Value, here: String, out: &mut Vec<String>) {
    out.push(here.clone());
    match v {
        Value::Object(m) => m
            .iter()
            .for_each(|(k, c)| pointers_of(c, format!("{here}/{k}"), out)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| pointers_of(c, format!("{here}/{i}"), out)),
        _ => {}
    }
}

fn set(root: &mut Value, pointer: &str, new: Option<Value>) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        *root = new.unwrap_or(Value::Null);
        return;
    };
    match (root.pointer_mut(parent), new) {
        (Some(Value::Object(m)), None) => drop(m.remove(last)),
        (Some(Value::Array(a)), None) => drop(a.remove(last.parse::<usize>().unwrap())),
        (Some(p), Some(n)) => *p.pointer_mut(&format!("/{last}")).unwrap() = n,
        _ => {}
    }
}

fn request_path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just("traffic".to_string()),
        Just("routes".to_string()),
        Just("optimize".to_string()),
        Just("stops".to_string()),
        Just("vehicles".to_string()),
        Just("positions".to_string()),
        Just("events".to_string()),
        Just("reoptimize".to_string()),
        Just(uuid::Uuid::nil().to_string()),
        "[a-zA-Z0-9%._~-]{0,10}",
    ];
    prop_oneof![
        prop::sample::select(openapi::ENDPOINTS.to_vec()).prop_map(|e| {
            e.split_once(' ')
                .unwrap()
                .1
                .replace("{routeId}", &uuid::Uuid::nil().to_string())
                .replace("{stopId}", "stop-1")
                .replace("{vehicleId}", "v%201")
                .replace("{seq}", "7")
        }),
        prop::collection::vec(segment, 0..6).prop_map(|s| format!("/{}", s.join("/"))),
    ]
}

fn request_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// Mostly well-aimed requests with mutated bodies, some entirely random ones.
fn any_request(route_id: String) -> impl Strategy<Value = (Method, String, Vec<u8>)> {
    let methods = vec![
        Method::GET,
        Method::POST,
        Method::PATCH,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ];
    prop_oneof![
        3 => endpoint_request(route_id),
        1 => (prop::sample::select(methods), request_path(), request_body()),
    ]
}

#[test]
fn random_and_mutated_requests_never_get_a_5xx_other_than_503() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async { rig(|s| s.http.max_string_length = 64) });
    let routes = routes(r.api.clone());
    let route_id = rt.block_on(async {
        let (_, route) = call(&r.api, "POST", "/traffic/routes/optimize", Some(&seed())).await;
        route["routeId"].as_str().unwrap().to_string()
    });
    let config = PropConfig {
        cases: 384,
        failure_persistence: None,
        ..PropConfig::default()
    };
    // A fixed seed: the coverage check below (every status class seen) must not depend on luck;
    // with a random seed one run in a few dozen drew no 409.
    let rng = proptest::test_runner::TestRng::deterministic_rng(
        proptest::test_runner::RngAlgorithm::ChaCha,
    );
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = any_request(route_id);
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    runner
        .run(&strategy, |(method, path, body)| {
            let res = rt.block_on(
                warp::test::request()
                    .method(method.as_str())
                    .path(&path)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .reply(&routes),
            );
            let status = res.status().as_u16();
            *seen.lock().unwrap().entry(status).or_default() += 1;
            prop_assert!(
                status < 500 || status == 503,
                "{method} {path} {} -> {status}: {:?}",
                String::from_utf8_lossy(&body),
                res.body()
            );
            if status >= 400 {
                let v: Value = serde_json::from_slice(res.body()).expect("errors are JSON");
                let health_report = status == 503 && v["status"].is_string();
                prop_assert!(health_report || (v["error"].is_string() && v["message"].is_string()));
            }
            Ok(())
        })
        .unwrap();
    let seen = seen.into_inner().unwrap();
    eprintln!("statuses: {seen:?}");
    for expected in [200, 201, 202, 400, 404, 409] {
        assert!(
            seen.contains_key(&expected),
            "no {expected} among {seen:?}: the generators drifted"
        );
    }
}

#[tokio::test]
async fn accepted_connections_inherit_no_delay_from_the_listener() {
    let listener = super::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (accepted, _) = listener.accept().await.unwrap();
    assert!(accepted.nodelay().unwrap());
}

#[tokio::test]
async fn a_route_whose_event_would_not_fit_in_a_kafka_record_gets_413_and_is_not_stored() {
    let r = rig(|s| s.kafka.max_record_bytes = 1024);
    let (status, body) = call(&r.api, "POST", "/traffic/routes/optimize", Some(&seed())).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("event_too_large")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("route.optimized") && message.contains("kafka.max_record_bytes (1024)"),
        "{message}"
    );
    let (_, page) = call(&r.api, "GET", "/traffic/routes", None).await;
    assert_eq!(page["routes"], json!([]), "nothing was stored");
    assert_eq!(r.api.outbox.stats().log_events, 0, "nothing was queued");
}

#[tokio::test]
async fn past_the_in_flight_cap_requests_get_503_but_the_probes_still_answer() {
    let mut r = rig(|_| {});
    r.api.admission = crate::http::admission::Admission::new(0);
    let routes = crate::http::routes(r.api.clone());
    let res = warp::test::request()
        .method("GET")
        .path("/traffic/routes")
        .reply(&routes)
        .await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: Value = serde_json::from_slice(res.body()).unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("http.max_in_flight"),
        "{body}"
    );
    for probe in ["/health/live", "/health/ready"] {
        let res = warp::test::request().path(probe).reply(&routes).await;
        assert_eq!(res.status(), 200, "{probe}");
    }
}

#[tokio::test]
async fn an_admin_page_of_large_events_is_capped_in_bytes_and_pages_on() {
    let r = rig(|_| {});
    let big = "x".repeat(100_000);
    for _ in 0..30 {
        let events = vec![crate::events::NewEvent::now(
            "test.big", "t", "v", None, &big,
        )];
        let write = crate::queue::Write {
            events,
            records: vec![],
        };
        r.api.outbox.append(write).await.unwrap();
    }
    let (status, page) = call(&r.api, "GET", "/admin/queue/pending?limit=10000", None).await;
    assert_eq!(status, 200, "{page}");
    let first = page.as_array().unwrap();
    assert!(
        !first.is_empty() && first.len() < 30,
        "{} of 30 events of 100 KB in one page",
        first.len()
    );
    assert!(page.to_string().len() < 2 * 1024 * 1024);
    let last = first.last().unwrap()["seq"].as_u64().unwrap();
    let path = format!("/admin/queue/pending?limit=10000&after={last}");
    let (_, next) = call(&r.api, "GET", &path, None).await;
    let next_first = next.as_array().unwrap()[0]["seq"].as_u64().unwrap();
    assert_eq!(
        next_first,
        last + 1,
        "the next page starts after the cursor"
    );
}
