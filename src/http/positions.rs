//! `POST /traffic/vehicles/{vehicleId}/positions`: the high-rate path.
//!
//! One fix (an object) or a batch (an array of at most `MAX_BATCH` fixes). The whole batch is
//! one append: one `vehicle.position` event per fix plus the vehicle record, one fsync shared with
//! every other request in the same group commit. The route record is not touched (see
//! [`crate::store`]).

use serde_json::Value;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use super::{Api, TimeWindow, body, guard, with};
use crate::store::Position;

/// Fixes accepted in one request.
pub const MAX_BATCH: usize = 1000;
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
    let batch = body.is_array();
    body::id(&vehicle_id, "vehicleId")?;
    let fixes = fixes(body)?;
    in_window(&fixes, batch, &api.limits.timestamps, chrono::Utc::now())?;
    let tracked = api
        .store
        .track(&vehicle_id, fixes)
        .await
        .map_err(ApiError::from)?;
    Ok(warp::reply::with_status(warp::reply::json(&tracked), StatusCode::ACCEPTED).into_response())
}

/// Decode and check one fix or a batch.
fn fixes(body: Value) -> Result<Vec<Position>, ApiError> {
    let (batch, prefix): (Vec<Position>, &str) = match body {
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
            match f.out_of_range() {
                Some((name, what)) => Err(ApiError::bad_request(what.to_string(), Some(&at(name)))),
                None => Ok(f),
            }
        })
        .collect()
}

/// Every fix's time within the window around `now` (422 naming the first that is not).
fn in_window(
    fixes: &[Position],
    batch: bool,
    window: &TimeWindow,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    for (i, f) in fixes.iter().enumerate() {
        if let Err(message) = window.check(f.timestamp, now) {
            let field = match batch {
                true => format!("[{i}].timestamp"),
                false => "timestamp".into(),
            };
            return Err(ApiError::Unprocessable { message, field });
        }
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

    #[test]
    fn times_outside_the_window_are_422_naming_the_fix() {
        let window = TimeWindow {
            max_age: std::time::Duration::from_secs(24 * 3600),
            max_lead: std::time::Duration::from_secs(300),
        };
        let now = "2026-12-02T12:00:00Z".parse().unwrap();
        let at = |t: &str| json!({"latitude": 1.0, "longitude": 2.0, "timestamp": t});
        let ok = at("2026-12-02T12:04:59Z");
        for bad in [
            "9999-12-31T23:59:59Z",
            "1900-01-01T00:00:00Z",
            "2026-12-02T12:05:01Z",
            "2026-12-01T11:59:59Z",
        ] {
            let batch = fixes(json!([ok.clone(), at(bad)])).unwrap();
            match in_window(&batch, true, &window, now) {
                Err(ApiError::Unprocessable { field, .. }) => assert_eq!(field, "[1].timestamp"),
                other => panic!("{bad}: expected a 422, got {other:?}"),
            }
            let one = fixes(at(bad)).unwrap();
            assert!(matches!(
                in_window(&one, false, &window, now),
                Err(ApiError::Unprocessable { field, .. }) if field == "timestamp"
            ));
        }
        let edge = fixes(json!([ok, at("2026-12-01T12:00:01Z")])).unwrap();
        assert!(in_window(&edge, true, &window, now).is_ok());
    }
}
