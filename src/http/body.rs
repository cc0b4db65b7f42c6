//! Request bodies and path segments: read within limits, parse with the JSON path of any error.
//!
//! Bodies are read by hand (not `warp::body::json`) so that every failure is a 4xx naming the
//! offending field: the body must be declared as JSON (`Content-Type: application/json` or
//! `application/*+json`, a `charset` only `utf-8`; else 415 before anything is read, so a
//! browser's form post or `text/plain` "simple request" never reaches a handler), the size is checked against `http.max_body_bytes` before and while reading
//! (413, also for chunked bodies without a length), the bytes must be JSON (400), every string and
//! object key must fit `http.max_string_length` (400 with its path), and typed decoding goes
//! through `serde_path_to_error` so a wrong type reports e.g. `stops[3].latitude`.

use bytes::Buf;
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::Value;
use warp::http::HeaderValue;
use warp::{Filter, Rejection};

use super::error::ApiError;

/// Size and string limits of request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    pub max_body_bytes: u64,
    pub max_string_length: usize,
}

/// A filter extracting the body as a JSON value within `limits`.
pub fn json(limits: BodyLimits) -> impl Filter<Extract = (Value,), Error = Rejection> + Clone {
    let content_type = warp::header::value("content-type")
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    content_type
        .and(warp::header::optional::<u64>("content-length"))
        .and(warp::body::stream())
        .and_then(
            move |kind: Option<HeaderValue>, declared: Option<u64>, body| async move {
                if !kind.as_ref().is_some_and(is_json) {
                    return Err(warp::reject::custom(ApiError::UnsupportedMediaType(
                        "the body must be JSON: send Content-Type: application/json".into(),
                    )));
                }
                if declared.is_some_and(|n| n > limits.max_body_bytes) {
                    return Err(warp::reject::custom(ApiError::PayloadTooLarge));
                }
                let bytes = collect(body, limits.max_body_bytes)
                    .await
                    .map_err(warp::reject::custom)?;
                parse(&bytes, limits.max_string_length).map_err(warp::reject::custom)
            },
        )
}

/// `application/json` or `application/*+json`, parameters allowed but a `charset` only `utf-8`.
fn is_json(v: &HeaderValue) -> bool {
    let Ok(v) = v.to_str() else {
        return false;
    };
    let mut parts = v.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let json_type = essence == "application/json"
        || essence
            .strip_prefix("application/")
            .and_then(|s| s.strip_suffix("+json"))
            .is_some_and(|s| !s.is_empty() && !s.contains('/'));
    json_type
        && parts.all(|p| match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
                v.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
            }
            _ => true,
        })
}

async fn collect<S, B>(body: S, max: u64) -> Result<Vec<u8>, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| {
            if super::conn::timed_out(&e) {
                ApiError::BodyTimeout
            } else {
                ApiError::bad_request(format!("cannot read body: {e}"), None)
            }
        })?;
        if (out.len() + chunk.remaining()) as u64 > max {
            return Err(ApiError::PayloadTooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out)
}

/// Parse JSON bytes and check string lengths.
pub fn parse(bytes: &[u8], max_string_length: usize) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("body is not valid JSON: {e}"), None))?;
    check_strings(&value, max_string_length, &mut String::new())?;
    Ok(value)
}

fn check_strings(v: &Value, max: usize, path: &mut String) -> Result<(), ApiError> {
    let too_long = |path: &str| {
        ApiError::bad_request(
            format!("longer than the {max} bytes allowed"),
            Some(if path.is_empty() { "." } else { path }),
        )
    };
    match v {
        Value::String(s) if s.len() > max => Err(too_long(path)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_strings(item, max, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key.get(..key.len().min(max)).unwrap_or("?"));
                if key.len() > max {
                    return Err(too_long(path));
                }
                check_strings(item, max, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Decode a JSON value into `T`; errors name the JSON path, prefixed with `prefix`.
pub fn decode<T: DeserializeOwned>(value: Value, prefix: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.inner().to_string();
        let mut path = e.path().to_string();
        if path == "." {
            path.clear();
        }
        if let Some(missing) = missing_field(&inner) {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(missing);
        }
        let field = join(prefix, &path);
        ApiError::bad_request(inner, (!field.is_empty()).then_some(field.as_str()))
    })
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if path.starts_with('[') => format!("{prefix}{path}"),
        (false, false) => format!("{prefix}.{path}"),
    }
}

/// serde reports a missing member at its parent's path; the member's name is in the message.
fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Refuse an id (vehicle, route, stop) holding a control character (C0, DEL or C1: Unicode
/// `Cc`): `400` naming `field`. Free text (addresses, notes) is not checked: it is stored as
/// given and JSON escapes it on the way out.
pub fn id(value: &str, field: &str) -> Result<(), ApiError> {
    match value.chars().find(|c| c.is_control()) {
        Some(c) => Err(ApiError::bad_request(
            format!(
                "must not contain control characters (found U+{:04X})",
                u32::from(c)
            ),
            Some(field),
        )),
        None => Ok(()),
    }
}

/// Percent-decode one path segment (warp hands segments over raw); `None` if not UTF-8.
pub fn segment(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h)? * 16 + hex(l)?) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code, reason = "fields exist to be deserialized")]
    struct Point {
        latitude: f64,
        longitude: f64,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code, reason = "fields exist to be deserialized")]
    struct Req {
        stops: Vec<Point>,
    }

    fn field(e: ApiError) -> Option<String> {
        match e {
            ApiError::BadRequest { field, .. } => field,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn a_wrong_type_deep_in_the_body_names_its_json_path() {
        let v = parse(
            br#"{"stops":[{"latitude":1,"longitude":2},{"latitude":"x","longitude":2}]}"#,
            64,
        )
        .unwrap();
        let err = decode::<Req>(v, "").unwrap_err();
        assert_eq!(field(err).as_deref(), Some("stops[1].latitude"));
    }

    #[test]
    fn a_missing_member_is_named_with_its_parents_path() {
        let v = parse(br#"{"stops":[{"latitude":1}]}"#, 64).unwrap();
        assert_eq!(
            field(decode::<Req>(v, "").unwrap_err()).as_deref(),
            Some("stops[0].longitude")
        );
        let v = parse(br#"{}"#, 64).unwrap();
        assert_eq!(
            field(decode::<Req>(v, "").unwrap_err()).as_deref(),
            Some("stops")
        );
        let v = parse(br#"[{"latitude":1}]"#, 64).unwrap();
        let err = decode::<Vec<Point>>(v, "").unwrap_err();
        assert_eq!(field(err).as_deref(), Some("[0].longitude"));
    }

    #[test]
    fn malformed_json_and_overlong_strings_are_bad_requests() {
        assert_eq!(field(parse(b"{", 64).unwrap_err()), None);
        assert_eq!(field(parse(b"", 64).unwrap_err()), None);
        let long = format!(r#"{{"stops":[{{"address":"{}"}}]}}"#, "a".repeat(65));
        assert_eq!(
            field(parse(long.as_bytes(), 64).unwrap_err()).as_deref(),
            Some("stops[0].address")
        );
        let key = format!(r#"{{"{}":1}}"#, "k".repeat(65));
        assert!(parse(key.as_bytes(), 64).is_err());
        let nested = "[".repeat(10_000);
        assert!(
            parse(nested.as_bytes(), 64).is_err(),
            "deep nesting is refused, not a stack overflow"
        );
    }

    #[test]
    fn json_content_types_are_recognised() {
        let ok = |v: &str| is_json(&HeaderValue::from_str(v).unwrap());
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=UTF-8"));
        assert!(ok("application/json;charset=\"utf-8\""));
        assert!(ok("application/merge-patch+json"));
        assert!(!ok("text/plain"));
        assert!(!ok("text/plain; charset=utf-8"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(!ok("multipart/form-data; boundary=x"));
        assert!(!ok("application/json; charset=latin1"));
        assert!(!ok("application/+json"));
        assert!(!ok("application/jsonx"));
        assert!(!ok(""));
    }

    #[test]
    fn ids_with_control_characters_are_refused_naming_the_field() {
        for bad in ["a\u{0}", "\u{1f}", "a\u{7f}b", "\u{80}", "x\u{9f}", "\n"] {
            assert_eq!(
                field(id(bad, "vehicleId").unwrap_err()).as_deref(),
                Some("vehicleId")
            );
        }
        assert!(id("van-1 ÄÖ 東京", "vehicleId").is_ok());
    }

    #[test]
    fn path_segments_are_percent_decoded() {
        assert_eq!(segment("stop%201").as_deref(), Some("stop 1"));
        assert_eq!(segment("a%2Fb%zz").as_deref(), Some("a/b%zz"));
        assert_eq!(segment("%ff"), None);
        assert_eq!(segment("%").as_deref(), Some("%"));
    }
}
