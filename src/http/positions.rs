//! `POST /traffic/vehicles/{vehicleId}/positions`: the high-rate path.
//!
//! One fix (an object) or a batch (an array of at most `MAX_BATCH` fixes). The whole batch is
//! one append: one `vehicle.position` event per fix plus the vehicle record, one fsync shared with
//! every other request in the same group commit. The route record is not touched (see
//! [`crate::store`]).

use chrono::{DateTime, FixedOffset};
use serde::Deserialize;
use serde_json::Value;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use super::{Api, body, guard, with};
use crate::store::Position;

/// Fixes accepted in one request.
pub const MAX_BATCH: usize = 1000;
/// Fastest believable speed, km/h.
const MAX_SPEED_KMH: f64 = 1000.0;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fix {
    latitude: f64,
    longitude: f64,
    timestamp: DateTime<FixedOffset>,
    #[serde(default)]
    speed_kmh: Option<f64>,
    #[serde(default)]
    heading_deg: Option<f64>,
}

/// `POST /traffic/vehicles/{vehicleId}/positions`
pub fn positions(api: Api) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("traffic" / "vehicles" / String / "positions")
        .and(warp::post())
        .and(guard(&api))
        .and(body::json(api.limits.body))
        .and(with(api))
        .and_then(record)
}

async fn record(vehicle: String, body: Value, api: Api) -> Result<Response, Rejection> {
    let vehicle_id = body::segment(&vehicle)
        .filter(|v| !v.trim().is_empty() && v.len() <= api.limits.body.max_string_length)
        .ok_or_else(|| ApiError::bad_request("invalid vehicle id", Some("vehicleId")))?;
    body::id(&vehicle_id, "vehicleId")?;
    let fixes = fixes(body)?;
    let tracked = api
        .store
        .track(&vehicle_id, fixes)
        .await
        .map_err(ApiError::from)?;
    Ok(warp::reply::with_status(warp::reply::json(&tracked), StatusCode::ACCEPTED).into_response())
}

/// Decode and check one fix or a batch.
fn fixes(body: Value) -> Result<Vec<Position>, ApiError> {
    let (batch, prefix): (Vec<Fix>, &str) = match body {
        Value::Array(items) => {
            if items.is_empty() || items.len() > MAX_BATCH {
                return Err(ApiError::bad_request(
                    format!("a batch holds 1 to {MAX_BATCH} fixes, got {}", items.len()),
                    None,
                ));
            }
            (body::decode(Value::Array(items), "")?, "")
        }
        one => (vec![body::decode(one, "")?], "single"),
    };
    batch
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let at = |name: &str| match prefix {
                "single" => name.to_string(),
                _ => format!("[{i}].{name}"),
            };
            check(&f, at)?;
            Ok(Position {
                latitude: f.latitude,
                longitude: f.longitude,
                timestamp: f.timestamp,
                speed_kmh: f.speed_kmh,
                heading_deg: f.heading_deg,
            })
        })
        .collect()
}

fn check(f: &Fix, at: impl Fn(&str) -> String) -> Result<(), ApiError> {
    let bad =
        |name: &str, what: &str| Err(ApiError::bad_request(what.to_string(), Some(&at(name))));
    if !(-90.0..=90.0).contains(&f.latitude) {
        return bad("latitude", "must be between -90 and 90");
    }
    if !(-180.0..=180.0).contains(&f.longitude) {
        return bad("longitude", "must be between -180 and 180");
    }
    if f.speed_kmh
        .is_some_and(|s| !(0.0..=MAX_SPEED_KMH).contains(&s))
    {
        return bad("speedKmh", "must be between 0 and 1000");
    }
    if f.heading_deg.is_some_and(|h| !(0.0..=360.0).contains(&h)) {
        return bad("headingDeg", "must be between 0 and 360");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(r: Result<Vec<Position>, ApiError>) -> Option<String> {
        match r {
            Err(ApiError::BadRequest { field, .. }) => field,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn one_fix_or_a_batch_is_accepted() {
        let one = json!({"latitude": 1.0, "longitude": 2.0, "timestamp": "2026-01-01T00:00:00Z"});
        assert_eq!(fixes(one.clone()).unwrap().len(), 1);
        assert_eq!(fixes(json!([one.clone(), one])).unwrap().len(), 2);
    }

    #[test]
    fn bad_fixes_name_their_field_and_index() {
        let ok = json!({"latitude": 1.0, "longitude": 2.0, "timestamp": "2026-01-01T00:00:00Z"});
        let bad = json!({"latitude": 91.0, "longitude": 2.0, "timestamp": "2026-01-01T00:00:00Z"});
        assert_eq!(
            field(fixes(json!([ok, bad.clone()]))).as_deref(),
            Some("[1].latitude")
        );
        assert_eq!(field(fixes(bad)).as_deref(), Some("latitude"));
        let no_time = json!({"latitude": 1.0, "longitude": 2.0});
        assert_eq!(field(fixes(no_time)).as_deref(), Some("timestamp"));
        assert_eq!(field(fixes(json!([]))), None);
        let slow = json!({"latitude": 1.0, "longitude": 2.0, "timestamp": "2026-01-01T00:00:00Z", "speedKmh": -1});
        assert_eq!(field(fixes(slow)).as_deref(), Some("speedKmh"));
    }
}
