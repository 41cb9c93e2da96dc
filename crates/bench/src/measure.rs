//! What the fleet did with a path's load, read from the two places that record it: PostgreSQL
//! (`messages.created_at` is the accept, `messages.state` the status trail's end) and the
//! simulator (`GET /_sim/sends`: each Graph call's receipt time, with our message id in
//! `biz_opaque_callback_data`). Waiting for the drain is bounded by `--drain-timeout`.

use crate::fleet::Fleet;
use crate::stats::{per_second, percentile};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Message states after which nothing more happens.
pub const FINAL: [&str; 5] = ["read", "rejected", "failed", "expired", "cancelled"];
/// How [`drain`] counts a row the portfolio cap holds (`deferred` with reason
/// `messaging_limit`): by design it waits for a free slot, up to 24 h.
pub const CAP_HELD: &str = "deferred:messaging_limit";
/// How often the drain polls the database. Each poll counts the path's rows by state (a scan
/// of the tenant's outbound rows), so it stays at once a second to keep its share of the
/// database small.
const POLL: Duration = Duration::from_secs(1);
/// How often the drain prints its progress.
const PROGRESS: Duration = Duration::from_secs(10);

/// When the path's messages reached `delivered` and `read`, seconds after the load started.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Drain {
    pub all_delivered_s: Option<f64>,
    pub all_read_s: Option<f64>,
    pub timed_out: bool,
    /// Nothing changed for `--stall-timeout`: the drain stopped waiting early.
    pub stalled: bool,
    /// Rows per state at the end.
    pub states: BTreeMap<String, u64>,
}

/// The path's outbound rows per state (a cap hold counted as [`CAP_HELD`]), created since
/// `since`.
async fn state_counts(
    pool: &sqlx::PgPool,
    tenant: uuid::Uuid,
    since: DateTime<Utc>,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT CASE WHEN state = 'deferred' AND reason = 'messaging_limit'
                     THEN 'deferred:messaging_limit' ELSE state END, count(*)
         FROM messages
         WHERE tenant_id = $1 AND direction = 'out' AND created_at >= $2 GROUP BY 1",
    )
    .bind(tenant)
    .bind(since)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(s, n)| (s, u64::try_from(n).unwrap_or(0)))
        .collect())
}

/// How long a drain may wait: `timeout` after `started` in all, `stall` without any change.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub started: Instant,
    pub timeout: Duration,
    pub stall: Duration,
}

/// Polls until `expected` rows are in one of the `settled` states (usually [`FINAL`]; or
/// `timeout` after `started`, or no row changed state for `stall`), noting when all of them
/// were `delivered` (or later) and `read`.
pub async fn drain(
    pool: &sqlx::PgPool,
    fleet: &mut Fleet,
    tenant: uuid::Uuid,
    since: DateTime<Utc>,
    expected: u64,
    bounds: Bounds,
    settled: &[&str],
) -> anyhow::Result<Drain> {
    let Bounds {
        started,
        timeout,
        stall,
    } = bounds;
    let mut out = Drain::default();
    let mut printed = Instant::now();
    let mut last_change = Instant::now();
    loop {
        fleet.check_alive()?;
        let states = state_counts(pool, tenant, since).await?;
        let count = |names: &[&str]| -> u64 { names.iter().filter_map(|s| states.get(*s)).sum() };
        let now = started.elapsed().as_secs_f64();
        if out.all_delivered_s.is_none() && count(&["delivered", "read"]) >= expected {
            out.all_delivered_s = Some(now);
        }
        if out.all_read_s.is_none() && count(&["read"]) >= expected {
            out.all_read_s = Some(now);
        }
        let done = count(settled) >= expected;
        if states != out.states {
            last_change = Instant::now();
        }
        if printed.elapsed() >= PROGRESS {
            printed = Instant::now();
            println!(
                "  {now:5.0} s: {} rows, {} sent or later, {} read, {} final of {expected}",
                states.values().sum::<u64>(),
                count(&["sent", "delivered", "read"]),
                count(&["read"]),
                count(settled),
            );
        }
        out.states = states;
        if done {
            return Ok(out);
        }
        if started.elapsed() > timeout {
            out.timed_out = true;
            return Ok(out);
        }
        if last_change.elapsed() > stall {
            out.stalled = true;
            return Ok(out);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One request the simulator's send endpoint received (the fields we use).
#[derive(Debug, Clone, Deserialize)]
pub struct RecordedSend {
    pub at: DateTime<Utc>,
    pub phone_number_id: String,
    pub to: String,
    /// Our message id.
    pub biz_opaque_callback_data: Option<String>,
    /// Set when Meta accepted the message (also when the answer was then lost).
    pub wamid: Option<String>,
    pub error_code: Option<i64>,
}

/// Every send request the simulator received since its last reset.
pub async fn sim_sends(http: &reqwest::Client, sim_url: &str) -> anyhow::Result<Vec<RecordedSend>> {
    Ok(http
        .get(format!("{sim_url}/_sim/sends"))
        .timeout(Duration::from_secs(300))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// The path's figures from the rows and the simulator's record.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Figures {
    /// Outbound rows the path created.
    pub rows: u64,
    pub accepted_per_s: Option<f64>,
    /// Graph calls Meta answered with a wamid, and those it refused, by error code.
    pub graph_ok: u64,
    pub graph_errors: BTreeMap<String, u64>,
    pub graph_per_s: Option<f64>,
    /// Distinct messages that reached Meta.
    pub sent: u64,
    /// Successful Graph calls beyond the first for one message (sent twice).
    pub duplicates: u64,
    pub first_accept_to_last_graph_s: Option<f64>,
    /// `sent` over first accept → last Graph call.
    pub throughput_per_s: Option<f64>,
    pub intake_to_graph_p50_ms: Option<f64>,
    pub intake_to_graph_p99_ms: Option<f64>,
    pub intake_to_graph_max_ms: Option<f64>,
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1e6
}

/// Reads the path's rows and the simulator's sends and derives the figures.
pub async fn figures(
    pool: &sqlx::PgPool,
    http: &reqwest::Client,
    sim_url: &str,
    tenant: uuid::Uuid,
    since: DateTime<Utc>,
) -> anyhow::Result<Figures> {
    let rows: Vec<(uuid::Uuid, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, created_at FROM messages
         WHERE tenant_id = $1 AND direction = 'out' AND created_at >= $2",
    )
    .bind(tenant)
    .bind(since)
    .fetch_all(pool)
    .await?;
    let created: HashMap<String, DateTime<Utc>> =
        rows.iter().map(|(id, at)| (id.to_string(), *at)).collect();
    let sends = sim_sends(http, sim_url).await?;

    let mut out = Figures {
        rows: rows.len() as u64,
        ..Figures::default()
    };
    let first_accept = rows.iter().map(|(_, at)| *at).min();
    let last_accept = rows.iter().map(|(_, at)| *at).max();
    if let (Some(a), Some(b)) = (first_accept, last_accept) {
        out.accepted_per_s = per_second(out.rows, seconds(a, b));
    }
    // First successful Graph call per message of this path.
    let mut first_send: HashMap<&str, DateTime<Utc>> = HashMap::new();
    let (mut first_ok, mut last_ok): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
    for s in &sends {
        let Some(id) = s.biz_opaque_callback_data.as_deref() else {
            continue;
        };
        if !created.contains_key(id) {
            continue;
        }
        if s.wamid.is_none() {
            let code = s.error_code.map_or("none".to_owned(), |c| c.to_string());
            *out.graph_errors.entry(code).or_default() += 1;
            continue;
        }
        out.graph_ok += 1;
        first_ok = Some(first_ok.map_or(s.at, |f| f.min(s.at)));
        last_ok = Some(last_ok.map_or(s.at, |l| l.max(s.at)));
        first_send
            .entry(id)
            .and_modify(|at| *at = (*at).min(s.at))
            .or_insert(s.at);
    }
    out.sent = first_send.len() as u64;
    out.duplicates = out.graph_ok - out.sent;
    if let (Some(a), Some(b)) = (first_ok, last_ok) {
        out.graph_per_s = per_second(out.graph_ok, seconds(a, b));
    }
    if let (Some(a), Some(b)) = (first_accept, last_ok) {
        let span = seconds(a, b);
        out.first_accept_to_last_graph_s = Some(span);
        out.throughput_per_s = per_second(out.sent, span);
    }
    let mut latencies: Vec<f64> = first_send
        .iter()
        .filter_map(|(id, at)| Some(seconds(*created.get(*id)?, *at) * 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    out.intake_to_graph_p50_ms = percentile(&latencies, 50.0);
    out.intake_to_graph_p99_ms = percentile(&latencies, 99.0);
    out.intake_to_graph_max_ms = latencies.last().copied();
    Ok(out)
}
