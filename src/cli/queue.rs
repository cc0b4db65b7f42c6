//! `routegate queue …` and `routegate events`: inspect and repair the outbox without deleting
//! anything that has not been delivered.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, bail};
use chrono::Utc;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use super::access::Access;
use crate::config::Settings;
use crate::http::admin::{DeadLetterJson, PendingJson, QueueStats};

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Depth, bytes, oldest event age, dead letters and circuit state.
    Stats(JsonFlag),
    /// Show the oldest pending events.
    Peek {
        #[arg(long, default_value_t = 10)]
        limit: usize,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Events Kafka refused or that could not be decoded.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Write every pending event to a JSON Lines file (the outbox is not changed).
    Export {
        #[arg(long, value_name = "FILE.jsonl")]
        out: std::path::PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List dead letters, oldest first.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// The records the Kafka consumers could not use, instead of the outbox's dead letters.
        #[arg(long)]
        consumer: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show one dead letter with its event.
    Show { seq: u64 },
    /// Put a dead letter (or all of them) back into the outbox as a new event with the same id.
    Requeue {
        #[arg(required_unless_present = "all")]
        seq: Option<u64>,
        #[arg(long, conflicts_with = "seq")]
        all: bool,
    },
    /// Delete a dead letter for good (asks for confirmation unless --yes).
    Purge {
        seq: u64,
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(settings: &Settings, cmd: QueueCommand) -> anyhow::Result<()> {
    let access = Access::open(settings).await?;
    let result = dispatch(&access, cmd).await;
    access.close().await;
    result
}

async fn dispatch(access: &Access, cmd: QueueCommand) -> anyhow::Result<()> {
    match cmd {
        QueueCommand::Stats(JsonFlag { json }) => {
            let stats = access.stats().await?;
            if json {
                print_json(&stats)
            } else {
                print_stats(&access.describe(), &stats);
                Ok(())
            }
        }
        QueueCommand::Peek { limit, json } => {
            let items = access.pending(0, limit).await?;
            if json.json {
                print_json(&items)
            } else {
                items.iter().for_each(print_pending);
                Ok(())
            }
        }
        QueueCommand::DeadLetters(cmd) => dead_letters(access, cmd).await,
        QueueCommand::Export { out } => export(access, &out).await,
    }
}

async fn dead_letters(access: &Access, cmd: DeadLetterCommand) -> anyhow::Result<()> {
    match cmd {
        DeadLetterCommand::List {
            limit,
            consumer: true,
            json,
        } => {
            let items = access.consumer_dead_letters(limit).await?;
            if json.json {
                return print_json(&items);
            }
            if items.is_empty() {
                crate::cli_outln!("no consumer dead letters");
            }
            for d in &items {
                crate::cli_outln!(
                    "{}/{} offset {}  {}",
                    d.topic.escape_debug(),
                    d.partition,
                    d.offset,
                    d.reason.escape_debug()
                );
            }
            Ok(())
        }
        DeadLetterCommand::List { limit, json, .. } => {
            let items = access.dead_letters(0, limit).await?;
            if json.json {
                return print_json(&items);
            }
            if items.is_empty() {
                crate::cli_outln!("no dead letters");
            }
            items.iter().for_each(print_dead_summary);
            Ok(())
        }
        DeadLetterCommand::Show { seq } => print_json(&access.dead_letter(seq).await?),
        DeadLetterCommand::Requeue { seq: Some(seq), .. } => {
            let e = access.requeue(seq).await?;
            crate::cli_outln!(
                "dead letter {seq} requeued as event {} (id {})",
                e.seq,
                e.id
            );
            Ok(())
        }
        DeadLetterCommand::Requeue { seq: None, .. } => {
            let r = access.requeue_all().await?;
            crate::cli_outln!("requeued {} dead letters", r.requeued.len());
            for (seq, why) in &r.failed {
                crate::cli_outln!("  {seq} not requeued: {why}");
            }
            Ok(())
        }
        DeadLetterCommand::Purge { seq, yes } => {
            let d = access.dead_letter(seq).await?;
            if !yes && !confirm(&format!("purge dead letter {seq} ({})?", d.reason))? {
                bail!("not purged");
            }
            access.purge(seq).await?;
            crate::cli_outln!("dead letter {seq} purged");
            Ok(())
        }
    }
}

async fn export(access: &Access, out: &Path) -> anyhow::Result<()> {
    let total = access.stats().await?.pending_events;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events ({per_sec}, eta {eta})")
            .expect("static template"),
    );
    let (mut after, mut written) = (0, 0u64);
    loop {
        let page = access.pending(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for item in &page {
            serde_json::to_writer(&mut w, item)?;
            w.write_all(b"\n")?;
        }
        written += page.len() as u64;
        bar.set_position(written.min(total));
    }
    w.flush()?;
    bar.finish_and_clear();
    crate::cli_outln!("exported {written} pending events to {}", out.display());
    Ok(())
}

pub async fn route_events(settings: &Settings, route: &str, json: bool) -> anyhow::Result<()> {
    let access = Access::open(settings).await?;
    let events = access.route_events(route).await;
    access.close().await;
    let events = events?;
    if json {
        return print_json(&events);
    }
    if events.is_empty() {
        crate::cli_outln!("no logged events for route {route}");
    }
    for e in events {
        crate::cli_outln!(
            "{:>8}  {}  {:<16} {}",
            e.seq,
            e.created_at.to_rfc3339(),
            e.kind,
            e.payload
        );
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    crate::cli_outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_stats(source: &str, s: &QueueStats) {
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / 1048576.0);
    crate::cli_outln!("source           {source}");
    crate::cli_outln!(
        "pending events   {} ({})",
        s.pending_events,
        mib(s.pending_bytes)
    );
    match s.oldest_pending_at {
        Some(t) => crate::cli_outln!(
            "oldest event     {} ({} s ago)",
            t.to_rfc3339(),
            (Utc::now() - t).num_seconds().max(0)
        ),
        None => crate::cli_outln!("oldest event     -"),
    }
    crate::cli_outln!("dead letters     {}", s.dead_letters);
    crate::cli_outln!(
        "event log        {} events ({})",
        s.log_events,
        mib(s.log_bytes)
    );
    crate::cli_outln!("last sequence    {}", s.last_seq);
    crate::cli_outln!("disk usage       {}", mib(s.disk_bytes));
    for c in &s.consumers {
        crate::cli_outln!(
            "consumed         {}/{} up to offset {}",
            c.topic.escape_debug(),
            c.partition,
            c.next_offset
        );
    }
    match &s.delivery {
        Some(d) => {
            crate::cli_outln!("circuit          {:?}", d.circuit);
            let last = d.last_success_at.map(|t| t.to_rfc3339());
            crate::cli_outln!("last published   {}", last.as_deref().unwrap_or("-"));
            crate::cli_outln!(
                "last error       {}",
                d.last_error.as_deref().unwrap_or("-")
            );
            for p in &d.paused {
                crate::cli_outln!("paused topic     {}: {}", p.topic, p.denied);
                crate::cli_outln!("                 grant it: {}", p.fix);
            }
        }
        None => crate::cli_outln!("circuit          unknown (no gateway running)"),
    }
}

fn print_pending(p: &PendingJson) {
    match (&p.event, &p.corrupt) {
        (Some(e), _) => crate::cli_outln!(
            "{:>8}  {}  {:<16} {:<28} key={} attempts={}",
            e.seq,
            e.created_at.to_rfc3339(),
            e.kind,
            e.topic,
            e.key,
            e.attempts
        ),
        (None, Some(why)) => crate::cli_outln!("{:>8}  CORRUPT: {why}", p.seq),
        (None, None) => crate::cli_outln!("{:>8}  ?", p.seq),
    }
}

fn print_dead_summary(d: &DeadLetterJson) {
    let kind = d
        .event
        .as_ref()
        .map(|e| e.kind.as_str())
        .unwrap_or("(undecodable)");
    crate::cli_outln!(
        "{:>8}  {}  {:<16} attempts={} reason: {}",
        d.seq,
        d.dead_at.to_rfc3339(),
        kind,
        d.attempts,
        d.reason
    );
}

/// Ask on the terminal; refuse when there is no terminal to ask.
fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question} — refusing without a terminal to confirm; pass --yes");
    }
    crate::cli_out!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}
