//! The gateway with a road network (`routing.osm_file`): readiness waits for the graph, routes,
//! geometry and ETAs follow the roads of the extract in `data/osm` (© OpenStreetMap contributors,
//! ODbL), and a point off the map is a 422 naming it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use routegate::optimize::Location;
use routegate::roads::Roads;
use routegate::roads::ch::{Objective, Weighting};
use routegate::roads::network::Avoid;
use serde_json::{Value, json};

use crate::harness::gateway::TestGateway;

fn monaco() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/osm/monaco.osm.pbf")
}

async fn road_gateway() -> TestGateway {
    let gw = TestGateway::spawn(|s| s.routing.osm_file = monaco().display().to_string()).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = gw.get_json("/health/ready").await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        let reason = body["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("road network is being prepared"), "{body}");
        assert!(
            Instant::now() < deadline,
            "the road graph never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw
}

const STOPS: [(&str, f64, f64); 4] = [
    ("casino", 43.7394, 7.4276),
    ("port", 43.7350, 7.4215),
    ("palace", 43.7311, 7.4197),
    ("larvotto", 43.7449, 7.4355),
];

fn request(vehicle: &str, extra: Value) -> Value {
    let stops: Vec<Value> = STOPS
        .iter()
        .map(|(id, lat, lon)| json!({"id": id, "latitude": lat, "longitude": lon}))
        .collect();
    let mut r = json!({"vehicleId": vehicle, "stops": stops});
    if let (Some(r), Some(extra)) = (r.as_object_mut(), extra.as_object()) {
        r.extend(extra.clone());
    }
    r
}

#[tokio::test]
async fn with_an_extract_routes_geometry_and_etas_follow_the_roads() {
    let gw = road_gateway().await;
    let (status, route) = gw
        .post_json("/traffic/routes/optimize", &request("bus-1", json!({})))
        .await;
    assert_eq!(status, 201, "{route}");
    let model = &route["optimization"]["costModel"];
    assert_eq!(model["kind"], "road", "{model}");
    assert_eq!(model["extract"], "monaco.osm.pbf");
    let warnings = route["warnings"].as_array().unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    // The geometry follows streets: far more vertices than stops.
    let coords = route["geometry"]["coordinates"].as_array().unwrap();
    assert!(coords.len() > 40, "{} vertices", coords.len());
    // Leg costs are the road network's, stop by stop.
    let roads = Roads::build(&monaco()).unwrap();
    let fastest = Weighting {
        objective: Objective::Time,
        avoid: Avoid::default(),
    };
    let stops = route["optimizedStops"].as_array().unwrap();
    let at = |s: &Value| Location {
        latitude: s["latitude"].as_f64().unwrap(),
        longitude: s["longitude"].as_f64().unwrap(),
    };
    for pair in stops.windows(2) {
        let leg = roads.cost(at(&pair[0]), at(&pair[1]), fastest).unwrap();
        let reported = pair[1]["durationFromPreviousSeconds"].as_f64().unwrap();
        assert!(
            (reported - leg.time_ms as f64 / 1000.0).abs() < 0.01,
            "{reported} vs {leg:?}"
        );
        let snap = pair[1]["snapDistanceMeters"].as_f64().unwrap();
        assert!((0.0..1000.0).contains(&snap), "{snap}");
    }
    // A fix: its ETA to the next stop is the road time from there.
    let first = &stops[0];
    let now = chrono::Utc::now();
    let fix = json!({"latitude": 43.7370, "longitude": 7.4240, "timestamp": now.to_rfc3339()});
    let (status, t) = gw
        .post_json("/traffic/vehicles/bus-1/positions", &fix)
        .await;
    assert_eq!(status, 202, "{t}");
    let eta: chrono::DateTime<chrono::Utc> = t["nextStopEta"].as_str().unwrap().parse().unwrap();
    let drive = roads
        .cost(
            Location {
                latitude: 43.7370,
                longitude: 7.4240,
            },
            at(first),
            fastest,
        )
        .unwrap();
    let expected = now + chrono::Duration::milliseconds(drive.time_ms as i64);
    assert!(
        (eta - expected).num_milliseconds().abs() < 1500,
        "eta {eta} vs road time {expected}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_stop_in_the_sea_is_a_422_naming_it_and_preferences_are_honoured() {
    let gw = road_gateway().await;
    let mut body = request("bus-2", json!({}));
    body["stops"][2]["latitude"] = json!(43.70);
    body["stops"][2]["longitude"] = json!(7.43);
    let (status, err) = gw.post_json("/traffic/routes/optimize", &body).await;
    assert_eq!(status, 422, "{err}");
    assert_eq!(err["error"], "unroutable");
    assert_eq!(err["field"], "stops[2]");
    let prefs = json!({"preferences": {"avoidTolls": true, "avoidHighways": true, "optimizeFor": "distance"}});
    let (status, route) = gw
        .post_json("/traffic/routes/optimize", &request("bus-3", prefs))
        .await;
    assert_eq!(status, 201, "{route}");
    let warnings = route["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .all(|w| !w.as_str().unwrap().contains("cannot be honoured")),
        "{warnings:?}"
    );
    assert_eq!(route["optimization"]["objective"], "distance");
    gw.stop().await;
}

#[tokio::test]
async fn a_missing_extract_stops_the_start_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::harness::gateway::test_settings(dir.path());
    settings.routing.osm_file = "/nowhere/depot.osm.pbf".into();
    let err = routegate::app::App::build(settings)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/nowhere/depot.osm.pbf"), "{err}");
}

#[tokio::test]
async fn the_basemap_serves_the_extracts_roads_in_a_box_simplified_for_the_zoom() {
    let gw = road_gateway().await;
    let bbox = "7.41,43.72,7.44,43.75";
    let (status, close) = gw
        .get_json(&format!("/traffic/roads?bbox={bbox}&zoom=18"))
        .await;
    assert_eq!(status, 200, "{close}");
    assert_eq!(close["type"], "FeatureCollection");
    let features = close["features"].as_array().unwrap();
    assert!(features.len() > 100, "{} stretches", features.len());
    let vertices = |m: &Value| -> usize {
        m["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["geometry"]["coordinates"].as_array().unwrap().len())
            .sum()
    };
    let (_, far) = gw
        .get_json(&format!("/traffic/roads?bbox={bbox}&zoom=12"))
        .await;
    assert_eq!(far["features"].as_array().unwrap().len(), features.len());
    assert!(
        vertices(&far) < vertices(&close),
        "a lower zoom keeps fewer vertices"
    );
    for bad in [
        "7.41,43.72,7.44",
        "7.44,43.72,7.41,43.75",
        "1,2,3,4",
        "a,b,c,d",
    ] {
        let (status, err) = gw.get_json(&format!("/traffic/roads?bbox={bad}")).await;
        assert_eq!(
            (status, err["field"].as_str()),
            (400, Some("bbox")),
            "{bad}: {err}"
        );
    }
    gw.stop().await;
    let plain = TestGateway::spawn(|_| {}).await;
    let (status, err) = plain.get_json(&format!("/traffic/roads?bbox={bbox}")).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (404, Some("not_found")),
        "{err}"
    );
    plain.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_a_road_route_over_the_extracts_roads() {
    use crate::harness::browser;
    let gw = road_gateway().await;
    let b = tokio::task::spawn_blocking(browser::install)
        .await
        .expect("the browser install does not panic");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let shot = browser::target_dir().join("dashboard-roads.png");
    let _ = std::fs::remove_file(&shot);
    let run = tokio::time::timeout(
        Duration::from_secs(50),
        tokio::process::Command::new(&b.node)
            .arg(browser::browser_src_dir().join("roads.spec.mjs"))
            .env("GATEWAY_URL", gw.url(""))
            .env("BROWSER_MODULES", &b.modules)
            .env("CHROMIUM", &b.chromium)
            .env("SEED", root.join("data/samples/optimize-monaco.json"))
            .env("SCREENSHOT", &shot)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser test finishes within 50 s")
    .expect("run node");
    assert!(
        run.status.success(),
        "the browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(shot.is_file());
    gw.stop().await;
}
