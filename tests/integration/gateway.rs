//! The gateway as a process: startup, health, configuration errors, the data-directory lock,
//! graceful shutdown.

use std::time::Duration;

use crate::harness::gateway::{ChildGateway, TestGateway};

#[tokio::test]
async fn health_endpoints_answer_without_any_broker() {
    let gw = TestGateway::spawn(|_| {}).await;
    let (status, body) = gw.get_json("/health/live").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = gw.get_json("/health/ready").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
    let (status, body) = gw.get_json("/no/such/path").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    gw.stop().await;
}

#[tokio::test]
async fn a_second_gateway_on_the_same_directory_refuses_to_start() {
    let first = TestGateway::spawn(|_| {}).await;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_routegate"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(first.dir.path())
        .output()
        .expect("run routegate");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another routegate"), "{stderr}");
    let (status, _) = first.get_json("/health/ready").await;
    assert_eq!(status, 200, "the first gateway is unharmed");
    first.stop().await;
}

#[tokio::test]
async fn sigterm_stops_the_gateway_gracefully_with_exit_code_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = ChildGateway::spawn(dir.path(), &[("kafka.brokers", "127.0.0.1:9".into())]).await;
    let resp = reqwest::get(gw.url("/health/live")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let status = tokio::time::timeout(Duration::from_secs(20), gw.terminate())
        .await
        .expect("exits within 20 s");
    assert!(status.success(), "{status:?}");
    assert!(
        !dir.path().join("gateway.addr").exists(),
        "address retracted"
    );
}

#[test]
fn a_bad_configuration_value_stops_startup_naming_key_value_and_allowed() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_routegate"))
        .args(["serve", "--set", "storage.durability=sometimes"])
        .env("ROUTEGATE_KAFKA_LINGER_MS", "5")
        .output()
        .expect("run routegate");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("storage.durability"), "{stderr}");
    assert!(stderr.contains("sometimes"), "{stderr}");
    assert!(stderr.contains("strict, interval"), "{stderr}");
}

#[test]
fn config_prints_the_effective_configuration_with_secrets_redacted() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_routegate"))
        .arg("config")
        .env("KAFKA_BROKERS", "k1:9092,k2:9092")
        .env("ROUTEGATE_KAFKA_SASL_PASSWORD", "s3cret-value")
        .output()
        .expect("run routegate");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(r#"brokers = ["k1:9092", "k2:9092"]  # env KAFKA_BROKERS"#),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret-value"));
    assert!(stdout.contains(r#"password = "***""#));
}

/// A SIGTERM that arrives the moment the address is published (a supervisor stopping a gateway
/// it has just seen come up) still shuts it down in order with exit code 0: the handlers are
/// installed before the address is, not when the shutdown future is first polled.
#[tokio::test]
async fn sigterm_right_after_the_address_is_published_is_a_graceful_stop() {
    let dir = tempfile::tempdir().unwrap();
    let hold = [("FAILPOINTS", "gateway-after-publish-address=sleep(1500)")];
    let mut gw = ChildGateway::spawn_with_env(dir.path(), &[], &hold).await;
    let status = gw.terminate().await;
    assert!(status.success(), "{status:?}");
}

/// The environment the process `pid` runs with now (after any re-`exec`), as `NAME=value`.
fn environ_of(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read /proc/<pid>/environ");
    raw.split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

/// The gateway runs with mimalloc told to hand freed memory back at once (what keeps the drain
/// of a large backlog small), under the same pid it was started with, and a setting the
/// operator gave in the environment is kept as given.
#[tokio::test]
async fn the_gateway_runs_with_its_allocator_settings_unless_the_operator_set_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut gw = ChildGateway::spawn(dir.path(), &[]).await;
    let env = environ_of(gw.pid());
    for expected in [
        "MIMALLOC_PURGE_DELAY=0",
        "MIMALLOC_PURGE_DECOMMITS=1",
        "MIMALLOC_ARENA_EAGER_COMMIT=0",
    ] {
        assert!(env.iter().any(|v| v == expected), "{expected} missing");
    }
    let live = reqwest::get(gw.url("/health/live")).await.expect("GET");
    assert_eq!(live.status(), 200);
    assert!(gw.terminate().await.success());

    let mut gw =
        ChildGateway::spawn_with_env(dir.path(), &[], &[("MIMALLOC_PURGE_DELAY", "25")]).await;
    let env = environ_of(gw.pid());
    assert!(
        env.iter().any(|v| v == "MIMALLOC_PURGE_DELAY=25"),
        "{env:?}"
    );
    assert!(env.iter().any(|v| v == "MIMALLOC_PURGE_DECOMMITS=1"));
    assert!(gw.terminate().await.success());
}
