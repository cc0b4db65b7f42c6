//! `GET /traffic/roads?bbox=minLon,minLat,maxLon,maxLat[&zoom=Z]`: the configured extract's
//! roads in a box, as a GeoJSON FeatureCollection simplified to about a pixel at zoom `Z`
//! (default 16), for the dashboard's basemap. 404 without `routing.osm_file`, 503 while the
//! network is being prepared, 400 for a box that is malformed or wider than [`MAX_SPAN_DEG`].

use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use super::{Api, guard, with};
use crate::optimize::Location;

/// The widest box one request may ask for, in degrees of latitude or longitude.
pub const MAX_SPAN_DEG: f64 = 0.5;

/// `GET /traffic/roads`
pub fn basemap(api: Api) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("traffic" / "roads")
        .and(crate::http::openapi::read())
        .and(guard(&api))
        .and(warp::query::<Vec<(String, String)>>())
        .and(with(api))
        .and_then(answer)
}

async fn answer(params: Vec<(String, String)>, api: Api) -> Result<Response, Rejection> {
    let (min, max, zoom) = parse(&params)?;
    let Some(live) = api.roads.clone() else {
        return Err(
            ApiError::NotFound("no road network is configured (routing.osm_file)".into()).into(),
        );
    };
    live.ready().map_err(ApiError::RoadsUnavailable)?;
    // About one pixel of a 256-pixel Web-Mercator tile at this zoom and latitude.
    let mid = (min.latitude + max.latitude) / 2.0;
    let tolerance = 156_543.03 * mid.to_radians().cos() / 2f64.powi(zoom);
    let map = tokio::task::spawn_blocking(move || {
        live.get().map(|roads| roads.basemap(min, max, tolerance))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?
    .ok_or_else(|| ApiError::RoadsUnavailable("the road network is not loaded".into()))?;
    Ok(warp::reply::json(&map).into_response())
}

fn parse(params: &[(String, String)]) -> Result<(Location, Location, i32), ApiError> {
    let last = |name: &str| super::routes::param(params, name);
    let bad_box = || {
        ApiError::bad_request(
            format!(
                "expected minLon,minLat,maxLon,maxLat: four numbers, min below max, at most \
                 {MAX_SPAN_DEG} degrees wide and high"
            ),
            Some("bbox"),
        )
    };
    let v: Vec<f64> = last("bbox")
        .ok_or_else(bad_box)?
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad_box())?;
    let [min_lon, min_lat, max_lon, max_lat] = v[..] else {
        return Err(bad_box());
    };
    let sane = v.iter().all(|x| x.is_finite())
        && (-180.0..=180.0).contains(&min_lon)
        && (-180.0..=180.0).contains(&max_lon)
        && (-90.0..=90.0).contains(&min_lat)
        && (-90.0..=90.0).contains(&max_lat)
        && min_lon < max_lon
        && min_lat < max_lat
        && max_lon - min_lon <= MAX_SPAN_DEG
        && max_lat - min_lat <= MAX_SPAN_DEG;
    if !sane {
        return Err(bad_box());
    }
    let zoom = match last("zoom") {
        None => 16,
        Some(z) => z
            .parse::<i32>()
            .ok()
            .filter(|z| (0..=22).contains(z))
            .ok_or_else(|| {
                ApiError::bad_request("expected an integer from 0 to 22", Some("zoom"))
            })?,
    };
    let at = |latitude, longitude| Location {
        latitude,
        longitude,
    };
    Ok((at(min_lat, min_lon), at(max_lat, max_lon), zoom))
}
