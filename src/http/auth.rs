//! Who may call: optional bearer-token authentication for `/traffic/*`, `/admin/*` and the
//! WebSocket, and the browser [`origin`] check on writes and WebSocket upgrades.
//!
//! [`required`] is the one filter every write endpoint and the WebSocket pass through (the
//! `/traffic` guard, the `/admin` routes, the WebSocket route), so it applies both: first the
//! origin (403), then the token (401).
//!
//! Tokens come from `http.api_tokens` and `http.api_tokens_file` (one per line, `#` comments).
//! With no token configured, authentication is off. A request presents a token as
//! `Authorization: Bearer <token>`; a browser WebSocket, which cannot set headers, offers it as a
//! subprotocol: `new WebSocket(url, ["routegate.v1", "bearer.<token>"])` (the server answers with
//! `routegate.v1`). Comparison takes the same time whether a token matches early, late or not at
//! all, and tokens are never logged.

pub mod origin;

use std::path::Path;
use std::sync::Arc;

use warp::http::{HeaderMap, Method};
use warp::{Filter, Rejection};

pub use origin::Origins;

use super::error::ApiError;
use crate::config;

/// The subprotocol a browser offers next to `bearer.<token>`, echoed by the server.
pub const WS_PROTOCOL: &str = "routegate.v1";
const WS_TOKEN_PREFIX: &str = "bearer.";

/// Why the token file could not be loaded. Never carries a token: the file's contents are as
/// secret as `http.api_tokens`.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read http.api_tokens_file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A line that can never be presented as a token (the token itself is not shown).
    #[error(
        "http.api_tokens_file {path} line {line}: not a usable token; {}",
        config::TOKEN_RULE
    )]
    Unusable { path: String, line: usize },
}

/// The accepted tokens, and the origins whose pages may write (same-origin only by default).
#[derive(Clone, Default)]
pub struct Tokens(Arc<Vec<Vec<u8>>>, Origins);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured, {:?})", self.0.len(), self.1)
    }
}

impl Tokens {
    /// Tokens from the configuration list and the optional file.
    pub fn load(list: &[String], file: &str) -> Result<Tokens, TokenFileError> {
        let mut tokens: Vec<Vec<u8>> = list.iter().map(|t| t.as_bytes().to_vec()).collect();
        if !file.is_empty() {
            let text = std::fs::read_to_string(Path::new(file)).map_err(|source| {
                TokenFileError::Read {
                    path: file.to_string(),
                    source,
                }
            })?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                if !config::is_usable_token(line) {
                    return Err(TokenFileError::Unusable {
                        path: file.to_string(),
                        line: i + 1,
                    });
                }
                tokens.push(line.as_bytes().to_vec());
            }
        }
        Ok(Tokens(Arc::new(tokens), Origins::default()))
    }

    /// Also let pages from `cors_origins` (`http.cors_origins`) write.
    pub fn with_origins(self, cors_origins: &[String]) -> Tokens {
        Tokens(self.0, Origins::new(cors_origins))
    }

    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `candidate` is one of the tokens, in time independent of where it differs.
    pub fn accepts(&self, candidate: &[u8]) -> bool {
        self.0
            .iter()
            .fold(false, |found, t| found | constant_time_eq(t, candidate))
    }

    /// Check a request's headers; `Ok` when authentication is off or a valid token is present.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if !self.enabled() || presented(headers).iter().any(|t| self.accepts(t)) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// Tokens a request presents: the bearer header and any `bearer.` WebSocket subprotocols.
fn presented(headers: &HeaderMap) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(v) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let mut parts = v.splitn(2, ' ');
        if let (Some(scheme), Some(token)) = (parts.next(), parts.next())
            && scheme.eq_ignore_ascii_case("bearer")
        {
            out.push(token.trim().as_bytes().to_vec());
        }
    }
    for v in headers.get_all("sec-websocket-protocol") {
        if let Ok(v) = v.to_str() {
            out.extend(
                v.split(',')
                    .map(str::trim)
                    .filter_map(|p| p.strip_prefix(WS_TOKEN_PREFIX))
                    .map(|t| t.as_bytes().to_vec()),
            );
        }
    }
    out
}

/// Compare without an early exit; only the length (not the content) can leak through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

/// A filter that rejects a write or WebSocket upgrade from a foreign origin with 403, then
/// anything without a valid token with 401.
pub fn required(tokens: Tokens) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::method()
        .and(warp::header::headers_cloned())
        .and_then(move |method: Method, headers: HeaderMap| {
            let tokens = tokens.clone();
            async move {
                tokens
                    .1
                    .check(&method, &headers)
                    .and_then(|()| tokens.check(&headers))
                    .map_err(warp::reject::custom)
            }
        })
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    const TOKEN: &str = "0123456789abcdef-token";

    fn tokens() -> Tokens {
        Tokens::load(&[TOKEN.to_string()], "").unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn bearer_header_and_websocket_subprotocol_are_accepted() {
        let t = tokens();
        assert!(
            t.check(&headers(&[("authorization", &format!("Bearer {TOKEN}"))]))
                .is_ok()
        );
        assert!(
            t.check(&headers(&[("authorization", &format!("bearer {TOKEN}"))]))
                .is_ok()
        );
        let proto = format!("{WS_PROTOCOL}, bearer.{TOKEN}");
        assert!(
            t.check(&headers(&[("sec-websocket-protocol", &proto)]))
                .is_ok()
        );
    }

    #[test]
    fn missing_wrong_or_prefix_tokens_are_refused() {
        let t = tokens();
        assert!(t.check(&headers(&[])).is_err());
        assert!(
            t.check(&headers(&[("authorization", "Bearer nope")]))
                .is_err()
        );
        let prefix = &TOKEN[..TOKEN.len() - 1];
        assert!(
            t.check(&headers(&[("authorization", &format!("Bearer {prefix}"))]))
                .is_err()
        );
        assert!(
            t.check(&headers(&[("authorization", &format!("Basic {TOKEN}"))]))
                .is_err()
        );
    }

    #[test]
    fn no_tokens_means_no_authentication() {
        assert!(Tokens::default().check(&headers(&[])).is_ok());
    }

    #[test]
    fn the_token_file_adds_tokens_and_skips_comments() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens");
        std::fs::write(&file, "# ops team\n\nfile-token-0123456789\n").unwrap();
        let t = Tokens::load(&[], file.to_str().unwrap()).unwrap();
        assert!(t.accepts(b"file-token-0123456789"));
        assert!(!t.accepts(b"# ops team"));
        assert!(Tokens::load(&[], "/nonexistent/tokens").is_err());
        std::fs::write(&file, "ok-token-0123456789\n\nspaced secret token\n").unwrap();
        let err = Tokens::load(&[], file.to_str().unwrap()).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("line 3") && !shown.contains("secret"),
            "{shown}"
        );
    }

    #[test]
    fn constant_time_eq_is_plain_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }
}
