//! Per-client rate limiting: a token bucket per client address.
//!
//! Each client address has a bucket of `http.rate_limit_burst` tokens refilled at
//! `http.rate_limit_per_second`; a request takes one token or is refused with 429 and a
//! `Retry-After` of the seconds until a token is back. The bucket is pure ([`Bucket::take`] gets
//! `now` from the caller) so it is tested without sleeping. Clients are keyed by the peer address
//! of the connection, never by a header a client could forge. Buckets that have refilled are
//! forgotten once the table grows past [`MAX_CLIENTS`], so memory stays bounded.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use warp::{Filter, Rejection};

use super::error::ApiError;

/// Client addresses remembered before full buckets are dropped.
pub const MAX_CLIENTS: usize = 10_000;

/// One client's tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(capacity: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: capacity,
            last: now,
        }
    }

    /// Take a token, or say how long until one is available.
    pub fn take(&mut self, now: Instant, rate: f64, capacity: f64) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(capacity);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / rate))
        }
    }

    fn is_full_at(&self, now: Instant, rate: f64, capacity: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * rate >= capacity
    }
}

/// Buckets of every recent client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// Tokens per second; 0 turns the limiter off.
    rate: f64,
    capacity: f64,
    /// A std mutex: held for a map lookup only, never across an `.await`.
    buckets: Arc<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate: f64::from(per_second),
            capacity: f64::from(burst.max(1)),
            buckets: Arc::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Admit a request from `client` at `now`, or say how long it should wait.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&client) {
            let (rate, capacity) = (self.rate, self.capacity);
            buckets.retain(|_, b| !b.is_full_at(now, rate, capacity));
        }
        buckets
            .entry(client)
            .or_insert_with(|| Bucket::full(self.capacity, now))
            .take(now, self.rate, self.capacity)
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

/// A filter that refuses a client over its rate with 429 and `Retry-After`.
pub fn rate_limited(limiter: RateLimiter) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::addr::remote()
        .and(warp::ext::optional::<super::conn::PeerAddr>())
        .map(
            |warp_peer: Option<SocketAddr>, ours: Option<super::conn::PeerAddr>| {
                ours.map(|p| p.0).or(warp_peer)
            },
        )
        .and_then(move |peer: Option<SocketAddr>| {
            let limiter = limiter.clone();
            async move {
                let client = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
                limiter.check(client, Instant::now()).map_err(|wait| {
                    warp::reject::custom(ApiError::RateLimited {
                        retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                    })
                })
            }
        })
        .untuple_one()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_client_gets_its_burst_then_waits_for_the_refill() {
        let limiter = RateLimiter::new(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check(A, t0).is_ok());
        }
        let wait = limiter.check(A, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        assert!(limiter.check(A, t0 + Duration::from_millis(499)).is_err());
        assert!(limiter.check(A, t0 + Duration::from_millis(1000)).is_ok());
    }

    #[test]
    fn clients_do_not_share_buckets() {
        let limiter = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        assert!(limiter.check(A, t0).is_ok());
        assert!(limiter.check(A, t0).is_err());
        assert!(limiter.check(B, t0).is_ok());
    }

    #[test]
    fn a_rate_of_zero_turns_the_limit_off() {
        let limiter = RateLimiter::new(0, 1);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| limiter.check(A, t0).is_ok()));
    }

    #[test]
    fn a_bucket_never_holds_more_than_its_capacity() {
        let mut b = Bucket::full(2.0, Instant::now());
        let later = Instant::now() + Duration::from_secs(3600);
        assert!(b.take(later, 10.0, 2.0).is_ok());
        assert!(b.take(later, 10.0, 2.0).is_ok());
        assert!(b.take(later, 10.0, 2.0).is_err());
    }

    #[test]
    fn refilled_buckets_are_forgotten_when_the_table_is_full() {
        let limiter = RateLimiter::new(1000, 1);
        let t0 = Instant::now();
        for i in 0..MAX_CLIENTS as u32 {
            limiter.check(IpAddr::V4(Ipv4Addr::from(i)), t0).unwrap();
        }
        assert_eq!(limiter.clients(), MAX_CLIENTS);
        limiter.check(A, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(limiter.clients(), 1);
    }
}
