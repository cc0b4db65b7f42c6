//! A store over a temporary outbox, and records, for unit tests of the store and its callers.

use chrono::{DateTime, Duration, FixedOffset, Utc};

use super::record::{Route, RouteStatus, RouteStop, StopStatus};
use super::{RecordLimit, Store, TREES, Topics};
use crate::config::{Settings, StorageConfig};
use crate::optimize::{self, LineString, OptimizationInfo, OptimizeFor, OptimizedStop};
use crate::queue::Outbox;

/// A store, its outbox, and the directory they live in (removed on drop).
pub struct Fixture {
    pub store: Store,
    pub outbox: Outbox,
    _dir: tempfile::TempDir,
}

pub fn topics() -> Topics {
    Topics {
        route_optimized: "opt".into(),
        route_updated: "upd".into(),
        vehicle_position: "pos".into(),
    }
}

pub fn limit(max_bytes: u64) -> RecordLimit {
    RecordLimit {
        max_bytes,
        ..RecordLimit::from(&Settings::default().kafka)
    }
}

pub fn fixture_with(adjust: impl FnOnce(&mut StorageConfig)) -> Fixture {
    fixture_limited(adjust, Settings::default().kafka.max_record_bytes)
}

pub fn fixture_limited(adjust: impl FnOnce(&mut StorageConfig), max_record_bytes: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = StorageConfig {
        data_dir: dir.path().to_path_buf(),
        ..Settings::default().storage
    };
    adjust(&mut cfg);
    let outbox = Outbox::open(dir.path(), &cfg, TREES).unwrap();
    let params = optimize::Params::default();
    let store = Store::new(outbox.clone(), topics(), params, limit(max_record_bytes));
    Fixture {
        store,
        outbox,
        _dir: dir,
    }
}

pub fn fixture() -> Fixture {
    fixture_with(|_| {})
}

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
