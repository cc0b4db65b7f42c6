//! Request and configuration checks, run before any work.
//!
//! Each failure names the offending JSON path (`stops[3].latitude`) so the HTTP layer can answer
//! `400 {error, message, field}`. Values are checked for range *and* finiteness: a Rust caller can
//! hand in NaN or infinity even though JSON cannot.

use std::collections::HashSet;

use super::error::{Error, Result};
use super::model::{Location, Problem};
use super::{MAX_COMPUTE_MILLIS, Params};

/// Longest accepted stop id, in bytes.
const MAX_ID_LEN: usize = 256;

/// Longest service time, minutes (a day).
const MAX_SERVICE_MINUTES: f64 = 1440.0;

/// Checks `problem` against the limits in `params`.
pub(crate) fn problem(problem: &Problem, params: &Params) -> Result<()> {
    if problem.stops.is_empty() {
        return Err(Error::invalid("stops", "at least one stop is required"));
    }
    if problem.stops.len() > params.max_stops {
        return Err(Error::invalid(
            "stops",
            format!(
                "{} stops given, at most {} are allowed",
                problem.stops.len(),
                params.max_stops
            ),
        ));
    }
    let mut ids = HashSet::with_capacity(problem.stops.len());
    for (i, stop) in problem.stops.iter().enumerate() {
        let at = |name: &str| format!("stops[{i}].{name}");
        if stop.id.trim().is_empty() {
            return Err(Error::invalid(at("id"), "must not be empty"));
        }
        if stop.id.chars().any(char::is_control) {
            return Err(Error::invalid(
                at("id"),
                "must not contain control characters",
            ));
        }
        if stop.id.len() > MAX_ID_LEN {
            return Err(Error::invalid(
                at("id"),
                format!("longer than {MAX_ID_LEN} bytes"),
            ));
        }
        if !ids.insert(stop.id.as_str()) {
            return Err(Error::invalid(
                at("id"),
                format!("duplicate stop id {:?}", stop.id),
            ));
        }
        location(
            Location {
                latitude: stop.latitude,
                longitude: stop.longitude,
            },
            &format!("stops[{i}]"),
        )?;
        if let Some(minutes) = stop.service_minutes
            && !(minutes.is_finite() && (0.0..=MAX_SERVICE_MINUTES).contains(&minutes))
        {
            return Err(Error::invalid(
                at("serviceMinutes"),
                format!("must be between 0 and {MAX_SERVICE_MINUTES} minutes, got {minutes}"),
            ));
        }
        if let Some(window) = stop.time_window
            && window.end < window.start
        {
            return Err(Error::invalid(at("timeWindow"), "end is before start"));
        }
    }
    if let Some(start) = problem.start {
        location(start, "start")?;
    }
    if let Some(end) = problem.end {
        location(end, "end")?;
        if problem.round_trip {
            return Err(Error::invalid(
                "end",
                "a round trip ends where it starts; give either end or roundTrip",
            ));
        }
    }
    if let Some(ms) = problem.preferences.max_compute_millis
        && !(1..=MAX_COMPUTE_MILLIS).contains(&ms)
    {
        return Err(Error::invalid(
            "preferences.maxComputeMillis",
            format!("must be between 1 and {MAX_COMPUTE_MILLIS}, got {ms}"),
        ));
    }
    if problem.departure_time.is_none() && params.now.is_none() {
        return Err(Error::invalid(
            "departureTime",
            "required when the caller supplies no current time",
        ));
    }
    Ok(())
}

fn location(p: Location, path: &str) -> Result<()> {
    if !(p.latitude.is_finite() && (-90.0..=90.0).contains(&p.latitude)) {
        return Err(Error::invalid(
            format!("{path}.latitude"),
            format!("must be a number between -90 and 90, got {}", p.latitude),
        ));
    }
    if !(p.longitude.is_finite() && (-180.0..=180.0).contains(&p.longitude)) {
        return Err(Error::invalid(
            format!("{path}.longitude"),
            format!("must be a number between -180 and 180, got {}", p.longitude),
        ));
    }
    Ok(())
}

/// Checks the solver's configuration.
pub(crate) fn params(params: &Params) -> Result<()> {
    let bad = |field, message: String| Err(Error::Config { field, message });
    if params.max_stops == 0 {
        return bad("max_stops", "must be at least 1".into());
    }
    if !(params.detour_factor.is_finite() && params.detour_factor >= 1.0) {
        return bad(
            "detour_factor",
            format!("must be at least 1, got {}", params.detour_factor),
        );
    }
    if !(params.average_speed_kmh.is_finite() && params.average_speed_kmh > 0.0) {
        return bad(
            "average_speed_kmh",
            format!("must be positive, got {}", params.average_speed_kmh),
        );
    }
    if params.max_compute_ms == 0 {
        return bad("max_compute_ms", "must be at least 1".into());
    }
    if !(params.search_effort.is_finite() && params.search_effort >= 0.0) {
        return bad(
            "search_effort",
            format!("must be ≥ 0, got {}", params.search_effort),
        );
    }
    Ok(())
}
