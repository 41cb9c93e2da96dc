//! `wafleet-bench`: load harnesses that run the fleet as a user would. `wafleet-bench fleet`
//! (`just bench-fleet`) starts ingest, dispatcher, webhooks and the Meta simulator as separate
//! release processes on a fresh database and AMQP prefix, measures the broker's and the
//! database's raw ceilings, pushes N messages through each intake path and reports throughput,
//! latency, drain times and each process's CPU and memory, as a table and as JSON.
//!
//! `wafleet-bench chaos` (`just chaos`) runs the fleet the same way on a PostgreSQL server and
//! a RabbitMQ node of its own while it kills processes, restarts the servers and makes Meta
//! misbehave, then audits every message (see `chaos`).
//!
//! Neither is a test `just test` runs: a benchmark, and a run of several minutes.

mod broker_work;
mod ceilings;
mod chaos;
mod confirms;
mod db_work;
mod fleet;
mod load;
mod measure;
mod procs;
mod report;
mod resources;
mod run;
mod stats;
mod tenant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "wafleet-bench", about = "Load harnesses for the wafleet fleet")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The whole fleet as separate processes: every intake path, the raw ceilings beside it.
    Fleet(FleetArgs),
    /// The fleet under faults on private servers: nothing lost, sent twice, stuck or over the cap.
    Chaos(chaos::ChaosArgs),
}

/// Flags of `wafleet-bench fleet`.
#[derive(Args, Debug, Clone)]
pub struct FleetArgs {
    /// Messages pushed through each path.
    #[arg(long, default_value_t = 100_000)]
    pub messages: u32,
    /// The paths to run, in order, each on a clean simulator record.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "amqp,http,campaign"
    )]
    pub paths: Vec<load::Path>,
    /// Seconds a path may take, from its first message until every status is recorded.
    #[arg(long, default_value_t = 600)]
    pub drain_timeout: u64,
    /// Seconds without any message changing state after which a path stops waiting (its
    /// unfinished messages are reported).
    #[arg(long, default_value_t = 60)]
    pub stall_timeout: u64,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/bench-fleet.json")]
    pub json: PathBuf,
    /// Run ANALYZE before each path (off by default: hot queries must stay index-driven
    /// without table statistics).
    #[arg(long)]
    pub analyze: bool,
    /// Outstanding publisher confirms of the AMQP intake load.
    #[arg(long, default_value_t = 1000)]
    pub confirm_window: usize,
    /// Concurrent `POST /v1/messages` requests.
    #[arg(long, default_value_t = 256)]
    pub http_concurrency: usize,
    /// Offered load of the AMQP and HTTP paths in messages per second (open loop: message i is
    /// pushed at i / rate seconds, whatever the fleet answers); 0 pushes as fast as possible.
    /// Latency figures mean something only below the fleet's maximum: measure that first.
    #[arg(long, default_value_t = 0.0)]
    pub offered_rate: f64,
    /// How many of the tenant's 20 senders the AMQP and HTTP paths use (1 measures one number
    /// at its full rate).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub senders: u32,
    /// Messages through the quorum queue for the broker ceiling.
    #[arg(long, default_value_t = 100_000)]
    pub ceiling_messages: u64,
    /// Rows written (then updated) for the database ceiling.
    #[arg(long, default_value_t = 100_000)]
    pub ceiling_rows: usize,
    /// The PostgreSQL server's maintenance database; the run creates and drops its own beside it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pub database_url: String,
    /// The RabbitMQ broker; the run's queues use a random prefix and are deleted at the end.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    /// The `wafleet` binary (default: the one beside this binary, i.e. the release build).
    #[arg(long)]
    pub wafleet: Option<PathBuf>,
    /// `RUST_LOG` of the services.
    #[arg(long, default_value = "warn")]
    pub log_level: String,
    /// Where the services' logs go.
    #[arg(long, default_value = "target/bench-fleet")]
    pub run_dir: PathBuf,
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match Cli::parse().command {
        Command::Fleet(args) => runtime.block_on(fleet_bench(args)).map(|()| true),
        Command::Chaos(args) => runtime.block_on(chaos::chaos(args)),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Creates the run's resources, runs, and always stops the fleet and removes the resources,
/// also on an error or Ctrl-C.
async fn fleet_bench(mut args: FleetArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.run_dir)
        .with_context(|| format!("creating {}", args.run_dir.display()))?;
    // The services run in the run directory: absolute, so `--wafleet` and logs resolve.
    args.run_dir = std::fs::canonicalize(&args.run_dir)?;
    let res =
        resources::Resources::create(&args.database_url, &args.amqp_url, &args.run_dir).await?;
    let mut fleet = None;
    let outcome = tokio::select! {
        r = run::run(&args, &res, &mut fleet) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(mut fleet) = fleet {
        println!("\nstopping the fleet and removing the run's database and queues…");
        tokio::task::spawn_blocking(move || fleet.stop()).await?;
    }
    res.remove().await;
    let report = outcome?;
    println!("\n{}", report.render());
    report::write_json(&args.json, &report)?;
    println!("JSON report: {}", args.json.display());
    Ok(())
}
