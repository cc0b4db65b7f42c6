//! The car profile: which OpenStreetMap ways a car may drive, in which directions, how fast,
//! and whether a way is a toll road or a highway (for `avoidTolls` / `avoidHighways`).
//!
//! | `highway` | km/h | | `highway` | km/h |
//! |---|---:|---|---|---:|
//! | motorway | 100 | | tertiary | 50 |
//! | motorway_link | 70 | | tertiary_link | 40 |
//! | trunk | 70 | | unclassified | 30 |
//! | trunk_link | 65 | | residential | 30 |
//! | primary | 65 | | living_street | 5 |
//! | primary_link | 60 | | service | 20 |
//! | secondary | 60 | | road | 20 |
//! | secondary_link | 50 | | track | 15 |
//!
//! A tagged `maxspeed` (km/h, `mph`, `walk`) replaces the table: 90% of it, as traffic rarely
//! drives at the limit (GraphHopper's car profile does the same). Every other `highway` (footway,
//! path, steps, cycleway, pedestrian, construction, …) is not routable; neither is a way whose
//! `access`, `vehicle`, `motor_vehicle` or `motorcar` is `no`, `private`, `agricultural`,
//! `forestry` or `emergency` (the most specific key wins), nor `area=yes`.
//!
//! Direction: `oneway=yes|true|1` forward only, `-1|reverse` backward only, `no` both;
//! `junction=roundabout|circular` and motorways imply one-way. Tolls: `toll=yes` or
//! `toll:motorcar=yes`. Highways: `motorway`, `trunk` and their links.
//!
//! # Turn restrictions
//!
//! A relation `type=restriction` binds a car ([`turn_rule`]) through the most specific of
//! `restriction:motorcar`, `restriction:motor_vehicle`, `restriction:vehicle` and `restriction`
//! that is tagged; one that names only other vehicles (`restriction:hgv`, `restriction:bus`, …)
//! does not. A plain `restriction` whose `except` lists `motorcar`, `motor_vehicle` or
//! `vehicle` does not bind a car either. `restriction:conditional` (time-dependent) is not read.
//! The values read are `no_left_turn`, `no_right_turn`, `no_straight_on`, `no_u_turn`,
//! `no_entry`, `no_exit` (the turn from a `from` way into a `to` way at the `via` node is
//! forbidden) and `only_left_turn`, `only_right_turn`, `only_straight_on`, `only_u_turn` (every
//! other turn out of the `from` way there is forbidden, the U-turn back into it included); any
//! other value (`no_right_turn_on_red`, typos) is ignored. How the build maps them onto the
//! network is in [`build`](super::build).

/// How a car may use one way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WayClass {
    /// Drivable from the way's first node towards its last.
    pub forward: bool,
    /// Drivable from the last node towards the first.
    pub backward: bool,
    pub speed_kmh: f64,
    pub toll: bool,
    pub highway: bool,
}

const SPEEDS: [(&str, f64); 16] = [
    ("motorway", 100.0),
    ("motorway_link", 70.0),
    ("trunk", 70.0),
    ("trunk_link", 65.0),
    ("primary", 65.0),
    ("primary_link", 60.0),
    ("secondary", 60.0),
    ("secondary_link", 50.0),
    ("tertiary", 50.0),
    ("tertiary_link", 40.0),
    ("unclassified", 30.0),
    ("residential", 30.0),
    ("living_street", 5.0),
    ("service", 20.0),
    ("road", 20.0),
    ("track", 15.0),
];

/// Share of a tagged `maxspeed` taken as the average speed.
const MAXSPEED_FACTOR: f64 = 0.9;

const NO_ACCESS: [&str; 5] = ["no", "private", "agricultural", "forestry", "emergency"];

/// The car's view of a way with these tags, or `None` when a car may not use it.
pub fn classify<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
) -> Option<WayClass> {
    let tag = |key: &str| tag(tags.clone(), key);
    let class = tag("highway")?;
    let default_speed = SPEEDS.iter().find(|(c, _)| *c == class)?.1;
    if tag("area") == Some("yes") || tag("route") == Some("ferry") {
        return None;
    }
    // The most specific access key that is tagged decides.
    let access = ["motorcar", "motor_vehicle", "vehicle", "access"]
        .iter()
        .find_map(|k| tag(k));
    if access.is_some_and(|a| NO_ACCESS.contains(&a)) {
        return None;
    }
    let speed_kmh = tag("maxspeed")
        .and_then(parse_maxspeed)
        .map_or(default_speed, |s| (s * MAXSPEED_FACTOR).max(5.0));
    let implied_oneway = class == "motorway"
        || class == "motorway_link"
        || matches!(tag("junction"), Some("roundabout" | "circular"));
    let (forward, backward) = match tag("oneway") {
        Some("yes" | "true" | "1") => (true, false),
        Some("-1" | "reverse") => (false, true),
        Some("no" | "false" | "0") => (true, true),
        _ if implied_oneway => (true, false),
        _ => (true, true),
    };
    Some(WayClass {
        forward,
        backward,
        speed_kmh,
        toll: tag("toll") == Some("yes") || tag("toll:motorcar") == Some("yes"),
        highway: matches!(class, "motorway" | "motorway_link" | "trunk" | "trunk_link"),
    })
}

/// What a turn restriction asks of a car.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnRule {
    /// `no_*`: the turn from `from` into `to` is forbidden.
    No,
    /// `only_*`: every turn out of `from` other than into `to` is forbidden.
    Only,
}

const NO_TURNS: [&str; 6] = [
    "no_left_turn",
    "no_right_turn",
    "no_straight_on",
    "no_u_turn",
    "no_entry",
    "no_exit",
];
const ONLY_TURNS: [&str; 4] = [
    "only_left_turn",
    "only_right_turn",
    "only_straight_on",
    "only_u_turn",
];
const CAR_EXCEPTIONS: [&str; 3] = ["motorcar", "motor_vehicle", "vehicle"];

/// The car's reading of a relation with these tags: `None` when it is not a turn restriction
/// that binds a car (see the [module docs](self)).
pub fn turn_rule<'a>(
    tags: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
) -> Option<TurnRule> {
    let tag = |key: &str| tag(tags.clone(), key);
    if tag("type") != Some("restriction") {
        return None;
    }
    let specific = [
        "restriction:motorcar",
        "restriction:motor_vehicle",
        "restriction:vehicle",
    ]
    .iter()
    .find_map(|k| tag(k));
    let value = match specific {
        Some(v) => v,
        None => {
            let excepted = tag("except")
                .is_some_and(|e| e.split(';').any(|v| CAR_EXCEPTIONS.contains(&v.trim())));
            if excepted {
                return None;
            }
            tag("restriction")?
        }
    };
    let value = value.trim();
    if NO_TURNS.contains(&value) {
        Some(TurnRule::No)
    } else if ONLY_TURNS.contains(&value) {
        Some(TurnRule::Only)
    } else {
        None
    }
}

/// The value of `key` among `tags`.
fn tag<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>, key: &str) -> Option<&'a str> {
    tags.into_iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

/// `50`, `50 km/h`, `30 mph`, `walk`; `None` for `none`, zone codes (`FR:urban`) and garbage.
fn parse_maxspeed(v: &str) -> Option<f64> {
    let v = v.trim();
    if v == "walk" {
        return Some(6.0);
    }
    let (number, mph) = match v.strip_suffix("mph") {
        Some(n) => (n.trim(), true),
        None => (v.trim_end_matches("km/h").trim(), false),
    };
    let n: f64 = number.parse().ok()?;
    if !(n.is_finite() && n > 0.0 && n <= 200.0) {
        return None;
    }
    Some(if mph { n * 1.609_344 } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(tags: &[(&str, &str)]) -> Option<WayClass> {
        classify(tags.iter().copied())
    }

    #[test]
    fn roads_are_drivable_both_ways_at_their_class_speed() {
        let c = class(&[("highway", "residential")]).unwrap();
        assert_eq!((c.forward, c.backward, c.speed_kmh), (true, true, 30.0));
        assert!(!c.toll && !c.highway);
        for path in ["footway", "steps", "cycleway", "path", "construction"] {
            assert_eq!(class(&[("highway", path)]), None, "{path}");
        }
        assert_eq!(class(&[("name", "x")]), None);
    }

    #[test]
    fn oneway_tags_and_implied_oneways_set_the_directions() {
        let dirs = |tags: &[(&str, &str)]| class(tags).map(|c| (c.forward, c.backward));
        assert_eq!(
            dirs(&[("highway", "primary"), ("oneway", "yes")]),
            Some((true, false))
        );
        assert_eq!(
            dirs(&[("highway", "primary"), ("oneway", "-1")]),
            Some((false, true))
        );
        assert_eq!(dirs(&[("highway", "motorway")]), Some((true, false)));
        assert_eq!(
            dirs(&[("highway", "motorway"), ("oneway", "no")]),
            Some((true, true))
        );
        assert_eq!(
            dirs(&[("highway", "tertiary"), ("junction", "roundabout")]),
            Some((true, false))
        );
    }

    #[test]
    fn private_and_closed_ways_are_never_routable_unless_cars_are_let_in() {
        assert_eq!(
            class(&[("highway", "service"), ("access", "private")]),
            None
        );
        assert_eq!(
            class(&[("highway", "residential"), ("motor_vehicle", "no")]),
            None
        );
        let open = class(&[
            ("highway", "service"),
            ("access", "no"),
            ("motorcar", "yes"),
        ]);
        assert!(open.is_some());
        assert_eq!(class(&[("highway", "service"), ("area", "yes")]), None);
    }

    #[test]
    fn maxspeed_replaces_the_table_and_tolls_and_highways_are_flagged() {
        let c = class(&[("highway", "primary"), ("maxspeed", "50")]).unwrap();
        assert!((c.speed_kmh - 45.0).abs() < 1e-9);
        let c = class(&[("highway", "primary"), ("maxspeed", "30 mph")]).unwrap();
        assert!((c.speed_kmh - 30.0 * 1.609_344 * 0.9).abs() < 1e-9);
        let c = class(&[("highway", "primary"), ("maxspeed", "FR:urban")]).unwrap();
        assert_eq!(c.speed_kmh, 65.0);
        let c = class(&[("highway", "trunk"), ("toll", "yes")]).unwrap();
        assert!(c.toll && c.highway);
    }

    #[test]
    fn turn_restrictions_bind_a_car_unless_it_is_excepted_or_not_named() {
        let rule = |tags: &[(&str, &str)]| turn_rule(tags.iter().copied());
        let r = ("type", "restriction");
        assert_eq!(
            rule(&[r, ("restriction", "no_left_turn")]),
            Some(TurnRule::No)
        );
        assert_eq!(rule(&[r, ("restriction", "no_entry")]), Some(TurnRule::No));
        assert_eq!(
            rule(&[r, ("restriction", "only_straight_on")]),
            Some(TurnRule::Only)
        );
        assert_eq!(
            rule(&[("type", "multipolygon"), ("restriction", "no_u_turn")]),
            None
        );
        assert_eq!(rule(&[r, ("restriction", "no_right_turn_on_red")]), None);
        assert_eq!(
            rule(&[
                r,
                ("restriction", "no_left_turn"),
                ("except", "bicycle;motorcar")
            ]),
            None
        );
        assert_eq!(
            rule(&[r, ("restriction", "no_left_turn"), ("except", "psv")]),
            Some(TurnRule::No)
        );
        assert_eq!(rule(&[r, ("restriction:hgv", "no_left_turn")]), None);
        assert_eq!(
            rule(&[r, ("restriction:motorcar", "only_right_turn")]),
            Some(TurnRule::Only)
        );
        // The most specific key decides.
        assert_eq!(
            rule(&[
                r,
                ("restriction", "no_left_turn"),
                ("restriction:motorcar", "no_rush")
            ]),
            None
        );
    }
}
