//! Servers of a run's own: a RabbitMQ node ([`PrivateBroker`]) or cluster of nodes
//! ([`PrivateCluster`]) and a PostgreSQL server ([`PrivatePostgres`]), each from the installed binaries, on free loopback ports, with every
//! file in a temporary directory. A test or the chaos run (`just chaos`) can stop and start
//! them under load without touching the shared servers on 5672 and 5432. Dropping one kills it
//! and removes its directory, also after a panic or an error.

mod broker;
mod cluster;
mod front;
mod ports;
mod postgres;

pub use broker::PrivateBroker;
pub use cluster::PrivateCluster;
pub use postgres::PrivatePostgres;

use anyhow::{Context, bail};
use std::process::Command;

/// Runs `cmd` off the async threads (a fleet on the same runtime keeps running meanwhile) and
/// returns its standard output; fails with its output when it exits non-zero.
async fn run(mut cmd: Command, what: &str) -> anyhow::Result<String> {
    let what = what.to_owned();
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await?
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `lines` lines of a log file, for an error message.
fn tail(path: &std::path::Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
