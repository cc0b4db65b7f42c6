//! Route resources: `GET /traffic/routes/{routeId}`, `GET /traffic/routes`,
//! `PATCH /traffic/routes/{routeId}/stops/{stopId}` and `GET /traffic/routes/{routeId}/events`.
//!
//! Route ids in paths are UUIDs: anything else is not a route (404 from the router), which also
//! keeps `/traffic/routes/kafka-health` and `/traffic/routes/ws` apart from `{routeId}`.

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use super::{Api, body, guard, with};
use crate::events::Envelope;
use crate::store::{ListQuery, RouteStatus, StopStatus, StopUpdate, keys};

/// Routes per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;
/// Audit-trail events per request unless `limit` says otherwise, and the most it may say.
const DEFAULT_EVENTS: usize = 100;
const MAX_EVENTS: usize = 1000;

/// `GET /traffic/routes/{routeId}`
pub fn get(api: Api) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("traffic" / "routes" / Uuid)
        .and(crate::http::openapi::read())
        .and(guard(&api))
        .and(with(api))
        .and_then(read)
}

async fn read(id: Uuid, api: Api) -> Result<Response, Rejection> {
    let route = api.within(api.store.route(&id.to_string())).await?;
    Ok(warp::reply::json(&route).into_response())
}

/// `GET /traffic/routes?vehicleId=&status=&limit=&cursor=`
pub fn list(api: Api) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("traffic" / "routes")
        .and(crate::http::openapi::read())
        .and(guard(&api))
        .and(warp::query::<Vec<(String, String)>>())
        .and(with(api))
        .and_then(page)
}

async fn page(params: Vec<(String, String)>, api: Api) -> Result<Response, Rejection> {
    let q = list_query(&params)?;
    let page = api.within(api.store.list(q)).await?;
    Ok(warp::reply::json(&page).into_response())
}

/// The last value of each query parameter.
pub(super) fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn limit(params: &[(String, String)], default: usize, max: usize) -> Result<usize, ApiError> {
    match param(params, "limit") {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("expected an integer from 1 to {max}"),
                    Some("limit"),
                )
            }),
    }
}

fn list_query(params: &[(String, String)]) -> Result<ListQuery, ApiError> {
    let status = param(params, "status")
        .map(|s| {
            RouteStatus::parse(s).ok_or_else(|| {
                ApiError::bad_request("expected planned, in_progress or completed", Some("status"))
            })
        })
        .transpose()?;
    let after = param(params, "cursor")
        .map(|c| {
            keys::decode_cursor(c)
                .ok_or_else(|| ApiError::bad_request("not a cursor from this API", Some("cursor")))
        })
        .transpose()?;
    let vehicle_id = param(params, "vehicleId");
    if let Some(v) = vehicle_id {
        body::id(v, "vehicleId")?;
    }
    Ok(ListQuery {
        vehicle_id: vehicle_id.map(str::to_string),
        status,
        limit: limit(params, DEFAULT_PAGE, MAX_PAGE)?,
        after,
    })
}

/// The body of a stop update.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StopUpdateBody {
    status: Target,
    #[serde(default)]
    at: Option<DateTime<FixedOffset>>,
    #[serde(default)]
    note: Option<String>,
}

/// The statuses a client may set (`pending` is where stops start, never a target).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Target {
    Arrived,
    Completed,
    Skipped,
    Failed,
}

impl From<Target> for StopStatus {
    fn from(t: Target) -> StopStatus {
        match t {
            Target::Arrived => StopStatus::Arrived,
            Target::Completed => StopStatus::Completed,
            Target::Skipped => StopStatus::Skipped,
            Target::Failed => StopStatus::Failed,
        }
    }
}

/// `PATCH /traffic/routes/{routeId}/stops/{stopId}`
pub fn update_stop(api: Api) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("traffic" / "routes" / Uuid / "stops" / String)
        .and(warp::patch())
        .and(guard(&api))
        .and(body::json(api.limits.body))
        .and(with(api))
        .and_then(patch_stop)
}

async fn patch_stop(id: Uuid, stop: String, body: Value, api: Api) -> Result<Response, Rejection> {
    let stop = body::segment(&stop)
        .ok_or_else(|| ApiError::bad_request("stop id is not UTF-8", Some("stopId")))?;
    body::id(&stop, "stopId")?;
    let b: StopUpdateBody = body::decode(body, "")?;
    if let Some(at) = b.at {
        api.limits
            .timestamps
            .check(at, chrono::Utc::now())
            .map_err(|message| ApiError::Unprocessable {
                message,
                field: "at".into(),
            })?;
    }
    let update = StopUpdate {
        status: b.status.into(),
        at: b.at,
        note: b.note,
    };
    let route = api
        .store
        .update_stop(&id.to_string(), &stop, update)
        .await
        .map_err(ApiError::from)?;
    Ok(warp::reply::json(&route).into_response())
}

/// One entry of the audit trail.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct EventView {
    seq: u64,
    event_id: Uuid,
    #[serde(rename = "type")]
    kind: String,
    topic: String,
    key: String,
    time: DateTime<Utc>,
    data: Value,
}

impl From<Envelope> for EventView {
    fn from(e: Envelope) -> EventView {
        EventView {
            seq: e.seq,
            event_id: e.id,
            time: e.created_at(),
            data: e.payload_json(),
            kind: e.kind,
            topic: e.topic,
            key: e.key,
        }
    }
}

/// `GET /traffic/routes/{routeId}/events?limit=`
pub fn events(api: Api) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("traffic" / "routes" / Uuid / "events")
        .and(crate::http::openapi::read())
        .and(guard(&api))
        .and(warp::query::<Vec<(String, String)>>())
        .and(with(api))
        .and_then(trail)
}

async fn trail(id: Uuid, params: Vec<(String, String)>, api: Api) -> Result<Response, Rejection> {
    let limit = limit(&params, DEFAULT_EVENTS, MAX_EVENTS)?;
    let route_id = id.to_string();
    let events = api.within(api.store.route_events(&route_id, limit)).await?;
    let events: Vec<EventView> = events.into_iter().map(EventView::from).collect();
    let body = serde_json::json!({ "routeId": route_id, "events": events });
    Ok(warp::reply::json(&body).into_response())
}
