//! What the chaos run sets up before the load: the services' tuning, Meta's webhook retries,
//! the two tenants (the small-tier one through the admin API, as an admin would) and the two
//! dispatchers, each on every shard so the single active consumer picks one owner per shard
//! and the other takes over when it dies.

use super::ChaosArgs;
use crate::fleet::Fleet;
use crate::procs::free_port;
use crate::resources::Resources;
use crate::tenant::{self, Tenant, call};
use serde_json::json;

/// Meta retries an unanswered webhook for up to 7 days (reference §5); the simulator's
/// default gives up after ~8 s, less than a broker restart takes. About four minutes here.
const WEBHOOK_RETRIES_MS: [u64; 12] = [
    250, 500, 1_000, 2_000, 4_000, 8_000, 15_000, 30_000, 30_000, 30_000, 60_000, 60_000,
];

/// The dispatchers' names.
const DISPATCHERS: [&str; 2] = ["dispatcher-a", "dispatcher-b"];

/// The services' environment beyond the fleet's own: the dispatch timings of the flags.
pub fn service_env(args: &ChaosArgs) -> Vec<(String, String)> {
    [
        (
            "WAFLEET_DISPATCH__AMBIGUOUS_RESEND_AFTER",
            &args.ambiguous_resend_after,
        ),
        ("WAFLEET_DISPATCH__RETRY_TIERS", &args.retry_tiers),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.clone()))
    .collect()
}

/// The run's two tenants.
pub struct Tenants {
    pub main: Tenant,
    /// Its tier is the `--cap-tier`.
    pub cap: Tenant,
}

/// Meta's webhook retries, then both tenants (20 senders each, see [`tenant::set_up`]).
pub async fn tenants(
    fleet: &Fleet,
    http: &reqwest::Client,
    pool: &sqlx::PgPool,
    res: &Resources,
    cap_tier: i32,
) -> anyhow::Result<Tenants> {
    call(
        http.put(format!("{}/_sim/config", fleet.sim_url))
            .json(&json!({"retry_delays_ms": WEBHOOK_RETRIES_MS})),
        "PUT /_sim/config",
    )
    .await?;
    let main = tenant::set_up(fleet, http, pool, res).await?;
    let cap = tenant::set_up(fleet, http, pool, res).await?;
    call(
        http.put(format!("{}/v1/settings", fleet.ingest_url))
            .bearer_auth(&cap.api_key)
            .json(&json!({"tier_override": cap_tier})),
        "PUT /v1/settings (tier)",
    )
    .await?;
    println!(
        "  two tenants with {} senders each: one unlimited, one with tier {cap_tier}",
        main.senders.len()
    );
    Ok(Tenants { main, cap })
}

/// Starts the two dispatchers, one after the other (so the first owns every shard), each on
/// its own port; returns their names and base URLs.
pub async fn dispatchers(
    fleet: &mut Fleet,
    http: &reqwest::Client,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for name in DISPATCHERS {
        let addr = format!("127.0.0.1:{}", free_port()?);
        let url = format!("http://{addr}");
        let env = [("WAFLEET_DISPATCHER_ADDR".to_owned(), addr)];
        fleet
            .spawn("dispatcher", name, &env, http, &format!("{url}/readyz"))
            .await?;
        out.push((name, url));
    }
    println!(
        "  {} and {} consume every shard",
        DISPATCHERS[0], DISPATCHERS[1]
    );
    Ok(out)
}
