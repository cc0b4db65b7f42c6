//! The status machine of routes and stops, and ETAs: pure functions over records.
//!
//! ```text
//! stop:   pending ──▶ arrived ──▶ completed
//!            │           └──────▶ failed
//!            ├──▶ completed | skipped | failed      (terminal: nothing follows)
//!
//! route:  planned ──▶ in_progress ──▶ completed
//!         (a stop arrived or completed)  (every stop terminal; may skip in_progress)
//! ```
//!
//! A route's status never goes back. Anything else is a conflict (HTTP 409).

use chrono::{DateTime, Duration, FixedOffset};

use super::record::{NextStop, Position, Route, RouteStatus, RouteStop, StopStatus};
use crate::optimize::{self, Location, haversine_meters};

/// Why a stop update cannot be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TransitionError {
    #[error("route has no stop {0:?}")]
    NoSuchStop(String),
    #[error("stop {stop:?} cannot go from {from} to {to}")]
    Impossible {
        stop: String,
        from: &'static str,
        to: &'static str,
    },
}

/// Whether a stop may move from `from` to `to`.
pub fn stop_may_move(from: StopStatus, to: StopStatus) -> bool {
    use StopStatus::*;
    matches!(
        (from, to),
        (Pending, Arrived | Completed | Skipped | Failed) | (Arrived, Completed | Failed)
    )
}

/// The route status its stops imply, never going back from `current`.
pub fn route_status(current: RouteStatus, stops: &[StopStatus]) -> RouteStatus {
    let implied = if !stops.is_empty() && stops.iter().all(|s| s.is_terminal()) {
        RouteStatus::Completed
    } else if stops
        .iter()
        .any(|s| matches!(s, StopStatus::Arrived | StopStatus::Completed))
    {
        RouteStatus::InProgress
    } else {
        RouteStatus::Planned
    };
    rank_max(current, implied)
}

fn rank_max(a: RouteStatus, b: RouteStatus) -> RouteStatus {
    let rank = |s| match s {
        RouteStatus::Planned => 0,
        RouteStatus::InProgress => 1,
        RouteStatus::Completed => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// Apply a stop's new status to the route (status, timestamps, note, route status).
pub fn update_stop(
    route: &mut Route,
    stop_id: &str,
    to: StopStatus,
    at: DateTime<FixedOffset>,
    note: Option<String>,
) -> Result<StopStatus, TransitionError> {
    let stop = route
        .optimized_stops
        .iter_mut()
        .find(|s| s.plan.id == stop_id)
        .ok_or_else(|| TransitionError::NoSuchStop(stop_id.to_string()))?;
    let from = stop.status;
    if !stop_may_move(from, to) {
        return Err(TransitionError::Impossible {
            stop: stop_id.to_string(),
            from: from.as_str(),
            to: to.as_str(),
        });
    }
    stop.status = to;
    if matches!(to, StopStatus::Arrived | StopStatus::Completed) && stop.arrived_at.is_none() {
        stop.arrived_at = Some(at);
    }
    if to.is_terminal() {
        stop.finished_at = Some(at);
    }
    if note.is_some() {
        stop.note = note;
    }
    let statuses: Vec<_> = route.optimized_stops.iter().map(|s| s.status).collect();
    route.status = route_status(route.status, &statuses);
    Ok(from)
}

/// The first pending stop in driving order: where the vehicle heads next.
pub fn next_stop(route: &Route) -> Option<NextStop> {
    route
        .optimized_stops
        .iter()
        .find(|s| s.status == StopStatus::Pending)
        .map(|s| NextStop {
            id: s.plan.id.clone(),
            latitude: s.plan.latitude,
            longitude: s.plan.longitude,
            planned_arrival: s.plan.arrival_time,
        })
}

/// How driving time is estimated: the configured cost source (the road network when there is
/// one), else — and for a fix it cannot place, e.g. far off every road — the great-circle model.
#[derive(Clone)]
pub struct Travel {
    pub detour_factor: f64,
    pub average_speed_kmh: f64,
    pub costs: Option<optimize::SharedSource>,
}

impl std::fmt::Debug for Travel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Travel")
            .field("detour_factor", &self.detour_factor)
            .field("average_speed_kmh", &self.average_speed_kmh)
            .field("costs", &self.costs.as_ref().map(|c| c.cost_model()))
            .finish()
    }
}

impl Travel {
    pub fn drive_seconds(&self, a: Location, b: Location) -> f64 {
        let by_source = self.costs.as_ref().and_then(|c| {
            let m = c
                .matrices(&[a, b], &optimize::Preferences::default())
                .ok()?;
            Some(m.duration_seconds.get(0, 1))
        });
        by_source.unwrap_or_else(|| {
            haversine_meters(a, b) * self.detour_factor / (self.average_speed_kmh / 3.6)
        })
    }

    /// Seconds the vehicle at `fix` will reach `next` after its planned arrival (negative:
    /// early).
    pub fn delay_seconds(&self, fix: &Position, next: &NextStop) -> f64 {
        let to = Location {
            latitude: next.latitude,
            longitude: next.longitude,
        };
        let eta = fix.timestamp + seconds(self.drive_seconds(fix.location(), to));
        (eta - next.planned_arrival).num_milliseconds() as f64 / 1000.0
    }
}

/// A duration from float seconds, saturating instead of overflowing.
pub fn seconds(s: f64) -> Duration {
    let ms = (s * 1000.0).clamp(-1e15, 1e15) as i64;
    Duration::milliseconds(ms)
}

/// A stop's ETA: its planned arrival shifted by the vehicle's delay (0 when not tracked), while
/// it is pending.
pub fn eta(stop: &RouteStop, delay_seconds: Option<f64>) -> Option<DateTime<FixedOffset>> {
    (stop.status == StopStatus::Pending)
        .then(|| stop.plan.arrival_time + seconds(delay_seconds.unwrap_or(0.0)))
}

/// Fill in the ETAs of the pending stops from the vehicle's delay (0 when not tracked).
pub fn fill_etas(route: &mut Route, delay_seconds: Option<f64>) {
    for s in &mut route.optimized_stops {
        s.eta = eta(s, delay_seconds);
    }
    route.delay_seconds = delay_seconds;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testdata::route_with_stops;

    fn at() -> DateTime<FixedOffset> {
        "2026-03-01T09:00:00Z".parse().unwrap()
    }

    #[test]
    fn stops_move_only_forward_and_terminal_statuses_are_final() {
        use StopStatus::*;
        let all = [Pending, Arrived, Completed, Skipped, Failed];
        for from in all {
            for to in all {
                let allowed = stop_may_move(from, to);
                if from.is_terminal() || from == to {
                    assert!(!allowed, "{from:?} -> {to:?}");
                }
                if to == Pending {
                    assert!(!allowed, "nothing goes back to pending");
                }
            }
        }
        assert!(stop_may_move(Pending, Arrived) && stop_may_move(Arrived, Completed));
        assert!(!stop_may_move(Arrived, Skipped));
    }

    #[test]
    fn the_route_starts_when_a_stop_is_reached_and_completes_when_all_are_terminal() {
        let mut r = route_with_stops(&["a", "b"]);
        assert_eq!(r.status, RouteStatus::Planned);
        update_stop(&mut r, "a", StopStatus::Skipped, at(), None).unwrap();
        assert_eq!(
            r.status,
            RouteStatus::Planned,
            "a skip alone starts nothing"
        );
        update_stop(
            &mut r,
            "b",
            StopStatus::Arrived,
            at(),
            Some("gate 3".into()),
        )
        .unwrap();
        assert_eq!(r.status, RouteStatus::InProgress);
        assert_eq!(r.optimized_stops[1].arrived_at, Some(at()));
        assert_eq!(r.optimized_stops[1].note.as_deref(), Some("gate 3"));
        update_stop(&mut r, "b", StopStatus::Completed, at(), None).unwrap();
        assert_eq!(r.status, RouteStatus::Completed);
        assert_eq!(r.optimized_stops[1].finished_at, Some(at()));
    }

    #[test]
    fn a_route_whose_stops_are_all_skipped_completes_without_starting() {
        let mut r = route_with_stops(&["a"]);
        update_stop(&mut r, "a", StopStatus::Skipped, at(), None).unwrap();
        assert_eq!(r.status, RouteStatus::Completed);
    }

    #[test]
    fn impossible_updates_and_unknown_stops_change_nothing() {
        let mut r = route_with_stops(&["a"]);
        update_stop(&mut r, "a", StopStatus::Completed, at(), None).unwrap();
        let before = r.clone();
        let err = update_stop(&mut r, "a", StopStatus::Arrived, at(), None).unwrap_err();
        assert!(matches!(
            err,
            TransitionError::Impossible {
                from: "completed",
                ..
            }
        ));
        let err = update_stop(&mut r, "zz", StopStatus::Arrived, at(), None).unwrap_err();
        assert_eq!(err, TransitionError::NoSuchStop("zz".into()));
        assert_eq!(r, before);
    }

    #[test]
    fn route_status_never_goes_back() {
        use StopStatus::*;
        assert_eq!(
            route_status(RouteStatus::InProgress, &[Pending, Pending]),
            RouteStatus::InProgress
        );
        assert_eq!(
            route_status(RouteStatus::Planned, &[]),
            RouteStatus::Planned
        );
    }

    #[test]
    fn the_next_stop_is_the_first_pending_one_and_etas_follow_the_delay() {
        let mut r = route_with_stops(&["a", "b", "c"]);
        update_stop(&mut r, "a", StopStatus::Completed, at(), None).unwrap();
        assert_eq!(next_stop(&r).unwrap().id, "b");
        fill_etas(&mut r, Some(90.0));
        assert_eq!(r.optimized_stops[0].eta, None);
        let b = &r.optimized_stops[1];
        assert_eq!(b.eta, Some(b.plan.arrival_time + Duration::seconds(90)));
    }

    #[test]
    fn a_vehicle_standing_at_its_next_stop_late_has_that_delay() {
        let travel = Travel {
            detour_factor: 1.3,
            average_speed_kmh: 40.0,
            costs: None,
        };
        let next = NextStop {
            id: "b".into(),
            latitude: 40.0,
            longitude: -74.0,
            planned_arrival: at(),
        };
        let fix = Position {
            latitude: 40.0,
            longitude: -74.0,
            timestamp: at() + Duration::seconds(120),
            speed_kmh: None,
            heading_deg: None,
        };
        assert!((travel.delay_seconds(&fix, &next) - 120.0).abs() < 0.01);
        let far = Position {
            latitude: 40.1,
            ..fix
        };
        assert!(travel.delay_seconds(&far, &next) > 120.0 + 60.0);
    }
}
