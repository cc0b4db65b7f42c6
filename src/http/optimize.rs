//! `POST /traffic/routes/optimize` and `POST /traffic/routes/{routeId}/reoptimize`.
//!
//! The body is decoded here (with field paths), the solver runs on the blocking pool inside the
//! store, and the answer is sent only once the route and its event are durable. Validation
//! failures of the optimizer come back as 400 naming their field.

use chrono::{DateTime, FixedOffset};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;
use warp::http::{StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use super::{Api, body, guard, with};
use crate::optimize::{Location, Preferences, Problem, Stop};

/// The request body: the optimizer's problem plus the vehicle it is for.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OptimizeRequest {
    vehicle_id: String,
    stops: Vec<Stop>,
    #[serde(default)]
    start: Option<Location>,
    #[serde(default)]
    end: Option<Location>,
    #[serde(default)]
    round_trip: bool,
    #[serde(default)]
    departure_time: Option<DateTime<FixedOffset>>,
    #[serde(default)]
    preferences: Option<Preferences>,
}

/// `POST /traffic/routes/optimize`
pub fn optimize(api: Api) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("traffic" / "routes" / "optimize")
        .and(warp::post())
        .and(guard(&api))
        .and(body::json(api.limits.body))
        .and(with(api))
        .and_then(create)
}

/// `POST /traffic/routes/{routeId}/reoptimize`
pub fn reoptimize(api: Api) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("traffic" / "routes" / Uuid / "reoptimize")
        .and(warp::post())
        .and(guard(&api))
        .and(with(api))
        .and_then(replan)
}

async fn create(body: Value, api: Api) -> Result<Response, Rejection> {
    let req: OptimizeRequest = body::decode(body, "")?;
    if req.vehicle_id.trim().is_empty() {
        return Err(ApiError::bad_request("must not be empty", Some("vehicleId")).into());
    }
    body::id(&req.vehicle_id, "vehicleId")?;
    let problem = Problem {
        stops: req.stops,
        start: req.start,
        end: req.end,
        round_trip: req.round_trip,
        departure_time: req.departure_time,
        preferences: req.preferences.unwrap_or_default(),
    };
    let route = api
        .store
        .create_route(req.vehicle_id, problem, api.deadline())
        .await
        .map_err(ApiError::from)?;
    let location = format!("/traffic/routes/{}", route.route_id);
    let reply = warp::reply::with_status(warp::reply::json(&route), StatusCode::CREATED);
    Ok(warp::reply::with_header(reply, header::LOCATION, location).into_response())
}

async fn replan(route_id: Uuid, api: Api) -> Result<Response, Rejection> {
    let route = api
        .store
        .reoptimize(&route_id.to_string(), api.deadline())
        .await
        .map_err(ApiError::from)?;
    Ok(warp::reply::json(&route).into_response())
}
