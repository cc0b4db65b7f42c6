//! The operator CLI against a running gateway (through its admin API) and against a stopped
//! one's data directory.

use std::path::Path;
use std::process::Output;

use routegate::events::NewEvent;
use routegate::queue::Write;

use crate::harness::gateway::{ChildGateway, Dir, TestGateway};
use crate::harness::kafka;

fn cli(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_routegate"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run routegate")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

async fn append(gw: &TestGateway, topic: &str, n: usize) {
    let events = (0..n)
        .map(|i| NewEvent::now("test.event", topic, "veh-1", Some("route-7"), &i))
        .collect();
    gw.outbox()
        .append(Write {
            events,
            records: vec![],
        })
        .await
        .expect("append");
}

async fn wait_for_dead_letters(gw: &TestGateway, n: u64) {
    for _ in 0..200 {
        if gw.outbox().stats().dead_letters >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no dead letters: {:?}", gw.outbox().stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_requeued_and_purged_through_the_running_gateway() {
    let gw = TestGateway::spawn(|_| {}).await;
    let dir = gw.dir.path().to_path_buf();
    append(&gw, "not a valid topic!", 2).await;
    wait_for_dead_letters(&gw, 2).await;

    let stats = json(&cli(&dir, &["queue", "stats", "--json"]));
    assert_eq!(stats["deadLetters"], 2);
    assert!(
        stats["delivery"]["circuit"].is_string(),
        "answered by the running gateway"
    );

    let list = json(&cli(&dir, &["queue", "dead-letters", "list", "--json"]));
    let seq = list[0]["seq"].as_u64().unwrap();
    assert!(
        list[0]["reason"]
            .as_str()
            .unwrap()
            .contains("invalid topic name")
    );
    let shown = json(&cli(
        &dir,
        &["queue", "dead-letters", "show", &seq.to_string()],
    ));
    assert_eq!(shown["event"]["key"], "veh-1");

    let out = cli(
        &dir,
        &["queue", "dead-letters", "requeue", &seq.to_string()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("requeued as event 3"));

    let refused = cli(
        &dir,
        &[
            "queue",
            "dead-letters",
            "purge",
            &list[1]["seq"].to_string(),
        ],
    );
    assert!(
        !refused.status.success(),
        "purge without --yes and no terminal must refuse"
    );
    let purged = cli(
        &dir,
        &[
            "queue",
            "dead-letters",
            "purge",
            &list[1]["seq"].to_string(),
            "--yes",
        ],
    );
    assert!(
        purged.status.success(),
        "{}",
        String::from_utf8_lossy(&purged.stderr)
    );
    let events = json(&cli(&dir, &["events", "--route", "route-7", "--json"]));
    assert_eq!(events.as_array().unwrap().len(), 3, "{events}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_gateway_running_the_cli_reads_the_directory_and_exports_every_pending_event() {
    let gw = TestGateway::spawn(|_| {}).await;
    append(&gw, "orders", 25).await;
    let dir = gw.stop().await;

    let stats = json(&cli(dir.path(), &["queue", "stats", "--json"]));
    assert_eq!(
        (stats["pendingEvents"].as_u64(), stats["delivery"].is_null()),
        (Some(25), true)
    );
    let peek = json(&cli(
        dir.path(),
        &["queue", "peek", "--limit", "3", "--json"],
    ));
    assert_eq!(peek.as_array().unwrap().len(), 3);

    let file = dir.path().join("export.jsonl");
    let out = cli(
        dir.path(),
        &["queue", "export", "--out", file.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 25);
    assert_eq!(lines[24]["event"]["payload"], 24);

    let again = TestGateway::spawn_in(dir, |_| {}).await;
    assert_eq!(
        again.outbox().stats().pending_events,
        25,
        "export changed nothing"
    );
    again.stop().await;
}

#[test]
fn a_mistyped_data_directory_is_an_error_not_a_new_empty_queue() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("no-such-dir");
    let out = cli(&missing, &["queue", "stats"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no data directory at"), "{stderr}");
    assert!(!missing.exists(), "the CLI created {}", missing.display());
}

#[tokio::test]
async fn kafka_check_lists_topics_of_a_live_broker_and_explains_a_dead_one() {
    let cluster = kafka::shared().await;
    let topic = kafka::unique_topic("check");
    cluster.create_topic(&topic, 2, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = format!("kafka.brokers={}", cluster.bootstrap());
    let ok = json(&cli(
        dir.path(),
        &["kafka", "check", "--json", "--set", &bootstrap],
    ));
    assert_eq!(ok["ok"], true);
    assert_eq!(ok["topics"][&topic], 2);

    let dead = cli(
        dir.path(),
        &[
            "kafka",
            "check",
            "--set",
            "kafka.brokers=127.0.0.1:9",
            "--set",
            "kafka.request_timeout_ms=500",
        ],
    );
    assert_eq!(dead.status.code(), Some(1));
    let text = String::from_utf8_lossy(&dead.stdout);
    assert!(text.contains("is the broker running"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_prints_hostile_ids_escaped_and_exits_quietly_on_a_closed_pipe() {
    let gw = TestGateway::spawn(|_| {}).await;
    let hostile = "veh-\u{1b}]0;pwned\u{7}\u{1b}[2J";
    gw.outbox()
        .append(Write {
            events: vec![NewEvent::now("test.event", "t", hostile, None, &1)],
            records: vec![],
        })
        .await
        .expect("append");
    let dir = gw.stop().await;

    let peek = cli(dir.path(), &["queue", "peek"]);
    assert!(
        peek.status.success(),
        "{}",
        String::from_utf8_lossy(&peek.stderr)
    );
    assert!(
        !peek.stdout.contains(&0x1b) && !peek.stdout.contains(&0x07),
        "raw control bytes reached the terminal: {:?}",
        String::from_utf8_lossy(&peek.stdout)
    );
    let shown = String::from_utf8_lossy(&peek.stdout);
    assert!(
        shown.contains(r"veh-\u{1b}]0;pwned\u{7}\u{1b}[2J"),
        "{shown}"
    );

    // `routegate queue stats | head -0`: the reader is gone before anything is written.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_routegate"))
        .args(["queue", "stats", "--data-dir"])
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .expect("run routegate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Logs an operator can trust: the health endpoints a dashboard polls answer 503 while Kafka is
/// away without a warning per poll, a log written to a file carries no colour codes, and the
/// start line says what waits in the outbox, the durability mode and where events go.
#[tokio::test]
async fn polled_health_503s_are_not_warnings_and_file_logs_carry_no_colour() {
    let dir = Dir::fresh();
    let log = dir.path().join("child.log");
    let sets = [("kafka.brokers", "127.0.0.1:9".to_string())];
    let mut gw = ChildGateway::spawn_logging(dir.path(), &sets, &log).await;
    let client = reqwest::Client::new();
    let mut unavailable = 0;
    for _ in 0..5 {
        let answer = client
            .get(gw.url("/traffic/routes/kafka-health"))
            .send()
            .await
            .expect("kafka-health answers");
        unavailable += usize::from(answer.status() == 503);
    }
    assert!(
        unavailable > 0,
        "kafka-health never answered 503 without a broker"
    );
    gw.terminate().await;
    let logged = std::fs::read_to_string(&log).expect("the child's log");
    assert!(
        !logged.contains('\u{1b}'),
        "colour codes in a log file:\n{logged}"
    );
    let start = logged
        .lines()
        .find(|l| l.contains("routegate listening"))
        .expect("a start line");
    for field in [
        "pending_events=0",
        "durability=Strict",
        "brokers=127.0.0.1:9",
    ] {
        assert!(
            start.contains(field),
            "{field} missing from the start line: {start}"
        );
    }
    let alarms: Vec<&str> = logged
        .lines()
        .filter(|l| (l.contains("WARN") || l.contains("ERROR")) && l.contains("kafka-health"))
        .collect();
    assert!(
        alarms.is_empty(),
        "polls logged as failures:\n{}",
        alarms.join("\n")
    );
}

/// Metrics an operator can alert on from the first scrape: every series has `# HELP`, the
/// circuit and the publish results exist before anything happened, and the process, uptime,
/// build and free-disk series are there.
#[tokio::test]
async fn metrics_exist_from_the_first_scrape_with_help_lines() {
    let dir = Dir::fresh();
    let sets = [("kafka.brokers", "127.0.0.1:9".to_string())];
    let mut gw = ChildGateway::spawn(dir.path(), &sets).await;
    let text = reqwest::get(gw.url("/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text");
    gw.terminate().await;
    let value = |series: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    assert_eq!(value("routegate_circuit_state"), Some(0.0), "{text}");
    for result in ["ok", "retry", "dead_letter"] {
        let series = format!("routegate_kafka_publish_total{{result=\"{result}\"}}");
        assert_eq!(value(&series), Some(0.0), "{series} missing:\n{text}");
    }
    let version = env!("CARGO_PKG_VERSION");
    let build = format!("routegate_build_info{{version=\"{version}\"}}");
    assert_eq!(value(&build), Some(1.0), "{text}");
    for series in [
        "routegate_uptime_seconds",
        "process_resident_memory_bytes",
        "process_open_fds",
        "routegate_data_dir_free_bytes",
    ] {
        assert!(
            value(series).is_some_and(|v| v > 0.0),
            "{series} missing:\n{text}"
        );
    }
    let names: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| n.strip_suffix(suffix))
                .unwrap_or(n)
        })
        .collect();
    for name in names {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no # HELP line for {name}:\n{text}"
        );
    }
}
