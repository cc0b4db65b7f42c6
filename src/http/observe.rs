//! Request ids, a tracing span per request, and per-route metrics.
//!
//! Every response carries `x-request-id`: the client's own when it sent a sane one (printable
//! ASCII, at most [`MAX_REQUEST_ID`] bytes), else a fresh UUIDv7. The id is a field of the
//! request's span, so every log line of the request carries it. Metrics are labelled with the
//! route *template* (`GET /traffic/routes/{routeId}`, from [`openapi::ENDPOINTS`]), never the raw
//! path, so label cardinality stays bounded; anything else is `unmatched`.

use std::convert::Infallible;
use std::time::Instant;

use warp::http::{HeaderValue, Method};
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::openapi;
use crate::metrics;

pub const REQUEST_ID: &str = "x-request-id";
/// Longest client-supplied request id that is echoed.
pub const MAX_REQUEST_ID: usize = 128;

/// What is known when a request arrives.
#[derive(Debug)]
struct Begun {
    started: Instant,
    template: &'static str,
    request_id: HeaderValue,
}

/// Wrap the routes: request id, span, metrics.
pub fn observed<F>(
    routes: F,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let given = warp::header::value(REQUEST_ID)
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    let begin = warp::method().and(warp::path::full()).and(given).map(
        |method: Method, path: FullPath, given: Option<HeaderValue>| {
            let request_id = given.filter(acceptable).unwrap_or_else(fresh_id);
            let id = request_id.to_str().unwrap_or_default();
            tracing::Span::current().record("request_id", id);
            Begun {
                started: Instant::now(),
                template: openapi::template(&method, path.as_str()),
                request_id,
            }
        },
    );
    begin
        .and(routes)
        .map(finish)
        .with(warp::trace(|info| {
            tracing::info_span!(
                "request",
                method = %info.method(),
                path = %info.path(),
                request_id = tracing::field::Empty,
            )
        }))
        .map(Reply::into_response)
}

fn finish(begun: Begun, mut resp: Response) -> Response {
    let took = begun.started.elapsed();
    let status = resp.status().as_u16();
    metrics::http_request(begun.template, status, took);
    if status >= 500 && !is_probe(begun.template) {
        tracing::warn!(
            status,
            route = begun.template,
            took_ms = took.as_millis() as u64,
            "request failed"
        );
    } else {
        tracing::debug!(
            status,
            route = begun.template,
            took_ms = took.as_millis() as u64,
            "request done"
        );
    }
    resp.headers_mut().insert(REQUEST_ID, begun.request_id);
    resp
}

/// Health endpoints answer 503 by design while a dependency is away, and dashboards and load
/// balancers poll them every few seconds: such an answer is logged at DEBUG like any other, not
/// as a failed request (the dependency's own state changes are logged where they happen).
fn is_probe(template: &str) -> bool {
    let path = template.split_once(' ').map_or(template, |(_, path)| path);
    path.starts_with("/health/") || path == "/traffic/routes/kafka-health"
}

/// The id of a request answered outside the routes: the client's own when sane, else fresh.
pub fn request_id(headers: &warp::http::HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|v| acceptable(v))
        .cloned()
        .unwrap_or_else(fresh_id)
}

fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty() && b.len() <= MAX_REQUEST_ID && b.iter().all(|c| c.is_ascii_graphic())
}

fn fresh_id() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::now_v7().to_string()).expect("a UUID is a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo()
    -> impl Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static {
        warp::any().map(|| warp::reply().into_response())
    }

    #[tokio::test]
    async fn a_sane_request_id_is_echoed_and_a_missing_one_is_made_up() {
        let api = observed(echo());
        let res = warp::test::request()
            .path("/health/live")
            .header(REQUEST_ID, "abc-123")
            .reply(&api)
            .await;
        assert_eq!(res.headers()[REQUEST_ID], "abc-123");
        let res = warp::test::request().path("/x").reply(&api).await;
        let made = res.headers()[REQUEST_ID].to_str().unwrap().to_string();
        assert!(uuid::Uuid::parse_str(&made).is_ok(), "{made}");
        let res = warp::test::request()
            .path("/x")
            .header(REQUEST_ID, "has space")
            .reply(&api)
            .await;
        assert_ne!(res.headers()[REQUEST_ID], "has space");
    }
}
