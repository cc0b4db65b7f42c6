//! The command line: `routegate serve`, `routegate config`, and the operator commands.
//!
//! Flags are the highest configuration layer; they are turned into [`Overrides`] here and merged
//! by [`crate::config::load`]. This is an edge of the program, so errors are `anyhow` and become a
//! message on stderr and a non-zero exit code.

mod access;
pub mod output;
mod queue;
mod restore;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::app::{App, shutdown_signal};
use crate::config::{self, Layered, Overrides};
use crate::telemetry;

/// routegate: route optimization at the edge, with every event delivered to Kafka.
#[derive(Debug, Parser)]
#[command(name = "routegate", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML configuration file (keys as printed by `routegate config`).
    #[arg(long, global = true, value_name = "FILE", env = "ROUTEGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory holding all runtime state [default: ./data/state].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, global = true, value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Set any configuration key, e.g. `--set kafka.linger_ms=20` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Print the effective configuration (secrets redacted), each key with where it came from.
    Config,
    /// Inspect and repair the outbox (through the running gateway, or the data directory).
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// A route's audit trail from the local event log.
    Events {
        /// The route id.
        #[arg(long)]
        route: String,
        #[command(flatten)]
        json: queue::JsonFlag,
    },
    /// Kafka connectivity.
    #[command(subcommand)]
    Kafka(KafkaCommand),
    /// The road network.
    #[command(subcommand)]
    Graph(GraphCommand),
    /// Rebuild the depot's routes and event log in a new --data-dir from Kafka, after its disk
    /// was lost (with a progress bar; run it again to resume).
    Restore(restore::RestoreArgs),
}

#[derive(Debug, Subcommand)]
pub enum GraphCommand {
    /// Prepare the road graph of an OpenStreetMap extract in the data directory, so that
    /// `serve` loads it at once (it would otherwise prepare it on its first start).
    Build {
        /// The `.osm.pbf` extract [default: routing.osm_file].
        #[arg(long, value_name = "FILE")]
        osm: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KafkaCommand {
    /// Connect with the configured settings, list the topics, time the metadata request and
    /// say what is wrong if it fails (exit code 1).
    Check(queue::JsonFlag),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:4000].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
    /// OpenStreetMap extract whose roads every cost follows [default: routing.osm_file].
    #[arg(long, value_name = "FILE")]
    pub osm: Option<PathBuf>,
}

impl Cli {
    /// The configuration layers this invocation asks for.
    pub fn overrides(&self) -> anyhow::Result<Overrides> {
        let g = &self.global;
        let mut flags = Vec::new();
        if let Some(dir) = &g.data_dir {
            let dir = dir.to_str().context("--data-dir must be valid UTF-8")?;
            flags.push((
                "storage.data_dir".into(),
                dir.to_string(),
                "--data-dir".into(),
            ));
        }
        if let Some(format) = &g.log_format {
            flags.push(("log.format".into(), format.clone(), "--log-format".into()));
        }
        if let Command::Serve(ServeArgs {
            bind: Some(bind), ..
        }) = &self.command
        {
            flags.push(("http.bind".into(), bind.clone(), "--bind".into()));
        }
        let osm = match &self.command {
            Command::Serve(ServeArgs { osm, .. }) | Command::Graph(GraphCommand::Build { osm }) => {
                osm.as_ref()
            }
            _ => None,
        };
        if let Some(osm) = osm {
            let osm = osm.to_str().context("--osm must be valid UTF-8")?;
            flags.push(("routing.osm_file".into(), osm.to_string(), "--osm".into()));
        }
        for kv in &g.set {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--set {kv}: expected KEY=VALUE"))?;
            flags.push((k.trim().to_string(), v.to_string(), format!("--set {k}")));
        }
        Ok(Overrides {
            config_file: g.config.clone(),
            dotenv_file: Some(PathBuf::from(".env")),
            env: std::env::vars().collect(),
            flags,
        })
    }
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    let layered = match cli.overrides().and_then(|o| Ok(config::load(&o)?)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("routegate: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Serve(_) => serve(layered),
        Command::Config => {
            crate::cli_out!("{}", layered.render());
            Ok(())
        }
        Command::Queue(cmd) => block_on(queue::run(&layered.settings, cmd)),
        Command::Events { route, json } => {
            block_on(queue::route_events(&layered.settings, &route, json.json))
        }
        Command::Kafka(KafkaCommand::Check(json)) => {
            block_on(kafka_check(&layered.settings, json.json))
        }
        Command::Graph(GraphCommand::Build { .. }) => graph_build(&layered.settings),
        Command::Restore(args) => block_on(restore::run(&layered.settings, args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("routegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Operator commands run on a small current-thread runtime.
fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(f: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(f)
}

async fn kafka_check(settings: &crate::config::Settings, json: bool) -> anyhow::Result<()> {
    let r = crate::publisher::kafka::check(&settings.kafka).await?;
    if json {
        crate::cli_outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        crate::cli_outln!("brokers          {}", r.brokers.join(","));
        crate::cli_outln!("metadata         {} ms", r.metadata_millis);
        if r.ok {
            crate::cli_outln!("topics           {}", r.topics.len());
            for (name, partitions) in &r.topics {
                crate::cli_outln!("  {name} ({partitions} partitions)");
            }
            for t in &r.missing_topics {
                crate::cli_outln!("  {t} missing: routegate creates it on first use");
            }
        } else {
            crate::cli_outln!("error            {}", r.error.as_deref().unwrap_or("-"));
            for h in &r.hints {
                crate::cli_outln!("hint             {h}");
            }
        }
    }
    if r.ok {
        Ok(())
    } else {
        anyhow::bail!("kafka check failed")
    }
}

/// Prepares (or checks) the road graph of `routing.osm_file` in the data directory.
fn graph_build(settings: &crate::config::Settings) -> anyhow::Result<()> {
    let osm = PathBuf::from(&settings.routing.osm_file);
    if settings.routing.osm_file.is_empty() {
        anyhow::bail!("no extract: give --osm FILE or set routing.osm_file");
    }
    let data_dir = &settings.storage.data_dir;
    let started = std::time::Instant::now();
    let (roads, origin) = crate::roads::Roads::open(&osm, data_dir)?;
    let verb = match origin {
        crate::roads::Origin::Built => "prepared",
        crate::roads::Origin::Loaded => "already prepared, loaded",
    };
    crate::cli_outln!(
        "{verb} {} in {:.1} s: {} junctions, {} road stretches -> {}",
        roads.info.extract,
        started.elapsed().as_secs_f64(),
        roads.info.nodes,
        roads.info.edges,
        crate::roads::graph_path(data_dir, &osm).display()
    );
    Ok(())
}

fn serve(layered: Layered) -> anyhow::Result<()> {
    let settings = layered.settings;
    telemetry::init(&settings.log);
    let _faults = crate::faults::install_from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("routegate")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let app = App::build(settings).await?;
        app.run_until(shutdown_signal()).await?;
        Ok(())
    })
}
