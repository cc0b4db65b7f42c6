//! Records consumed from Kafka, applied exactly once.
//!
//! A consumer hands over one fetched batch of one partition at a time. Its effects (local
//! events, vehicle records moved by GPS fixes, dead letters) and the partition's new position
//! commit in **one outbox transaction** ([`queue::Update`], on the writer thread), and only if
//! the stored position is still the one the batch was read from. So after `kill -9`, a power
//! cut or a broker outage the consumer resumes at the stored position: a record is never
//! applied twice and never skipped. A batch whose starting position no longer matches is
//! refused with [`ApplyError::Moved`] and nothing is written.
//!
//! # Trees
//!
//! | tree                    | key                                   | value                      |
//! |-------------------------|---------------------------------------|----------------------------|
//! | `consumer_offsets`      | topic, `0x00`, partition (i32 BE)     | [`Position`] record frame  |
//! | `consumer_dead_letters` | topic, `0x00`, partition, offset (BE) | [`ConsumerDeadLetter`] frame |

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::imported::{Incoming, Routes};
use super::positions::plan_fixes;
use super::record::{self, Position as Fix};
use super::writes::put;
use super::{Error, ROUTES, Result, Store, VEHICLES, keys};
use crate::events::NewEvent;
use crate::queue::{self, Expect, Write};

pub const CONSUMER_OFFSETS: &str = "consumer_offsets";
pub const CONSUMER_DEAD: &str = "consumer_dead_letters";

/// What one consumed record does.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Log this local event (the `forward` handler).
    Event(NewEvent),
    /// Move a vehicle (the `positions` handler).
    Fix { vehicle_id: String, fix: Fix },
    /// Create or change a route planned elsewhere (the `routes` handler, restore), logging
    /// `event` with it; old news is skipped, an event that cannot apply is dead-lettered.
    Route {
        incoming: Box<Incoming>,
        event: NewEvent,
    },
    /// Nothing: the record is this gateway's own, or of a vehicle the consumer filters out.
    Skip,
    /// Unusable: kept in the consumer dead-letter list with the reason; the rest flows.
    Dead {
        reason: String,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
    },
}

/// One fetched batch of one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumedBatch {
    pub topic: String,
    pub partition: i32,
    /// The stored position the batch was read from; `None` when none was stored yet.
    pub from: Option<i64>,
    /// The position after the batch: its last record's offset + 1.
    pub next: i64,
    /// Each record's effect, by offset.
    pub effects: Vec<(i64, Effect)>,
    /// A route event that comes before its route (or an earlier version of it) stops the
    /// batch there instead of being dead-lettered ([`Applied::stopped_at`]): whole routes and
    /// stop changes travel on different topics, so it may still come. The caller retries from
    /// there for a while, then sends the batch without this to dead-letter it.
    pub wait_for_routes: bool,
}

/// What applying a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// Records that changed something (an event logged, a vehicle moved).
    pub applied: u64,
    pub skipped: u64,
    pub dead_lettered: u64,
    /// The batch stopped before this offset (see [`ConsumedBatch::wait_for_routes`]): it is
    /// the partition's stored position.
    pub stopped_at: Option<i64>,
}

/// The stored position of a partition: the offset of the next record to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub next: i64,
}

/// A record a consumer could not use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerDeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub reason: String,
    /// The record's key and value as they came, lossily as UTF-8.
    pub key: Option<String>,
    pub value: Option<String>,
    /// Microseconds since the Unix epoch.
    pub dead_at_us: i64,
}

/// Why a batch was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The stored position is not the batch's `from`: another run applied it or moved on.
    #[error("the stored position of {topic}/{partition} is {stored:?}, not {from:?}")]
    Moved {
        topic: String,
        partition: i32,
        from: Option<i64>,
        stored: Option<i64>,
    },
    #[error(transparent)]
    Store(#[from] Error),
}

fn partition_key(topic: &str, partition: i32) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 5);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

fn dead_key(topic: &str, partition: i32, offset: i64) -> Vec<u8> {
    let mut k = partition_key(topic, partition);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

fn decode_position(raw: &[u8], topic: &str, partition: i32) -> Result<i64> {
    record::decode::<Position>(raw)
        .map(|p| p.next)
        .map_err(|source| Error::Corrupt {
            tree: CONSUMER_OFFSETS,
            key: format!("{topic}/{partition}"),
            source,
        })
}

/// The consumer dead letters kept in `outbox`, by topic, partition and offset, at most `limit`
/// (none when it was opened without the store's trees). A blocking read.
pub fn dead_letters(outbox: &queue::Outbox, limit: usize) -> Result<Vec<ConsumerDeadLetter>> {
    let Some(tree) = outbox.domain_tree(CONSUMER_DEAD) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in tree.iter().take(limit) {
        let (key, raw) = entry.map_err(queue::Error::from)?;
        out.push(record::decode(&raw).map_err(|source| Error::Corrupt {
            tree: CONSUMER_DEAD,
            key: String::from_utf8_lossy(&key).into_owned(),
            source,
        })?);
    }
    Ok(out)
}

/// A consumed partition's stored position, for `routegate queue stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPosition {
    pub topic: String,
    pub partition: i32,
    /// The offset of the next record to apply.
    pub next_offset: i64,
}

/// Every stored position in `outbox` (none when it was opened without the store's trees). A
/// blocking read.
pub fn positions(outbox: &queue::Outbox) -> Result<Vec<StoredPosition>> {
    let Some(tree) = outbox.domain_tree(CONSUMER_OFFSETS) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in tree.iter() {
        let (key, raw) = entry.map_err(queue::Error::from)?;
        let Some(split) = key.iter().position(|b| *b == 0) else {
            continue;
        };
        let topic = String::from_utf8_lossy(&key[..split]).into_owned();
        let Ok(p) = <[u8; 4]>::try_from(&key[split + 1..]) else {
            continue;
        };
        let partition = i32::from_be_bytes(p);
        let next_offset = decode_position(&raw, &topic, partition)?;
        out.push(StoredPosition {
            topic,
            partition,
            next_offset,
        });
    }
    Ok(out)
}

impl Store {
    /// The stored position of a partition: the offset of the next record to apply.
    pub async fn consumer_position(&self, topic: &str, partition: i32) -> Result<Option<i64>> {
        let (topic, key) = (topic.to_string(), partition_key(topic, partition));
        self.blocking(move |t| {
            let raw = t.consumer_offsets.get(key).map_err(queue::Error::from)?;
            raw.map(|raw| decode_position(&raw, &topic, partition))
                .transpose()
        })
        .await
    }

    /// Every stored position.
    pub async fn consumer_positions(&self) -> Result<Vec<StoredPosition>> {
        let outbox = self.outbox.clone();
        self.blocking(move |_| positions(&outbox)).await
    }

    /// The consumer dead letters, by topic, partition and offset, at most `limit`.
    pub async fn consumer_dead_letters(&self, limit: usize) -> Result<Vec<ConsumerDeadLetter>> {
        let outbox = self.outbox.clone();
        self.blocking(move |_| dead_letters(&outbox, limit)).await
    }

    /// Apply a batch and store the partition's new position in one transaction, if the stored
    /// position is still `batch.from` (see the module docs).
    pub async fn apply_consumed(
        &self,
        batch: ConsumedBatch,
    ) -> std::result::Result<Applied, ApplyError> {
        let position_key = partition_key(&batch.topic, batch.partition);
        let mut vehicles: Vec<String> = Vec::new();
        let mut routes: Vec<String> = Vec::new();
        let name = |list: &mut Vec<String>, id: &str| {
            if !list.iter().any(|v| v == id) {
                list.push(id.to_string());
            }
        };
        for (_, e) in &batch.effects {
            match e {
                Effect::Fix { vehicle_id, .. } => name(&mut vehicles, vehicle_id),
                Effect::Route { incoming, .. } => {
                    name(&mut vehicles, incoming.vehicle_id());
                    name(&mut routes, incoming.route_id());
                }
                _ => {}
            }
        }
        let mut reads = vec![(CONSUMER_OFFSETS, position_key.clone())];
        reads.extend(vehicles.iter().map(|v| (VEHICLES, keys::vehicle(v))));
        reads.extend(routes.iter().map(|r| (ROUTES, keys::route(r))));
        let outcome = Arc::new(Mutex::new(None));
        let job = ApplyJob {
            batch,
            position_key,
            vehicles,
            routes,
            travel: self.travel(),
            outcome: outcome.clone(),
        };
        let update = queue::Update {
            reads,
            apply: Box::new(move |current| job.run(current)),
        };
        let result = self.outbox.update(update).await;
        let planned = outcome.lock().unwrap_or_else(|p| p.into_inner()).take();
        match (result, planned) {
            (Ok(_), Some(Ok(applied))) => Ok(applied),
            (Err(queue::Error::Aborted), Some(Err(e))) => Err(e),
            (Err(e), _) => Err(ApplyError::Store(e.into())),
            (Ok(_), _) => Err(ApplyError::Store(Error::Task(
                "the consumer update left no outcome".into(),
            ))),
        }
    }
}

/// A batch, applied by the outbox writer to the current position and vehicle records.
struct ApplyJob {
    batch: ConsumedBatch,
    position_key: Vec<u8>,
    /// The vehicles the batch moves, in the order of the update's reads after the position.
    vehicles: Vec<String>,
    /// The routes the batch changes, in the order of the reads after the vehicles.
    routes: Vec<String>,
    travel: super::Travel,
    outcome: Arc<Mutex<Option<std::result::Result<Applied, ApplyError>>>>,
}

impl ApplyJob {
    fn run(self, current: &[Option<&[u8]>]) -> Option<Write> {
        let planned = self.plan(current);
        let mut outcome = self.outcome.lock().unwrap_or_else(|p| p.into_inner());
        match planned {
            Ok((applied, write)) => {
                *outcome = Some(Ok(applied));
                Some(write)
            }
            Err(e) => {
                *outcome = Some(Err(e));
                None
            }
        }
    }

    fn plan(&self, current: &[Option<&[u8]>]) -> std::result::Result<(Applied, Write), ApplyError> {
        let b = &self.batch;
        let stored = current[0]
            .map(|raw| decode_position(raw, &b.topic, b.partition))
            .transpose()?;
        if stored != b.from {
            return Err(ApplyError::Moved {
                topic: b.topic.clone(),
                partition: b.partition,
                from: b.from,
                stored,
            });
        }
        let mut write = Write::default();
        let mut applied = Applied::default();
        let mut fixes: BTreeMap<&str, Vec<Fix>> = BTreeMap::new();
        let now_us = chrono::Utc::now().timestamp_micros();
        let vehicle_reads = &current[1..1 + self.vehicles.len()];
        let mut routes = Routes::read(
            self.routes
                .iter()
                .map(String::as_str)
                .zip(current[1 + self.vehicles.len()..].iter().copied()),
            self.vehicles
                .iter()
                .map(String::as_str)
                .zip(vehicle_reads.iter().copied()),
        )?;
        let dead = |offset: i64, reason: &str, key: Option<&[u8]>, value: Option<&[u8]>| {
            let letter = ConsumerDeadLetter {
                topic: b.topic.clone(),
                partition: b.partition,
                offset,
                reason: reason.to_string(),
                key: key.map(|k| String::from_utf8_lossy(k).into_owned()),
                value: value.map(|v| String::from_utf8_lossy(v).into_owned()),
                dead_at_us: now_us,
            };
            let key = dead_key(&b.topic, b.partition, offset);
            put(CONSUMER_DEAD, key, record::encode(&letter), Expect::Any)
        };
        for (offset, effect) in &b.effects {
            match effect {
                Effect::Event(e) => {
                    write.events.push(e.clone());
                    applied.applied += 1;
                }
                Effect::Route { incoming, event } => match routes.apply((**incoming).clone()) {
                    Ok(true) => {
                        write.events.push(event.clone());
                        applied.applied += 1;
                    }
                    Ok(false) => applied.skipped += 1,
                    Err(r) if r.early && b.wait_for_routes => {
                        applied.stopped_at = Some(*offset);
                        break;
                    }
                    Err(r) => {
                        let key = Some(event.key.as_bytes());
                        write
                            .records
                            .push(dead(*offset, &r.reason, key, Some(&event.payload)));
                        applied.dead_lettered += 1;
                    }
                },
                Effect::Fix { vehicle_id, fix } => {
                    fixes.entry(vehicle_id).or_default().push(*fix);
                    applied.applied += 1;
                }
                Effect::Skip => applied.skipped += 1,
                Effect::Dead { reason, key, value } => {
                    write
                        .records
                        .push(dead(*offset, reason, key.as_deref(), value.as_deref()));
                    applied.dead_lettered += 1;
                }
            }
        }
        // A batch holds one handler's effects: fixes and route events never share a vehicle.
        write.records.extend(routes.finish());
        for (i, vehicle_id) in self.vehicles.iter().enumerate() {
            let Some(fixes) = fixes.get(vehicle_id.as_str()) else {
                continue;
            };
            // Local events: fixes that came from Kafka are not produced back.
            let (_, op, events) = plan_fixes(vehicle_id, fixes, &self.travel, "", current[i + 1])?;
            write.records.push(op);
            write.events.extend(events);
        }
        let next = applied.stopped_at.unwrap_or(b.next);
        let position = record::encode(&Position { next });
        write.records.push(put(
            CONSUMER_OFFSETS,
            self.position_key.clone(),
            position,
            Expect::Any,
        ));
        Ok((applied, write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Outbox, Replay};
    use crate::store::testdata::fixture;

    fn fix(minute: u32) -> Effect {
        let timestamp = format!("2026-12-03T10:{minute:02}:00Z");
        Effect::Fix {
            vehicle_id: "v1".into(),
            fix: Fix {
                latitude: 43.7,
                longitude: 7.4,
                timestamp: chrono::DateTime::parse_from_rfc3339(&timestamp).unwrap(),
                speed_kmh: None,
                heading_deg: None,
            },
        }
    }

    fn batch(from: Option<i64>) -> ConsumedBatch {
        let dead = Effect::Dead {
            reason: "not a GPS fix".into(),
            key: Some(b"v1".to_vec()),
            value: Some(b"{".to_vec()),
        };
        ConsumedBatch {
            topic: "telematics".into(),
            partition: 2,
            from,
            next: 14,
            effects: vec![(10, fix(1)), (11, dead), (12, Effect::Skip), (13, fix(2))],
            wait_for_routes: false,
        }
    }

    fn logged(outbox: &Outbox) -> Vec<Arc<crate::events::Envelope>> {
        match outbox.replay(0, u64::MAX, 1000).unwrap() {
            Replay::Events(e) => e,
            Replay::Reset { .. } => panic!("nothing was pruned"),
        }
    }

    /// A batch applies its effects and moves the position in one go; the same batch again
    /// (a consumer that crashed before it learnt of the commit) changes nothing.
    #[tokio::test]
    async fn a_batch_applies_once_with_its_position_and_a_replay_is_refused() {
        let f = fixture();
        let (store, outbox) = (f.store.clone(), f.outbox.clone());
        let applied = store.apply_consumed(batch(None)).await.unwrap();
        assert_eq!(
            applied,
            Applied {
                applied: 2,
                skipped: 1,
                dead_lettered: 1,
                stopped_at: None
            }
        );
        assert_eq!(
            store.consumer_position("telematics", 2).await.unwrap(),
            Some(14)
        );
        let stored = StoredPosition {
            topic: "telematics".into(),
            partition: 2,
            next_offset: 14,
        };
        assert_eq!(store.consumer_positions().await.unwrap(), [stored]);
        let dead = store.consumer_dead_letters(10).await.unwrap();
        assert_eq!((dead.len(), dead[0].offset), (1, 11));
        assert_eq!(dead[0].reason, "not a GPS fix");
        let events = logged(&outbox);
        assert_eq!(events.len(), 2);
        assert!(
            events
                .iter()
                .all(|e| e.is_local() && e.kind == "vehicle.position")
        );
        assert_eq!(
            outbox.stats().pending_events,
            0,
            "nothing goes back to Kafka"
        );

        let again = store.apply_consumed(batch(None)).await;
        assert!(
            matches!(
                again,
                Err(ApplyError::Moved {
                    stored: Some(14),
                    ..
                })
            ),
            "{again:?}"
        );
        assert_eq!(logged(&outbox).len(), 2, "nothing applied twice");
        assert_eq!(store.consumer_dead_letters(10).await.unwrap().len(), 1);
        store
            .apply_consumed(batch(Some(14)))
            .await
            .expect("the next batch applies");
        assert_eq!(logged(&outbox).len(), 4);
        outbox.shutdown().await;
    }

    fn route_effect(kind: &str, payload: serde_json::Value) -> Effect {
        let payload = serde_json::to_vec(&payload).unwrap();
        let incoming = Incoming::parse(kind, &payload).unwrap();
        let event = NewEvent {
            id: uuid::Uuid::now_v7(),
            kind: kind.into(),
            topic: String::new(),
            key: incoming.vehicle_id().into(),
            route_id: Some(incoming.route_id().into()),
            created_at_us: 1,
            payload,
        };
        Effect::Route {
            incoming: Box::new(incoming),
            event,
        }
    }

    /// Routes planned elsewhere: created, changed by a stop delta, old news skipped, a gap
    /// dead-lettered; the vehicle follows the route and the audit trail has the events.
    #[tokio::test]
    async fn route_events_create_and_change_routes_in_the_batch_order() {
        let f = fixture();
        let route = crate::store::testdata::route_with_stops(&["a", "b"]);
        let id = route.route_id.clone();
        let whole = serde_json::to_value(&route).unwrap();
        let delta = |version: u64, stop: &str| {
            serde_json::json!({
                "routeId": id, "vehicleId": "v1", "version": version, "status": "in_progress",
                "eventId": uuid::Uuid::nil(), "updatedAt": "2026-03-01T08:05:00Z",
                "change": {"type": "stop_status", "stopId": stop, "from": "pending",
                           "to": "completed", "at": "2026-03-01T08:05:00Z"},
                "stop": {"id": stop, "status": "completed", "arrivedAt": null,
                         "finishedAt": "2026-03-01T08:05:00Z", "note": null}
            })
        };
        let batch = ConsumedBatch {
            topic: "hq-routes".into(),
            partition: 0,
            from: None,
            next: 4,
            effects: vec![
                (0, route_effect("route.optimized", whole.clone())),
                (1, route_effect("route.updated", delta(2, "a"))),
                (2, route_effect("route.optimized", whole)),
                (3, route_effect("route.updated", delta(4, "b"))),
            ],
            wait_for_routes: false,
        };
        let applied = f.store.apply_consumed(batch).await.unwrap();
        assert_eq!(
            applied,
            Applied {
                applied: 2,
                skipped: 1,
                dead_lettered: 1,
                stopped_at: None
            }
        );
        let stored = f.store.route(&id).await.unwrap();
        assert_eq!(stored.version, 2);
        assert_eq!(
            stored.optimized_stops[0].status,
            crate::store::StopStatus::Completed
        );
        let listed = f.store.list(crate::store::ListQuery {
            limit: 10,
            ..Default::default()
        });
        let listed = listed.await.unwrap();
        assert_eq!(listed.routes.len(), 1);
        assert_eq!(
            listed.routes[0].status,
            crate::store::RouteStatus::InProgress
        );
        let trail = f.store.route_events(&id, 10).await.unwrap();
        let kinds: Vec<&str> = trail.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["route.optimized", "route.updated"]);
        let letters = f.store.consumer_dead_letters(10).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert!(letters[0].reason.contains("missed"), "{:?}", letters[0]);
        let raw = f.outbox.domain_tree(VEHICLES).unwrap();
        let raw = raw.get(keys::vehicle("v1")).unwrap().unwrap();
        let vehicle: record::VehicleRecord = record::decode(&raw).unwrap();
        assert_eq!(
            vehicle.active_route.map(|a| a.route_id),
            Some(id.clone()),
            "the vehicle drives the imported route"
        );
        f.outbox.shutdown().await;
    }

    /// A stop change read before its route stops a patient batch there: what came before it
    /// commits, the position stays at the change, nothing is dead-lettered.
    #[tokio::test]
    async fn a_change_before_its_route_stops_a_patient_batch_at_it() {
        let f = fixture();
        let route = crate::store::testdata::route_with_stops(&["a"]);
        let other = crate::store::testdata::route_with_stops(&["x"]);
        let change = serde_json::json!({
            "routeId": route.route_id, "vehicleId": "v1", "version": 2, "status": "in_progress",
            "eventId": uuid::Uuid::nil(), "updatedAt": "2026-03-01T08:05:00Z",
            "change": {"type": "stop_status", "stopId": "a", "from": "pending",
                       "to": "arrived", "at": "2026-03-01T08:05:00Z"},
            "stop": {"id": "a", "status": "arrived", "arrivedAt": "2026-03-01T08:05:00Z",
                     "finishedAt": null, "note": null}
        });
        let batch = ConsumedBatch {
            topic: "hq-updates".into(),
            partition: 0,
            from: None,
            next: 8,
            effects: vec![
                (
                    5,
                    route_effect("route.optimized", serde_json::to_value(&other).unwrap()),
                ),
                (6, route_effect("route.updated", change)),
                (
                    7,
                    route_effect("route.optimized", serde_json::to_value(&route).unwrap()),
                ),
            ],
            wait_for_routes: true,
        };
        let applied = f.store.apply_consumed(batch).await.unwrap();
        assert_eq!(applied.stopped_at, Some(6));
        assert_eq!((applied.applied, applied.dead_lettered), (1, 0));
        assert_eq!(
            f.store.consumer_position("hq-updates", 0).await.unwrap(),
            Some(6)
        );
        assert!(f.store.route(&other.route_id).await.is_ok());
        assert!(
            f.store.route(&route.route_id).await.is_err(),
            "not past the change"
        );
        assert!(f.store.consumer_dead_letters(10).await.unwrap().is_empty());
        f.outbox.shutdown().await;
    }
}
