//! The store over a real outbox: atomic writes with their events, transitions, lists, fixes.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::time::Instant;

use super::*;
use crate::optimize::{Problem, Stop};
use testdata::{fixture, fixture_limited, fixture_with, limit, topics};

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

/// A problem of `n` stops with street addresses, solved briefly (the plan's quality is not the
/// point where this is used).
fn long_problem(n: usize) -> Problem {
    let mut p = problem(n);
    for (i, s) in p.stops.iter_mut().enumerate() {
        s.address = Some(format!("{} Example Avenue, Springfield, IL 62704", 100 + i));
        s.latitude = 40.0 + (i % 40) as f64 * 0.01;
        s.longitude = -74.0 + (i / 40) as f64 * 0.01;
    }
    p.preferences.max_compute_millis = Some(200);
    p
}

fn json(route: &Route) -> Value {
    serde_json::to_value(route).unwrap()
}

/// What a consumer of `route.updated` does with a stop change (see `announce`): apply it to the
/// route JSON it holds, which must be at the version just before.
fn apply(held: &mut Value, delta: &Value) {
    let version = held["version"]
        .as_u64()
        .expect("the held route has a version");
    assert_eq!(
        delta["version"],
        version + 1,
        "a delta for the next version"
    );
    let set = |obj: &mut Value, key: &str, v: &Value| {
        let obj = obj.as_object_mut().unwrap();
        if v.is_null() {
            obj.remove(key);
        } else {
            obj.insert(key.to_string(), v.clone());
        }
    };
    for key in [
        "version",
        "status",
        "eventId",
        "updatedAt",
        "delaySeconds",
        "lastPosition",
    ] {
        set(held, key, &delta[key]);
    }
    let stops = held["optimizedStops"].as_array_mut().unwrap();
    let stop = stops
        .iter_mut()
        .find(|s| s["id"] == delta["stop"]["id"])
        .expect("the changed stop is on the held route");
    for key in ["status", "arrivedAt", "finishedAt", "note"] {
        set(stop, key, &delta["stop"][key]);
    }
    for (id, eta) in delta["etas"].as_object().expect("etas") {
        let stop = stops.iter_mut().find(|s| s["id"] == id.as_str()).unwrap();
        set(stop, "eta", eta);
    }
}

/// JSON paths where `a` and `b` differ (a long route's JSON is too large to print whole).
fn differences(a: &Value, b: &Value, here: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let (va, vb) = (&x.get(k), &y.get(k));
                match (va, vb) {
                    (Some(va), Some(vb)) => differences(va, vb, &format!("{here}.{k}"), out),
                    _ => out.push(format!("{here}.{k}: {va:?} vs {vb:?}")),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differences(va, vb, &format!("{here}[{i}]"), out);
            }
        }
        _ if a != b => out.push(format!("{here}: {a} vs {b}")),
        _ => {}
    }
}

fn assert_same(held: &Value, now: &Value, what: &str) {
    let mut diff = Vec::new();
    differences(held, now, "", &mut diff);
    assert!(diff.is_empty(), "{what}: held vs read: {diff:?}");
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
    assert_eq!(payload["version"], 1);
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
    assert_eq!(last["version"], 4);
    assert!(
        last.get("optimizedStops").is_none(),
        "a stop change is a delta"
    );
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
    // `at_first` is stamped after the gateway's clock (the planned arrival lies ahead): the
    // next fix with a plausible time supersedes it; an older one after that does not.
    let recent = fix(40.71, -74.0, -60);
    f.store.track("v1", vec![recent]).await.unwrap();
    let older = fix(0.0, 0.0, -3600);
    let t = f.store.track("v1", vec![older]).await.unwrap();
    assert_eq!(t.accepted, 1);
    let seen = f.store.route(&r.route_id).await.unwrap();
    assert_eq!(
        seen.last_position,
        Some(recent),
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
        [
            "route.optimized",
            "vehicle.position",
            "vehicle.position",
            "vehicle.position"
        ]
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
    let replanned = f.store.route_events(&r.route_id, 10).await.unwrap();
    let replanned = replanned.last().unwrap().payload_json();
    assert_eq!(
        (&replanned["change"]["type"], &replanned["version"]),
        (&Value::from("reoptimized"), &Value::from(3)),
        "a re-plan moves every pending stop: its event carries the whole route"
    );
    assert_eq!(replanned["optimizedStops"], json(&re)["optimizedStops"]);
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

#[tokio::test]
async fn each_stop_change_applied_to_the_route_before_it_gives_the_route_after_it() {
    let f = fixture();
    let r = f
        .store
        .create_route("v1".into(), problem(3), soon())
        .await
        .unwrap();
    let ids: Vec<String> = r
        .optimized_stops
        .iter()
        .map(|s| s.plan.id.clone())
        .collect();
    // Ten minutes late at the first stop: the route shows a delay, ETAs and a position.
    let first = &r.optimized_stops[0];
    let late = Position {
        timestamp: first.plan.arrival_time + chrono::Duration::seconds(600),
        ..fix(first.plan.latitude, first.plan.longitude, 0)
    };
    f.store.track("v1", vec![late]).await.unwrap();
    let mut held = json(&f.store.route(&r.route_id).await.unwrap());
    assert_eq!(held["version"], 1);
    assert!(held["delaySeconds"].is_number() && held["lastPosition"].is_object());
    let steps = [
        (&ids[0], StopStatus::Arrived, Some("gate 3")),
        (&ids[0], StopStatus::Completed, None),
        (&ids[1], StopStatus::Skipped, None),
        (&ids[2], StopStatus::Arrived, None),
        // The last one completes the route: no ETAs, no delay, not the vehicle's route any more.
        (&ids[2], StopStatus::Failed, Some("closed")),
    ];
    for (step, (stop, status, note)) in steps.into_iter().enumerate() {
        let u = StopUpdate {
            status,
            at: None,
            note: note.map(str::to_string),
        };
        f.store.update_stop(&r.route_id, stop, u).await.unwrap();
        let events = f.store.route_events(&r.route_id, 100).await.unwrap();
        let delta = events.last().unwrap();
        assert_eq!(delta.kind, "route.updated");
        let delta = delta.payload_json();
        assert!(delta.get("optimizedStops").is_none(), "{delta}");
        apply(&mut held, &delta);
        let now = json(&f.store.route(&r.route_id).await.unwrap());
        assert_same(&held, &now, &format!("after step {step} ({delta})"));
    }
    assert_eq!(
        (&held["status"], &held["version"]),
        (&"completed".into(), &6.into())
    );
}

#[tokio::test]
async fn a_stop_change_on_a_2000_stop_route_is_announced_in_an_event_as_small_as_on_3_stops() {
    let mut sizes = Vec::new();
    for n in [2000, 3] {
        let f = fixture();
        let r = f
            .store
            .create_route("v1".into(), long_problem(n), soon())
            .await
            .unwrap();
        let mut held = json(&f.store.route(&r.route_id).await.unwrap());
        f.store
            .update_stop(&r.route_id, "s0", update(StopStatus::Arrived))
            .await
            .unwrap();
        let events = f.store.route_events(&r.route_id, 10).await.unwrap();
        let delta = events.last().unwrap();
        assert_eq!(delta.kind, "route.updated");
        let size = delta.record_size(&crate::events::Origin::new("urn:routegate", ""));
        assert!(
            size < 1024,
            "{n} stops: a stop change of {size} record bytes"
        );
        sizes.push(size);
        apply(&mut held, &delta.payload_json());
        let now = json(&f.store.route(&r.route_id).await.unwrap());
        assert_same(&held, &now, &format!("{n} stops"));
    }
    // Timestamps print a varying number of fractional digits; nothing else differs.
    assert!(
        sizes[0] <= sizes[1] + 64,
        "record bytes of the stop change on 2,000 and 3 stops: {sizes:?}"
    );
}

#[tokio::test]
async fn an_event_over_the_kafka_record_limit_is_refused_before_anything_is_written() {
    // A route of 6 stops announces itself in about 3.7 KB, one of 40 stops in about 19 KB.
    let f = fixture_limited(|_| {}, 8 * 1024);
    let err = f
        .store
        .create_route("v1".into(), long_problem(40), soon())
        .await;
    match err {
        Err(Error::EventTooLarge { kind, bytes, limit }) => {
            assert_eq!((kind.as_str(), limit), ("route.optimized", 8 * 1024));
            assert!(bytes > limit, "{bytes}");
        }
        other => panic!(
            "expected EventTooLarge, got {:?}",
            other.map(|r| r.route_id)
        ),
    }
    assert_eq!(f.outbox.stats().log_events, 0, "nothing was acknowledged");
    let none = f
        .store
        .track("v1", vec![fix(40.7, -74.0, 0)])
        .await
        .unwrap();
    assert_eq!(
        none.route_id, None,
        "the vehicle record was not written either"
    );

    let r = f
        .store
        .create_route("v1".into(), long_problem(6), soon())
        .await
        .unwrap();
    // Under a limit the whole route no longer fits in, stop changes still do (about 700 bytes),
    // but a re-plan, which announces the whole route, is refused and changes nothing.
    let tight = Store::new(
        f.outbox.clone(),
        topics(),
        optimize::Params::default(),
        limit(2048),
    );
    tight
        .update_stop(&r.route_id, "s0", update(StopStatus::Completed))
        .await
        .unwrap();
    let logged = f.outbox.stats().log_events;
    let err = tight.reoptimize(&r.route_id, soon()).await;
    assert!(
        matches!(&err, Err(Error::EventTooLarge { kind, .. }) if kind == "route.updated"),
        "{err:?}"
    );
    assert_eq!(f.outbox.stats().log_events, logged);
    assert_eq!(f.store.route(&r.route_id).await.unwrap().version, 2);
    // GPS fixes too: a vehicle id of 1,000 characters is in the key and in the payload.
    let err = tight
        .track(&"v".repeat(1000), vec![fix(40.7, -74.0, 0)])
        .await;
    assert!(
        matches!(&err, Err(Error::EventTooLarge { kind, .. }) if kind == "vehicle.position"),
        "{err:?}"
    );
    assert_eq!(f.outbox.stats().log_events, logged);
}

#[tokio::test]
async fn a_fix_from_the_future_holds_the_vehicle_only_until_the_next_plausible_fix() {
    let f = fixture();
    let r = f
        .store
        .create_route("v1".into(), problem(3), soon())
        .await
        .unwrap();
    let ahead = fix(40.70, -74.0, 240);
    f.store.track("v1", vec![ahead]).await.unwrap();
    let real = fix(40.72, -74.01, 0);
    f.store.track("v1", vec![real]).await.unwrap();
    let later = fix(40.73, -74.02, 0);
    f.store.track("v1", vec![later]).await.unwrap();
    let late = fix(40.0, -74.5, -30);
    f.store.track("v1", vec![late]).await.unwrap();
    let seen = f.store.route(&r.route_id).await.unwrap();
    assert_eq!(seen.last_position, Some(later));
}
