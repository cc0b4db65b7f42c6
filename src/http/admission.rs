//! Admission control: at most `http.max_in_flight` API requests are handled at once.
//!
//! A request beyond the cap is answered at once with 503 and `Retry-After: 1` instead of
//! queueing: with bodies of up to `http.max_body_bytes` each, the cap is what bounds the memory
//! a burst of clients can pin, and an early 503 tells a load balancer or a client to back off.
//! The health probes (`/health/live`, `/health/ready`) are not counted, so an overloaded gateway
//! still answers them. A permit is held until the handler has produced its response.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use warp::{Filter, Rejection};

use super::error::ApiError;

/// The shared cap. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    max: usize,
}

impl Admission {
    pub fn new(max_in_flight: usize) -> Admission {
        Admission {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max: max_in_flight,
        }
    }

    /// A permit for one request, or a 503 rejection when `max_in_flight` are running.
    pub fn filter(
        &self,
    ) -> impl Filter<Extract = (OwnedSemaphorePermit,), Error = Rejection> + Clone + use<> {
        let this = self.clone();
        warp::any().and_then(move || {
            let this = this.clone();
            async move { this.admit().map_err(warp::reject::custom) }
        })
    }

    fn admit(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Unavailable {
                message: format!(
                    "{} requests are already in flight (http.max_in_flight); retry shortly",
                    self.max
                ),
                retry_after_secs: 1,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_run_out_at_the_cap_and_come_back_when_dropped() {
        let a = Admission::new(2);
        let first = a.admit().unwrap();
        let _second = a.admit().unwrap();
        assert!(matches!(a.admit(), Err(ApiError::Unavailable { .. })));
        drop(first);
        assert!(a.admit().is_ok());
    }
}
