//! `wafleet-bench chaos` (`just chaos`): the README's guarantees, checked against real
//! processes under faults. It starts a PostgreSQL server and a RabbitMQ node of its own
//! (`wafleet-nodes`, temporary directories, free ports), the fleet as separate release
//! processes (ingest, two dispatchers on every shard, webhooks, meta-sim), and two tenants: one
//! with an unlimited tier taking `--messages` (half HTTP, half AMQP), one with a small tier
//! taking `--cap-messages`, both at a steady offered rate. Meanwhile [`schedule`] kills and
//! restarts processes and servers and makes Meta misbehave. Then it waits for every message to
//! be final and audits each one ([`audit`]) against what Meta recorded.

mod audit;
mod evidence;
mod faults;
mod owners;
mod push;
mod report;
mod schedule;
mod setup;

use crate::fleet::{Fleet, wafleet_binary};
use crate::load::{self, LoadTuning, Path};
use crate::measure::{self, CAP_HELD, FINAL};
use crate::resources::Resources;
use anyhow::Context;
use report::{ChaosReport, TenantResult, Totals, failures};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use wafleet_nodes::{PrivateCluster, PrivatePostgres};

/// Flags of `wafleet-bench chaos`.
#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Messages to the main tenant, half over HTTP and half over AMQP intake.
    #[arg(long, default_value_t = 20_000)]
    pub messages: u32,
    /// Messages (to distinct recipients) to the tenant with a small tier, half over each path.
    #[arg(long, default_value_t = 500)]
    pub cap_messages: u32,
    /// RabbitMQ nodes: 1, or a cluster (e.g. 3) behind a front door, whose node leading the
    /// dispatch queues is the one stopped instead of a broker restart.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub nodes: u8,
    /// That tenant's tier (one of Meta's: 250, 2000, …).
    #[arg(long, default_value_t = 250)]
    pub cap_tier: i32,
    /// Offered load of the main tenant in messages per second (both paths together); the
    /// small-tier tenant's messages are spread over the same time.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// `dispatch.ambiguous_resend_after` of the dispatchers: how long a message whose answer
    /// was lost waits for its status webhook before it is sent again (default 10 min).
    #[arg(long, default_value = "30s")]
    pub ambiguous_resend_after: String,
    /// `dispatch.retry_tiers` of the dispatchers (default 5s,30s,2m,10m), so a message that
    /// met several 5xx in a row does not hold the run for minutes.
    #[arg(long, default_value = "5s,10s,20s,40s,60s")]
    pub retry_tiers: String,
    /// How long the load tries one message again (same idempotency key) while the fleet does
    /// not accept it, as an upstream service would.
    #[arg(long, default_value_t = 120)]
    pub retry_for: u64,
    /// Concurrent `POST /v1/messages` requests.
    #[arg(long, default_value_t = 512)]
    pub http_concurrency: usize,
    /// Seconds the drain may take after the load and the faults are over.
    #[arg(long, default_value_t = 900)]
    pub drain_timeout: u64,
    /// Seconds without any message changing state after which the drain stops waiting.
    #[arg(long, default_value_t = 180)]
    pub stall_timeout: u64,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/chaos.json")]
    pub json: PathBuf,
    /// The `wafleet` binary (default: the one beside this binary, i.e. the release build).
    #[arg(long)]
    pub wafleet: Option<PathBuf>,
    /// `RUST_LOG` of the services.
    #[arg(long, default_value = "warn")]
    pub log_level: String,
    /// Where the services' logs go (kept after the run).
    #[arg(long, default_value = "target/chaos")]
    pub run_dir: PathBuf,
}

/// Connections the private PostgreSQL allows: five services' pools and the run's own.
const MAX_CONNECTIONS: u32 = 200;

/// Runs the whole thing; `Ok(true)` when every check passed. The fleet is stopped and the
/// private servers removed whatever happens.
pub async fn chaos(mut args: ChaosArgs) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&args.run_dir)
        .with_context(|| format!("creating {}", args.run_dir.display()))?;
    args.run_dir = std::fs::canonicalize(&args.run_dir)?;
    println!(
        "starting a private PostgreSQL server and {} RabbitMQ node(s)…",
        args.nodes
    );
    let mut database = PrivatePostgres::start(MAX_CONNECTIONS).await?;
    let mut broker = PrivateCluster::start(usize::from(args.nodes)).await?;
    let res = Resources::create(&database.admin_url(), &broker.amqp_url(), &args.run_dir).await?;
    let mut slot = None;
    let outcome = tokio::select! {
        r = run(&args, &res, &mut database, &mut broker, &mut slot) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    if let Some(mut fleet) = slot {
        println!("\nstopping the fleet and the private servers…");
        tokio::task::spawn_blocking(move || fleet.stop()).await?;
    }
    drop((broker, database));
    let report = outcome?;
    println!("\n{}", report.render());
    crate::report::write_json(&args.json, &report)?;
    println!(
        "JSON report: {}; service logs in {}",
        args.json.display(),
        args.run_dir.display()
    );
    Ok(report.passed)
}

async fn run(
    args: &ChaosArgs,
    res: &Resources,
    database: &mut PrivatePostgres,
    broker: &mut PrivateCluster,
    slot: &mut Option<Fleet>,
) -> anyhow::Result<ChaosReport> {
    let started_at = chrono::Utc::now();
    let bin = wafleet_binary(args.wafleet.clone())?;
    let http = reqwest::Client::new();
    let env = setup::service_env(args);
    println!(
        "starting the fleet ({}); logs in {}",
        bin.display(),
        args.run_dir.display()
    );
    let fleet =
        slot.insert(Fleet::start(bin, &args.run_dir, res, &http, &args.log_level, &env).await?);
    let pool = wafleet_core::db::connect(&res.database_url, 4, "wafleet-chaos").await?;
    let tenants = setup::tenants(fleet, &http, &pool, res, args.cap_tier).await?;
    let dispatchers = setup::dispatchers(fleet, &http).await?;

    let n_http = args.messages / 2;
    let load_for = Duration::from_secs_f64(f64::from(args.messages) / args.rate.max(0.1));
    let steps = schedule::schedule(load_for);
    let tuning = |run_id: String, rate: f64| LoadTuning {
        confirm_window: 0,
        http_concurrency: args.http_concurrency,
        run_id,
        offered_rate: Some(rate.max(0.01)),
        senders: crate::tenant::SENDERS,
        retry_for: Some(Duration::from_secs(args.retry_for)),
    };
    let main_tuning = tuning(format!("{}-main", res.prefix), args.rate / 2.0);
    let cap_rate = f64::from(args.cap_messages) / load_for.as_secs_f64() / 2.0;
    let cap_tuning = tuning(format!("{}-cap", res.prefix), cap_rate);
    let (ingest, amqp_url) = (fleet.ingest_url.clone(), res.amqp_url.clone());
    let exchange = res.topology().intake_exchange();
    let broker_settings = res.settings.broker.clone();
    let ready = dispatchers
        .iter()
        .cloned()
        .chain([
            ("ingest", ingest.clone()),
            ("webhooks", fleet.webhooks_url.clone()),
        ])
        .map(|(name, url)| (name, format!("{url}/readyz")))
        .collect();
    let mut target = faults::Target {
        fleet,
        broker,
        dispatch_queues: format!("{}.dispatch.", res.prefix),
        database,
        http: &http,
        ready,
        dispatchers,
    };
    println!(
        "pushing {} + {} messages over {:.0} s while the faults run:",
        args.messages,
        args.cap_messages,
        load_for.as_secs_f64()
    );
    let since = chrono::Utc::now();
    let started = Instant::now();
    let cap_http = args.cap_messages / 2;
    let (main_http, main_amqp, cap_http_out, cap_amqp, timeline) = tokio::join!(
        load::http(&ingest, &tenants.main, n_http, &main_tuning),
        push::amqp(
            &amqp_url,
            &broker_settings,
            &exchange,
            &tenants.main,
            args.messages - n_http,
            &main_tuning
        ),
        load::http(&ingest, &tenants.cap, cap_http, &cap_tuning),
        push::amqp(
            &amqp_url,
            &broker_settings,
            &exchange,
            &tenants.cap,
            args.cap_messages - cap_http,
            &cap_tuning
        ),
        faults::run(&mut target, &steps, started),
    );
    let (main_http, main_amqp, cap_http_out, cap_amqp) =
        (main_http?, main_amqp?, cap_http_out?, cap_amqp?);
    let load_seconds = started.elapsed().as_secs_f64();
    let fleet = target.fleet;
    println!(
        "load and faults over after {load_seconds:.1} s; waiting for every message to be final…"
    );

    let drain_started = Instant::now();
    let bounds = measure::Bounds {
        started: drain_started,
        timeout: Duration::from_secs(args.drain_timeout),
        stall: Duration::from_secs(args.stall_timeout),
    };
    let cap_settled: Vec<&str> = FINAL.iter().copied().chain([CAP_HELD]).collect();
    let mut finished = true;
    for (tenant, outs, settled) in [
        (&tenants.main, [&main_http, &main_amqp], &FINAL[..]),
        (&tenants.cap, [&cap_http_out, &cap_amqp], &cap_settled[..]),
    ] {
        let expected = outs.iter().map(|o| o.accepted).sum();
        let drain = measure::drain(
            &pool,
            fleet,
            tenant.id.parse()?,
            since,
            expected,
            bounds,
            settled,
        )
        .await?;
        finished &= !drain.timed_out && !drain.stalled;
    }
    let drain_seconds = drain_started.elapsed().as_secs_f64();

    let sends = measure::sim_sends(&http, &fleet.sim_url).await?;
    let mut results = Vec::new();
    let mut trails = Vec::new();
    for (label, tenant, http_out, amqp_out, tier) in [
        ("main tenant", &tenants.main, main_http, main_amqp, None),
        (
            "small-tier tenant",
            &tenants.cap,
            cap_http_out,
            cap_amqp,
            Some(args.cap_tier.max(0) as u64),
        ),
    ] {
        let accepted: Vec<String> = http_out
            .accepted_indices
            .iter()
            .map(|i| load::record_id(Path::Http, *i))
            .chain(
                amqp_out
                    .accepted_indices
                    .iter()
                    .map(|i| load::record_id(Path::Amqp, *i)),
            )
            .collect();
        let rows: Vec<audit::Row> = sqlx::query_as(
            "SELECT id, record_id, state, reason FROM messages WHERE tenant_id = $1 AND direction = 'out'",
        )
        .bind(tenant.id.parse::<uuid::Uuid>()?)
        .fetch_all(&pool)
        .await?;
        let theirs: Vec<_> = sends
            .iter()
            .filter(|s| tenant.senders.contains(&s.phone_number_id))
            .cloned()
            .collect();
        let mut audit = audit::audit(&accepted, &rows, &theirs, tier);
        audit.trail_reasons = sqlx::query_as::<_, (String, i64)>(
            "SELECT reason, count(DISTINCT message_id) FROM message_events
             WHERE tenant_id = $1 AND reason IS NOT NULL GROUP BY reason",
        )
        .bind(tenant.id.parse::<uuid::Uuid>()?)
        .fetch_all(&pool)
        .await?
        .into_iter()
        .map(|(reason, n)| (reason, u64::try_from(n).unwrap_or(0)))
        .collect();
        // Every outcome but the last is a `deferred` event (a retry or a hold) before the
        // next claim; a claim beyond that had no outcome.
        let (lost_claims,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM (
                 SELECT message_id FROM message_events WHERE tenant_id = $1 GROUP BY message_id
                 HAVING count(*) FILTER (WHERE state = 'dispatching')
                      > 1 + count(*) FILTER (WHERE state = 'deferred')) x",
        )
        .bind(tenant.id.parse::<uuid::Uuid>()?)
        .fetch_one(&pool)
        .await?;
        audit.claims_without_outcome = u64::try_from(lost_claims).unwrap_or(0);
        trails.extend(evidence::trails(&pool, &audit, &theirs).await?);
        results.push(TenantResult {
            label,
            http: http_out,
            amqp: amqp_out,
            audit,
        });
    }
    pool.close().await;
    let totals = Totals::of(&results, &timeline);
    let failures = failures(&totals, finished);
    Ok(ChaosReport {
        started_at,
        broker_nodes: args.nodes,
        messages: args.messages,
        cap_messages: args.cap_messages,
        offered_rate: args.rate,
        ambiguous_resend_after: args.ambiguous_resend_after.clone(),
        retry_tiers: args.retry_tiers.clone(),
        timeline,
        tenants: results,
        load_seconds,
        drain_seconds,
        drain_finished: finished,
        totals,
        trails,
        passed: failures.is_empty(),
        failures,
    })
}
