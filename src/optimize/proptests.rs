//! Property tests of the solver's invariants, over arbitrary small problems (1 to 40 stops,
//! with or without start, end, round trip, service times and time windows).

use chrono::Duration;
use proptest::prelude::*;

use super::tests::{ids, problem, random_stops, stop, t0};
use super::*;

fn arb_problem() -> impl Strategy<Value = Problem> {
    let arb_stop = (
        0.0..0.3f64,
        0.0..0.3f64,
        proptest::option::of(0.0..30.0f64),
        proptest::option::of((0i64..600, 0i64..300)),
    );
    (
        proptest::collection::vec(arb_stop, 1..40),
        proptest::option::of((0.0..0.3f64, 0.0..0.3f64)),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(|(stops, start, ending, by_distance)| {
            let at = |(a, b): (f64, f64)| Location {
                latitude: 50.0 + a,
                longitude: 8.0 + b,
            };
            let mut p = problem(
                stops
                    .into_iter()
                    .enumerate()
                    .map(|(i, (a, b, service, window))| Stop {
                        service_minutes: service,
                        time_window: window.map(|(open, len)| TimeWindow {
                            start: t0() + Duration::minutes(open),
                            end: t0() + Duration::minutes(open + len),
                        }),
                        ..stop(&format!("p{i}"), 50.0 + a, 8.0 + b)
                    })
                    .collect(),
            );
            p.start = start.map(at);
            match ending {
                1 => p.round_trip = true,
                2 => p.end = Some(at((0.15, 0.15))),
                _ => {}
            }
            if by_distance {
                p.preferences.optimize_for = OptimizeFor::Distance;
            }
            p
        })
}

fn without_timing(mut s: Solution) -> Solution {
    s.optimization.compute_millis = 0;
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_stop_appears_exactly_once_and_the_ends_are_respected(p in arb_problem()) {
        let s = solve(&p, &Params::default()).unwrap();
        let mut got: Vec<&str> = ids(&s);
        got.sort_unstable();
        let mut want: Vec<&str> = p.stops.iter().map(|x| x.id.as_str()).collect();
        want.sort_unstable();
        prop_assert_eq!(got, want);
        let seq: Vec<usize> = s.optimized_stops.iter().map(|x| x.sequence).collect();
        prop_assert_eq!(seq, (1..=p.stops.len()).collect::<Vec<_>>());
        let coords = &s.geometry.coordinates;
        match p.start {
            Some(start) => prop_assert_eq!(coords[0], [start.longitude, start.latitude]),
            None => prop_assert_eq!(&s.optimized_stops[0].id, &p.stops[0].id),
        }
        if let Some(end) = p.end {
            prop_assert_eq!(*coords.last().unwrap(), [end.longitude, end.latitude]);
        }
        if p.round_trip {
            prop_assert_eq!(coords.first(), coords.last());
        }
    }

    #[test]
    fn the_result_never_loses_to_the_input_order(p in arb_problem()) {
        let s = solve(&p, &Params::default()).unwrap();
        let o = &s.optimization;
        let eps = 1e-6;
        if s.total_lateness_seconds < o.initial_lateness_seconds - eps {
            // Strictly less late: cost may rise.
        } else {
            prop_assert!(s.total_lateness_seconds <= o.initial_lateness_seconds + eps);
            prop_assert!(o.optimized_cost <= o.initial_cost + eps, "{} > {}", o.optimized_cost, o.initial_cost);
        }
    }

    #[test]
    fn same_input_and_seed_give_the_same_output(p in arb_problem(), seed in any::<u64>()) {
        let params = Params { seed, ..Params::default() };
        let a = without_timing(solve(&p, &params).unwrap());
        let b = without_timing(solve(&p, &params).unwrap());
        prop_assert_eq!(a, b);
    }

    #[test]
    fn arbitrary_numbers_give_a_validation_error_or_a_route_never_a_panic(
        lat in prop_oneof![any::<f64>(), -100.0..100.0f64],
        lon in prop_oneof![any::<f64>(), -200.0..200.0f64],
        service in proptest::option::of(prop_oneof![any::<f64>(), 0.0..2000.0f64]),
        ms in proptest::option::of(any::<u64>()),
    ) {
        let mut p = problem(random_stops(4, 16));
        p.stops[2].latitude = lat;
        p.stops[2].longitude = lon;
        p.stops[1].service_minutes = service;
        p.preferences.max_compute_millis = ms;
        match solve(&p, &Params::default()) {
            Ok(s) => prop_assert_eq!(s.optimized_stops.len(), 4),
            Err(e) => prop_assert!(e.field().is_some(), "{}", e),
        }
    }
}
