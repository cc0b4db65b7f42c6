//! The REST API over real sockets: each endpoint's success and failure cases, the limits, and
//! the stop-status flow reaching Kafka (checked with the independent reader).

use std::time::Duration;

use routegate::config::Settings;
use serde_json::{Value, json};

use crate::harness::gateway::TestGateway;
use crate::harness::kafka;

const TOKEN: &str = "api-test-token-0123456789";

fn seed() -> Value {
    serde_json::from_str(
        r#"{"vehicleId":"53ac84a9-ddcc-4a1c-a153-e9738c026e03","stops":[{"id":"stop-1","latitude":40.7128,"longitude":-74.0060,"address":"New York, NY"},{"id":"stop-2","latitude":40.7589,"longitude":-73.9851,"address":"Times Square, NY"}],"preferences":{"avoidTolls":false,"avoidHighways":false,"optimizeFor":"time"}}"#,
    )
    .unwrap()
}

fn ten_stops(vehicle: &str) -> Value {
    let stops: Vec<Value> = (0..10)
        .map(|i| {
            json!({"id": format!("s{i}"), "latitude": 40.70 + 0.005 * ((i * 7) % 10) as f64,
                   "longitude": -74.0 + 0.004 * i as f64, "serviceMinutes": 3})
        })
        .collect();
    json!({"vehicleId": vehicle, "stops": stops})
}

async fn send(
    gw: &TestGateway,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = gw.http.request(method, gw.url(path));
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn patch(gw: &TestGateway, path: &str, body: &Value) -> (u16, Value) {
    send(gw, reqwest::Method::PATCH, path, Some(body)).await
}

async fn plan(gw: &TestGateway, body: &Value) -> Value {
    let (status, route) = gw.post_json("/traffic/routes/optimize", body).await;
    assert_eq!(status, 201, "{route}");
    route
}

#[tokio::test]
async fn the_seed_request_answers_201_with_the_full_shape_without_any_broker() {
    let gw = TestGateway::spawn(|_| {}).await;
    let resp = gw
        .http
        .post(gw.url("/traffic/routes/optimize"))
        .json(&seed())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(resp.headers().contains_key("x-request-id"));
    let route: Value = resp.json().await.unwrap();
    for key in [
        "routeId",
        "vehicleId",
        "status",
        "optimizedStops",
        "totalDistanceMeters",
        "totalDurationSeconds",
        "geometry",
        "optimization",
        "warnings",
        "eventId",
        "createdAt",
    ] {
        assert!(route.get(key).is_some(), "missing {key}: {route}");
    }
    assert_eq!(route["status"], "planned");
    assert_eq!(route["vehicleId"], "53ac84a9-ddcc-4a1c-a153-e9738c026e03");
    assert_eq!(
        location,
        format!("/traffic/routes/{}", route["routeId"].as_str().unwrap())
    );
    let stops = route["optimizedStops"].as_array().unwrap();
    assert_eq!(stops.len(), 2);
    for (i, s) in stops.iter().enumerate() {
        for key in [
            "id",
            "sequence",
            "latitude",
            "longitude",
            "address",
            "arrivalTime",
            "departureTime",
            "distanceFromPreviousMeters",
            "durationFromPreviousSeconds",
            "timeWindowMet",
        ] {
            assert!(s.get(key).is_some(), "stop lacks {key}: {s}");
        }
        assert_eq!(s["sequence"], i + 1);
    }
    assert_eq!(route["geometry"]["type"], "LineString");
    assert!(route["optimization"]["algorithm"].is_string());
    let (status, events) = gw.get_json(&format!("{location}/events")).await;
    assert_eq!(status, 200);
    let e = &events["events"][0];
    assert_eq!(
        (e["type"].as_str(), e["eventId"].clone()),
        (Some("route.optimized"), route["eventId"].clone())
    );
    assert_eq!(e["data"]["routeId"], route["routeId"]);
    assert_eq!(
        gw.outbox().stats().pending_events,
        1,
        "the event waits on disk for Kafka"
    );
    gw.stop().await;
}

#[tokio::test]
async fn routes_are_read_listed_and_404_when_unknown() {
    let gw = TestGateway::spawn(|_| {}).await;
    let a = plan(&gw, &ten_stops("truck-1")).await;
    let b = plan(&gw, &ten_stops("truck-2")).await;
    let (status, got) = gw
        .get_json(&format!(
            "/traffic/routes/{}",
            a["routeId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["optimizedStops"].as_array().unwrap().len(), 10);
    assert!(got["optimizedStops"][0]["eta"].is_string());
    let (status, page) = gw.get_json("/traffic/routes?limit=1").await;
    assert_eq!(status, 200);
    assert_eq!(page["routes"][0]["routeId"], b["routeId"], "newest first");
    let cursor = page["nextCursor"].as_str().unwrap().to_string();
    let (_, next) = gw
        .get_json(&format!("/traffic/routes?limit=1&cursor={cursor}"))
        .await;
    assert_eq!(next["routes"][0]["routeId"], a["routeId"]);
    let (_, mine) = gw
        .get_json("/traffic/routes?vehicleId=truck-2&status=planned")
        .await;
    assert_eq!(mine["routes"].as_array().unwrap().len(), 1);
    assert_eq!(mine["nextCursor"], Value::Null);
    let unknown = format!("/traffic/routes/{}", uuid::Uuid::now_v7());
    let (status, body) = gw.get_json(&unknown).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    let (status, _) = gw.get_json(&format!("{unknown}/events")).await;
    assert_eq!(status, 404);
    let (status, body) = gw.get_json("/traffic/routes?status=lost").await;
    assert_eq!((status, body["field"].as_str()), (400, Some("status")));
    gw.stop().await;
}

#[tokio::test]
async fn stop_updates_drive_the_route_to_completed_and_refuse_impossible_transitions() {
    let gw = TestGateway::spawn(|_| {}).await;
    let route = plan(&gw, &seed()).await;
    let base = format!(
        "/traffic/routes/{}/stops",
        route["routeId"].as_str().unwrap()
    );
    let (status, r) = patch(
        &gw,
        &format!("{base}/stop-1"),
        &json!({"status": "arrived"}),
    )
    .await;
    assert_eq!(
        (status, r["status"].as_str()),
        (200, Some("in_progress")),
        "{r}"
    );
    let (status, r) = patch(
        &gw,
        &format!("{base}/stop-1"),
        &json!({"status": "completed", "note": "signed"}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = patch(
        &gw,
        &format!("{base}/stop-1"),
        &json!({"status": "arrived"}),
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (status, body) = patch(
        &gw,
        &format!("{base}/stop-1"),
        &json!({"status": "pending"}),
    )
    .await;
    assert_eq!((status, body["field"].as_str()), (400, Some("status")));
    let (status, _) = patch(
        &gw,
        &format!("{base}/no-such-stop"),
        &json!({"status": "arrived"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, done) = patch(&gw, &format!("{base}/stop-2"), &json!({"status": "failed"})).await;
    assert_eq!((status, done["status"].as_str()), (200, Some("completed")));
    assert_ne!(done["eventId"], r["eventId"]);
    let (status, body) = send(
        &gw,
        reqwest::Method::POST,
        &format!(
            "/traffic/routes/{}/reoptimize",
            route["routeId"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("conflict")),
        "a completed route has nothing to re-plan"
    );
    gw.stop().await;
}

#[tokio::test]
async fn positions_are_recorded_and_reoptimize_starts_from_the_last_one() {
    let gw = TestGateway::spawn(|_| {}).await;
    let route = plan(&gw, &ten_stops("truck-9")).await;
    let id = route["routeId"].as_str().unwrap().to_string();
    let first = route["optimizedStops"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    patch(
        &gw,
        &format!("/traffic/routes/{id}/stops/{first}"),
        &json!({"status": "completed"}),
    )
    .await;
    let now = chrono::Utc::now().to_rfc3339();
    let one = json!({"latitude": 40.71, "longitude": -73.99, "timestamp": now, "speedKmh": 25});
    let (status, t) = gw
        .post_json("/traffic/vehicles/truck-9/positions", &one)
        .await;
    assert_eq!((status, t["accepted"].as_u64()), (202, Some(1)), "{t}");
    assert_eq!(t["routeId"].as_str(), Some(id.as_str()));
    assert!(t["delaySeconds"].is_number() && t["nextStopEta"].is_string());
    let batch = json!([one, {"latitude": 40.72, "longitude": -73.98, "timestamp": now}]);
    let (status, t) = gw
        .post_json("/traffic/vehicles/truck-9/positions", &batch)
        .await;
    assert_eq!((status, t["accepted"].as_u64()), (202, Some(2)));
    let (_, seen) = gw.get_json(&format!("/traffic/routes/{id}")).await;
    assert!(seen["lastPosition"]["latitude"].is_number(), "{seen}");
    let bad = json!([one, {"latitude": 95, "longitude": 0, "timestamp": now}]);
    let (status, body) = gw
        .post_json("/traffic/vehicles/truck-9/positions", &bad)
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("[1].latitude"))
    );
    let (status, re) = gw
        .post_json(&format!("/traffic/routes/{id}/reoptimize"), &json!({}))
        .await;
    assert_eq!(status, 200, "{re}");
    assert_eq!(re["optimizedStops"][0]["id"].as_str(), Some(first.as_str()));
    assert_eq!(re["optimizedStops"].as_array().unwrap().len(), 10);
    let (_, events) = gw.get_json(&format!("/traffic/routes/{id}/events")).await;
    let kinds: Vec<_> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "route.optimized",
            "route.updated",
            "vehicle.position",
            "vehicle.position",
            "vehicle.position",
            "route.updated"
        ]
    );
    gw.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_400_naming_the_field_and_never_write() {
    let gw = TestGateway::spawn(|_| {}).await;
    let resp = gw
        .http
        .post(gw.url("/traffic/routes/optimize"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let mut bad = seed();
    bad["stops"][1]["longitude"] = json!(-200.0);
    let (status, body) = gw.post_json("/traffic/routes/optimize", &bad).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("stops[1].longitude")),
        "{body}"
    );
    bad = seed();
    bad["stops"][0]["timeWindow"] = json!({"start": "soon"});
    let (status, body) = gw.post_json("/traffic/routes/optimize", &bad).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("stops[0].timeWindow.start")),
        "{body}"
    );
    bad = seed();
    bad["stops"][1]["id"] = json!("stop-1");
    let (status, body) = gw.post_json("/traffic/routes/optimize", &bad).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("stops[1].id")),
        "{body}"
    );
    bad = seed();
    bad["stops"][0]["address"] = json!("x".repeat(2000));
    let (status, body) = gw.post_json("/traffic/routes/optimize", &bad).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("stops[0].address")),
        "{body}"
    );
    assert_eq!(gw.outbox().stats().log_events, 0);
    gw.stop().await;
}

#[tokio::test]
async fn more_stops_than_allowed_and_bodies_over_the_limit_are_refused() {
    let gw = TestGateway::spawn(|s| {
        s.optimize.max_stops = 5;
        s.http.max_body_bytes = 4096;
    })
    .await;
    let (status, body) = gw
        .post_json("/traffic/routes/optimize", &ten_stops("v"))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("stops")),
        "{body}"
    );
    let mut big = seed();
    big["stops"][0]["address"] = json!("y".repeat(900));
    big["stops"][1]["address"] = json!("z".repeat(900));
    big["padding"] = json!(vec!["w".repeat(900); 3]);
    let (status, body) = gw.post_json("/traffic/routes/optimize", &big).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("payload_too_large"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn with_tokens_configured_traffic_routes_answer_401_without_one() {
    let gw = TestGateway::spawn(|s| s.http.api_tokens = vec![TOKEN.into()]).await;
    let (status, body) = gw.post_json("/traffic/routes/optimize", &seed()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let resp = gw
        .http
        .post(gw.url("/traffic/routes/optimize"))
        .bearer_auth(TOKEN)
        .json(&seed())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let (status, _) = gw.get_json("/traffic/routes").await;
    assert_eq!(status, 401);
    let (status, _) = gw.get_json("/health/ready").await;
    assert_eq!(status, 200, "probes need no token");
    gw.stop().await;
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let gw = TestGateway::spawn(|s| {
        s.http.rate_limit_per_second = 1;
        s.http.rate_limit_burst = 2;
    })
    .await;
    let mut refused = None;
    for _ in 0..10 {
        let resp = gw.http.get(gw.url("/traffic/routes")).send().await.unwrap();
        if resp.status() == 429 {
            refused = Some(resp);
            break;
        }
    }
    let resp = refused.expect("ten requests at once exceed a burst of two");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited");
    let (status, _) = gw.get_json("/health/live").await;
    assert_eq!(status, 200, "probes are not rate limited");
    gw.stop().await;
}

#[tokio::test]
async fn a_full_outbox_answers_503_with_retry_after_and_stores_nothing() {
    let gw = TestGateway::spawn(|s| s.storage.max_queue_events = 2).await;
    plan(&gw, &seed()).await;
    let route = plan(&gw, &seed()).await;
    let resp = gw
        .http
        .post(gw.url("/traffic/routes/optimize"))
        .json(&seed())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    let (_, page) = gw.get_json("/traffic/routes").await;
    assert_eq!(
        page["routes"].as_array().unwrap().len(),
        2,
        "the refused route was not stored"
    );
    let stop = format!(
        "/traffic/routes/{}/stops/stop-1",
        route["routeId"].as_str().unwrap()
    );
    let (status, _) = patch(&gw, &stop, &json!({"status": "arrived"})).await;
    assert_eq!(status, 503);
    let (_, still) = gw
        .get_json(&format!(
            "/traffic/routes/{}",
            route["routeId"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        still["optimizedStops"][0]["status"], "pending",
        "nothing half-written"
    );
    gw.stop().await;
}

#[tokio::test]
async fn openapi_metrics_and_request_ids_are_served() {
    let gw = TestGateway::spawn(|_| {}).await;
    let (status, doc) = gw.get_json("/openapi.json").await;
    assert_eq!((status, doc["openapi"].as_str()), (200, Some("3.1.0")));
    assert!(doc["paths"]["/traffic/routes/{routeId}/stops/{stopId}"]["patch"].is_object());
    let route = plan(&gw, &seed()).await;
    gw.get_json(&format!(
        "/traffic/routes/{}",
        route["routeId"].as_str().unwrap()
    ))
    .await;
    let resp = gw
        .http
        .get(gw.url("/health/live"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-me-42");
    let text = gw
        .http
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"route="GET /traffic/routes/{routeId}""#),
        "{text}"
    );
    assert!(text.contains(r#"route="POST /traffic/routes/optimize""#));
    gw.stop().await;
}

#[tokio::test]
async fn the_stop_status_flow_produces_route_updated_in_kafka() {
    let cluster = kafka::shared().await;
    let (optimized, updated, positions) = (
        kafka::unique_topic("api-optimized"),
        kafka::unique_topic("api-updated"),
        kafka::unique_topic("api-positions"),
    );
    let topics = (optimized.clone(), updated.clone(), positions.clone());
    let gw = TestGateway::spawn(move |s: &mut Settings| {
        s.kafka.brokers = vec![cluster.bootstrap()];
        s.kafka.topic_partitions = 1;
        s.kafka.topics.route_optimized = topics.0;
        s.kafka.topics.route_updated = topics.1;
        s.kafka.topics.vehicle_position = topics.2;
    })
    .await;
    let route = plan(&gw, &seed()).await;
    let id = route["routeId"].as_str().unwrap().to_string();
    for (stop, status) in [
        ("stop-1", "arrived"),
        ("stop-1", "completed"),
        ("stop-2", "skipped"),
    ] {
        let (code, _) = patch(
            &gw,
            &format!("/traffic/routes/{id}/stops/{stop}"),
            &json!({"status": status}),
        )
        .await;
        assert_eq!(code, 200);
    }
    let wait = Duration::from_secs(90);
    let records = cluster.wait_for_records(&updated, 3, wait).await;
    let values: Vec<Value> = records
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap()).unwrap())
        .collect();
    for (r, v) in records.iter().zip(&values) {
        assert_eq!(
            r.key.as_deref(),
            Some(route["vehicleId"].as_str().unwrap().as_bytes())
        );
        assert_eq!(v["routeId"], id.as_str());
        assert_eq!(v["vehicleId"], route["vehicleId"]);
        let ce_type = r
            .headers
            .iter()
            .find(|(k, _)| k == "ce_type")
            .map(|(_, v)| v.as_slice());
        assert_eq!(ce_type, Some(&b"route.updated"[..]));
    }
    let changes: Vec<_> = values
        .iter()
        .map(|v| {
            (
                v["change"]["stopId"].clone(),
                v["change"]["to"].clone(),
                v["status"].clone(),
                v["version"].clone(),
                v["stop"]["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (
                json!("stop-1"),
                json!("arrived"),
                json!("in_progress"),
                json!(2),
                json!("arrived")
            ),
            (
                json!("stop-1"),
                json!("completed"),
                json!("in_progress"),
                json!(3),
                json!("completed")
            ),
            (
                json!("stop-2"),
                json!("skipped"),
                json!("completed"),
                json!(4),
                json!("skipped")
            ),
        ]
    );
    for v in &values {
        assert!(
            v.get("optimizedStops").is_none(),
            "a stop change is a delta: {v}"
        );
    }
    let planned = cluster.wait_for_records(&optimized, 1, wait).await;
    let v: Value = serde_json::from_slice(planned[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(v["routeId"], id.as_str());
    assert_eq!(v["optimizedStops"].as_array().unwrap().len(), 2);
    assert_eq!(v["version"], 1);
    gw.stop().await;
}

#[tokio::test]
async fn an_event_over_kafka_max_record_bytes_is_refused_with_413_before_it_is_acknowledged() {
    // The seed route (2 stops) announces itself in 1.9 KB as a Kafka record, ten stops in more
    // than 4 KB.
    let gw = TestGateway::spawn(|s| s.kafka.max_record_bytes = 4096).await;
    let (status, body) = gw
        .post_json("/traffic/routes/optimize", &ten_stops("truck-413"))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (413, Some("event_too_large")),
        "{body}"
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("kafka.max_record_bytes (4096)")
    );
    assert_eq!(
        gw.outbox().stats().log_events,
        0,
        "nothing was acknowledged"
    );
    // A route that fits, and its stop changes, which are small whatever the route's length.
    let route = plan(&gw, &seed()).await;
    let id = route["routeId"].as_str().unwrap();
    let (status, body) = patch(
        &gw,
        &format!("/traffic/routes/{id}/stops/stop-1"),
        &json!({"status": "arrived"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(gw.outbox().stats().log_events, 2);
    gw.stop().await;
}

#[tokio::test]
async fn implausible_fix_times_are_422_and_never_freeze_the_vehicle() {
    let gw = TestGateway::spawn(|s| {
        let defaults = Settings::default().http;
        s.http.max_timestamp_age_ms = defaults.max_timestamp_age_ms;
        s.http.max_timestamp_lead_ms = defaults.max_timestamp_lead_ms;
    })
    .await;
    let route = plan(&gw, &ten_stops("truck-7")).await;
    let id = route["routeId"].as_str().unwrap().to_string();
    let path = "/traffic/vehicles/truck-7/positions";
    let at = |t: &str, lat: f64| json!({"latitude": lat, "longitude": -73.99, "timestamp": t});
    for stamp in ["9999-12-31T23:59:59Z", "1900-01-01T00:00:00Z"] {
        let (status, body) = gw.post_json(path, &at(stamp, 40.0)).await;
        assert_eq!(status, 422, "{stamp}: {body}");
        assert_eq!(body["error"], "unprocessable", "{body}");
        assert_eq!(body["field"], "timestamp", "{body}");
        let batch = json!([at(&chrono::Utc::now().to_rfc3339(), 40.0), at(stamp, 40.0)]);
        let (status, body) = gw.post_json(path, &batch).await;
        assert_eq!(
            (status, body["field"].as_str()),
            (422, Some("[1].timestamp"))
        );
    }
    let (_, seen) = gw.get_json(&format!("/traffic/routes/{id}")).await;
    assert!(
        seen["lastPosition"].is_null(),
        "nothing was written: {seen}"
    );

    // A device clock four minutes ahead is inside the window; the next real fix still moves
    // the vehicle, and every time the API answers with keeps a four-digit year.
    let ahead = (chrono::Utc::now() + chrono::Duration::minutes(4)).to_rfc3339();
    let (status, _) = gw.post_json(path, &at(&ahead, 40.1)).await;
    assert_eq!(status, 202);
    let real = chrono::Utc::now().to_rfc3339();
    let (status, t) = gw.post_json(path, &at(&real, 40.2)).await;
    assert_eq!(status, 202, "{t}");
    let (_, seen) = gw.get_json(&format!("/traffic/routes/{id}")).await;
    assert_eq!(seen["lastPosition"]["latitude"], 40.2, "{seen}");
    let eta = t["nextStopEta"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(eta).is_ok() && eta.as_bytes()[4] == b'-');

    let stop = route["optimizedStops"][0]["id"].as_str().unwrap();
    let late = json!({"status": "arrived", "at": "9999-12-31T23:59:59Z"});
    let (status, body) = patch(&gw, &format!("/traffic/routes/{id}/stops/{stop}"), &late).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (422, Some("at")),
        "{body}"
    );
    gw.stop().await;
}
