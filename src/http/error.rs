//! The one place where errors become HTTP responses.
//!
//! Handlers return `Result<_, Rejection>` built from [`ApiError`]; [`recover`] turns every rejection,
//! ours and warp's own, into a JSON body `{error, message, field?}` with the matching status.
//! Client mistakes are always 4xx. The only 5xx are 503 with `Retry-After` (the outbox is full,
//! the request timed out, a record kept changing under concurrent writers, or the gateway is
//! shutting down: nothing was written, retry later) and 500 for a failure of local storage or of
//! the solver's configuration.

use std::convert::Infallible;

use serde::Serialize;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reject::{Reject, Rejection};
use warp::reply::Response;
use warp::{Reply, reply};

use crate::{metrics, store};

/// An error a handler answers with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or violates a limit; `field` names the offending JSON path.
    #[error("{message}")]
    BadRequest {
        message: String,
        field: Option<String>,
    },
    #[error("{0}")]
    NotFound(String),
    /// Well-formed but not acceptable (a timestamp outside the window): 422 naming the field.
    #[error("{message}")]
    Unprocessable { message: String, field: String },
    /// A point of the request cannot be reached on the road network: 422 naming it.
    #[error("{message}")]
    Unroutable { message: String, field: String },
    /// The road network is configured but not loaded (yet): 503.
    #[error("{0}")]
    RoadsUnavailable(String),
    /// The request conflicts with the resource's current state (e.g. an impossible transition).
    #[error("{0}")]
    Conflict(String),
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Refused by policy (a CORS origin that is not allowed).
    #[error("{0}")]
    Forbidden(String),
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("request body too large")]
    PayloadTooLarge,
    /// The request target is longer than the connection accepts (414); the connection is closed.
    #[error("{0}")]
    UriTooLong(String),
    /// The request line and headers are larger, or more, than the connection accepts (431); the
    /// connection is closed.
    #[error("{0}")]
    HeadTooLarge(String),
    /// The body did not arrive within `http.body_timeout_ms` (408); the connection is closed.
    #[error("the request body did not arrive in time (http.body_timeout_ms)")]
    BodyTimeout,
    /// The body is not declared as JSON (`Content-Type: application/json`); nothing was read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The event this request would append is larger than a Kafka record may be (413, like a
    /// body over the limit); nothing was written.
    #[error("{0}")]
    EventTooLarge(String),
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// Nothing was written; the client should retry after `retry_after_secs`.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_secs: u64,
    },
    /// Local storage failed. Logged with its cause; the client sees only that it failed.
    #[error("internal error")]
    Internal(String),
}

impl Reject for ApiError {}

/// Seconds a client should wait before retrying a write the full outbox refused.
const QUOTA_RETRY_AFTER_SECS: u64 = 5;

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> ApiError {
        use store::Error as S;
        match e {
            S::NotFound(m) => ApiError::NotFound(m),
            S::Conflict(m) => ApiError::Conflict(m),
            S::Invalid { field, message } => ApiError::BadRequest {
                message: format!("invalid {field}: {message}"),
                field: Some(field),
            },
            S::Queue(q) => ApiError::from(q),
            S::EventTooLarge { .. } => ApiError::EventTooLarge(e.to_string()),
            S::Busy | S::TimedOut => ApiError::Unavailable {
                message: e.to_string(),
                retry_after_secs: 1,
            },
            S::SolverQueueFull(_) => ApiError::Unavailable {
                message: e.to_string(),
                retry_after_secs: 2,
            },
            S::Optimizer(crate::optimize::Error::Unroutable { field, message }) => {
                ApiError::Unroutable {
                    message: format!("{field} is unroutable: {message}"),
                    field,
                }
            }
            S::Optimizer(crate::optimize::Error::Unavailable(m)) => ApiError::RoadsUnavailable(m),
            S::Optimizer(_) | S::Corrupt { .. } | S::Task(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, field: Option<&str>) -> ApiError {
        ApiError::BadRequest {
            message: message.into(),
            field: field.map(str::to_string),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } | ApiError::Unroutable { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::RoadsUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge | ApiError::EventTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UriTooLong(_) => StatusCode::URI_TOO_LONG,
            ApiError::HeadTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ApiError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unprocessable { .. } => "unprocessable",
            ApiError::Unroutable { .. } => "unroutable",
            ApiError::RoadsUnavailable(_) => "road_network_unavailable",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UriTooLong(_) => "uri_too_long",
            ApiError::HeadTooLarge(_) => "headers_too_large",
            ApiError::BodyTimeout => "body_timeout",
            ApiError::EventTooLarge(_) => "event_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs }
            | ApiError::Unavailable {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            ApiError::RoadsUnavailable(_) => Some(5),
            _ => None,
        }
    }

    /// The response for this error.
    pub fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(cause = %cause, "request failed on local storage");
        }
        let mut resp = reply::with_status(reply::json(&self.body()), self.status()).into_response();
        if let Some(secs) = self.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, ApiError::Unauthorized) {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"routegate\""),
            );
        }
        resp
    }
}

impl ApiError {
    /// The JSON body of this error's response, for answers written without warp.
    pub fn json_body(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body()).expect("an error body serializes")
    }

    fn body(&self) -> ErrorBody {
        let field = match self {
            ApiError::BadRequest { field, .. } => field.clone(),
            ApiError::Unprocessable { field, .. } | ApiError::Unroutable { field, .. } => {
                Some(field.clone())
            }
            ApiError::UnsupportedMediaType(_) => Some("content-type".into()),
            _ => None,
        };
        ErrorBody {
            error: self.code(),
            message: self.to_string(),
            field,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

/// Turn any rejection into a JSON error response.
pub async fn recover(r: Rejection) -> Result<Response, Infallible> {
    Ok(classify(&r).into_response())
}

fn classify(r: &Rejection) -> ApiError {
    use warp::reject as w;
    if let Some(e) = r.find::<ApiError>() {
        return e.clone();
    }
    if r.is_not_found() {
        return ApiError::NotFound("no such route".into());
    }
    if r.find::<w::MethodNotAllowed>().is_some() {
        return ApiError::MethodNotAllowed;
    }
    if r.find::<w::PayloadTooLarge>().is_some() {
        return ApiError::PayloadTooLarge;
    }
    if let Some(e) = r.find::<w::InvalidQuery>() {
        return ApiError::bad_request(e.to_string(), None);
    }
    if let Some(e) = r.find::<w::MissingHeader>() {
        return ApiError::bad_request(e.to_string(), Some(e.name()));
    }
    if let Some(e) = r.find::<w::InvalidHeader>() {
        return ApiError::bad_request(e.to_string(), Some(e.name()));
    }
    if let Some(e) = r.find::<w::UnsupportedMediaType>() {
        return ApiError::UnsupportedMediaType(e.to_string());
    }
    if let Some(e) = r.find::<w::LengthRequired>() {
        return ApiError::bad_request(e.to_string(), Some("content-length"));
    }
    if let Some(e) = r.find::<warp::cors::CorsForbidden>() {
        return ApiError::Forbidden(e.to_string());
    }
    if let Some(e) = r.find::<warp::ws::MissingConnectionUpgrade>() {
        return ApiError::bad_request(e.to_string(), Some("upgrade"));
    }
    ApiError::bad_request(format!("request rejected: {r:?}"), None)
}

impl From<crate::queue::Error> for ApiError {
    fn from(e: crate::queue::Error) -> ApiError {
        use crate::queue::Error as Q;
        match e {
            Q::QuotaExceeded { .. } => {
                metrics::outbox_rejected("quota");
                ApiError::Unavailable {
                    message: format!("{e}; nothing was written, retry later"),
                    retry_after_secs: QUOTA_RETRY_AFTER_SECS,
                }
            }
            Q::DiskFull { .. } => {
                metrics::outbox_rejected("disk");
                ApiError::Unavailable {
                    message: format!("{e}; nothing was written, retry later"),
                    retry_after_secs: QUOTA_RETRY_AFTER_SECS,
                }
            }
            Q::Failed(reason) => {
                metrics::outbox_rejected("failed");
                ApiError::Unavailable {
                    message: format!("{reason}; nothing was written"),
                    retry_after_secs: QUOTA_RETRY_AFTER_SECS,
                }
            }
            Q::Closed => ApiError::Unavailable {
                message: "the gateway is shutting down; nothing was written".into(),
                retry_after_secs: 1,
            },
            Q::Conflict { .. } | Q::Unrequeueable { .. } => ApiError::Conflict(e.to_string()),
            Q::NoDeadLetter(_) => ApiError::NotFound(e.to_string()),
            Q::Open { .. } | Q::Storage(_) | Q::Task(_) | Q::Aborted => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}
