//! `wafleet demo`: the whole fleet against the Meta simulator, on the real broker and database.
//! A demo company connects its portfolio, syncs the seed products' templates and binds their
//! merge codes, messages three candidates, and one candidate replies. The demo waits until every
//! message is `read` and the reply is in the candidate's history, prints what happened, and
//! exits 0 — or explains what did not happen and exits non-zero.

use crate::{admin, fleet::Fleet};
use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wafleet_core::{
    Settings,
    amqp::{self, Topology},
    config::Secret,
    domain::PhoneNumber,
    secrets::SecretBox,
    tenant::{NewSender, NewTenant, create_tenant},
};
use wafleet_meta_sim::SimSettings;

/// The seed products' templates, with their merge codes.
const TEMPLATES: &[(&str, &str, &[&str])] = &[
    (
        "job_opportunity",
        "Hi {{1}}, it's {{2}} from Acme Recruiting. A new role matches your profile - are you open to a quick chat? Reply STOP to unsubscribe.",
        &["KNOWNAS", "CONSULTANTUSERNAME"],
    ),
    (
        "job_application",
        "Hi {{1}}, thank you for your application. {{2}} will be in touch; questions to {{3}}.",
        &["KNOWNAS", "CONSULTANTUSERNAME", "PRIMARYEMAILADDRESS"],
    ),
    (
        "gdpr_consent_request",
        "Hi {{1}}, to keep your details on file we need your consent. Reply YES to agree. Reply STOP to unsubscribe.",
        &["KNOWNAS"],
    ),
];

struct Candidate {
    id: &'static str,
    name: &'static str,
    phone: &'static str,
    template: &'static str,
}

const CANDIDATES: &[Candidate] = &[
    Candidate {
        id: "CAND-1001",
        name: "Anna",
        phone: "+447400123456",
        template: "job_opportunity",
    },
    Candidate {
        id: "CAND-1002",
        name: "Bruno",
        phone: "+5511987654321",
        template: "job_application",
    },
    Candidate {
        id: "CAND-1003",
        name: "Chloé",
        phone: "+33612345678",
        template: "gdpr_consent_request",
    },
];

pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    // Own names and ports, so the demo never collides with a running deployment.
    settings.amqp_prefix = format!("wafleet-demo-{run_id}");
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    settings.ingest_addr = any_port;
    settings.webhooks_addr = any_port;
    settings.dispatcher_addr = any_port;
    if settings.secret_key.is_none() {
        settings.secret_key = Some(Secret::new(SecretBox::generate_key_hex()?));
    }
    let app_secret = format!("demo-app-secret-{run_id}");
    settings.meta_app_secret = Some(Secret::new(app_secret.clone()));
    settings.meta_verify_token = Some(Secret::new(format!("demo-verify-{run_id}")));

    println!(
        "wafleet demo: PostgreSQL {}, RabbitMQ prefix {}",
        redact_url(&settings.database_url),
        settings.amqp_prefix
    );
    let pool = admin::migrate(&settings)
        .await
        .context("preparing the database (is PostgreSQL up? try `just services`)")?;
    let sim = SimSettings {
        addr: any_port,
        app_secret: app_secret.clone(),
        status_delay: Duration::from_millis(300),
        batch_window: Duration::from_millis(100),
        ..Default::default()
    };
    let fleet = tokio::time::timeout(
        Duration::from_secs(30),
        Fleet::start(settings.clone(), Some(sim), crate::fleet::system_clock()),
    )
    .await
    .context("the broker did not answer within 30 s (is RabbitMQ up? try `just services`)")??;
    let result = scenario(&fleet, &pool, &settings, &run_id).await;
    let settings_for_cleanup = fleet.settings.clone();
    fleet.stop().await?;
    cleanup(&settings_for_cleanup).await;
    result
}

async fn scenario(
    fleet: &Fleet,
    pool: &sqlx::PgPool,
    settings: &Settings,
    run_id: &str,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let sim = fleet
        .sim_url
        .clone()
        .context("the demo runs with the simulator")?;
    // A fresh portfolio per run: WABA and phone number ids are digits.
    let digits = u64::from_str_radix(&run_id[..8], 16)? % 1_000_000_000;
    let waba_id = format!("1099{digits:09}");
    let phone_number_id = format!("1065{digits:09}");
    let company_number = "+442071838750";

    post(
        &http,
        &format!("{sim}/_sim/numbers"),
        json!({
            "phone_number_id": phone_number_id, "waba_id": waba_id,
            "display_phone_number": company_number, "verified_name": "Acme Recruiting",
        }),
    )
    .await?;
    for (name, body, _) in TEMPLATES {
        post(&http, &format!("{sim}/_sim/templates"), json!({
            "waba_id": waba_id, "name": name, "language": "en_GB", "category": "UTILITY", "body_text": body,
        })).await?;
    }

    let secrets = settings.secret_box()?;
    let created = create_tenant(
        pool,
        &secrets,
        &NewTenant {
            name: "Acme Recruiting (demo)".into(),
            waba_id: waba_id.clone(),
            access_token: Secret::new(format!("demo-system-user-token-{run_id}")),
            app_secret: settings.meta_app_secret.clone().context("set above")?,
            verify_token: settings.meta_verify_token.clone().context("set above")?,
            senders: vec![NewSender {
                phone_number_id: phone_number_id.clone(),
                phone: PhoneNumber::parse(company_number)?,
                display_name: "Acme Recruiting".into(),
            }],
        },
    )
    .await?;
    println!(
        "1. connected company \"Acme Recruiting (demo)\" (tenant {}) with sender {company_number}",
        created.tenant_id
    );

    let synced = wafleet_ingest::templates::sync(
        pool,
        &secrets,
        &http,
        &fleet.settings.meta_base_url,
        &settings.meta_api_version,
        created.tenant_id,
    )
    .await?;
    for (name, _, codes) in TEMPLATES {
        let pairs: Vec<(String, String)> = codes
            .iter()
            .enumerate()
            .map(|(i, c)| ((i + 1).to_string(), (*c).to_owned()))
            .collect();
        wafleet_ingest::templates::bind(pool, created.tenant_id, name, "en_GB", &pairs).await?;
    }
    println!(
        "2. synced {synced} templates from Meta and bound their merge codes (KNOWNAS, CONSULTANTUSERNAME, PRIMARYEMAILADDRESS)"
    );

    let api = |path: &str| format!("{}{path}", fleet.ingest_url);
    let mut sent = Vec::new();
    for c in CANDIDATES {
        let reply: Value = http
            .post(api("/v1/messages"))
            .bearer_auth(&created.api_key)
            .header("Idempotency-Key", format!("demo-{run_id}-{}", c.id))
            .json(&json!({
                "to": c.phone,
                "record": {"type": "candidate", "id": c.id},
                "user_id": "consultant-7",
                "template": {"name": c.template, "language": "en_GB"},
                "merge_fields": {"KNOWNAS": c.name, "CONSULTANTUSERNAME": "Sam Taylor", "PRIMARYEMAILADDRESS": "sam.taylor@acme.example"},
            }))
            .send()
            .await?
            .json()
            .await?;
        if reply["status"] != "accepted" {
            bail!("POST /v1/messages for {} was refused: {reply}", c.name);
        }
        let id = reply["id"]
            .as_str()
            .context("202 carries the message id")?
            .to_owned();
        sent.push((c, id));
    }
    println!(
        "3. sent {} templates through POST /v1/messages (202 Accepted)",
        sent.len()
    );

    let deadline = Instant::now() + Duration::from_secs(45);
    for (c, id) in &sent {
        let message = wait_for(
            &http,
            &api(&format!("/v1/messages/{id}")),
            &created.api_key,
            deadline,
            |m| m["state"] == "read",
        )
        .await
        .with_context(|| format!("the message to {} never reached `read`", c.name))?;
        let trail: Vec<&str> = message["events"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["state"].as_str())
            .collect();
        println!(
            "   {:<6} {:<22} {:<5} {}  (pricing: {})",
            c.name,
            c.template,
            message["state"].as_str().unwrap_or("?"),
            trail.join(" -> "),
            message["pricing_category"].as_str().unwrap_or("-"),
        );
    }

    let anna = &CANDIDATES[0];
    post(&http, &format!("{sim}/_sim/inbound"), json!({
        "phone_number_id": phone_number_id, "from": anna.phone, "text": "Yes, I'm interested! Can we talk tomorrow?", "name": anna.name,
    })).await?;
    let history_url = api(&format!("/v1/records/candidate/{}/messages", anna.id));
    wait_for(&http, &history_url, &created.api_key, deadline, |h| {
        h["messages"]
            .as_array()
            .is_some_and(|m| m.iter().any(|x| x["direction"] == "in"))
    })
    .await
    .context("Anna's reply never reached her history")?;
    println!(
        "4. {} replied; her reply is in her history, so her 24 h service window is open",
        anna.name
    );

    let reply: Value = http
        .post(api("/v1/messages"))
        .bearer_auth(&created.api_key)
        .json(&json!({"to": anna.phone, "record": {"type": "candidate", "id": anna.id}, "text": "Great - I'll call you at 10:00. Sam"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let text_id = reply["id"].as_str().context("202 carries the message id")?;
    wait_for(
        &http,
        &api(&format!("/v1/messages/{text_id}")),
        &created.api_key,
        deadline,
        |m| m["state"] == "read",
    )
    .await
    .context("the free-form reply never reached `read`")?;
    let history = wait_for(&http, &history_url, &created.api_key, deadline, |_| true).await?;
    println!(
        "5. the consultant answered with free-form text inside the window. {}'s conversation, newest first:",
        anna.name
    );
    for m in history["messages"].as_array().into_iter().flatten() {
        let arrow = if m["direction"] == "in" { "<-" } else { "->" };
        let what = m["content"]["text"]["body"]
            .as_str()
            .or(m["content"]["body"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!("template {}", m["content"]["name"].as_str().unwrap_or("?"))
            });
        println!(
            "   {arrow} [{:<8}] {what}",
            m["state"].as_str().unwrap_or("?")
        );
    }
    println!("demo complete: every message reached `read` and the reply is on record.");
    Ok(())
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<()> {
    http.post(url)
        .json(&body)
        .send()
        .await?
        .error_for_status()
        .with_context(|| format!("POST {url}"))?;
    Ok(())
}

/// Polls a GET until `done` holds for its JSON, or the deadline passes.
async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    deadline: Instant,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    loop {
        let body: Value = http
            .get(url)
            .bearer_auth(key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if done(&body) {
            return Ok(body);
        }
        if Instant::now() > deadline {
            bail!("timed out; last seen: {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The demo's queues and exchanges are its own; remove them.
async fn cleanup(settings: &Settings) {
    let topology = Topology::from_settings(settings);
    if let Ok(conn) = amqp::connect(&settings.amqp_url, "wafleet-demo/cleanup").await {
        if let Ok(channel) = conn.create_channel().await
            && let Err(err) = topology.delete(&channel).await
        {
            eprintln!("note: could not remove the demo's queues: {err}");
        }
        let _ = conn.close(200, "done".into()).await;
    }
}

fn redact_url(url: &str) -> String {
    match url.split_once('@') {
        Some((scheme_user, host)) => format!(
            "{}@{host}",
            scheme_user.split(':').take(2).collect::<Vec<_>>().join(":")
        ),
        None => url.to_owned(),
    }
}
