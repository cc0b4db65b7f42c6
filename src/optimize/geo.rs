//! Great-circle distance and the GeoJSON shape of a route.
//!
//! Haversine on a sphere of mean Earth radius (6 371 008.8 m, IUGG) is within 0.5% of the
//! ellipsoidal distance, far below the error of the detour factor that turns it into a road
//! distance, and is cheap and branch-free.

use serde::{Deserialize, Serialize};

use super::model::Location;

/// Mean Earth radius in metres (IUGG).
pub const EARTH_RADIUS_METERS: f64 = 6_371_008.8;

/// Great-circle distance between two points, in metres.
pub fn haversine_meters(a: Location, b: Location) -> f64 {
    let prepare = |p: Location| {
        (
            p.latitude.to_radians(),
            p.longitude.to_radians(),
            p.latitude.to_radians().cos(),
        )
    };
    haversine_prepared(prepare(a), prepare(b))
}

/// Haversine over `(latitude, longitude, cos latitude)` in radians, so a matrix computes the
/// per-point trigonometry once.
#[inline]
pub(crate) fn haversine_prepared(a: (f64, f64, f64), b: (f64, f64, f64)) -> f64 {
    let h = ((b.0 - a.0) / 2.0).sin().powi(2) + a.2 * b.2 * ((b.1 - a.1) / 2.0).sin().powi(2);
    // `min(1.0)` keeps rounding from pushing asin's argument past 1 for antipodal points.
    2.0 * EARTH_RADIUS_METERS * h.sqrt().min(1.0).asin()
}

/// A GeoJSON `LineString`: `{"type":"LineString","coordinates":[[lon,lat],...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineString {
    /// Always `"LineString"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `[longitude, latitude]` pairs, GeoJSON order.
    pub coordinates: Vec<[f64; 2]>,
}

impl LineString {
    /// The polyline through `points` in order.
    pub fn through(points: impl IntoIterator<Item = Location>) -> Self {
        Self {
            kind: "LineString".to_owned(),
            coordinates: points
                .into_iter()
                .map(|p| [p.longitude, p.latitude])
                .collect(),
        }
    }

    /// Its vertices as locations.
    pub fn points(&self) -> Vec<Location> {
        self.coordinates
            .iter()
            .map(|c| Location {
                latitude: c[1],
                longitude: c[0],
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(latitude: f64, longitude: f64) -> Location {
        Location {
            latitude,
            longitude,
        }
    }

    #[test]
    fn paris_to_london_is_about_344_km() {
        let d = haversine_meters(at(48.8566, 2.3522), at(51.5074, -0.1278));
        assert!((d - 343_560.0).abs() < 1_000.0, "{d}");
    }

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = haversine_meters(at(10.0, 20.0), at(11.0, 20.0));
        assert!((d - 111_195.0).abs() < 10.0, "{d}");
    }

    #[test]
    fn distance_is_zero_to_itself_and_symmetric() {
        let (a, b) = (at(-33.86, 151.21), at(40.71, -74.0));
        assert_eq!(haversine_meters(a, a), 0.0);
        assert_eq!(haversine_meters(a, b), haversine_meters(b, a));
    }

    #[test]
    fn antipodal_points_are_half_the_circumference_apart() {
        let d = haversine_meters(at(0.0, 0.0), at(0.0, 180.0));
        let half = std::f64::consts::PI * EARTH_RADIUS_METERS;
        assert!((d - half).abs() < 1e-6 * half, "{d}");
    }

    #[test]
    fn crossing_the_antimeridian_takes_the_short_way() {
        let d = haversine_meters(at(0.0, 179.5), at(0.0, -179.5));
        assert!((d - 111_195.0).abs() < 10.0, "{d}");
    }

    #[test]
    fn line_string_serializes_as_geojson_with_lon_lat_order() {
        let line = LineString::through([at(1.0, 2.0), at(3.0, 4.0)]);
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "LineString", "coordinates": [[2.0, 1.0], [4.0, 3.0]]})
        );
    }
}
