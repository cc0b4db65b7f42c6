use super::*;
use crate::config::Settings;
use crate::events::{Envelope, NewEvent, VEHICLE_POSITION};
use crate::queue::Write;

fn filter(vehicle: Option<&str>, route: Option<&str>) -> Filter {
    Filter {
        vehicle: vehicle.map(Into::into),
        route: route.map(Into::into),
    }
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
    let (_guard, mut rx, routed) = hub.register(&filter(Some("v1"), None), Arc::default());
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

fn frame(seq: u64) -> Arc<Frame> {
    let e = NewEvent::now(VEHICLE_POSITION, "t", "v1", None, &seq);
    Frame::event(&Envelope::sequenced(seq, e))
}

fn full_queue() -> (mpsc::Receiver<Arc<Frame>>, Waiting) {
    let (tx, rx) = mpsc::channel(1);
    tx.try_send(frame(1)).unwrap();
    let link = Arc::new(Link::default());
    link.set_following();
    (rx, Waiting { tx, link })
}

#[tokio::test(start_paused = true)]
async fn the_router_waits_for_a_connection_that_is_only_behind_and_keeps_the_order() {
    let (mut rx, waiting) = full_queue();
    let link = waiting.link.clone();
    let consumer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut seqs = Vec::new();
        while let Some(f) = rx.recv().await {
            seqs.push(f.seq);
        }
        seqs
    });
    wait_for_room(&frame(2), vec![waiting]).await;
    assert!(!link.has_lagged());
    assert_eq!(consumer.await.unwrap(), [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_connection_still_full_after_the_wait_or_whose_socket_blocks_lags() {
    let (_rx, never_reads) = full_queue();
    let link = never_reads.link.clone();
    wait_for_room(&frame(2), vec![never_reads]).await;
    assert!(link.has_lagged());

    let (_rx, blocked) = full_queue();
    let link = blocked.link.clone();
    link.set_blocked(true);
    let started = Instant::now();
    wait_for_room(&frame(2), vec![blocked]).await;
    assert!(link.has_lagged());
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no wait for a blocked socket"
    );
}
