//! GPS fixes: the high-rate write. One append per batch: a `vehicle.position` event per fix and
//! the small vehicle record (its position and its active route's delay); the route record is not
//! touched.

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use std::sync::{Arc, Mutex};

use super::record::{self, Position, VehicleRecord};
use super::writes::put;
use super::{Error, RecordLimit, Result, Store, VEHICLES, keys, lifecycle};
use crate::events::{self, NewEvent};
use crate::queue::{self, Expect, Write};

/// What a batch of GPS fixes did.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tracked {
    pub vehicle_id: String,
    pub accepted: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_stop_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_stop_eta: Option<DateTime<FixedOffset>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<f64>,
    pub last_seq: u64,
}

/// `vehicle.position` payload.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PositionEvent<'a> {
    vehicle_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    route_id: Option<&'a str>,
    #[serde(flatten)]
    position: &'a Position,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_stop_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_stop_eta: Option<DateTime<FixedOffset>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay_seconds: Option<f64>,
}

impl Store {
    /// Record GPS fixes: one `vehicle.position` event each; the newest fix becomes the vehicle's
    /// position and refreshes its active route's delay.
    ///
    /// The vehicle record is read, changed and written by the outbox writer itself
    /// ([`queue::Update`]), in the same group commit as the events: no read on the blocking pool,
    /// no compare-and-set to lose when two batches of one vehicle arrive together.
    pub async fn track(&self, vehicle_id: &str, fixes: Vec<Position>) -> Result<Tracked> {
        let outcome = Arc::new(Mutex::new(None));
        let job = TrackJob {
            vehicle_id: vehicle_id.to_string(),
            fixes,
            travel: self.travel(),
            topic: self.topics.vehicle_position.clone(),
            limit: self.limit.clone(),
            outcome: outcome.clone(),
        };
        let update = queue::Update::one(VEHICLES, keys::vehicle(vehicle_id), move |current| {
            job.apply(current)
        });
        let result = self.outbox.update(update).await;
        let planned = outcome.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (result, planned) {
            (Ok(sequenced), Some(Ok(tracked))) => Ok(Tracked {
                last_seq: sequenced.last().map_or(0, |e| e.seq),
                ..tracked
            }),
            (Err(queue::Error::Aborted), Some(Err(e))) => Err(e),
            (Err(e), _) => Err(e.into()),
            (Ok(_), _) => Err(Error::Task("the vehicle update left no outcome".into())),
        }
    }
}

/// A batch of fixes, applied by the outbox writer to the vehicle's current record.
struct TrackJob {
    vehicle_id: String,
    fixes: Vec<Position>,
    travel: lifecycle::Travel,
    topic: String,
    limit: Arc<RecordLimit>,
    /// What [`TrackJob::apply`] decided, for [`Store::track`].
    outcome: Arc<Mutex<Option<Result<Tracked>>>>,
}

impl TrackJob {
    fn apply(self, current: Option<&[u8]>) -> Option<Write> {
        let planned = self.plan(current);
        let mut outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        match planned {
            Ok((tracked, write)) => {
                *outcome = Some(Ok(tracked));
                Some(write)
            }
            Err(e) => {
                *outcome = Some(Err(e));
                None
            }
        }
    }

    fn plan(&self, current: Option<&[u8]>) -> Result<(Tracked, Write)> {
        let (tracked, op, events) = plan_fixes(
            &self.vehicle_id,
            &self.fixes,
            &self.travel,
            &self.topic,
            current,
        )?;
        self.limit.check(&events)?;
        let write = Write {
            events,
            records: vec![op],
        };
        Ok((tracked, write))
    }
}

/// Apply `fixes` to the vehicle record `current`: what it says now, the record's new value and
/// one `vehicle.position` event per fix on `topic` (empty: local events, for fixes that came
/// from Kafka).
pub(super) fn plan_fixes(
    vehicle_id: &str,
    fixes: &[Position],
    travel: &lifecycle::Travel,
    topic: &str,
    current: Option<&[u8]>,
) -> Result<(Tracked, queue::RecordOp, Vec<NewEvent>)> {
    let mut v: VehicleRecord = match current {
        Some(raw) => record::decode(raw).map_err(|source| Error::Corrupt {
            tree: VEHICLES,
            key: vehicle_id.to_string(),
            source,
        })?,
        None => VehicleRecord::default(),
    };
    let newest = fixes.iter().max_by_key(|f| f.timestamp).copied();
    let now = chrono::Utc::now();
    if let Some(fix) = newest
        && v.last_position.is_none_or(|p| supersedes(&fix, &p, now))
    {
        v.last_position = Some(fix);
        if let Some(active) = &mut v.active_route
            && let Some(next) = &active.next_stop
        {
            active.delay_seconds = travel.delay_seconds(&fix, next);
        }
    }
    let tracked = tracked(vehicle_id, &v, fixes.len());
    let route_id = tracked.route_id.as_deref();
    let events: Vec<_> = fixes
        .iter()
        .map(|p| {
            let payload = PositionEvent {
                vehicle_id,
                route_id,
                position: p,
                next_stop_id: tracked.next_stop_id.as_deref(),
                next_stop_eta: tracked.next_stop_eta,
                delay_seconds: tracked.delay_seconds,
            };
            NewEvent::now(
                events::VEHICLE_POSITION,
                topic,
                vehicle_id,
                route_id,
                &payload,
            )
        })
        .collect();
    let op = put(
        VEHICLES,
        keys::vehicle(vehicle_id),
        record::encode(&v),
        Expect::Any,
    );
    Ok((tracked, op, events))
}

/// Whether `fix` becomes the vehicle's position instead of `current`: it is newer, or `current`
/// is stamped ahead of the gateway's clock (a device clock gone wrong) and `fix` is not. So an
/// older fix arriving late never moves a vehicle back, and a fix from the future holds the
/// vehicle only until the next fix with a plausible time, never for good.
fn supersedes(fix: &Position, current: &Position, now: chrono::DateTime<chrono::Utc>) -> bool {
    fix.timestamp >= current.timestamp || (current.timestamp > now && fix.timestamp <= now)
}

fn tracked(vehicle_id: &str, v: &VehicleRecord, accepted: usize) -> Tracked {
    let active = v.active_route.as_ref();
    let next = active.and_then(|a| a.next_stop.as_ref());
    Tracked {
        vehicle_id: vehicle_id.to_string(),
        accepted,
        route_id: active.map(|a| a.route_id.clone()),
        next_stop_id: next.map(|n| n.id.clone()),
        next_stop_eta: next
            .zip(active)
            .map(|(n, a)| n.planned_arrival + lifecycle::seconds(a.delay_seconds)),
        delay_seconds: active.map(|a| a.delay_seconds),
        last_seq: 0,
    }
}
