//! Writes: each one read → decide → one atomic append with compare-and-set, retried on conflict.

use chrono::{DateTime, FixedOffset, Utc};
use tokio::time::Instant;

use super::announce::{self, Change};
use super::reads::{load_route, load_vehicle, view};
use super::record::{
    self, ActiveRoute, PlanInput, Route, RouteRecord, RouteStatus, StopStatus, VehicleRecord,
};
use super::{BY_STATUS, BY_VEHICLE, ROUTES, VEHICLES};
use super::{Error, MAX_ATTEMPTS, Result, Store, Trees, keys, lifecycle, replan};
use crate::events::{self, NewEvent};
use crate::optimize::{self, Problem, Solution};
use crate::queue::{self, Expect, RecordOp, Write};

/// A stop status change (`PATCH /traffic/routes/{routeId}/stops/{stopId}`).
#[derive(Debug, Clone, PartialEq)]
pub struct StopUpdate {
    pub status: StopStatus,
    pub at: Option<DateTime<FixedOffset>>,
    pub note: Option<String>,
}

pub(super) fn put(tree: &'static str, key: Vec<u8>, value: Vec<u8>, expect: Expect) -> RecordOp {
    RecordOp {
        tree,
        key,
        value: Some(value),
        expect,
    }
}

pub(super) fn expect(old: Option<&Vec<u8>>) -> Expect {
    old.map_or(Expect::Absent, |b| Expect::Equals(b.clone()))
}

/// A new event of `kind` about `route`, stamped into it: the route's `eventId` and `updatedAt`
/// name the event that announced its state. The caller fills in the payload.
fn stamp(kind: &str, topic: &str, route: &mut Route) -> NewEvent {
    let event = NewEvent::now(kind, topic, &route.vehicle_id, Some(&route.route_id), &());
    route.event_id = event.id;
    route.updated_at = DateTime::from_timestamp_micros(event.created_at_us).unwrap_or_default();
    event
}

/// Index changes when a route's status moves from `old` to `new` (none if unchanged).
pub(super) fn reindex(route: &Route, old: Option<RouteStatus>) -> Vec<RecordOp> {
    let new = route.status;
    if old == Some(new) {
        return Vec::new();
    }
    let id = &route.route_id;
    let mut ops = vec![
        put(
            BY_VEHICLE,
            keys::by_vehicle(&route.vehicle_id, id),
            vec![new.tag()],
            Expect::Any,
        ),
        put(
            BY_STATUS,
            keys::by_status(new.tag(), id),
            Vec::new(),
            Expect::Any,
        ),
    ];
    if let Some(old) = old {
        ops.push(RecordOp {
            tree: BY_STATUS,
            key: keys::by_status(old.tag(), id),
            value: None,
            expect: Expect::Any,
        });
    }
    ops
}

/// The vehicle record after `route` changed: it follows its active route's next stop.
pub(super) fn follow(vehicle: &VehicleRecord, route: &Route, make_active: bool) -> VehicleRecord {
    let mut v = vehicle.clone();
    let is_active = v
        .active_route
        .as_ref()
        .is_some_and(|a| a.route_id == route.route_id);
    if route.status == RouteStatus::Completed {
        if is_active {
            v.active_route = None;
        }
    } else if is_active || make_active {
        let delay = v.active_route.as_ref().filter(|_| is_active);
        v.active_route = Some(ActiveRoute {
            route_id: route.route_id.clone(),
            next_stop: lifecycle::next_stop(route),
            delay_seconds: delay.map_or(0.0, |a| a.delay_seconds),
        });
    }
    v
}

impl Store {
    /// Solve `problem` for `vehicle_id` and store the route (`planned`) with its
    /// `route.optimized` event; the vehicle's active route becomes this one.
    pub async fn create_route(
        &self,
        vehicle_id: String,
        problem: Problem,
        deadline: Instant,
    ) -> Result<Route> {
        let now = Utc::now();
        let params = optimize::Params {
            now: Some(now),
            ..(*self.params).clone()
        };
        let mut problem = problem;
        cap_compute(&mut problem, params.max_compute_ms);
        let input = PlanInput {
            stops: problem.stops.clone(),
            start: problem.start,
            end: problem.end,
            round_trip: problem.round_trip,
            preferences: problem.preferences.clone(),
        };
        let vid = vehicle_id.clone();
        let (solution, mut old) = self
            .solve_then(problem, params, deadline, move |t| load_vehicle(t, &vid))
            .await?;
        let route_id = uuid::Uuid::now_v7().to_string();
        let planned = replan::new_route(route_id, vehicle_id, solution, now);
        let input_struct = input;
        let input =
            serde_json::to_vec(&input_struct).expect("serializing the plan input cannot fail");
        let mut attempts = 0;
        loop {
            let vehicle = old.as_ref().map(|(_, v)| v.clone()).unwrap_or_default();
            let next = follow(&vehicle, &planned, true);
            // The event announces exactly what the client is answered; the record reuses its
            // bytes instead of serializing the route a second time.
            let mut route = view(planned.clone(), Some(&next));
            let topic = &self.topics.route_optimized;
            let mut event = stamp(events::ROUTE_OPTIMIZED, topic, &mut route);
            let route_json = serde_json::to_vec(&route).expect("serializing a route cannot fail");
            event.payload = announce::with_plan(&route_json, &route, &input_struct);
            let value = record::encode_route_record(&route_json, &input);
            let key = keys::route(&route.route_id);
            let mut records = vec![put(ROUTES, key, value, Expect::Absent)];
            records.extend(reindex(&route, None));
            records.push(self.vehicle_op(&route.vehicle_id, old.as_ref().map(|o| &o.0), &next));
            if self.commit(vec![event], records, &mut attempts).await? {
                return Ok(route);
            }
            let vid = planned.vehicle_id.clone();
            old = self.blocking(move |t| load_vehicle(t, &vid)).await?;
        }
    }

    /// Change one stop's status; a `route.updated` carrying only the change announces it.
    pub async fn update_stop(&self, route_id: &str, stop_id: &str, u: StopUpdate) -> Result<Route> {
        let mut attempts = 0;
        loop {
            let loaded = self.load_with_vehicle(route_id.to_string()).await?;
            let (raw, mut rec, vehicle) = loaded;
            let at = u.at.unwrap_or_else(|| Utc::now().fixed_offset());
            let old_status = rec.route.status;
            let before = announce::etas_before(&rec.route, &vehicle.1);
            let from =
                lifecycle::update_stop(&mut rec.route, stop_id, u.status, at, u.note.clone())
                    .map_err(|e| match e {
                        lifecycle::TransitionError::NoSuchStop(_) => Error::NotFound(e.to_string()),
                        lifecycle::TransitionError::Impossible { .. } => {
                            Error::Conflict(e.to_string())
                        }
                    })?;
            let change = Change::StopStatus {
                stop_id,
                from,
                to: u.status,
                at,
                note: u.note.as_deref(),
            };
            let payload = |route: &Route, next: &VehicleRecord| {
                announce::stop_changed(route, next, &before, stop_id, change)
            };
            let (event, records, next) =
                self.rewrite(&raw, &mut rec, old_status, &vehicle, payload);
            if self.commit(vec![event], records, &mut attempts).await? {
                return Ok(view(rec.route, Some(&next)));
            }
        }
    }

    /// Re-plan the pending stops from the vehicle's last known position.
    pub async fn reoptimize(&self, route_id: &str, deadline: Instant) -> Result<Route> {
        let mut attempts = 0;
        loop {
            let (raw, mut rec, vehicle) = self.load_with_vehicle(route_id.to_string()).await?;
            let now = Utc::now();
            let mut problem = replan::remaining_problem(&rec, vehicle.1.last_position.as_ref())?;
            cap_compute(&mut problem, self.params.max_compute_ms);
            let remaining = problem.stops.len();
            let params = optimize::Params {
                now: Some(now),
                ..(*self.params).clone()
            };
            let (solution, ()) = self
                .solve_then(problem, params, deadline, |_| Ok(()))
                .await?;
            replan::merge(&mut rec, solution);
            let old_status = rec.route.status;
            let input = &rec.input.clone();
            // Every pending stop may have moved: the event carries the whole route.
            let payload = |route: &Route, next: &VehicleRecord| {
                announce::replanned(&view(route.clone(), Some(next)), input, remaining)
            };
            let (event, records, next) =
                self.rewrite(&raw, &mut rec, old_status, &vehicle, payload);
            if self.commit(vec![event], records, &mut attempts).await? {
                return Ok(view(rec.route, Some(&next)));
            }
        }
    }

    /// Solve on the blocking pool, at most one solve per core at a time, then run `then` on the
    /// same blocking thread (one hop for both); waiting for a turn and solving count against
    /// `deadline`.
    async fn solve_then<T: Send + 'static>(
        &self,
        problem: Problem,
        params: optimize::Params,
        deadline: Instant,
        then: impl FnOnce(&Trees) -> Result<T> + Send + 'static,
    ) -> Result<(Solution, T)> {
        let turn = match self.solvers.enter(problem.stops.len()) {
            Err(full) => return Err(Error::SolverQueueFull(full.to_string())),
            Ok(Ok(turn)) => turn,
            Ok(Err(waiting)) => tokio::time::timeout_at(deadline, waiting)
                .await
                .map_err(|_| Error::TimedOut)?
                // The queue dropped our place for a smaller problem.
                .map_err(|_| {
                    Error::SolverQueueFull("a smaller optimize request took this place".into())
                })?,
        };
        let costs = self.costs.clone();
        let solve = self.blocking(move |t| {
            let solution = match &costs {
                Some(source) => optimize::solve_with_matrix(&problem, &params, source.as_ref()),
                None => optimize::solve(&problem, &params),
            };
            drop(turn);
            Ok((solution?, then(t)?))
        });
        tokio::time::timeout_at(deadline, solve)
            .await
            .map_err(|_| Error::TimedOut)?
    }

    /// The route record (raw bytes too) and its vehicle's record (raw bytes if present).
    async fn load_with_vehicle(
        &self,
        route_id: String,
    ) -> Result<(Vec<u8>, RouteRecord, (Option<Vec<u8>>, VehicleRecord))> {
        self.blocking(move |t| {
            let (raw, rec) = load_route(t, &route_id)?;
            let v = load_vehicle(t, &rec.route.vehicle_id)?;
            let (vraw, vrec) = match v {
                Some((raw, v)) => (Some(raw), v),
                None => (None, VehicleRecord::default()),
            };
            Ok((raw, rec, (vraw, vrec)))
        })
        .await
    }

    /// The append for a changed route: record (compare-and-set), indexes, vehicle, and the
    /// `route.updated` event whose payload `payload` makes from the stored route after the
    /// change (its version counted up, the event stamped in) and the vehicle record after it.
    fn rewrite(
        &self,
        raw: &[u8],
        rec: &mut RouteRecord,
        old_status: RouteStatus,
        vehicle: &(Option<Vec<u8>>, VehicleRecord),
        payload: impl FnOnce(&Route, &VehicleRecord) -> Vec<u8>,
    ) -> (NewEvent, Vec<RecordOp>, VehicleRecord) {
        let next = follow(&vehicle.1, &rec.route, false);
        rec.route.version += 1;
        let topic = &self.topics.route_updated;
        let mut event = stamp(events::ROUTE_UPDATED, topic, &mut rec.route);
        event.payload = payload(&rec.route, &next);
        let key = keys::route(&rec.route.route_id);
        let mut records = vec![put(
            ROUTES,
            key,
            record::encode(&*rec),
            Expect::Equals(raw.to_vec()),
        )];
        records.extend(reindex(&rec.route, Some(old_status)));
        if next != vehicle.1 {
            records.push(self.vehicle_op(&rec.route.vehicle_id, vehicle.0.as_ref(), &next));
        }
        (event, records, next)
    }

    pub(super) fn vehicle_op(
        &self,
        vehicle_id: &str,
        old: Option<&Vec<u8>>,
        new: &VehicleRecord,
    ) -> RecordOp {
        put(
            VEHICLES,
            keys::vehicle(vehicle_id),
            record::encode(new),
            expect(old),
        )
    }

    /// Append; `Ok(false)` when a compare-and-set failed and the caller should start over.
    /// An event too large for a Kafka record is refused before anything is written.
    async fn commit(
        &self,
        events: Vec<NewEvent>,
        records: Vec<RecordOp>,
        attempts: &mut usize,
    ) -> Result<bool> {
        self.limit.check(&events)?;
        match self.outbox.append(Write { events, records }).await {
            Ok(_) => Ok(true),
            Err(queue::Error::Conflict { .. }) => {
                *attempts += 1;
                if *attempts >= MAX_ATTEMPTS {
                    Err(Error::Busy)
                } else {
                    Ok(false)
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A request may ask for less solver time than the server allows, never more (values out of the
/// optimizer's range are left for it to refuse with their field).
fn cap_compute(problem: &mut Problem, max_ms: u64) {
    let prefs = &mut problem.preferences;
    if let Some(ms) = prefs.max_compute_millis
        && (1..=optimize::MAX_COMPUTE_MILLIS).contains(&ms)
    {
        prefs.max_compute_millis = Some(ms.min(max_ms));
    }
}
