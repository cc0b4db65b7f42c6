use super::*;

fn upgrade_headers(extra: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    let base = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    for (k, v) in base.iter().chain(extra) {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

fn query(vehicle: Option<&str>, route: Option<&str>, since: Option<&str>) -> Query {
    Query {
        vehicle_id: vehicle.map(Into::into),
        route_id: route.map(Into::into),
        since: since.map(Into::into),
    }
}

#[test]
fn a_valid_upgrade_is_accepted_with_the_rfc_6455_accept_key() {
    let accept = Accept::check(&upgrade_headers(&[])).unwrap();
    assert_eq!(accept.key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert!(!accept.protocol);
    let res = accept.into_response();
    assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
    assert!(res.headers().get("sec-websocket-protocol").is_none());
}

#[test]
fn the_subprotocol_is_answered_when_offered_next_to_a_bearer_token() {
    let h = upgrade_headers(&[("sec-websocket-protocol", "routegate.v1, bearer.abc")]);
    let res = Accept::check(&h).unwrap().into_response();
    assert_eq!(res.headers()["sec-websocket-protocol"], "routegate.v1");
}

#[test]
fn offering_only_other_subprotocols_is_refused() {
    let h = upgrade_headers(&[("sec-websocket-protocol", "bearer.abc")]);
    assert!(matches!(
        Accept::check(&h),
        Err(ApiError::BadRequest { field: Some(f), .. }) if f == "sec-websocket-protocol"
    ));
}

#[test]
fn a_plain_get_or_a_wrong_version_is_not_an_upgrade() {
    let mut plain = upgrade_headers(&[]);
    plain.remove("upgrade");
    assert!(Accept::check(&plain).is_err());
    let mut old = upgrade_headers(&[]);
    old.insert("sec-websocket-version", HeaderValue::from_static("8"));
    assert!(Accept::check(&old).is_err());
    let mut keyless = upgrade_headers(&[]);
    keyless.remove("sec-websocket-key");
    assert!(Accept::check(&keyless).is_err());
}

#[test]
fn empty_query_values_mean_no_filter_and_since_must_be_a_number() {
    let r = parse_query(query(Some(""), Some(""), Some("")), 64).unwrap();
    assert_eq!(r.filter, message::Filter::default());
    assert_eq!(r.since, None);
    let r = parse_query(query(Some("v1"), Some("r1"), Some("42")), 64).unwrap();
    assert_eq!(r.filter.vehicle.as_deref(), Some("v1"));
    assert_eq!(r.filter.route.as_deref(), Some("r1"));
    assert_eq!(r.since, Some(42));
    for bad in ["-1", "abc", "1.5"] {
        assert!(matches!(
            parse_query(query(None, None, Some(bad)), 64),
            Err(ApiError::BadRequest { field: Some(f), .. }) if f == "since"
        ));
    }
}

#[test]
fn overlong_filter_ids_are_refused_naming_the_field() {
    let long = "x".repeat(65);
    assert!(matches!(
        parse_query(query(Some(&long), None, None), 64),
        Err(ApiError::BadRequest { field: Some(f), .. }) if f == "vehicleId"
    ));
}
