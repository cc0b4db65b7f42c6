//! Routes planned elsewhere: `route.optimized` / `route.updated` events read from Kafka and
//! applied to the route store (the `routes` consumer handler, `routegate restore --from-kafka`).
//!
//! The events are the ones routegate itself announces ([`super::announce`]): a whole route
//! (`route.optimized`, or a `route.updated` re-plan) or a stop change carrying only the delta.
//!
//! # Applying one, by the route's `version`
//!
//! | stored           | whole route, version `v`     | stop change, version `v`                    |
//! |------------------|------------------------------|---------------------------------------------|
//! | none             | stored                       | refused: the route is unknown               |
//! | version `>= v`   | old news: nothing            | old news: nothing                           |
//! | version `v - 1`  | replaces it                  | applied to it                               |
//! | version `< v - 1`| replaces it (it is whole)    | refused: versions in between were missed    |
//!
//! A refused event is dead-lettered by the caller with the reason. A route that arrives whole
//! gets the input it was planned from back from the route and the event's `plan`
//! ([`PlanExtras`], which routegate adds to its own whole-route events); without `plan` only
//! the stops' positions and service times are known (no time windows, start or end), and a
//! later re-plan of that route works from that.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::announce::PlanExtras;
use super::record::{self, Position, Route, RouteRecord, RouteStatus, StopStatus, VehicleRecord};
use super::writes::{follow, put, reindex};
use super::{Error, ROUTES, Result, VEHICLES, keys};
use crate::events;
use crate::queue::{Expect, RecordOp};

/// A route event from elsewhere, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `route.optimized` (`planned`: the vehicle's active route becomes it) or a re-plan.
    Whole {
        record: Box<RouteRecord>,
        planned: bool,
    },
    /// A stop change (`route.updated`, `change.type = "stop_status"`).
    Delta(Box<StopDelta>),
}

/// Why an event cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: String,
    /// The route, or a version before this one, is not here yet: whole routes and stop
    /// changes travel on different topics, so it may still come.
    pub early: bool,
}

impl Refusal {
    fn early(reason: String) -> Refusal {
        Refusal {
            reason,
            early: true,
        }
    }
}

/// A whole route as an event carries it: the route, and what it was planned from if known.
#[derive(Debug, Deserialize)]
struct WholeRoute {
    #[serde(flatten)]
    route: Route,
    #[serde(default)]
    plan: Option<PlanExtras>,
}

#[derive(Debug, Deserialize)]
struct ChangeKind {
    #[serde(rename = "type")]
    kind: String,
}

/// The `route.updated` payload of a stop change (see [`super::announce`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopDelta {
    pub route_id: String,
    pub vehicle_id: String,
    pub version: u64,
    pub status: RouteStatus,
    pub event_id: uuid::Uuid,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub stop: StopState,
    #[serde(default)]
    pub delay_seconds: Option<f64>,
    #[serde(default)]
    pub last_position: Option<Position>,
}

/// The changed stop after the change.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopState {
    pub id: String,
    pub status: StopStatus,
    pub arrived_at: Option<chrono::DateTime<chrono::FixedOffset>>,
    pub finished_at: Option<chrono::DateTime<chrono::FixedOffset>>,
    pub note: Option<String>,
}

impl Incoming {
    /// The event of CloudEvents type `kind` with JSON `payload`; `Err` says why it is unusable.
    pub fn parse(kind: &str, payload: &[u8]) -> Result<Incoming, String> {
        let whole = |planned: bool| -> Result<Incoming, String> {
            let w: WholeRoute =
                serde_json::from_slice(payload).map_err(|e| format!("not a route: {e}"))?;
            let plan = w.plan.unwrap_or_else(|| PlanExtras::unknown(&w.route));
            let input = plan.input(&w.route);
            Ok(Incoming::Whole {
                record: Box::new(RouteRecord {
                    route: w.route,
                    input,
                }),
                planned,
            })
        };
        match kind {
            events::ROUTE_OPTIMIZED => whole(true),
            events::ROUTE_UPDATED => {
                #[derive(Deserialize)]
                struct Peek {
                    change: Option<ChangeKind>,
                }
                let peek: Peek = serde_json::from_slice(payload)
                    .map_err(|e| format!("not a route change: {e}"))?;
                match peek.change.map(|c| c.kind).as_deref() {
                    Some("reoptimized") => whole(false),
                    Some("stop_status") => serde_json::from_slice(payload)
                        .map(|d| Incoming::Delta(Box::new(d)))
                        .map_err(|e| format!("not a stop change: {e}")),
                    Some(other) => Err(format!("unknown change type {other:?}")),
                    None => Err("a route.updated without change.type".into()),
                }
            }
            other => Err(format!("not a route event: type {other:?}")),
        }
    }

    pub fn route_id(&self) -> &str {
        match self {
            Incoming::Whole { record, .. } => &record.route.route_id,
            Incoming::Delta(d) => &d.route_id,
        }
    }

    pub fn vehicle_id(&self) -> &str {
        match self {
            Incoming::Whole { record, .. } => &record.route.vehicle_id,
            Incoming::Delta(d) => &d.vehicle_id,
        }
    }

    /// The stored route after this event (see the module's table): `Ok(None)` when it is old
    /// news, `Err` with the reason when it cannot be applied.
    pub fn apply(self, current: Option<&RouteRecord>) -> Result<Option<RouteRecord>, Refusal> {
        let stored = current.map(|r| r.route.version);
        match self {
            Incoming::Whole { record, .. } => Ok(match stored {
                Some(v) if v >= record.route.version => None,
                _ => Some(*record),
            }),
            Incoming::Delta(d) => {
                let Some(current) = current else {
                    return Err(Refusal::early(format!(
                        "stop change of route {} version {}, which is not known here",
                        d.route_id, d.version
                    )));
                };
                let v = current.route.version;
                if d.version <= v {
                    return Ok(None);
                }
                if d.version > v + 1 {
                    return Err(Refusal::early(format!(
                        "stop change of route {} version {}, but version {v} is stored: \
                         versions in between were missed",
                        d.route_id, d.version
                    )));
                }
                let mut next = current.clone();
                let route = &mut next.route;
                let Some(stop) = route
                    .optimized_stops
                    .iter_mut()
                    .find(|s| s.plan.id == d.stop.id)
                else {
                    return Err(Refusal {
                        reason: format!(
                            "stop change of stop {} which route {} does not have",
                            d.stop.id, d.route_id
                        ),
                        early: false,
                    });
                };
                stop.status = d.stop.status;
                stop.arrived_at = d.stop.arrived_at;
                stop.finished_at = d.stop.finished_at;
                stop.note = d.stop.note;
                route.version = d.version;
                route.status = d.status;
                route.event_id = d.event_id;
                route.updated_at = d.updated_at;
                Ok(Some(next))
            }
        }
    }
}

/// Route events of one batch applied in order to the routes and vehicles they touch, inside
/// the outbox writer's update (so nothing else writes them meanwhile).
pub(super) struct Routes {
    /// Each touched route as stored before the batch and as it stands now.
    routes: BTreeMap<String, (Option<RouteStatus>, Option<RouteRecord>)>,
    /// Each touched vehicle as it stands now, and whether the batch changed it.
    vehicles: BTreeMap<String, (VehicleRecord, bool)>,
    changed: Vec<String>,
    ops: Vec<RecordOp>,
}

fn decode<T: for<'de> Deserialize<'de>>(tree: &'static str, id: &str, raw: &[u8]) -> Result<T> {
    record::decode(raw).map_err(|source| Error::Corrupt {
        tree,
        key: id.to_string(),
        source,
    })
}

impl Routes {
    /// From the stored bytes of the routes and vehicles the batch names.
    pub fn read<'a>(
        routes: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
        vehicles: impl Iterator<Item = (&'a str, Option<&'a [u8]>)>,
    ) -> Result<Routes> {
        let mut r = Routes {
            routes: BTreeMap::new(),
            vehicles: BTreeMap::new(),
            changed: Vec::new(),
            ops: Vec::new(),
        };
        for (id, raw) in routes {
            let rec: Option<RouteRecord> = raw.map(|raw| decode(ROUTES, id, raw)).transpose()?;
            r.routes
                .insert(id.to_string(), (rec.as_ref().map(|r| r.route.status), rec));
        }
        for (id, raw) in vehicles {
            let v = raw.map(|raw| decode(VEHICLES, id, raw)).transpose()?;
            r.vehicles
                .insert(id.to_string(), (v.unwrap_or_default(), false));
        }
        Ok(r)
    }

    /// Apply one event: `Ok(true)` applied, `Ok(false)` old news, `Err` why it cannot be.
    pub fn apply(&mut self, incoming: Incoming) -> std::result::Result<bool, Refusal> {
        let planned = matches!(incoming, Incoming::Whole { planned: true, .. });
        let id = incoming.route_id().to_string();
        let entry = self.routes.entry(id.clone()).or_insert((None, None));
        let Some(next) = incoming.apply(entry.1.as_ref())? else {
            return Ok(false);
        };
        let old_status = entry.1.as_ref().map(|r| r.route.status);
        self.ops.extend(reindex(&next.route, old_status));
        let vehicle = self
            .vehicles
            .entry(next.route.vehicle_id.clone())
            .or_insert_with(|| (VehicleRecord::default(), false));
        let moved = follow(&vehicle.0, &next.route, planned);
        if moved != vehicle.0 {
            *vehicle = (moved, true);
        }
        entry.1 = Some(next);
        if !self.changed.contains(&id) {
            self.changed.push(id);
        }
        Ok(true)
    }

    /// The writes: every changed route and vehicle, and the index changes in order.
    pub fn finish(self) -> Vec<RecordOp> {
        let mut ops = self.ops;
        for id in &self.changed {
            if let Some((_, Some(rec))) = self.routes.get(id) {
                ops.push(put(
                    ROUTES,
                    keys::route(id),
                    record::encode(rec),
                    Expect::Any,
                ));
            }
        }
        for (id, (v, changed)) in self.vehicles {
            if changed {
                ops.push(put(
                    VEHICLES,
                    keys::vehicle(&id),
                    record::encode(&v),
                    Expect::Any,
                ));
            }
        }
        ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testdata::route_with_stops;

    fn whole(route: &Route, kind: &str) -> Incoming {
        let mut json = serde_json::to_value(route).unwrap();
        if kind == events::ROUTE_UPDATED {
            json["change"] = serde_json::json!({"type": "reoptimized", "remainingStops": 1});
        }
        Incoming::parse(kind, &serde_json::to_vec(&json).unwrap()).unwrap()
    }

    fn delta(route: &Route, version: u64, stop: &str) -> Incoming {
        let json = serde_json::json!({
            "routeId": route.route_id, "vehicleId": route.vehicle_id, "version": version,
            "status": "in_progress", "eventId": uuid::Uuid::nil(),
            "updatedAt": "2026-03-01T08:05:00Z",
            "change": {"type": "stop_status", "stopId": stop, "from": "pending",
                       "to": "arrived", "at": "2026-03-01T08:05:00Z"},
            "stop": {"id": stop, "status": "arrived", "arrivedAt": "2026-03-01T08:05:00Z",
                     "finishedAt": null, "note": null},
            "etas": {}, "delaySeconds": null, "lastPosition": null
        });
        Incoming::parse(events::ROUTE_UPDATED, &serde_json::to_vec(&json).unwrap()).unwrap()
    }

    #[test]
    fn a_whole_route_is_stored_and_replaces_only_older_versions() {
        let mut route = route_with_stops(&["a", "b"]);
        let stored = whole(&route, events::ROUTE_OPTIMIZED)
            .apply(None)
            .unwrap()
            .unwrap();
        assert_eq!(stored.route, route);
        assert_eq!(stored.input.stops.len(), 2);
        assert_eq!(stored.input.stops[0].service_minutes, Some(2.0));
        assert_eq!(
            whole(&route, events::ROUTE_OPTIMIZED).apply(Some(&stored)),
            Ok(None)
        );
        route.version = 3;
        let replanned = whole(&route, events::ROUTE_UPDATED).apply(Some(&stored));
        assert_eq!(replanned.unwrap().unwrap().route.version, 3);
    }

    #[test]
    fn a_stop_change_applies_to_the_version_before_it_only() {
        let route = route_with_stops(&["a", "b"]);
        let stored = whole(&route, events::ROUTE_OPTIMIZED)
            .apply(None)
            .unwrap()
            .unwrap();
        let next = delta(&route, 2, "a").apply(Some(&stored)).unwrap().unwrap();
        assert_eq!(next.route.version, 2);
        assert_eq!(next.route.status, RouteStatus::InProgress);
        assert_eq!(next.route.optimized_stops[0].status, StopStatus::Arrived);
        assert!(next.route.optimized_stops[0].arrived_at.is_some());
        assert_eq!(
            delta(&route, 2, "a").apply(Some(&next)),
            Ok(None),
            "old news"
        );
        let gap = delta(&route, 4, "b").apply(Some(&next)).unwrap_err();
        assert!(gap.early && gap.reason.contains("missed"), "{gap:?}");
        let unknown = delta(&route, 2, "a").apply(None).unwrap_err();
        assert!(
            unknown.early && unknown.reason.contains("not known"),
            "{unknown:?}"
        );
        let no_stop = delta(&route, 3, "zz").apply(Some(&next)).unwrap_err();
        assert!(!no_stop.early && no_stop.reason.contains("does not have"));
    }

    #[test]
    fn the_plan_a_whole_route_carries_is_kept() {
        let route = route_with_stops(&["a"]);
        let mut json = serde_json::to_value(&route).unwrap();
        json["plan"] = serde_json::json!({
            "stops": [{"id": "a", "timeWindow":
                       {"start": "2026-03-01T08:00:00Z", "end": "2026-03-01T09:00:00Z"}}],
            "start": null, "end": null, "roundTrip": true, "preferences": {}
        });
        let Incoming::Whole { record, .. } =
            Incoming::parse(events::ROUTE_OPTIMIZED, &serde_json::to_vec(&json).unwrap()).unwrap()
        else {
            panic!("a whole route");
        };
        assert!(record.input.round_trip);
        assert!(record.input.stops[0].time_window.is_some());
    }

    #[test]
    fn what_is_not_a_route_event_is_refused_with_the_reason() {
        assert!(
            Incoming::parse("vehicle.position", b"{}")
                .unwrap_err()
                .contains("not a route event")
        );
        assert!(
            Incoming::parse(events::ROUTE_OPTIMIZED, b"{")
                .unwrap_err()
                .contains("not a route")
        );
        let no_change = Incoming::parse(events::ROUTE_UPDATED, b"{}").unwrap_err();
        assert!(no_change.contains("change.type"), "{no_change}");
    }
}
