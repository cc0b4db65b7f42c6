//! The dashboard in headless Chromium: `tests/browser/dashboard.spec.mjs` (Playwright) opens
//! `GET /` of a test gateway, posts the seed optimize request and requires the route on the page
//! within 2 s, then a stop status change and a vehicle position, and saves a screenshot.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::browser::{self, Browser};
use crate::harness::gateway::TestGateway;

/// Generous: a run takes about 3 s (most of it starting Chromium) on two shared cores.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(50);

async fn browser() -> &'static Browser {
    tokio::task::spawn_blocking(browser::install)
        .await
        .expect("the browser install does not panic")
}

/// Run the spec against `gw`; returns its one line of timings.
async fn run_spec(gw: &TestGateway, token: Option<&str>, screenshot: &Path) -> String {
    let browser = browser().await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = tokio::process::Command::new(&browser.node);
    cmd.arg(browser::browser_src_dir().join("dashboard.spec.mjs"))
        .env("GATEWAY_URL", gw.url(""))
        .env("BROWSER_MODULES", &browser.modules)
        .env("CHROMIUM", &browser.chromium)
        .env("SEED", root.join("data/samples/optimize-seed.json"))
        .env("SCREENSHOT", screenshot)
        .env_remove("API_TOKEN")
        .kill_on_drop(true);
    if let Some(t) = token {
        cmd.env("API_TOKEN", t);
    }
    let run = tokio::time::timeout(SCRIPT_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("the browser test did not finish in {SCRIPT_TIMEOUT:?}"))
        .expect("run node");
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "the browser test failed ({}):\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    stdout
}

fn screenshot(name: &str) -> PathBuf {
    let path = browser::target_dir().join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_new_route_and_its_stop_changes_within_two_seconds() {
    let gw = TestGateway::spawn(|_| {}).await;
    let shot = screenshot("dashboard.png");
    let timings = run_spec(&gw, None, &shot).await;
    eprintln!("dashboard: {timings} (screenshot {})", shot.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_uses_the_token_from_its_url_when_tokens_are_required() {
    let gw = TestGateway::spawn(|s| s.http.api_tokens = vec!["dash-s3cret".into()]).await;
    // The page itself is public; its data calls are not.
    let page = gw.http.get(gw.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let (status, _) = gw.get_json("/traffic/routes").await;
    assert_eq!(status, 401);
    let shot = screenshot("dashboard-token.png");
    run_spec(&gw, Some("dash-s3cret"), &shot).await;
}
