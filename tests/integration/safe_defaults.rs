//! Safe defaults for browsers and careless clients, over real sockets: a foreign `Origin` cannot
//! write or open the WebSocket, a body not declared as JSON gets 415, `HEAD` answers wherever
//! `GET` does, and control characters are refused in ids but kept (escaped) in free text.

use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::gateway::TestGateway;

fn seed() -> Value {
    json!({"vehicleId": "van-1", "stops": [
        {"id": "stop-1", "latitude": 40.7128, "longitude": -74.0060, "address": "New York, NY"},
        {"id": "stop-2", "latitude": 40.7589, "longitude": -73.9851, "address": "Times Square"}]})
}

/// Send `body` as JSON text with the given extra headers; status and JSON answer.
async fn send(
    gw: &TestGateway,
    method: Method,
    path: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = gw.http.request(method, gw.url(path)).body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

const JSON: (&str, &str) = ("content-type", "application/json");

async fn route_count(gw: &TestGateway) -> usize {
    let (status, page) = gw.get_json("/traffic/routes").await;
    assert_eq!(status, 200, "{page}");
    page["routes"].as_array().expect("routes").len()
}

#[tokio::test]
async fn a_foreign_origin_gets_403_on_writes_and_nothing_is_written() {
    let gw = TestGateway::spawn(|_| {}).await;
    let foreign = ("origin", "https://evil.example");
    let (status, body) = send(
        &gw,
        Method::POST,
        "/traffic/routes/optimize",
        &seed(),
        &[JSON, foreign],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, body) = send(
        &gw,
        Method::POST,
        "/traffic/vehicles/van-1/positions",
        &json!({"latitude": 1, "longitude": 2, "timestamp": "2026-01-01T00:00:00Z"}),
        &[JSON, foreign],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = send(
        &gw,
        Method::DELETE,
        "/admin/dead-letters/1",
        &json!({}),
        &[foreign],
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(route_count(&gw).await, 0, "a refused write stored nothing");

    let resp = gw
        .http
        .get(gw.url("/traffic/routes"))
        .header(foreign.0, foreign.1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "reads are left to the browser's same-origin policy"
    );
}

#[tokio::test]
async fn a_body_not_declared_as_json_gets_415_naming_content_type_and_nothing_is_written() {
    let gw = TestGateway::spawn(|_| {}).await;
    let (status, body) = send(
        &gw,
        Method::POST,
        "/traffic/routes/optimize",
        &seed(),
        &[("content-type", "text/plain")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str(), body["field"].as_str()),
        (415, Some("unsupported_media_type"), Some("content-type")),
        "{body}"
    );
    let (status, _) = send(&gw, Method::POST, "/traffic/routes/optimize", &seed(), &[]).await;
    assert_eq!(
        status, 415,
        "a body without any Content-Type is not JSON either"
    );
    assert_eq!(route_count(&gw).await, 0, "a refused write stored nothing");
}

#[tokio::test]
async fn same_origin_pages_and_clients_without_origin_keep_working() {
    let gw = TestGateway::spawn(|_| {}).await;
    let own = format!("http://{}", gw.addr);
    let (status, body) = send(
        &gw,
        Method::POST,
        "/traffic/routes/optimize",
        &seed(),
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("origin", &own),
        ],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        &gw,
        Method::POST,
        "/traffic/routes/optimize",
        &seed(),
        &[JSON],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(route_count(&gw).await, 2);
}

#[tokio::test]
async fn listed_cors_origins_may_write() {
    let gw =
        TestGateway::spawn(|s| s.http.cors_origins = vec!["https://dash.example".into()]).await;
    let (status, body) = send(
        &gw,
        Method::POST,
        "/traffic/routes/optimize",
        &seed(),
        &[JSON, ("origin", "https://dash.example")],
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn with_cors_origins_set_the_gateways_own_pages_still_write_and_open_the_websocket() {
    let gw =
        TestGateway::spawn(|s| s.http.cors_origins = vec!["https://dash.example".into()]).await;
    let own = format!("http://{}", gw.addr);
    let (status, body) = send(
        &gw,
        Method::POST,
        "/traffic/routes/optimize",
        &seed(),
        &[JSON, ("origin", &own)],
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let mut ws = gw
        .ws_url("/traffic/routes/ws")
        .as_str()
        .into_client_request()
        .unwrap();
    ws.headers_mut().insert("origin", own.parse().unwrap());
    tokio_tungstenite::connect_async(ws)
        .await
        .expect("the dashboard's own WebSocket connects");
    let (status, _) = send(
        &gw,
        Method::POST,
        "/traffic/routes/optimize",
        &seed(),
        &[JSON, ("origin", "https://evil.example")],
    )
    .await;
    assert_eq!(status, 403, "other origins are still refused");
}

#[tokio::test]
async fn a_websocket_from_a_foreign_origin_is_refused_and_a_same_origin_one_connects() {
    let gw = TestGateway::spawn(|_| {}).await;
    let url = gw.ws_url("/traffic/routes/ws");
    let mut foreign = url.as_str().into_client_request().unwrap();
    foreign
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(foreign).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 403)
        }
        Err(e) => panic!("expected a 403 answer, got {e}"),
        Ok(_) => panic!("a foreign page opened the WebSocket"),
    }
    let mut own = url.as_str().into_client_request().unwrap();
    own.headers_mut()
        .insert("origin", format!("http://{}", gw.addr).parse().unwrap());
    tokio_tungstenite::connect_async(own)
        .await
        .expect("same-origin WebSocket");
}

#[tokio::test]
async fn head_answers_like_get_with_the_same_headers_and_no_body() {
    let gw = TestGateway::spawn(|_| {}).await;
    let (_, route) = send(
        &gw,
        Method::POST,
        "/traffic/routes/optimize",
        &seed(),
        &[JSON],
    )
    .await;
    let id = route["routeId"].as_str().expect("a route");
    for path in [
        "/health/live".to_string(),
        "/".to_string(),
        "/openapi.json".to_string(),
        "/metrics".to_string(),
        "/traffic/routes".to_string(),
        format!("/traffic/routes/{id}"),
        format!("/traffic/routes/{id}/events"),
        "/admin/queue/stats".to_string(),
        "/traffic/routes/00000000-0000-0000-0000-000000000000".to_string(),
    ] {
        let get = gw.http.get(gw.url(&path)).send().await.unwrap();
        let head = gw.http.head(gw.url(&path)).send().await.unwrap();
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        assert_eq!(
            head.headers().get("content-type"),
            get.headers().get("content-type"),
            "HEAD {path}"
        );
        let get_len = get.bytes().await.unwrap().len();
        assert!(get_len > 0, "GET {path} has a body");
        let declared = head.headers().get("content-length").cloned();
        assert!(
            head.bytes().await.unwrap().is_empty(),
            "HEAD {path} sent a body"
        );
        if let Some(n) = declared {
            let n: usize = n.to_str().unwrap().parse().unwrap();
            if !path.starts_with("/metrics") && !path.starts_with("/admin") {
                assert_eq!(n, get_len, "HEAD {path} declares the GET body's length");
            }
        }
    }
}

/// Status and `field` of an answer.
fn refused(answer: &(u16, Value)) -> (u16, Option<&str>) {
    (answer.0, answer.1["field"].as_str())
}

#[tokio::test]
async fn control_characters_in_ids_get_400_naming_the_field_and_nothing_is_written() {
    let gw = TestGateway::spawn(|_| {}).await;
    let post = |body: Value| {
        let gw = &gw;
        async move { send(gw, Method::POST, "/traffic/routes/optimize", &body, &[JSON]).await }
    };
    for bad in ["van\u{0}1", "van\u{1b}[31m", "van\u{7f}", "van\u{85}"] {
        let mut body = seed();
        body["vehicleId"] = json!(bad);
        let answer = post(body).await;
        assert_eq!(
            refused(&answer),
            (400, Some("vehicleId")),
            "{bad:?}: {}",
            answer.1
        );
        let mut body = seed();
        body["stops"][1]["id"] = json!(bad);
        let answer = post(body).await;
        assert_eq!(
            refused(&answer),
            (400, Some("stops[1].id")),
            "{bad:?}: {}",
            answer.1
        );
    }
    let fix = json!({"latitude": 1, "longitude": 2, "timestamp": "2026-01-01T00:00:00Z"});
    let answer = send(
        &gw,
        Method::POST,
        "/traffic/vehicles/van%001/positions",
        &fix,
        &[JSON],
    )
    .await;
    assert_eq!(refused(&answer), (400, Some("vehicleId")), "{}", answer.1);
    let answer = gw.get_json("/traffic/routes?vehicleId=van%0A1").await;
    assert_eq!(refused(&answer), (400, Some("vehicleId")), "{}", answer.1);
    assert_eq!(route_count(&gw).await, 0, "a refused write stored nothing");

    let (_, route) = post(seed()).await;
    let id = route["routeId"].as_str().expect("a route");
    let status = json!({"status": "arrived"});
    let path = format!("/traffic/routes/{id}/stops/stop%0D1");
    let answer = send(&gw, Method::PATCH, &path, &status, &[JSON]).await;
    assert_eq!(refused(&answer), (400, Some("stopId")), "{}", answer.1);

    let url = gw.ws_url("/traffic/routes/ws?vehicleId=van%1B1");
    match tokio_tungstenite::connect_async(url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 400)
        }
        Err(e) => panic!("expected a 400 answer, got {e}"),
        Ok(_) => panic!("a WebSocket filter with a control character was accepted"),
    }
}

#[tokio::test]
async fn control_characters_in_free_text_are_stored_as_given_and_escaped_in_json() {
    let gw = TestGateway::spawn(|_| {}).await;
    let address = "Main St\u{0}\u{7}\u{1b}[2J\u{7f}\u{85}\nfloor 2";
    let note = "left at door\u{0}\t\u{9b}";
    let mut body = seed();
    body["stops"][0]["address"] = json!(address);
    let (status, route) = send(
        &gw,
        Method::POST,
        "/traffic/routes/optimize",
        &body,
        &[JSON],
    )
    .await;
    assert_eq!(status, 201, "{route}");
    let id = route["routeId"].as_str().unwrap();
    let path = format!("/traffic/routes/{id}/stops/stop-1");
    let change = json!({"status": "arrived", "note": note});
    let (status, changed) = send(&gw, Method::PATCH, &path, &change, &[JSON]).await;
    assert_eq!(status, 200, "{changed}");

    let raw = gw
        .http
        .get(gw.url(&format!("/traffic/routes/{id}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        raw.iter().all(|&b| b >= 0x20),
        "C0 characters are escaped in the JSON text"
    );
    let read: Value = serde_json::from_slice(&raw).unwrap();
    let stop = read["optimizedStops"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "stop-1")
        .unwrap();
    assert_eq!(stop["address"], address, "stored as given");
    assert_eq!(stop["note"], note, "stored as given");
}
