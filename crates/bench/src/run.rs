//! One benchmark run, in order: the raw ceilings on the idle machine, then the fleet (separate
//! processes) and its tenant, then each chosen path on a clean simulator record, measured from
//! the first message pushed until every message is final or `--drain-timeout` passes.

use crate::FleetArgs;
use crate::broker_work;
use crate::ceilings::{self, Ceilings};
use crate::db_work::Snapshot;
use crate::fleet::{Fleet, wafleet_binary};
use crate::load::{self, LoadTuning, Path};
use crate::measure::{self, FINAL};
use crate::report::{PathResult, Report, percent_of};
use crate::resources::Resources;
use crate::tenant::{self, Tenant, call};
use std::time::{Duration, Instant};

/// Runs everything; the fleet is left in `slot` so the caller stops it whatever happens.
pub async fn run(
    args: &FleetArgs,
    res: &Resources,
    slot: &mut Option<Fleet>,
) -> anyhow::Result<Report> {
    let started_at = chrono::Utc::now();
    let bin = wafleet_binary(args.wafleet.clone())?;
    let http = reqwest::Client::new();
    let pool = wafleet_core::db::connect(&res.database_url, 4, "wafleet-bench").await?;
    let idle_machine_busy_percent = crate::procs::machine_busy_over(Duration::from_secs(1)).await;
    if idle_machine_busy_percent > 15.0 {
        println!(
            "note: the machine is {idle_machine_busy_percent:.0}% busy before the run (other work on it); figures will be disturbed"
        );
    }

    println!("measuring the raw ceilings (broker, database) on the idle machine…");
    let (broker_e2e, broker_publish) =
        ceilings::broker(&res.amqp_url, &res.prefix, args.ceiling_messages).await?;
    let (insert, update, single) = ceilings::database(&pool, args.ceiling_rows).await?;
    let ceilings = Ceilings {
        broker_messages: args.ceiling_messages,
        broker_end_to_end_per_s: broker_e2e,
        broker_publish_per_s: broker_publish,
        db_rows: args.ceiling_rows as u64,
        db_batched_insert_rows_per_s: insert,
        db_batched_update_rows_per_s: update,
        db_single_row_insert_rows_per_s: single,
    };
    println!(
        "  broker {broker_e2e:.0} msg/s end to end; database {insert:.0} rows/s insert, {update:.0} rows/s update (batched), {single:.0} rows/s one by one"
    );

    println!(
        "starting the fleet ({}) on database {} and prefix {}…",
        bin.display(),
        res.db_name,
        res.prefix
    );
    let fleet =
        slot.insert(Fleet::start(bin, &args.run_dir, res, &http, &args.log_level, &[]).await?);
    let tenant = tenant::set_up(fleet, &http, &pool, res).await?;
    fleet.start_dispatcher(&http).await?;
    println!(
        "  tenant with {} senders at {}/s each, tier unlimited, countries {:?}, 3 opt-outs; logs in {}",
        tenant.senders.len(),
        tenant::SENDER_MPS,
        tenant::COUNTRIES,
        args.run_dir.display()
    );

    let tuning = LoadTuning {
        confirm_window: args.confirm_window,
        http_concurrency: args.http_concurrency,
        offered_rate: (args.offered_rate > 0.0).then_some(args.offered_rate),
        senders: args.senders as usize,
        run_id: res.prefix.clone(),
        retry_for: None,
    };
    let ctx = Ctx {
        args,
        res,
        pool: &pool,
        http: &http,
        tenant: &tenant,
        tuning: &tuning,
        ceilings: &ceilings,
    };
    let mut paths = Vec::new();
    for path in &args.paths {
        paths.push(run_path(*path, &ctx, fleet).await?);
    }
    pool.close().await;
    Ok(Report {
        started_at,
        messages_per_path: args.messages,
        analyzed: args.analyze,
        offered_rate: tuning.offered_rate,
        senders: args.senders,
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        idle_machine_busy_percent,
        ceilings,
        paths,
    })
}

/// What every path shares.
struct Ctx<'a> {
    args: &'a FleetArgs,
    res: &'a Resources,
    pool: &'a sqlx::PgPool,
    http: &'a reqwest::Client,
    tenant: &'a Tenant,
    tuning: &'a LoadTuning,
    ceilings: &'a Ceilings,
}

async fn run_path(path: Path, ctx: &Ctx<'_>, fleet: &mut Fleet) -> anyhow::Result<PathResult> {
    let Ctx {
        args,
        res,
        pool,
        http,
        tenant,
        tuning,
        ceilings,
    } = *ctx;
    println!("\n{}: {} messages…", path.label(), args.messages);
    call(
        http.post(format!("{}/_sim/reset", fleet.sim_url)),
        "POST /_sim/reset",
    )
    .await?;
    if args.analyze {
        sqlx::query("ANALYZE").execute(pool).await?;
    }
    let tenant_id: uuid::Uuid = tenant.id.parse()?;
    let since = chrono::Utc::now();
    let db_before = Snapshot::take(pool).await?;
    let endpoints = broker_work::Endpoints {
        ingest: &fleet.ingest_url,
        dispatcher: &fleet.dispatcher_url,
        webhooks: &fleet.webhooks_url,
    };
    let broker_before = broker_work::Snapshot::take(http, &endpoints).await;
    let cpu = fleet.cpu_sample();
    let started = Instant::now();
    let n = args.messages;
    let timeout = Duration::from_secs(args.drain_timeout);
    let push = async {
        match path {
            Path::Amqp => {
                let exchange = res.topology().intake_exchange();
                load::amqp(&res.amqp_url, &exchange, tenant, n, tuning).await
            }
            Path::Http => load::http(&fleet.ingest_url, tenant, n, tuning).await,
            Path::Campaign => load::campaigns(&fleet.ingest_url, tenant, n, tuning).await,
        }
    };
    // Pushing counts against the same bound as the drain.
    let pushed = tokio::time::timeout(timeout, push)
        .await
        .map_err(|_| anyhow::anyhow!("pushing took over {timeout:?} (--drain-timeout)"))??;
    println!(
        "  pushed in {:.1} s: {} accepted, {} refused; waiting for every status (at most {} s)…",
        pushed.push_seconds, pushed.accepted, pushed.refused, args.drain_timeout
    );
    let bounds = measure::Bounds {
        started,
        timeout,
        stall: Duration::from_secs(args.stall_timeout),
    };
    let drain = measure::drain(
        pool,
        fleet,
        tenant_id,
        since,
        pushed.accepted,
        bounds,
        &FINAL,
    )
    .await?;
    let wall_seconds = started.elapsed().as_secs_f64();
    let (processes, machine_busy_percent) = cpu.usage_since(&fleet.services);
    let figures = measure::figures(pool, http, &fleet.sim_url, tenant_id, since).await?;
    // The counters of the last transactions reach the statistics within a second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let db_work = db_before.per_message(&Snapshot::take(pool).await?, pushed.accepted);
    let endpoints = broker_work::Endpoints {
        ingest: &fleet.ingest_url,
        dispatcher: &fleet.dispatcher_url,
        webhooks: &fleet.webhooks_url,
    };
    let intake_publishes = if path == Path::Amqp {
        pushed.accepted
    } else {
        0
    };
    let broker_work = broker_before.per_message(
        &broker_work::Snapshot::take(http, &endpoints).await,
        pushed.accepted,
        intake_publishes,
        figures.throughput_per_s,
        ceilings.broker_end_to_end_per_s,
    );
    let not_final = drain
        .states
        .iter()
        .filter(|(s, _)| !FINAL.contains(&s.as_str()))
        .map(|(_, n)| n)
        .sum();
    let dispatching = drain.states.get("dispatching").copied().unwrap_or(0);
    let percent_of_broker_ceiling =
        percent_of(figures.throughput_per_s, ceilings.broker_end_to_end_per_s);
    println!(
        "  done in {wall_seconds:.1} s: {} sent, {not_final} not final{}",
        figures.sent,
        if drain.timed_out {
            " (drain timed out)"
        } else {
            ""
        }
    );
    Ok(PathResult {
        path,
        label: path.label(),
        load: pushed,
        figures,
        drain,
        not_final,
        dispatching,
        percent_of_broker_ceiling,
        wall_seconds,
        processes,
        machine_busy_percent,
        db_work,
        broker_work,
    })
}
