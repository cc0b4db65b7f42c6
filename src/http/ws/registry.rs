//! The index of live connections: who gets which frame.
//!
//! A connection is indexed once, by the most selective field of its filter (vehicle, else route,
//! else "everything"), so offering an event touches only the buckets of its vehicle and its route
//! and the "everything" list, and no connection can get an event twice.
//!
//! Offering never blocks. A connection whose queue is full is either **lagging** (its session is
//! waiting for the socket because the peer does not read fast enough, or is still replaying the
//! log), and is marked lagged and removed, or merely **behind** (its session follows the queue
//! and is runnable, but has not had the CPU yet), and is handed back to the router as
//! [`Waiting`], for the router to wait on briefly instead of dropping a healthy client during a
//! burst.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{Notify, mpsc};

use super::message::{Filter, Frame, Target};

/// Where a connection is indexed: by the most selective field of its filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Bucket {
    Vehicle(Box<str>),
    Route(Box<str>),
    Everything,
}

/// What the router and one session share besides the queue.
#[derive(Debug, Default)]
pub(super) struct Link {
    lagged: AtomicBool,
    /// Woken once, when the connection lags.
    lag: Notify,
    /// Set while the session waits for its socket to take data.
    blocked: AtomicBool,
    /// Set once the session has finished its replay and takes frames from its queue.
    following: AtomicBool,
}

impl Link {
    /// The connection fell behind: its session ends with `lagged`.
    pub(super) fn lag(&self) {
        if !self.lagged.swap(true, Ordering::SeqCst) {
            self.lag.notify_one();
        }
    }

    pub(super) fn has_lagged(&self) -> bool {
        self.lagged.load(Ordering::SeqCst)
    }

    /// Resolves once the connection has lagged.
    pub(super) async fn lagged(&self) {
        self.lag.notified().await;
    }

    pub(super) fn set_blocked(&self, blocked: bool) {
        self.blocked.store(blocked, Ordering::Relaxed);
    }

    /// Whether the session is waiting for its socket to take data.
    pub(super) fn is_blocked(&self) -> bool {
        self.blocked.load(Ordering::Relaxed)
    }

    pub(super) fn set_following(&self) {
        self.following.store(true, Ordering::Relaxed);
    }

    /// Whether the session is taking frames from its queue as fast as the gateway lets it: a full
    /// queue is then the gateway's shortage, not the client's.
    pub(super) fn is_draining(&self) -> bool {
        self.following.load(Ordering::Relaxed) && !self.blocked.load(Ordering::Relaxed)
    }
}

/// A connection that was full but not lagging when a frame was offered.
#[derive(Debug)]
pub(super) struct Waiting {
    pub tx: mpsc::Sender<Arc<Frame>>,
    pub link: Arc<Link>,
}

struct Entry {
    id: u64,
    /// The route filter of a connection indexed by vehicle that filters on both.
    also_route: Option<Box<str>>,
    tx: mpsc::Sender<Arc<Frame>>,
    link: Arc<Link>,
}

/// The index of live connections.
#[derive(Default)]
pub(super) struct Registry {
    next_id: u64,
    /// Last seq offered to the connections.
    pub(super) routed: u64,
    by_vehicle: HashMap<Box<str>, Vec<Entry>>,
    by_route: HashMap<Box<str>, Vec<Entry>>,
    everything: Vec<Entry>,
}

impl Registry {
    pub(super) fn insert(
        &mut self,
        filter: &Filter,
        tx: mpsc::Sender<Arc<Frame>>,
        link: Arc<Link>,
    ) -> (u64, Bucket) {
        self.next_id += 1;
        let (bucket, also_route) = match (&filter.vehicle, &filter.route) {
            (Some(v), r) => (Bucket::Vehicle(v.as_str().into()), r.as_deref()),
            (None, Some(r)) => (Bucket::Route(r.as_str().into()), None),
            (None, None) => (Bucket::Everything, None),
        };
        let entry = Entry {
            id: self.next_id,
            also_route: also_route.map(Into::into),
            tx,
            link,
        };
        match &bucket {
            Bucket::Vehicle(v) => self.by_vehicle.entry(v.clone()).or_default().push(entry),
            Bucket::Route(r) => self.by_route.entry(r.clone()).or_default().push(entry),
            Bucket::Everything => self.everything.push(entry),
        }
        (self.next_id, bucket)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.everything.is_empty() && self.by_vehicle.is_empty() && self.by_route.is_empty()
    }

    pub(super) fn remove(&mut self, id: u64, bucket: &Bucket) {
        let keep = |e: &Entry| e.id != id;
        match bucket {
            Bucket::Vehicle(v) => retain_in(&mut self.by_vehicle, v, keep),
            Bucket::Route(r) => retain_in(&mut self.by_route, r, keep),
            Bucket::Everything => self.everything.retain(keep),
        }
    }

    /// Offer a frame to every connection that wants it; drop the ones that lag; return the ones
    /// that are only behind.
    pub(super) fn offer(&mut self, frame: &Arc<Frame>) -> Vec<Waiting> {
        let mut waiting = Vec::new();
        let mut offer = |e: &Entry| offer_to(e, frame, &mut waiting);
        match &frame.target {
            Target::Event { vehicle, route } => {
                let route = route.as_deref();
                retain_in(&mut self.by_vehicle, vehicle, |e| {
                    let wants = e.also_route.as_deref().is_none_or(|r| Some(r) == route);
                    !wants || offer(e)
                });
                if let Some(r) = route {
                    retain_in(&mut self.by_route, r, &mut offer);
                }
                self.everything.retain(offer);
                self.routed = self.routed.max(frame.seq);
            }
            Target::Status { .. } => {
                for bucket in self.by_vehicle.values_mut() {
                    bucket.retain(&mut offer);
                }
                for bucket in self.by_route.values_mut() {
                    bucket.retain(&mut offer);
                }
                self.by_vehicle.retain(|_, b| !b.is_empty());
                self.by_route.retain(|_, b| !b.is_empty());
                self.everything.retain(offer);
            }
        }
        waiting
    }

    /// Events up to `upto` cannot be delivered: every connection lags, and is dropped.
    pub(super) fn lag_everyone(&mut self, upto: u64) {
        let entries = self
            .by_vehicle
            .drain()
            .chain(self.by_route.drain())
            .flat_map(|(_, b)| b)
            .chain(self.everything.drain(..));
        entries.for_each(|e| e.link.lag());
        self.routed = self.routed.max(upto);
    }
}

/// Try to queue a frame for one connection; `false` drops the connection from the index.
fn offer_to(e: &Entry, frame: &Arc<Frame>, waiting: &mut Vec<Waiting>) -> bool {
    if e.link.has_lagged() {
        return false;
    }
    match e.tx.try_send(frame.clone()) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) if !e.link.is_draining() => {
            e.link.lag();
            false
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            waiting.push(Waiting {
                tx: e.tx.clone(),
                link: e.link.clone(),
            });
            true
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// `Vec::retain` on one bucket of a map, removing the bucket when it empties.
fn retain_in(map: &mut HashMap<Box<str>, Vec<Entry>>, key: &str, keep: impl FnMut(&Entry) -> bool) {
    if let Some(bucket) = map.get_mut(key) {
        bucket.retain(keep);
        if bucket.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::delivery::{Circuit, Connectivity};
    use crate::events::{Envelope, NewEvent, VEHICLE_POSITION};

    fn filter(vehicle: Option<&str>, route: Option<&str>) -> Filter {
        Filter {
            vehicle: vehicle.map(Into::into),
            route: route.map(Into::into),
        }
    }

    fn frame(seq: u64, vehicle: &str, route: Option<&str>) -> Arc<Frame> {
        let e = NewEvent::now(VEHICLE_POSITION, "t", vehicle, route, &seq);
        Frame::event(&Envelope::sequenced(seq, e))
    }

    struct Conn {
        rx: mpsc::Receiver<Arc<Frame>>,
        link: Arc<Link>,
        id: u64,
        bucket: Bucket,
    }

    impl Conn {
        fn seqs(&mut self) -> Vec<u64> {
            std::iter::from_fn(|| self.rx.try_recv().ok())
                .map(|f| f.seq)
                .collect()
        }

        fn lagged(&self) -> bool {
            self.link.has_lagged()
        }
    }

    fn connect(reg: &mut Registry, f: Filter, capacity: usize) -> Conn {
        let (tx, rx) = mpsc::channel(capacity);
        let link = Arc::new(Link::default());
        let (id, bucket) = reg.insert(&f, tx, link.clone());
        Conn {
            rx,
            link,
            id,
            bucket,
        }
    }

    #[test]
    fn events_reach_exactly_the_connections_whose_filter_matches() {
        let mut reg = Registry::default();
        let mut all = connect(&mut reg, filter(None, None), 8);
        let mut v1 = connect(&mut reg, filter(Some("v1"), None), 8);
        let mut r1 = connect(&mut reg, filter(None, Some("r1")), 8);
        let mut v1r2 = connect(&mut reg, filter(Some("v1"), Some("r2")), 8);
        reg.offer(&frame(1, "v1", Some("r1")));
        reg.offer(&frame(2, "v2", Some("r1")));
        reg.offer(&frame(3, "v1", Some("r2")));
        reg.offer(&frame(4, "v2", None));
        assert_eq!(all.seqs(), [1, 2, 3, 4]);
        assert_eq!(v1.seqs(), [1, 3]);
        assert_eq!(r1.seqs(), [1, 2]);
        assert_eq!(v1r2.seqs(), [3]);
        assert_eq!(reg.routed, 4);
    }

    #[test]
    fn a_full_queue_behind_a_blocked_socket_lags_that_connection_only_and_unindexes_it() {
        let mut reg = Registry::default();
        let mut slow = connect(&mut reg, filter(Some("v1"), None), 2);
        let mut fast = connect(&mut reg, filter(Some("v1"), None), 8);
        slow.link.set_following();
        slow.link.set_blocked(true);
        for seq in 1..=3 {
            assert!(reg.offer(&frame(seq, "v1", None)).is_empty());
            fast.seqs();
        }
        assert!(slow.lagged());
        assert!(!fast.lagged());
        reg.offer(&frame(4, "v1", None));
        assert_eq!(fast.seqs(), [4]);
        assert_eq!(
            slow.seqs(),
            [1, 2],
            "what was queued stays; nothing after the overflow"
        );
        assert_eq!(reg.by_vehicle["v1"].len(), 1);
    }

    #[test]
    fn a_full_queue_whose_socket_still_drains_is_handed_back_to_wait_for() {
        let mut reg = Registry::default();
        let behind = connect(&mut reg, filter(None, None), 1);
        behind.link.set_following();
        reg.offer(&frame(1, "v1", None));
        let waiting = reg.offer(&frame(2, "v1", None));
        assert_eq!(waiting.len(), 1);
        assert!(Arc::ptr_eq(&waiting[0].link, &behind.link));
        assert!(!behind.lagged());
        assert_eq!(reg.everything.len(), 1, "still indexed");
        behind.link.lag();
        assert!(reg.offer(&frame(3, "v1", None)).is_empty());
        assert!(reg.everything.is_empty(), "a lagged connection is dropped");
    }

    #[test]
    fn a_connection_still_replaying_when_its_queue_fills_lags() {
        let mut reg = Registry::default();
        let replaying = connect(&mut reg, filter(None, None), 1);
        reg.offer(&frame(1, "v1", None));
        assert!(reg.offer(&frame(2, "v1", None)).is_empty());
        assert!(replaying.lagged());
    }

    #[test]
    fn status_notices_go_to_everyone_and_closed_connections_are_dropped() {
        let mut reg = Registry::default();
        let mut a = connect(&mut reg, filter(Some("v1"), None), 4);
        let mut b = connect(&mut reg, filter(None, Some("r1")), 4);
        let c = connect(&mut reg, filter(None, None), 4);
        drop(c.rx);
        let c = Connectivity {
            circuit: Circuit::Open,
            reachable: false,
        };
        reg.offer(&Frame::status(7, Utc::now(), c));
        assert_eq!(a.seqs(), [7]);
        assert_eq!(b.seqs(), [7]);
        assert!(reg.everything.is_empty());
    }

    #[test]
    fn removing_a_connection_empties_its_bucket() {
        let mut reg = Registry::default();
        let a = connect(&mut reg, filter(None, Some("r1")), 4);
        reg.remove(a.id, &a.bucket);
        assert!(reg.by_route.is_empty());
        let lagging = connect(&mut reg, filter(None, None), 4);
        reg.lag_everyone(9);
        assert!(lagging.lagged());
        assert_eq!(reg.routed, 9);
    }
}
