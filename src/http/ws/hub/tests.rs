use super::*;
use crate::config::Settings;
use crate::delivery::Circuit;
use crate::events::{NewEvent, VEHICLE_POSITION};
use crate::queue::Write;

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
    lag: Arc<Notify>,
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
        self.lag.notified().now_or_never().is_some()
    }
}

use futures_util::FutureExt;

fn connect(reg: &mut Registry, f: Filter, capacity: usize) -> Conn {
    let (tx, rx) = mpsc::channel(capacity);
    let lag = Arc::new(Notify::new());
    let (id, bucket) = reg.insert(&f, tx, lag.clone());
    Conn {
        rx,
        lag,
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
fn a_full_queue_lags_that_connection_only_and_unindexes_it() {
    let mut reg = Registry::default();
    let mut slow = connect(&mut reg, filter(Some("v1"), None), 2);
    let mut fast = connect(&mut reg, filter(Some("v1"), None), 8);
    for seq in 1..=3 {
        reg.offer(&frame(seq, "v1", None));
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

fn settings(dir: &std::path::Path) -> Settings {
    let mut s = Settings::default();
    s.storage.data_dir = dir.to_path_buf();
    s
}

#[tokio::test]
async fn a_router_that_missed_events_reads_them_from_the_log_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path());
    let outbox = Outbox::open(dir.path(), &s.storage, &[]).unwrap();
    let events = (0..5)
        .map(|i| NewEvent::now(VEHICLE_POSITION, "t", "v1", None, &i))
        .collect();
    let appended = outbox
        .append(Write {
            events,
            records: vec![],
        })
        .await
        .unwrap();
    let status = Arc::new(delivery::Status::default());
    let hub = Hub::start(
        outbox.clone(),
        status,
        &s.websocket,
        64,
        CancellationToken::new(),
    );
    hub.registry().routed = 1;
    let (_guard, mut rx, routed) = hub.register(&filter(Some("v1"), None), Arc::new(Notify::new()));
    assert_eq!(routed, 1);
    hub.on_event(&appended[4]).await;
    let got: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|f| f.seq)
        .collect();
    assert_eq!(got, [2, 3, 4, 5]);
    hub.on_event(&appended[3]).await;
    assert!(
        rx.try_recv().is_err(),
        "already routed events are not routed twice"
    );
    assert!(hub.close(Duration::from_secs(5)).await);
    outbox.shutdown().await;
}
