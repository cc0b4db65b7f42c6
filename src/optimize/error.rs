//! The optimizer's one error type.
//!
//! The HTTP layer turns an [`Error`] into a 400 (validation), 422 (unroutable point), 503 (road
//! network not ready) or 500 (matrix source) JSON body
//! `{error, message, field}`; [`Error::code`] and [`Error::field`] give it those parts without
//! parsing the display text.

/// Why a problem could not be solved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed: `field` is a JSON path into the request in camelCase
    /// (`"stops[3].latitude"`, `"preferences.maxComputeMillis"`) so a client can point at it.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// JSON path of the offending value, e.g. `stops[3].timeWindow`.
        field: String,
        /// Human-readable explanation.
        message: String,
    },
    /// A point cannot be reached on the road network (too far from any road, or no route to
    /// it): the client's to fix, HTTP 422. `field` names the point (`stops[3]`).
    #[error("{field} is unroutable: {message}")]
    Unroutable { field: String, message: String },
    /// The road network is configured but not ready yet (being prepared): HTTP 503.
    #[error("road network unavailable: {0}")]
    Unavailable(String),
    /// The cost-matrix source failed or returned a matrix that cannot be used (wrong size,
    /// negative or non-finite entries). Not the client's fault.
    #[error("cost matrix unavailable: {0}")]
    Matrix(String),
    /// The solver's configuration ([`Params`](super::Params)) is unusable. A server
    /// misconfiguration, not the client's fault.
    #[error("invalid optimizer parameter {field}: {message}")]
    Config {
        /// Name of the parameter, e.g. `detour_factor`.
        field: &'static str,
        /// Human-readable explanation.
        message: String,
    },
}

impl Error {
    /// Builds an [`Error::Invalid`] for the given JSON path.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Builds an [`Error::Unroutable`] for the given point.
    pub fn unroutable(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Unroutable {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A stable machine-readable code for the `error` member of the HTTP body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid { .. } => "invalid_request",
            Self::Unroutable { .. } => "unroutable",
            Self::Unavailable(_) => "road_network_unavailable",
            Self::Matrix(_) => "cost_matrix_unavailable",
            Self::Config { .. } => "optimizer_misconfigured",
        }
    }

    /// The request field at fault, for validation errors only.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } | Self::Unroutable { field, .. } => Some(field),
            _ => None,
        }
    }

    /// True when the client sent something wrong (HTTP 400), false for server-side failures.
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::Invalid { .. } | Self::Unroutable { .. })
    }
}

/// Result alias for the optimizer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
