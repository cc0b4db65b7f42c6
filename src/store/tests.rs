//! The store over a real outbox: atomic writes with their events, transitions, lists, fixes.

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use super::*;
use crate::config::{Settings, StorageConfig};
use crate::optimize::{Problem, Stop};
use crate::queue::Outbox;

struct Fixture {
    store: Store,
    outbox: Outbox,
    _dir: tempfile::TempDir,
}

fn fixture_with(adjust: impl FnOnce(&mut StorageConfig)) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StorageConfig {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default().storage
    };
    adjust(&mut cfg);
    let outbox = Outbox::open(dir.path(), &cfg, TREES).unwrap();
    let topics = Topics {
        route_optimized: "opt".into(),
        route_updated: "upd".into(),
        vehicle_position: "pos".into(),
    };
    let store = Store::new(outbox.clone(), topics, optimize::Params::default());
    Fixture {
        store,
        outbox,
        _dir: dir,
    }
}

fn fixture() -> Fixture {
    fixture_with(|_| {})
}

fn problem(n: usize) -> Problem {
    let stops = (0..n)
        .map(|i| Stop {
            id: format!("s{i}"),
            latitude: 40.70 + 0.01 * ((i * 7) % 5) as f64,
            longitude: -74.00 + 0.01 * i as f64,
            address: None,
            service_minutes: Some(2.0),
            time_window: None,
        })
        .collect();
    Problem {
        stops,
        start: None,
        end: None,
        round_trip: false,
        departure_time: None,
        preferences: Default::default(),
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn update(status: StopStatus) -> StopUpdate {
    StopUpdate {
        status,
        at: None,
        note: None,
    }
}

fn fix(lat: f64, lon: f64, secs: i64) -> Position {
    Position {
        latitude: lat,
        longitude: lon,
        timestamp: (Utc::now() + chrono::Duration::seconds(secs)).fixed_offset(),
        speed_kmh: Some(30.0),
        heading_deg: None,
    }
}

#[tokio::test]
async fn a_new_route_is_stored_planned_with_its_route_optimized_event() {
    let f = fixture();
    let route = f
        .store
        .create_route("v1".into(), problem(4), soon())
        .await
        .unwrap();
    assert_eq!(route.status, RouteStatus::Planned);
    assert_eq!(route.optimized_stops.len(), 4);
    let stored = f.store.route(&route.route_id).await.unwrap();
    assert_eq!(stored.event_id, route.event_id);
    let events = f.store.route_events(&route.route_id, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.kind.as_str(), e.topic.as_str(), e.key.as_str()),
        ("route.optimized", "opt", "v1")
    );
    assert_eq!(e.id, route.event_id);
    let payload = e.payload_json();
    assert_eq!(payload["routeId"], route.route_id.as_str());
    assert_eq!(payload["vehicleId"], "v1");
    assert_eq!(payload["optimizedStops"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn stop_updates_walk_the_route_to_completed_and_each_announces_route_updated() {
    let f = fixture();
    let r = f
        .store
        .create_route("v1".into(), problem(2), soon())
        .await
        .unwrap();
    let (a, b) = (
        r.optimized_stops[0].plan.id.clone(),
        r.optimized_stops[1].plan.id.clone(),
    );
    let r1 = f
        .store
        .update_stop(&r.route_id, &a, update(StopStatus::Arrived))
        .await
        .unwrap();
    assert_eq!(r1.status, RouteStatus::InProgress);
    f.store
        .update_stop(&r.route_id, &a, update(StopStatus::Completed))
        .await
        .unwrap();
    let done = f
        .store
        .update_stop(&r.route_id, &b, update(StopStatus::Skipped))
        .await
        .unwrap();
    assert_eq!(done.status, RouteStatus::Completed);
    let events = f.store.route_events(&r.route_id, 10).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "route.optimized",
            "route.updated",
            "route.updated",
            "route.updated"
        ]
    );
    let last = events[3].payload_json();
    assert_eq!(last["status"], "completed");
    assert_eq!(last["change"]["type"], "stop_status");
    assert_eq!(last["change"]["stopId"], b.as_str());
    assert_eq!(last["change"]["to"], "skipped");
    assert_eq!(events[3].id, done.event_id);
}

#[tokio::test]
async fn an_impossible_transition_is_a_conflict_and_writes_nothing() {
    let f = fixture();
    let r = f
        .store
        .create_route("v1".into(), problem(2), soon())
        .await
        .unwrap();
    let a = r.optimized_stops[0].plan.id.clone();
    f.store
        .update_stop(&r.route_id, &a, update(StopStatus::Completed))
        .await
        .unwrap();
    let before = f.outbox.stats().log_events;
    let err = f
        .store
        .update_stop(&r.route_id, &a, update(StopStatus::Arrived))
        .await;
    assert!(matches!(err, Err(Error::Conflict(_))), "{err:?}");
    let err = f
        .store
        .update_stop(&r.route_id, "nope", update(StopStatus::Arrived))
        .await;
    assert!(matches!(err, Err(Error::NotFound(_))), "{err:?}");
    let err = f
        .store
        .update_stop("no-route", &a, update(StopStatus::Arrived))
        .await;
    assert!(matches!(err, Err(Error::NotFound(_))), "{err:?}");
    assert_eq!(f.outbox.stats().log_events, before);
}

#[tokio::test]
async fn lists_are_newest_first_filter_by_vehicle_and_status_and_paginate() {
    let f = fixture();
    let mut ids = Vec::new();
    for v in ["v1", "v2", "v1", "v10", "v1"] {
        ids.push(
            f.store
                .create_route(v.into(), problem(1), soon())
                .await
                .unwrap()
                .route_id,
        );
    }
    let only = ids[0].clone();
    f.store
        .update_stop(&only, "s0", update(StopStatus::Completed))
        .await
        .unwrap();
    let q = |vehicle: Option<&str>, status, limit, after| ListQuery {
        vehicle_id: vehicle.map(str::to_string),
        status,
        limit,
        after,
    };
    let all = f.store.list(q(None, None, 10, None)).await.unwrap();
    let got: Vec<_> = all.routes.iter().map(|r| r.route_id.clone()).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(got, newest_first);
    assert_eq!(all.next_cursor, None);
    let v1 = f.store.list(q(Some("v1"), None, 2, None)).await.unwrap();
    assert_eq!(
        v1.routes.iter().map(|r| &r.route_id).collect::<Vec<_>>(),
        [&ids[4], &ids[2]]
    );
    let after = keys::decode_cursor(v1.next_cursor.as_deref().unwrap());
    let rest = f.store.list(q(Some("v1"), None, 2, after)).await.unwrap();
    assert_eq!(
        rest.routes.iter().map(|r| &r.route_id).collect::<Vec<_>>(),
        [&ids[0]]
    );
    assert_eq!(rest.next_cursor, None);
    let done = f
        .store
        .list(q(None, Some(RouteStatus::Completed), 10, None))
        .await
        .unwrap();
    assert_eq!(done.routes.len(), 1);
    assert_eq!(done.routes[0].route_id, only);
    let v1_planned = f
        .store
        .list(q(Some("v1"), Some(RouteStatus::Planned), 10, None))
        .await
        .unwrap();
    assert_eq!(v1_planned.routes.len(), 2);
    let planned = f
        .store
        .list(q(None, Some(RouteStatus::Planned), 10, None))
        .await
        .unwrap();
    assert_eq!(
        planned.routes.len(),
        4,
        "the completed route left the planned index"
    );
}

#[tokio::test]
async fn a_full_outbox_refuses_the_route_and_leaves_no_record() {
    let f = fixture_with(|c| c.max_queue_events = 1);
    f.store
        .create_route("v1".into(), problem(1), soon())
        .await
        .unwrap();
    let err = f.store.create_route("v1".into(), problem(1), soon()).await;
    assert!(
        matches!(err, Err(Error::Queue(queue::Error::QuotaExceeded { .. }))),
        "{err:?}"
    );
    let page = f
        .store
        .list(ListQuery {
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.routes.len(), 1);
}

#[tokio::test]
async fn gps_fixes_refresh_the_active_routes_etas_and_never_go_back_in_time() {
    let f = fixture();
    let r = f
        .store
        .create_route("v1".into(), problem(3), soon())
        .await
        .unwrap();
    let first = &r.optimized_stops[0];
    let at_first = Position {
        timestamp: first.plan.arrival_time + chrono::Duration::seconds(600),
        ..fix(first.plan.latitude, first.plan.longitude, 0)
    };
    let t = f.store.track("v1", vec![at_first]).await.unwrap();
    assert_eq!(t.route_id.as_deref(), Some(r.route_id.as_str()));
    assert_eq!(t.next_stop_id.as_deref(), Some(first.plan.id.as_str()));
    let delay = t.delay_seconds.unwrap();
    assert!((delay - 600.0).abs() < 1.0, "{delay}");
    let seen = f.store.route(&r.route_id).await.unwrap();
    assert_eq!(seen.last_position, Some(at_first));
    let eta = seen.optimized_stops[1].eta.unwrap();
    let expected = seen.optimized_stops[1].plan.arrival_time + lifecycle::seconds(delay);
    assert_eq!(eta, expected);
    let older = fix(0.0, 0.0, -3600);
    let t = f.store.track("v1", vec![older]).await.unwrap();
    assert_eq!(t.accepted, 1);
    let seen = f.store.route(&r.route_id).await.unwrap();
    assert_eq!(
        seen.last_position,
        Some(at_first),
        "an older fix does not move the vehicle"
    );
    let kinds: Vec<_> = f
        .store
        .route_events(&r.route_id, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        ["route.optimized", "vehicle.position", "vehicle.position"]
    );
}

#[tokio::test]
async fn reoptimizing_keeps_visited_stops_first_and_replans_the_rest() {
    let f = fixture();
    let r = f
        .store
        .create_route("v1".into(), problem(5), soon())
        .await
        .unwrap();
    let first = r.optimized_stops[0].plan.id.clone();
    f.store
        .update_stop(&r.route_id, &first, update(StopStatus::Completed))
        .await
        .unwrap();
    f.store
        .track("v1", vec![fix(40.75, -73.95, 0)])
        .await
        .unwrap();
    let re = f.store.reoptimize(&r.route_id, soon()).await.unwrap();
    assert_eq!(re.optimized_stops.len(), 5);
    assert_eq!(re.optimized_stops[0].plan.id, first);
    assert_eq!(re.optimized_stops[0].status, StopStatus::Completed);
    let seqs: Vec<_> = re.optimized_stops.iter().map(|s| s.plan.sequence).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let mut ids: Vec<_> = re
        .optimized_stops
        .iter()
        .map(|s| s.plan.id.clone())
        .collect();
    ids.sort();
    assert_eq!(ids, ["s0", "s1", "s2", "s3", "s4"]);
    assert_eq!(re.status, RouteStatus::InProgress);
    for s in &re.optimized_stops[1..] {
        f.store
            .update_stop(&r.route_id, &s.plan.id, update(StopStatus::Failed))
            .await
            .unwrap();
    }
    let err = f.store.reoptimize(&r.route_id, soon()).await;
    assert!(matches!(err, Err(Error::Conflict(_))), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fixes_and_stop_updates_all_land_through_compare_and_set() {
    let f = fixture();
    let r = f
        .store
        .create_route("v1".into(), problem(3), soon())
        .await
        .unwrap();
    let fixes: Vec<_> = (0..20)
        .map(|i| {
            let s = f.store.clone();
            tokio::spawn(async move { s.track("v1", vec![fix(40.7, -74.0, i)]).await })
        })
        .collect();
    let stop = r.optimized_stops[0].plan.id.clone();
    let updated = f
        .store
        .update_stop(&r.route_id, &stop, update(StopStatus::Completed))
        .await;
    for t in fixes {
        t.await.unwrap().unwrap();
    }
    updated.unwrap();
    let seen = f.store.route(&r.route_id).await.unwrap();
    assert_eq!(seen.optimized_stops[0].status, StopStatus::Completed);
    assert!(seen.last_position.is_some());
    let events = f.store.route_events(&r.route_id, 100).await.unwrap();
    assert_eq!(events.len(), 1 + 20 + 1);
}
