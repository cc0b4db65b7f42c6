//! Keys of the store's trees and the list cursor: pure byte layouts.
//!
//! Route ids are UUIDv7 strings; their lowercase hyphenated text sorts like the time they were
//! made, so every index that ends in a route id lists oldest first and is read backwards for
//! "newest first".

/// `routes`: the route id.
pub fn route(route_id: &str) -> Vec<u8> {
    route_id.as_bytes().to_vec()
}

/// `routes_by_vehicle` prefix: vehicle id length (u16 BE), vehicle id. The length prefix keeps
/// one vehicle's prefix from matching another's (`v1` vs `v10`) whatever bytes ids contain.
pub fn vehicle_prefix(vehicle_id: &str) -> Vec<u8> {
    let id = vehicle_id.as_bytes();
    let len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    let mut k = Vec::with_capacity(2 + id.len() + 36);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&id[..usize::from(len)]);
    k
}

/// `routes_by_vehicle`: prefix, route id. The value is the route's status tag, so a status
/// filter needs no route reads.
pub fn by_vehicle(vehicle_id: &str, route_id: &str) -> Vec<u8> {
    let mut k = vehicle_prefix(vehicle_id);
    k.extend_from_slice(route_id.as_bytes());
    k
}

/// `routes_by_status`: status tag, route id.
pub fn by_status(tag: u8, route_id: &str) -> Vec<u8> {
    let mut k = vec![tag];
    k.extend_from_slice(route_id.as_bytes());
    k
}

/// `vehicles`: the vehicle id.
pub fn vehicle(vehicle_id: &str) -> Vec<u8> {
    vehicle_id.as_bytes().to_vec()
}

/// An opaque cursor: `r` and the hex of the last route id of the page.
pub fn encode_cursor(route_id: &str) -> String {
    let mut s = String::with_capacity(1 + 2 * route_id.len());
    s.push('r');
    for b in route_id.as_bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The route id in a cursor, or `None` if it is not one of ours.
pub fn decode_cursor(cursor: &str) -> Option<String> {
    let hex = cursor.strip_prefix('r')?;
    if hex.is_empty() || hex.len() % 2 != 0 || hex.len() > 256 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_vehicle_prefix_never_matches_a_longer_vehicle_id() {
        let k = by_vehicle("v10", "r");
        assert!(!k.starts_with(&vehicle_prefix("v1")));
        assert!(k.starts_with(&vehicle_prefix("v10")));
    }

    #[test]
    fn uuid_v7_route_ids_sort_by_creation() {
        let a = uuid::Uuid::now_v7().to_string();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = uuid::Uuid::now_v7().to_string();
        assert!(route(&a) < route(&b));
    }

    #[test]
    fn foreign_cursors_are_refused() {
        for bad in ["", "r", "x00", "rzz", "r0", "r\u{e9}e9"] {
            assert_eq!(decode_cursor(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn cursors_round_trip(id in "\\PC{1,30}") {
            prop_assert_eq!(decode_cursor(&encode_cursor(&id)), Some(id));
        }
    }
}
