//! `GET /openapi.json`: the OpenAPI 3.1 document, kept as data next to the code
//! (`openapi.json`), and the table of endpoints it documents.
//!
//! [`ENDPOINTS`] is the router's list of `METHOD /template` pairs. Two tests keep the three in
//! step: the document's paths and methods equal [`ENDPOINTS`], and every entry answers through
//! the real router (not with the router's own 404 or 405). Metrics label requests with these
//! templates ([`template`]).
//!
//! Every `GET` endpoint also answers `HEAD` ([`read`] is their method filter; `warp::get()`
//! matches `GET` only): the same status and headers, and hyper sends no body. `HEAD` is not
//! listed separately in the table or the document; metrics count it under the `GET` template.

use warp::http::Method;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// The document, served as is.
pub const DOCUMENT: &str = include_str!("openapi.json");

/// Every endpoint as `METHOD /path/{param}`: what the router serves and the document describes.
pub const ENDPOINTS: &[&str] = &[
    "GET /health/live",
    "GET /health/ready",
    "GET /metrics",
    "GET /openapi.json",
    "GET /",
    "GET /dashboard/app.js",
    "GET /dashboard/app.css",
    "GET /traffic/routes/kafka-health",
    "GET /traffic/routes/ws",
    "POST /traffic/routes/optimize",
    "GET /traffic/routes",
    "GET /traffic/routes/{routeId}",
    "PATCH /traffic/routes/{routeId}/stops/{stopId}",
    "POST /traffic/routes/{routeId}/reoptimize",
    "GET /traffic/routes/{routeId}/events",
    "POST /traffic/vehicles/{vehicleId}/positions",
    "GET /traffic/roads",
    "GET /admin/queue/stats",
    "GET /admin/queue/pending",
    "GET /admin/dead-letters",
    "GET /admin/dead-letters/{seq}",
    "GET /admin/consumer-dead-letters",
    "DELETE /admin/dead-letters/{seq}",
    "POST /admin/dead-letters/{seq}/requeue",
    "POST /admin/dead-letters/requeue-all",
    "GET /admin/routes/{routeId}/events",
];

/// The method filter of a read endpoint: `GET` or `HEAD`.
pub fn read() -> impl Filter<Extract = (), Error = Rejection> + Copy {
    warp::get().or(warp::head()).unify()
}

/// Metrics label of requests that match no endpoint.
pub const UNMATCHED: &str = "unmatched";

/// The endpoint a request belongs to (for metrics), or [`UNMATCHED`]. A literal segment beats a
/// parameter, so `/traffic/routes/kafka-health` is not `/traffic/routes/{routeId}`.
pub fn template(method: &Method, path: &str) -> &'static str {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    ENDPOINTS
        .iter()
        .filter_map(|e| {
            let (m, t) = e.split_once(' ')?;
            if m != method.as_str() {
                return None;
            }
            let parts: Vec<&str> = t.trim_start_matches('/').split('/').collect();
            if parts.len() != segments.len() {
                return None;
            }
            let mut literal = 0;
            for (p, s) in parts.iter().zip(&segments) {
                if p.starts_with('{') {
                    if s.is_empty() {
                        return None;
                    }
                } else if p == s {
                    literal += 1;
                } else {
                    return None;
                }
            }
            Some((literal, *e))
        })
        .max_by_key(|(literal, _)| *literal)
        .map_or(UNMATCHED, |(_, e)| e)
}

/// `GET /openapi.json`.
pub fn document() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("openapi.json").and(read()).map(|| {
        warp::reply::with_header(DOCUMENT, "content-type", "application/json").into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn documented() -> BTreeSet<String> {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("valid JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                out.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
        out
    }

    #[test]
    fn the_document_describes_exactly_the_endpoint_table() {
        let table: BTreeSet<String> = ENDPOINTS.iter().map(|e| e.to_string()).collect();
        assert_eq!(documented(), table);
    }

    #[test]
    fn every_reference_in_the_document_resolves() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).unwrap();
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').expect("local reference");
            assert!(doc.pointer(pointer).is_some(), "dangling {r}");
        }
    }

    fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| collect_refs(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn templates_prefer_literal_segments_and_keep_methods_apart() {
        let get = Method::GET;
        assert_eq!(
            template(&get, "/traffic/routes/kafka-health"),
            "GET /traffic/routes/kafka-health"
        );
        assert_eq!(
            template(&get, "/traffic/routes/abc"),
            "GET /traffic/routes/{routeId}"
        );
        assert_eq!(template(&get, "/traffic/routes"), "GET /traffic/routes");
        assert_eq!(template(&Method::POST, "/traffic/routes/abc"), UNMATCHED);
        assert_eq!(
            template(&Method::HEAD, "/traffic/routes/abc"),
            "GET /traffic/routes/{routeId}"
        );
        assert_eq!(template(&get, "/traffic/routes//events"), UNMATCHED);
        assert_eq!(template(&get, "/nope"), UNMATCHED);
        assert_eq!(
            template(&Method::PATCH, "/traffic/routes/r/stops/s"),
            "PATCH /traffic/routes/{routeId}/stops/{stopId}"
        );
    }

    #[tokio::test]
    async fn head_answers_like_get_on_every_get_endpoint() {
        let r = crate::http::tests::rig(|_| {});
        let routes = crate::http::routes(r.api.clone());
        let created = warp::test::request()
            .method("POST")
            .path("/traffic/routes/optimize")
            .header("content-type", "application/json")
            .json(&crate::http::tests::seed())
            .reply(&routes)
            .await;
        let route: serde_json::Value = serde_json::from_slice(created.body()).unwrap();
        let id = route["routeId"].as_str().unwrap();
        for e in ENDPOINTS.iter().filter(|e| e.starts_with("GET ")) {
            let path = e[4..].replace("{routeId}", id).replace("{seq}", "1");
            let get = warp::test::request().path(&path).reply(&routes).await;
            let head = warp::test::request()
                .method("HEAD")
                .path(&path)
                .reply(&routes)
                .await;
            assert_eq!(
                head.status(),
                get.status(),
                "HEAD {path}: {:?}",
                head.body()
            );
            assert_eq!(
                head.headers().get("content-type"),
                get.headers().get("content-type"),
                "HEAD {path}"
            );
        }
    }
}
