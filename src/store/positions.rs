//! GPS fixes: the high-rate write. One append per batch: a `vehicle.position` event per fix and
//! the small vehicle record (its position and its active route's delay); the route record is not
//! touched.

use chrono::{DateTime, FixedOffset};
use serde::Serialize;

use super::reads::load_vehicle;
use super::record::{Position, VehicleRecord};
use super::{Error, MAX_ATTEMPTS, Result, Store, lifecycle};
use crate::events::{self, NewEvent};
use crate::queue::{self, Write};

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
    pub async fn track(&self, vehicle_id: &str, fixes: Vec<Position>) -> Result<Tracked> {
        let mut attempts = 0;
        loop {
            let vid = vehicle_id.to_string();
            let old = self.blocking(move |t| load_vehicle(t, &vid)).await?;
            let mut v = old.as_ref().map(|(_, v)| v.clone()).unwrap_or_default();
            let newest = fixes.iter().max_by_key(|f| f.timestamp).copied();
            if let Some(fix) = newest
                && v.last_position.is_none_or(|p| fix.timestamp >= p.timestamp)
            {
                v.last_position = Some(fix);
                if let Some(active) = &mut v.active_route
                    && let Some(next) = &active.next_stop
                {
                    active.delay_seconds = self.travel().delay_seconds(&fix, next);
                }
            }
            let tracked = tracked(vehicle_id, &v, fixes.len());
            let topic = &self.topics.vehicle_position;
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
            self.limit.check(&events)?;
            let op = self.vehicle_op(vehicle_id, old.as_ref().map(|o| &o.0), &v);
            match self
                .outbox
                .append(Write {
                    events,
                    records: vec![op],
                })
                .await
            {
                Ok(sequenced) => {
                    let last_seq = sequenced.last().map_or(0, |e| e.seq);
                    return Ok(Tracked {
                        last_seq,
                        ..tracked
                    });
                }
                Err(queue::Error::Conflict { .. }) if attempts + 1 < MAX_ATTEMPTS => attempts += 1,
                Err(queue::Error::Conflict { .. }) => return Err(Error::Busy),
                Err(e) => return Err(e.into()),
            }
        }
    }
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
