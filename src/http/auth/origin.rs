//! Which browser pages may write: the `Origin` check that stops cross-site request forgery.
//!
//! A browser tells the server which page a request comes from in `Origin`; scripts, `curl` and
//! handhelds send none and are not browsers, so they are never refused here. The rule:
//!
//! * it applies to writes (`POST`, `PATCH`, `PUT`, `DELETE`) and to WebSocket upgrades (which
//!   browsers open cross-origin without any preflight); reads are left to the browser's
//!   same-origin policy, which keeps a foreign page from reading the answer;
//! * a request without `Origin` passes;
//! * a same-origin request passes: the `Origin`'s host and port equal the `Host` header's (a
//!   missing port is the scheme's default), which is what the built-in dashboard sends;
//! * an origin listed in `http.cors_origins`, or any origin when it lists `*`, passes;
//! * anything else, `Origin: null` included, is refused with `403 forbidden` before the handler
//!   runs, so nothing is written.
//!
//! Behind a reverse proxy that rewrites `Host`, list the public origin in `http.cors_origins`.

use warp::http::{HeaderMap, Method, header};

use crate::http::error::ApiError;

/// The origins allowed besides the request's own. `Default`: same-origin only.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// `http.cors_origins` without a `*`, lower-cased, without a trailing `/`.
    listed: Vec<String>,
    /// `http.cors_origins` contains `*`.
    any: bool,
}

impl Origins {
    pub fn new(cors_origins: &[String]) -> Origins {
        Origins {
            listed: cors_origins
                .iter()
                .filter(|o| *o != "*")
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
            any: cors_origins.iter().any(|o| o == "*"),
        }
    }

    /// `Ok` unless `method` with `headers` is a write or WebSocket upgrade from a foreign origin.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
        let write = matches!(
            *method,
            Method::POST | Method::PATCH | Method::PUT | Method::DELETE
        );
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        if !(write || is_upgrade(headers)) || self.any {
            return Ok(());
        }
        let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if self.listed.contains(&origin) || host.is_some_and(|h| same_origin(&origin, h)) {
            return Ok(());
        }
        Err(ApiError::Forbidden(
            "a write or WebSocket from another origin is refused: the Origin header does not \
             match Host and is not listed in http.cors_origins"
                .into(),
        ))
    }
}

/// Whether a request with this `Origin` and `Host` comes from a page the gateway served itself
/// (the dashboard): same host and port, a missing port being the scheme's default.
pub fn is_same_origin(origin: &str, host: &str) -> bool {
    same_origin(&origin.to_ascii_lowercase(), host)
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.eq_ignore_ascii_case("websocket"))
    })
}

/// Whether `origin` (`scheme://host[:port]`, lower case) names the server addressed as `host`.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let default_port = match scheme {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let split = |a: &str| -> (String, String) {
        // An IPv6 literal keeps its colons inside the brackets.
        let port_at = a.rfind(':').filter(|&i| !a[i..].contains(']'));
        match port_at {
            Some(i) => (a[..i].to_ascii_lowercase(), a[i + 1..].to_string()),
            None => (a.to_ascii_lowercase(), default_port.to_string()),
        }
    };
    let (o_host, o_port) = split(authority);
    let (h_host, h_port) = split(host.trim());
    !o_host.is_empty() && o_host == h_host && o_port == h_port
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn same_origin_compares_host_and_port_with_default_ports_filled_in() {
        assert!(same_origin("http://127.0.0.1:4000", "127.0.0.1:4000"));
        assert!(same_origin("http://gw.example", "gw.example"));
        assert!(same_origin("http://gw.example", "GW.example:80"));
        assert!(same_origin("https://gw.example", "gw.example:443"));
        assert!(same_origin("http://[::1]:4000", "[::1]:4000"));
        assert!(!same_origin("http://[::1]:4000", "[::1]:4001"));
        assert!(!same_origin("http://127.0.0.1:4001", "127.0.0.1:4000"));
        assert!(
            same_origin("https://gw.example", "gw.example"),
            "TLS ended in front of the gateway: Host has no scheme, the origin's default port counts"
        );
        assert!(!same_origin("http://gw.example", "gw.example:443"));
        assert!(!same_origin("http://evil.example", "gw.example"));
        assert!(!same_origin("null", "gw.example"));
        assert!(!same_origin("file://", ""));
    }

    #[test]
    fn foreign_writes_and_upgrades_are_refused_reads_and_originless_requests_are_not() {
        let o = Origins::default();
        let foreign = [("origin", "https://evil.example"), ("host", "gw:4000")];
        assert!(o.check(&Method::POST, &headers(&foreign)).is_err());
        assert!(o.check(&Method::DELETE, &headers(&foreign)).is_err());
        assert!(o.check(&Method::GET, &headers(&foreign)).is_ok());
        let upgrade = [foreign[0], foreign[1], ("upgrade", "websocket")];
        assert!(o.check(&Method::GET, &headers(&upgrade)).is_err());
        assert!(
            o.check(&Method::POST, &headers(&[("host", "gw:4000")]))
                .is_ok()
        );
        let same = [("origin", "http://gw:4000"), ("host", "gw:4000")];
        assert!(o.check(&Method::PATCH, &headers(&same)).is_ok());
        let null = [("origin", "null"), ("host", "gw:4000")];
        assert!(o.check(&Method::POST, &headers(&null)).is_err());
    }

    #[test]
    fn listed_origins_or_a_star_are_allowed() {
        let foreign = headers(&[("origin", "https://Dash.example"), ("host", "gw:4000")]);
        let listed = Origins::new(&["https://dash.example/".into()]);
        assert!(listed.check(&Method::POST, &foreign).is_ok());
        let other = Origins::new(&["https://other.example".into()]);
        assert!(other.check(&Method::POST, &foreign).is_err());
        assert!(
            Origins::new(&["*".into()])
                .check(&Method::POST, &foreign)
                .is_ok()
        );
    }
}
