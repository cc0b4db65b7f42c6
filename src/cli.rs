//! The command line: `routegate serve`, `routegate config`, and the operator commands.
//!
//! Flags are the highest configuration layer; they are turned into [`Overrides`] here and merged
//! by [`crate::config::load`]. This is an edge of the program, so errors are `anyhow` and become a
//! message on stderr and a non-zero exit code.

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
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:4000].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
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
        if let Command::Serve(ServeArgs { bind: Some(bind) }) = &self.command {
            flags.push(("http.bind".into(), bind.clone(), "--bind".into()));
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
            print!("{}", layered.render());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("routegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(layered: Layered) -> anyhow::Result<()> {
    let settings = layered.settings;
    telemetry::init(&settings.log);
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
