//! The benchmark's company, set up as an operator and an admin would: numbers and a template
//! registered on the simulator (the Meta side), then `wafleet tenant create` with 20 senders,
//! `wafleet template sync` and `bind`, and the admin API for settings (allowed countries, an
//! unlimited tier, no quiet time) and each sender's rate. A few recipients outside the load
//! write STOP, so the opt-out policy has rows to check.

use crate::fleet::Fleet;
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Senders of the portfolio (Meta's maximum per portfolio).
pub const SENDERS: usize = 20;
/// Each sender's rate, on the simulator (Meta's throughput) and in `rate_mps`.
pub const SENDER_MPS: u32 = 1000;
/// The recipients' countries, which are the tenant's allowed countries.
pub const COUNTRIES: [&str; 2] = ["GB", "NL"];
/// The template every message uses, with its merge codes.
pub const TEMPLATE: &str = "job_opportunity";
const TEMPLATE_BODY: &str = "Hi {{1}}, it's {{2}} from Acme Recruiting. A role matches your profile. Reply STOP to unsubscribe.";
/// Recipients who opted out (none of them is in the load).
const OPT_OUTS: u32 = 3;
/// The recipient series of the opt-outs.
const OPT_OUT_SERIES: u32 = 4;

/// The benchmark's tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub api_key: String,
    /// The senders' phone number ids.
    pub senders: Vec<String>,
}

/// Recipient `i` of `series` (1–3 the loads, [`OPT_OUT_SERIES`] the opt-outs; 1–5 are valid in
/// both countries): GB and NL mobiles alternately,
/// distinct for every (series, i) with i below 10,000,000.
pub fn recipient(series: u32, i: u32) -> String {
    let n = i / 2;
    if i.is_multiple_of(2) {
        format!("+4474{series}{n:07}")
    } else {
        format!("+316{series}{n:07}")
    }
}

/// Sends a request, fails on a non-2xx answer, and returns the JSON body (or `null`).
pub async fn call(req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
    let res = req
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .with_context(|| what.to_owned())?;
    let status = res.status();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{what}: {status} {body}");
    }
    Ok(body)
}

/// Registers the portfolio on the simulator and creates, configures and checks the tenant.
pub async fn set_up(
    fleet: &Fleet,
    http: &reqwest::Client,
    pool: &sqlx::PgPool,
    res: &crate::resources::Resources,
) -> anyhow::Result<Tenant> {
    let digits =
        u64::from_str_radix(&uuid::Uuid::new_v4().simple().to_string()[..10], 16)? % 100_000_000;
    let waba_id = format!("1099{digits:08}");
    let senders: Vec<String> = (0..SENDERS)
        .map(|i| format!("1065{digits:08}{i:02}"))
        .collect();
    let sim = |path: &str| format!("{}{path}", fleet.sim_url);
    for (i, id) in senders.iter().enumerate() {
        let body = json!({
            "phone_number_id": id, "waba_id": waba_id,
            "display_phone_number": sender_phone(i), "verified_name": "Acme Bench",
            "mps": SENDER_MPS,
        });
        call(
            http.post(sim("/_sim/numbers")).json(&body),
            "POST /_sim/numbers",
        )
        .await?;
    }
    let template = json!({
        "waba_id": waba_id, "name": TEMPLATE, "language": "en_GB", "category": "UTILITY",
        "body_text": TEMPLATE_BODY,
    });
    call(
        http.post(sim("/_sim/templates")).json(&template),
        "POST /_sim/templates",
    )
    .await?;

    let mut args: Vec<String> = [
        "tenant",
        "create",
        "--json",
        "--name",
        "Acme Bench",
        "--waba-id",
        &waba_id,
        "--token",
        "bench-system-user-token",
        "--app-secret",
        &res.app_secret,
        "--verify-token",
        &res.verify_token,
    ]
    .map(str::to_owned)
    .to_vec();
    for (i, id) in senders.iter().enumerate() {
        args.push("--sender".into());
        args.push(format!("{id}:{}", sender_phone(i)));
    }
    let created: Value = serde_json::from_str(fleet.cli(&args).await?.trim())
        .context("`wafleet tenant create --json` prints JSON")?;
    let id = created["tenant_id"]
        .as_str()
        .context("tenant_id")?
        .to_owned();
    let api_key = created["api_key"].as_str().context("api_key")?.to_owned();
    let tenant_args = |rest: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = rest.iter().map(|s| (*s).to_owned()).collect();
        a.extend(["--tenant".to_owned(), id.clone()]);
        a
    };
    fleet.cli(&tenant_args(&["template", "sync"])).await?;
    let mut bind = tenant_args(&[
        "template",
        "bind",
        "--name",
        TEMPLATE,
        "--language",
        "en_GB",
    ]);
    bind.extend(["1=KNOWNAS".into(), "2=CONSULTANTUSERNAME".into()]);
    fleet.cli(&bind).await?;

    let api = |path: &str| format!("{}{path}", fleet.ingest_url);
    let settings = json!({
        "allowed_countries": COUNTRIES, "tier_override": -1, "quiet_time": null,
    });
    call(
        http.put(api("/v1/settings"))
            .bearer_auth(&api_key)
            .json(&settings),
        "PUT /v1/settings",
    )
    .await?;
    let listed = call(
        http.get(api("/v1/senders")).bearer_auth(&api_key),
        "GET /v1/senders",
    )
    .await?;
    let listed = listed["senders"].as_array().cloned().unwrap_or_default();
    if listed.len() != SENDERS {
        bail!("expected {SENDERS} senders, the API lists {}", listed.len());
    }
    for s in &listed {
        let sender = s["id"].as_str().context("sender id")?;
        call(
            http.patch(api(&format!("/v1/senders/{sender}")))
                .bearer_auth(&api_key)
                .json(&json!({"rate_mps": SENDER_MPS})),
            "PATCH /v1/senders/{id}",
        )
        .await?;
    }
    opt_out_a_few(fleet, http, pool, &id, &senders[0]).await?;
    Ok(Tenant {
        id,
        api_key,
        senders,
    })
}

/// The company's numbers: London numbers +44 20 7183 87xx.
fn sender_phone(i: usize) -> String {
    format!("+4420718387{i:02}")
}

/// A few recipients ([`OPT_OUT_SERIES`], outside every load) write STOP; waits until the webhooks service
/// has recorded their opt-outs.
async fn opt_out_a_few(
    fleet: &Fleet,
    http: &reqwest::Client,
    pool: &sqlx::PgPool,
    tenant: &str,
    sender: &str,
) -> anyhow::Result<()> {
    for k in 0..OPT_OUTS {
        let body = json!({"phone_number_id": sender, "from": recipient(OPT_OUT_SERIES, k), "text": "STOP"});
        call(
            http.post(format!("{}/_sim/inbound", fleet.sim_url))
                .json(&body),
            "POST /_sim/inbound",
        )
        .await?;
    }
    let tenant: uuid::Uuid = tenant.parse()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM opt_outs WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_one(pool)
            .await?;
        if n >= i64::from(OPT_OUTS) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {n} of {OPT_OUTS} STOP replies became opt-outs within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wafleet_core::domain::PhoneNumber;

    #[test]
    fn recipients_are_valid_distinct_numbers_in_the_allowed_countries() {
        let mut seen = std::collections::HashSet::new();
        for series in [1, 2, 3, OPT_OUT_SERIES] {
            for i in [0, 1, 2, 3, 99_998, 99_999, 9_999_999] {
                let n = recipient(series, i);
                PhoneNumber::parse(&n).unwrap_or_else(|e| panic!("{n}: {e}"));
                assert!(seen.insert(n));
            }
        }
        for i in 0..SENDERS {
            PhoneNumber::parse(&sender_phone(i)).unwrap();
        }
    }
}
