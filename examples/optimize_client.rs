//! Send an optimize request and print the plan.
//!
//! ```sh
//! cargo run --example optimize_client                                  # data/samples/optimize-seed.json
//! cargo run --example optimize_client -- --url http://depot-7:4000 --token "$TOKEN" my-stops.json
//! ```
//!
//! Posts the file to `POST /traffic/routes/optimize` and prints the route: the stops in their
//! optimized order with arrival and departure times, legs and time windows, then the totals, the
//! optimizer's report and any warnings. A refused request prints the gateway's JSON error
//! (`{error, message, field?}`) and exits with status 1; `--json` prints the answer as is.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, FixedOffset};
use clap::Parser;
use serde_json::Value;

#[derive(Debug, Parser)]
#[command(about = "Post an optimize request to routegate and print the plan")]
struct Args {
    /// The gateway.
    #[arg(long, default_value = "http://127.0.0.1:4000")]
    url: String,
    /// API token, when the gateway requires one.
    #[arg(long, env = "ROUTEGATE_TOKEN")]
    token: Option<String>,
    /// Print the gateway's JSON answer instead of the table.
    #[arg(long)]
    json: bool,
    /// The request body (default: the seed request of data/samples).
    file: Option<PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("optimize_client: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> Result<ExitCode, String> {
    let file = args.file.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/samples/optimize-seed.json")
    });
    let body = std::fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let url = format!("{}/traffic/routes/optimize", args.url.trim_end_matches('/'));
    let mut req = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(t) = &args.token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.map_err(|e| format!("POST {url}: {e}"))?;
    let status = res.status();
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = res
        .text()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?;
    let json: Option<Value> = serde_json::from_str(&text).ok();
    if args.json {
        println!("{text}");
    }
    if !status.is_success() {
        print_error(status.as_u16(), json.as_ref(), &text);
        return Ok(ExitCode::FAILURE);
    }
    let route = json.ok_or_else(|| format!("{status}, but the answer is not JSON: {text}"))?;
    if !args.json {
        print_plan(&route, location.as_deref());
    }
    Ok(ExitCode::SUCCESS)
}

fn print_error(status: u16, json: Option<&Value>, text: &str) {
    match json {
        Some(e) if e["error"].is_string() => {
            eprintln!(
                "refused: {status} {}: {}",
                e["error"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default()
            );
            if let Some(field) = e["field"].as_str() {
                eprintln!("  field: {field}");
            }
        }
        _ => eprintln!("refused: {status}: {text}"),
    }
}

fn time(v: &Value) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(v.as_str()?).ok()
}

fn clock(v: &Value) -> String {
    time(v).map_or_else(|| "-".into(), |t| t.format("%H:%M:%S").to_string())
}

fn km(v: &Value) -> String {
    format!("{:.1}", v.as_f64().unwrap_or(0.0) / 1000.0)
}

fn minutes(v: &Value) -> String {
    format!("{:.0}", v.as_f64().unwrap_or(0.0) / 60.0)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn print_plan(r: &Value, location: Option<&str>) {
    let departs = time(&r["departureTime"]);
    println!(
        "route {}  vehicle {}  {}",
        text(&r["routeId"]),
        text(&r["vehicleId"]),
        text(&r["status"])
    );
    if let Some(l) = location {
        println!("  at {l}");
    }
    if let Some(d) = departs {
        println!("  departs {}", d.format("%Y-%m-%d %H:%M:%S %:z"));
    }
    println!();
    println!(
        "{:>3}  {:<16} {:>8} {:>8} {:>7} {:>6} {:>6}  {:<8} address",
        "#", "stop", "arrive", "leave", "leg km", "min", "wait", "window"
    );
    let stops = r["optimizedStops"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    for s in stops {
        let window = if s["timeWindowMet"].as_bool() == Some(false) {
            format!("late {}m", minutes(&s["latenessSeconds"]))
        } else {
            "ok".into()
        };
        println!(
            "{:>3}  {:<16} {:>8} {:>8} {:>7} {:>6} {:>6}  {:<8} {}",
            s["sequence"].as_u64().unwrap_or(0),
            text(&s["id"]),
            clock(&s["arrivalTime"]),
            clock(&s["departureTime"]),
            km(&s["distanceFromPreviousMeters"]),
            minutes(&s["durationFromPreviousSeconds"]),
            minutes(&s["waitingSeconds"]),
            window,
            s["address"].as_str().unwrap_or("")
        );
    }
    println!();
    println!(
        "total     {} km, {} min driving, {} min in all, {} min late; finishes {}",
        km(&r["totalDistanceMeters"]),
        minutes(&r["totalDrivingSeconds"]),
        minutes(&r["totalDurationSeconds"]),
        minutes(&r["totalLatenessSeconds"]),
        clock(&r["finishTime"])
    );
    let o = &r["optimization"];
    if o.is_object() {
        let optimal = if o["provablyOptimal"].as_bool() == Some(true) {
            ", provably optimal"
        } else {
            ""
        };
        let capped = if o["timeLimitReached"].as_bool() == Some(true) {
            ", stopped by the time limit"
        } else {
            ""
        };
        println!(
            "optimizer {}{optimal}{capped}: {} {:.0} -> {:.0} ({:.1}% better), {} iterations in {} ms",
            text(&o["algorithm"]),
            text(&o["objective"]),
            o["initialCost"].as_f64().unwrap_or(0.0),
            o["optimizedCost"].as_f64().unwrap_or(0.0),
            o["improvementPercent"].as_f64().unwrap_or(0.0),
            o["iterations"].as_u64().unwrap_or(0),
            o["computeMillis"].as_u64().unwrap_or(0)
        );
    }
    let warnings = r["warnings"].as_array().map_or(&[][..], Vec::as_slice);
    for w in warnings {
        println!("warning   {}", w.as_str().unwrap_or_default());
    }
}
