//! `GET /`: the built-in dashboard, three static files compiled into the binary.
//!
//! `dashboard/index.html`, `dashboard/app.js` and `dashboard/app.css` are plain HTML, JavaScript
//! and CSS with no build step and nothing fetched from elsewhere (depots are offline): the page
//! loads its script and style from this gateway, draws routes as SVG from the stops' coordinates
//! (no map tiles), and talks only to this gateway's REST API and WebSocket.
//!
//! # What the page does
//!
//! ```text
//! load ─▶ WebSocket /traffic/routes/ws (routegate.v1) ─▶ hello ─▶ REST: GET /traffic/routes,
//!          │                                                      then each route
//!          ├─ route.optimized, re-plan ─▶ replace the route unless the page's version is newer
//!          ├─ stop change (route.updated) ─▶ apply to version - 1; else GET the route again
//!          ├─ vehicle.position ─▶ move the vehicle, shift its route's ETAs by the delay
//!          ├─ kafka.status ─▶ header; GET /traffic/routes/kafka-health also every 5 s
//!          ├─ reset ─▶ reload over REST       lagged ─▶ reconnect with since
//!          └─ close ─▶ reconnect with since=<last seq>, backoff 0.5 s doubling to 10 s
//! ```
//!
//! Every message's `seq` is a resume point (see [`super::ws`]), so the page keeps the last one
//! and resumes from it: no event is missed across a drop. A stop change's `route.updated`
//! carries only the change and the route's new `version`; the page applies it to the route it
//! holds when that is the version just before, and otherwise (it missed a change, or never held
//! the route) reads the route again with `GET /traffic/routes/{id}`. The newer version wins, so
//! the REST load and the live stream may interleave in any order.
//!
//! The files are public even when API tokens are configured (they hold no data); the page takes
//! its token from `?token=` and sends it as `Authorization: Bearer` to the REST API and as the
//! `bearer.<token>` subprotocol to the WebSocket. A strict Content-Security-Policy allows only
//! this origin's script, style and connections, so data put into the page can never run.

use warp::http::{HeaderValue, header};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

/// The page.
pub const INDEX_HTML: &str = include_str!("dashboard/index.html");
/// Its script (plain JavaScript, no build step).
pub const APP_JS: &str = include_str!("dashboard/app.js");
/// Its style sheet.
pub const APP_CSS: &str = include_str!("dashboard/app.css");

/// Only this origin's script, style, images and connections (the WebSocket included: CSP 3
/// matches `ws:` of the same host with `'self'`); no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`, `GET /dashboard/app.js`, `GET /dashboard/app.css`.
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let index = warp::path::end()
        .and(crate::http::openapi::read())
        .map(|| asset(INDEX_HTML, "text/html; charset=utf-8"));
    let js = warp::path!("dashboard" / "app.js")
        .and(crate::http::openapi::read())
        .map(|| asset(APP_JS, "text/javascript; charset=utf-8"));
    let css = warp::path!("dashboard" / "app.css")
        .and(crate::http::openapi::read())
        .map(|| asset(APP_CSS, "text/css; charset=utf-8"));
    index.or(js).unify().or(css).unify()
}

/// A static file; `no-cache` so that a browser revalidates after the gateway was upgraded.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(path: &str) -> warp::http::Response<bytes::Bytes> {
        warp::test::request().path(path).reply(&routes()).await
    }

    #[tokio::test]
    async fn each_file_is_served_with_its_content_type() {
        for (path, body, kind) in [
            ("/", INDEX_HTML, "text/html; charset=utf-8"),
            (
                "/dashboard/app.js",
                APP_JS,
                "text/javascript; charset=utf-8",
            ),
            ("/dashboard/app.css", APP_CSS, "text/css; charset=utf-8"),
        ] {
            let res = get(path).await;
            assert_eq!(res.status(), 200, "{path}");
            assert_eq!(res.headers()["content-type"], kind, "{path}");
            assert_eq!(res.headers()["x-content-type-options"], "nosniff");
            assert!(
                res.headers()["content-security-policy"]
                    .to_str()
                    .unwrap()
                    .contains("script-src 'self'")
            );
            assert_eq!(res.body().as_ref(), body.as_bytes(), "{path}");
        }
    }

    #[tokio::test]
    async fn other_paths_and_methods_are_not_the_dashboard() {
        assert_eq!(get("/dashboard/other.js").await.status(), 404);
        assert_eq!(get("/index.html").await.status(), 404);
        let post = warp::test::request()
            .method("POST")
            .path("/")
            .reply(&routes())
            .await;
        assert_eq!(post.status(), 405);
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        for file in [INDEX_HTML, APP_JS, APP_CSS] {
            // The SVG namespace is a name, not a place the browser goes to.
            let file = file.replace("http://www.w3.org/2000/svg", "");
            for external in [
                "http://",
                "https://",
                "//cdn",
                "@import",
                "fonts.googleapis",
            ] {
                assert!(!file.contains(external), "{external} in a dashboard file");
            }
        }
        assert!(INDEX_HTML.contains(r#"<script src="/dashboard/app.js" defer></script>"#));
        assert!(INDEX_HTML.contains(r#"href="/dashboard/app.css""#));
        assert!(!INDEX_HTML.contains("<script>"), "no inline script (CSP)");
    }

    #[test]
    fn the_script_never_writes_html_from_strings() {
        for forbidden in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
        ] {
            assert!(!APP_JS.contains(forbidden), "{forbidden} in app.js");
        }
    }

    #[test]
    fn the_dashboard_is_in_the_endpoint_table() {
        for e in ["GET /", "GET /dashboard/app.js", "GET /dashboard/app.css"] {
            assert!(super::super::openapi::ENDPOINTS.contains(&e), "{e}");
        }
    }
}
