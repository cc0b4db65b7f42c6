//! Records for the store's unit tests.

use chrono::{DateTime, Duration, FixedOffset, Utc};

use super::record::{Route, RouteStatus, RouteStop, StopStatus};
use crate::optimize::{LineString, OptimizationInfo, OptimizeFor, OptimizedStop};

/// A planned route visiting `ids` in order, ten minutes apart.
pub fn route_with_stops(ids: &[&str]) -> Route {
    let t0: DateTime<FixedOffset> = "2026-03-01T08:00:00Z".parse().unwrap();
    let stops = ids
        .iter()
        .enumerate()
        .map(|(i, id)| RouteStop {
            plan: OptimizedStop {
                id: id.to_string(),
                sequence: i + 1,
                latitude: 40.0 + i as f64 * 0.01,
                longitude: -74.0,
                address: None,
                arrival_time: t0 + Duration::minutes(10 * i as i64),
                departure_time: t0 + Duration::minutes(10 * i as i64 + 2),
                distance_from_previous_meters: 1000.0,
                duration_from_previous_seconds: 90.0,
                waiting_seconds: 0.0,
                time_window_met: true,
                lateness_seconds: 0.0,
                snap_distance_meters: None,
            },
            status: StopStatus::Pending,
            eta: None,
            arrived_at: None,
            finished_at: None,
            note: None,
        })
        .collect();
    Route {
        route_id: uuid::Uuid::now_v7().to_string(),
        vehicle_id: "v1".into(),
        status: RouteStatus::Planned,
        version: 1,
        optimized_stops: stops,
        total_distance_meters: 1000.0 * ids.len() as f64,
        total_duration_seconds: 600.0 * ids.len() as f64,
        total_driving_seconds: 90.0 * ids.len() as f64,
        total_lateness_seconds: 0.0,
        departure_time: t0,
        finish_time: t0 + Duration::minutes(10 * ids.len() as i64),
        geometry: LineString::through([]),
        optimization: OptimizationInfo {
            algorithm: "test".into(),
            provably_optimal: true,
            objective: OptimizeFor::Time,
            initial_cost: 0.0,
            optimized_cost: 0.0,
            improvement_percent: 0.0,
            initial_lateness_seconds: 0.0,
            iterations: 0,
            compute_millis: 0,
            time_limit_reached: false,
            cost_model: Default::default(),
        },
        warnings: Vec::new(),
        event_id: uuid::Uuid::nil(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
        delay_seconds: None,
        last_position: None,
    }
}
