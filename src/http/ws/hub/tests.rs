use super::*;
use crate::config::Settings;
use crate::events::{NewEvent, VEHICLE_POSITION};
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
