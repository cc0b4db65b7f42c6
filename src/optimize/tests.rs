//! Tests of the public API: JSON shape, route invariants, validation, time windows, limits.

use chrono::{DateTime, Duration, FixedOffset};
use rand::{Rng, SeedableRng, rngs::SmallRng};

use super::*;

pub(super) fn t0() -> DateTime<FixedOffset> {
    "2026-03-02T08:00:00+01:00".parse().unwrap()
}

pub(super) fn stop(id: &str, latitude: f64, longitude: f64) -> Stop {
    Stop {
        id: id.to_owned(),
        latitude,
        longitude,
        address: None,
        service_minutes: None,
        time_window: None,
    }
}

pub(super) fn problem(stops: Vec<Stop>) -> Problem {
    Problem {
        stops,
        start: None,
        end: None,
        round_trip: false,
        departure_time: Some(t0()),
        preferences: Preferences::default(),
    }
}

pub(super) fn random_stops(n: usize, seed: u64) -> Vec<Stop> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            stop(
                &format!("s{i}"),
                48.0 + rng.random::<f64>() * 0.2,
                11.0 + rng.random::<f64>() * 0.3,
            )
        })
        .collect()
}

pub(super) fn ids(s: &Solution) -> Vec<&str> {
    s.optimized_stops.iter().map(|s| s.id.as_str()).collect()
}

fn invalid_field(result: Result<Solution>) -> String {
    match result {
        Err(Error::Invalid { field, .. }) => field,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn request_json_deserializes_camel_case_and_refuses_unknown_stop_fields() {
    let body = serde_json::json!({
        "vehicleId": "van-7",
        "stops": [
            {"id": "a", "latitude": 48.1, "longitude": 11.5, "address": "Marienplatz",
             "serviceMinutes": 5, "timeWindow": {"start": "2026-03-02T09:00:00+01:00",
             "end": "2026-03-02T10:00:00+01:00"}},
            {"id": "b", "latitude": 48.2, "longitude": 11.6}
        ],
        "start": {"latitude": 48.0, "longitude": 11.4},
        "roundTrip": true,
        "departureTime": "2026-03-02T08:00:00+01:00",
        "preferences": {"avoidTolls": true, "optimizeFor": "distance", "maxComputeMillis": 500}
    });
    let p: Problem = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(p.stops[0].service_minutes, Some(5.0));
    let mut typo = body;
    typo["stops"][0]["priority"] = "high".into();
    assert!(
        serde_json::from_value::<Problem>(typo).is_err(),
        "a misspelt field is an error"
    );
    assert!(p.round_trip);
    assert_eq!(p.preferences.optimize_for, OptimizeFor::Distance);
    assert_eq!(p.preferences.max_compute_millis, Some(500));
    let wrong_type = serde_json::json!({"stops": [{"id": "a", "latitude": "48", "longitude": 11}]});
    assert!(serde_json::from_value::<Problem>(wrong_type).is_err());
}

#[test]
fn solution_json_uses_the_api_field_names() {
    let mut p = problem(random_stops(3, 1));
    p.start = Some(Location {
        latitude: 48.05,
        longitude: 11.1,
    });
    let s = solve(&p, &Params::default()).unwrap();
    let json = serde_json::to_value(&s).unwrap();
    for key in [
        "optimizedStops",
        "totalDistanceMeters",
        "totalDurationSeconds",
        "geometry",
        "optimization",
        "warnings",
    ] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    let first = &json["optimizedStops"][0];
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
        "latenessSeconds",
    ] {
        assert!(first.get(key).is_some(), "missing optimizedStops[0].{key}");
    }
    assert_eq!(json["geometry"]["type"], "LineString");
    for key in [
        "algorithm",
        "provablyOptimal",
        "initialCost",
        "optimizedCost",
        "improvementPercent",
        "iterations",
        "computeMillis",
    ] {
        assert!(
            json["optimization"].get(key).is_some(),
            "missing optimization.{key}"
        );
    }
    assert_eq!(json["optimizedStops"][0]["sequence"], 1);
}

#[test]
fn small_problems_are_solved_exactly_and_say_so() {
    let p = problem(random_stops(9, 2));
    let s = solve(&p, &Params::default()).unwrap();
    assert_eq!(s.optimization.algorithm, "held-karp");
    assert!(s.optimization.provably_optimal);
    assert!(s.optimization.optimized_cost <= s.optimization.initial_cost);
}

#[test]
fn with_a_start_the_stops_list_holds_only_the_callers_stops_and_geometry_adds_the_ends() {
    let mut p = problem(random_stops(20, 3));
    let start = Location {
        latitude: 47.9,
        longitude: 11.0,
    };
    let end = Location {
        latitude: 48.3,
        longitude: 11.4,
    };
    p.start = Some(start);
    p.end = Some(end);
    let s = solve(&p, &Params::default()).unwrap();
    assert_eq!(s.optimized_stops.len(), 20);
    let coords = &s.geometry.coordinates;
    assert_eq!(coords.len(), 22);
    assert_eq!(coords[0], [start.longitude, start.latitude]);
    assert_eq!(coords[21], [end.longitude, end.latitude]);
    let first = &s.optimized_stops[0];
    assert!(first.distance_from_previous_meters > 0.0);
}

#[test]
fn without_a_start_the_first_stop_stays_first_and_a_round_trip_returns_to_it() {
    let mut p = problem(random_stops(25, 4));
    p.round_trip = true;
    let s = solve(&p, &Params::default()).unwrap();
    assert_eq!(s.optimized_stops[0].id, "s0");
    assert_eq!(s.optimized_stops[0].distance_from_previous_meters, 0.0);
    let coords = &s.geometry.coordinates;
    assert_eq!(coords.first(), coords.last());
    assert_eq!(coords.len(), 26);
}

#[test]
fn arrival_times_add_up_driving_and_service() {
    let mut stops = random_stops(3, 5);
    stops[1].service_minutes = Some(10.0);
    let s = solve(&problem(stops), &Params::default()).unwrap();
    assert_eq!(s.optimized_stops[0].arrival_time, t0());
    for pair in s.optimized_stops.windows(2) {
        let drive = Duration::milliseconds(
            (pair[1].duration_from_previous_seconds * 1000.0).round() as i64,
        );
        let gap = pair[1].arrival_time - pair[0].departure_time;
        assert!((gap - drive).num_milliseconds().abs() <= 1);
    }
    let served = s.optimized_stops.iter().find(|x| x.id == "s1").unwrap();
    assert_eq!(
        served.departure_time - served.arrival_time,
        Duration::minutes(10)
    );
}

#[test]
fn departure_defaults_to_the_callers_now_and_is_required_without_it() {
    let mut p = problem(random_stops(2, 6));
    p.departure_time = None;
    assert_eq!(
        invalid_field(solve(&p, &Params::default())),
        "departureTime"
    );
    let now: DateTime<chrono::Utc> = "2026-03-02T07:00:00Z".parse().unwrap();
    let params = Params {
        now: Some(now),
        ..Params::default()
    };
    let s = solve(&p, &params).unwrap();
    assert_eq!(s.departure_time, now.fixed_offset());
}

#[test]
fn avoidances_are_accepted_with_a_warning() {
    let mut p = problem(random_stops(2, 7));
    p.preferences.avoid_tolls = true;
    p.preferences.avoid_highways = true;
    let s = solve(&p, &Params::default()).unwrap();
    assert_eq!(s.warnings.len(), 2);
    assert!(s.warnings[0].contains("avoidTolls"));
    assert!(s.warnings[1].contains("avoidHighways"));
}

#[test]
fn validation_names_the_offending_field() {
    let params = Params {
        max_stops: 5,
        ..Params::default()
    };
    let base = problem(random_stops(3, 8));
    type Mutation = Box<dyn Fn(&mut Problem)>;
    let cases: Vec<(Mutation, &str)> = vec![
        (Box::new(|p| p.stops.clear()), "stops"),
        (Box::new(|p| p.stops = random_stops(6, 1)), "stops"),
        (Box::new(|p| p.stops[2].id = "s0".into()), "stops[2].id"),
        (Box::new(|p| p.stops[1].id = " ".into()), "stops[1].id"),
        (
            Box::new(|p| p.stops[1].latitude = 91.0),
            "stops[1].latitude",
        ),
        (
            Box::new(|p| p.stops[0].latitude = f64::NAN),
            "stops[0].latitude",
        ),
        (
            Box::new(|p| p.stops[2].longitude = f64::INFINITY),
            "stops[2].longitude",
        ),
        (
            Box::new(|p| p.stops[2].longitude = -1e300),
            "stops[2].longitude",
        ),
        (
            Box::new(|p| p.stops[1].service_minutes = Some(-1.0)),
            "stops[1].serviceMinutes",
        ),
        (
            Box::new(|p| p.stops[1].service_minutes = Some(f64::NAN)),
            "stops[1].serviceMinutes",
        ),
        (
            Box::new(|p| {
                p.stops[0].time_window = Some(TimeWindow {
                    start: t0(),
                    end: t0() - Duration::hours(1),
                })
            }),
            "stops[0].timeWindow",
        ),
        (
            Box::new(|p| {
                p.start = Some(Location {
                    latitude: 0.0,
                    longitude: 181.0,
                })
            }),
            "start.longitude",
        ),
        (
            Box::new(|p| {
                p.end = Some(Location {
                    latitude: 0.0,
                    longitude: 0.0,
                });
                p.round_trip = true;
            }),
            "end",
        ),
        (
            Box::new(|p| p.preferences.max_compute_millis = Some(0)),
            "preferences.maxComputeMillis",
        ),
    ];
    for (mutate, field) in cases {
        let mut p = base.clone();
        mutate(&mut p);
        let err = solve(&p, &params).unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
        assert_eq!(err.code(), "invalid_request");
        assert!(err.is_client_error());
    }
}

#[test]
fn bad_configuration_is_a_server_error_not_a_client_error() {
    let params = Params {
        average_speed_kmh: 0.0,
        ..Params::default()
    };
    let err = solve(&problem(random_stops(2, 9)), &params).unwrap_err();
    assert!(matches!(
        err,
        Error::Config {
            field: "average_speed_kmh",
            ..
        }
    ));
    assert!(!err.is_client_error());
}

/// A road-network stand-in: costs differ by direction.
#[derive(Debug)]
struct OneWayStreets;

impl CostMatrixSource for OneWayStreets {
    fn matrices(
        &self,
        points: &[Location],
        _prefs: &crate::optimize::Preferences,
    ) -> Result<Matrices> {
        let n = points.len();
        let d = SquareMatrix::from_fn(n, |i, j| {
            let base = haversine_meters(points[i], points[j]);
            // Going "east" is a detour.
            if points[j].longitude > points[i].longitude {
                1.8 * base
            } else {
                1.1 * base
            }
        });
        let t = SquareMatrix::from_fn(n, |i, j| d.get(i, j) / 10.0);
        Ok(Matrices {
            distance_meters: d,
            duration_seconds: t,
            ..Default::default()
        })
    }
}

fn recomputed_cost(p: &Problem, s: &Solution, m: &SquareMatrix) -> f64 {
    let index = |id: &str| {
        p.stops.iter().position(|x| x.id == id).unwrap() + usize::from(p.start.is_some())
    };
    let mut route: Vec<usize> = p.start.map(|_| 0).into_iter().collect();
    route.extend(s.optimized_stops.iter().map(|x| index(&x.id)));
    if p.end.is_some() {
        route.push(m.len() - 1);
    }
    if p.round_trip {
        route.push(route[0]);
    }
    route.windows(2).map(|w| m.get(w[0], w[1])).sum()
}

#[test]
fn asymmetric_costs_are_reported_exactly_and_never_worse_than_the_input() {
    for (n, round_trip) in [(8, true), (30, true), (60, false)] {
        let mut p = problem(random_stops(n, 10 + n as u64));
        p.round_trip = round_trip;
        p.start = Some(Location {
            latitude: 48.1,
            longitude: 11.15,
        });
        p.preferences.optimize_for = OptimizeFor::Distance;
        let s = solve_with_matrix(&p, &Params::default(), &OneWayStreets).unwrap();
        let m = OneWayStreets
            .matrices(&points(&p), &p.preferences)
            .unwrap()
            .distance_meters;
        let got = recomputed_cost(&p, &s, &m);
        assert!((got - s.optimization.optimized_cost).abs() < 1e-6, "n={n}");
        assert!((got - s.total_distance_meters).abs() < 1e-6, "n={n}");
        assert!(got < s.optimization.initial_cost, "n={n}");
    }
}

#[test]
fn replanning_from_the_current_position_with_the_remaining_stops_works() {
    let all = random_stops(40, 11);
    let mut p = problem(all.clone());
    p.start = Some(Location {
        latitude: 48.1,
        longitude: 11.15,
    });
    p.end = p.start;
    let first = solve(&p, &Params::default()).unwrap();
    // The vehicle served the first 15 and is at the 15th; re-plan the rest back to the depot.
    let done: Vec<&str> = ids(&first)[..15].to_vec();
    let here = &first.optimized_stops[14];
    let mut rest = p.clone();
    rest.stops.retain(|s| !done.contains(&s.id.as_str()));
    rest.start = Some(Location {
        latitude: here.latitude,
        longitude: here.longitude,
    });
    rest.departure_time = Some(here.departure_time);
    let second = solve(&rest, &Params::default()).unwrap();
    assert_eq!(second.optimized_stops.len(), 25);
    assert_eq!(second.departure_time, here.departure_time);
    assert!(second.optimization.optimized_cost <= second.optimization.initial_cost);
}

#[test]
fn time_windows_met_by_deadline_order_are_met_in_large_problems() {
    let mut stops = random_stops(40, 12);
    // Windows in a fixed order, each two hours apart: only that order is on time.
    for (i, s) in stops.iter_mut().enumerate() {
        let open = t0() + Duration::hours(2 * i as i64);
        s.time_window = Some(TimeWindow {
            start: open,
            end: open + Duration::minutes(90),
        });
    }
    stops.reverse();
    let mut p = problem(stops);
    p.start = Some(Location {
        latitude: 48.1,
        longitude: 11.15,
    });
    let s = solve(&p, &Params::default()).unwrap();
    assert_eq!(s.total_lateness_seconds, 0.0);
    assert!(s.optimized_stops.iter().all(|x| x.time_window_met));
    assert_eq!(
        s.optimization.algorithm,
        "iterated-local-search+time-windows"
    );
}

#[test]
fn missed_windows_are_reported_per_stop_with_lateness() {
    let mut stops = random_stops(3, 13);
    // Impossible: served before we even leave.
    stops[2].time_window = Some(TimeWindow {
        start: t0() - Duration::hours(2),
        end: t0() - Duration::hours(1),
    });
    let mut p = problem(stops);
    p.start = Some(Location {
        latitude: 48.1,
        longitude: 11.15,
    });
    let s = solve(&p, &Params::default()).unwrap();
    let late = s.optimized_stops.iter().find(|x| x.id == "s2").unwrap();
    assert!(!late.time_window_met);
    assert!(late.lateness_seconds >= 3600.0);
    assert_eq!(
        s.optimized_stops[0].id, "s2",
        "the late stop is served first to limit lateness"
    );
    assert!(s.warnings.iter().any(|w| w.contains("time window")));
}

/// A matrix source that takes longer than any sane compute limit.
#[derive(Debug)]
struct SlowSource;

impl CostMatrixSource for SlowSource {
    fn matrices(
        &self,
        points: &[Location],
        _prefs: &crate::optimize::Preferences,
    ) -> Result<Matrices> {
        std::thread::sleep(std::time::Duration::from_millis(5));
        HaversineSource {
            detour_factor: 1.3,
            average_speed_kmh: 40.0,
        }
        .matrices(points, _prefs)
    }
}

#[test]
fn an_exhausted_compute_limit_returns_the_best_route_so_far_with_a_warning() {
    let mut p = problem(random_stops(50, 14));
    p.preferences.max_compute_millis = Some(1);
    let s = solve_with_matrix(&p, &Params::default(), &SlowSource).unwrap();
    assert!(s.optimization.time_limit_reached);
    assert!(s.warnings.iter().any(|w| w.contains("compute limit")));
    assert_eq!(s.optimized_stops.len(), 50);
    assert!(s.optimization.optimized_cost <= s.optimization.initial_cost);
}

#[test]
fn a_broken_matrix_source_is_an_error_not_a_panic() {
    #[derive(Debug)]
    struct Broken;
    impl CostMatrixSource for Broken {
        fn matrices(
            &self,
            _: &[Location],
            _prefs: &crate::optimize::Preferences,
        ) -> Result<Matrices> {
            let m = SquareMatrix::from_fn(1, |_, _| 0.0);
            Ok(Matrices {
                distance_meters: m.clone(),
                duration_seconds: m,
                ..Default::default()
            })
        }
    }
    let err =
        solve_with_matrix(&problem(random_stops(3, 15)), &Params::default(), &Broken).unwrap_err();
    assert_eq!(err.code(), "cost_matrix_unavailable");
}

#[test]
fn stops_sharing_one_location_are_all_visited() {
    let stops = (0..30)
        .map(|i| stop(&format!("same{i}"), 52.0, 13.0))
        .collect();
    let mut p = problem(stops);
    p.round_trip = true;
    let s = solve(&p, &Params::default()).unwrap();
    assert_eq!(s.optimized_stops.len(), 30);
    assert_eq!(s.total_distance_meters, 0.0);
    assert!(s.optimization.improvement_percent.is_finite());
}

#[test]
fn zero_search_effort_still_returns_a_locally_optimal_route() {
    let p = problem(random_stops(60, 17));
    let params = Params {
        search_effort: 0.0,
        ..Params::default()
    };
    let s = solve(&p, &params).unwrap();
    assert_eq!(s.optimization.iterations, 0);
    assert!(s.optimization.optimized_cost < s.optimization.initial_cost);
}
