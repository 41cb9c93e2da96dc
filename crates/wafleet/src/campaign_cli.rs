//! `wafleet campaign …`: create a campaign from a recipients file, follow its progress with a
//! live bar, pause, resume or cancel it. These talk to the ingest HTTP API (`--url`, an API key
//! with the sender role), so the rules are exactly those of `POST /v1/campaigns`.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::{path::PathBuf, time::Duration};

/// Where the API is and who calls it.
#[derive(Debug, Args)]
pub struct Api {
    /// The ingest service's base URL.
    #[arg(
        long,
        env = "WAFLEET_INGEST_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// An API key of the tenant (sender role to create and control, reader to look).
    #[arg(long, env = "WAFLEET_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Creates a campaign from a recipients file, streamed as NDJSON.
    ///
    /// The file is NDJSON (one `{"to", "record": {"type", "id"}, "merge_fields": {…}}` per line)
    /// or, when it ends in `.csv`, a CSV whose header is `to,record_type,record_id` followed by
    /// merge codes (e.g. `KNOWNAS,CONSULTANTUSERNAME`); values may not contain commas.
    Create {
        #[arg(long)]
        name: String,
        /// Template name, as synced from Meta.
        #[arg(long)]
        template: String,
        /// Template language, e.g. en_GB.
        #[arg(long)]
        language: String,
        /// A sender's phone number id (default: the company's sender).
        #[arg(long, conflicts_with = "senders")]
        sender: Option<String>,
        /// A pool of senders: phone number ids separated by commas, or `all` for every
        /// approved company sender. Each recipient sticks to one number of the pool.
        #[arg(long, value_delimiter = ',', num_args = 1..)]
        senders: Vec<String>,
        /// Recipients not sent by then end expired (RFC 3339).
        #[arg(long)]
        not_after: Option<chrono::DateTime<chrono::Utc>>,
        /// Makes a retried create safe: the same key and file answer with the first result.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// The recipients file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Shows a campaign's counts, rate, hold and ETA; `--follow` draws a live progress bar.
    Status {
        id: uuid::Uuid,
        #[arg(long)]
        follow: bool,
    },
    /// Lists the tenant's campaigns, newest first.
    List,
    /// Pauses a campaign: its waiting messages are held.
    Pause { id: uuid::Uuid },
    /// Resumes a paused campaign.
    Resume { id: uuid::Uuid },
    /// Cancels a campaign: everything not yet dispatched ends cancelled.
    Cancel { id: uuid::Uuid },
}

impl CampaignCommand {
    pub async fn run(self, api: Api) -> anyhow::Result<()> {
        let client = Client::new(api)?;
        match self {
            Self::Create {
                name,
                template,
                language,
                sender,
                senders,
                not_after,
                idempotency_key,
                file,
            } => {
                let header = json!({
                    "name": name, "template": {"name": template, "language": language},
                    "sender": sender, "senders": senders_field(&senders), "not_after": not_after,
                });
                let body = ndjson_body(&header, &file)?;
                let created = client
                    .post_ndjson("/v1/campaigns", body, idempotency_key.as_deref())
                    .await?;
                println!(
                    "campaign {}: {} recipients, {} accepted, {} rejected, {} duplicates",
                    created["id"].as_str().unwrap_or_default(),
                    created["recipients"],
                    created["accepted"],
                    created["rejected"],
                    created["duplicates"]
                );
                if let Some(codes) = created["rejected_by_code"].as_object() {
                    for (code, n) in codes {
                        println!("  rejected {code}: {n}");
                    }
                }
                Ok(())
            }
            Self::Status { id, follow: false } => {
                let c = client.get(&format!("/v1/campaigns/{id}")).await?;
                println!("{}", summary(&c));
                for line in per_sender(&c) {
                    println!("  {line}");
                }
                Ok(())
            }
            Self::Status { id, follow: true } => follow(&client, id).await,
            Self::List => {
                let list = client.get("/v1/campaigns?limit=500").await?;
                for c in list["campaigns"].as_array().into_iter().flatten() {
                    println!(
                        "{}  {:9}  {}  accepted={} rejected={}  {}",
                        c["id"].as_str().unwrap_or_default(),
                        c["status"].as_str().unwrap_or_default(),
                        c["created_at"].as_str().unwrap_or_default(),
                        c["accepted"],
                        c["rejected"],
                        c["name"].as_str().unwrap_or_default(),
                    );
                }
                Ok(())
            }
            Self::Pause { id } => client.action(id, "pause").await,
            Self::Resume { id } => client.action(id, "resume").await,
            Self::Cancel { id } => client.action(id, "cancel").await,
        }
    }
}

/// `senders` in the campaign header: absent (null) when none was given, `"all"`, or the list.
fn senders_field(senders: &[String]) -> Value {
    match senders {
        [] => Value::Null,
        [all] if all.eq_ignore_ascii_case("all") => json!("all"),
        list => json!(list),
    }
}

/// One line per number of a pooled campaign (nothing for a campaign of one number).
fn per_sender(c: &Value) -> Vec<String> {
    let numbers = c["per_sender"].as_array().cloned().unwrap_or_default();
    if numbers.len() < 2 {
        return Vec::new();
    }
    numbers
        .iter()
        .map(|s| {
            format!(
                "sender {}  pending={}  rate={:.1}/s of {}/s  eta={}",
                s["sender"].as_str().unwrap_or_default(),
                s["pending"],
                s["current_rate"].as_f64().unwrap_or(0.0),
                s["sender_rate"],
                s["eta"].as_str().unwrap_or("-"),
            )
        })
        .collect()
}

/// The NDJSON body: the header line, then the file's recipients one per line.
fn ndjson_body(header: &Value, file: &std::path::Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut body = header.to_string();
    let csv = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if !csv {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            body.push('\n');
            body.push_str(line);
        }
        return Ok(body);
    }
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let columns: Vec<&str> = lines
        .next()
        .context("the CSV file is empty")?
        .split(',')
        .map(str::trim)
        .collect();
    if columns.get(..3) != Some(&["to", "record_type", "record_id"][..]) {
        bail!("the CSV header must start with to,record_type,record_id");
    }
    for line in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let cell = |i: usize| cells.get(i).copied().unwrap_or_default();
        let merge: serde_json::Map<String, Value> = columns[3..]
            .iter()
            .enumerate()
            .map(|(i, code)| ((*code).to_owned(), json!(cell(i + 3))))
            .collect();
        body.push('\n');
        body.push_str(
            &json!({"to": cell(0), "record": {"type": cell(1), "id": cell(2)}, "merge_fields": merge})
                .to_string(),
        );
    }
    Ok(body)
}

/// One line about a campaign.
fn summary(c: &Value) -> String {
    let counts = c["counts"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let held = match c["held_by"]["reason"].as_str() {
        Some(reason) => match c["held_by"]["until"].as_str() {
            Some(until) => format!("  held: {reason} until {until}"),
            None => format!("  held: {reason}"),
        },
        None => String::new(),
    };
    format!(
        "{} {}  {}  pending={}  rate={:.1}/s  eta={}{held}",
        c["id"].as_str().unwrap_or_default(),
        c["status"].as_str().unwrap_or_default(),
        counts,
        c["pending"],
        c["current_rate"].as_f64().unwrap_or(0.0),
        c["eta"].as_str().unwrap_or("-"),
    )
}

/// Polls the campaign every second and draws its progress until nothing is pending.
async fn follow(client: &Client, id: uuid::Uuid) -> anyhow::Result<()> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} done  {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    loop {
        let c = client.get(&format!("/v1/campaigns/{id}")).await?;
        let total: i64 = c["counts"]
            .as_object()
            .map(|m| m.values().filter_map(Value::as_i64).sum())
            .unwrap_or(0);
        let pending = c["pending"].as_i64().unwrap_or(0);
        bar.set_length(total.max(0) as u64);
        bar.set_position((total - pending).max(0) as u64);
        let held = c["held_by"]["reason"]
            .as_str()
            .map(|r| format!("  held: {r}"))
            .unwrap_or_default();
        bar.set_message(format!(
            "{}  {:.1}/s  eta {}{held}",
            c["status"].as_str().unwrap_or_default(),
            c["current_rate"].as_f64().unwrap_or(0.0),
            c["eta"].as_str().unwrap_or("-"),
        ));
        if pending == 0 || c["status"] == "cancelled" {
            bar.finish();
            println!("{}", summary(&c));
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

struct Client {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Client {
    fn new(api: Api) -> anyhow::Result<Self> {
        let key = api
            .api_key
            .context("an API key is needed: --api-key or WAFLEET_API_KEY")?;
        Ok(Self {
            http: reqwest::Client::new(),
            url: api.url.trim_end_matches('/').to_owned(),
            key,
        })
    }

    async fn answer(res: reqwest::Response) -> anyhow::Result<Value> {
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "{status}: {} ({})",
                body["detail"].as_str().unwrap_or("no detail"),
                body["code"].as_str().unwrap_or("error")
            );
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let res = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .send()
            .await
            .context("ingest unreachable")?;
        Self::answer(res).await
    }

    async fn post_ndjson(
        &self,
        path: &str,
        body: String,
        key: Option<&str>,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .header("Content-Type", "application/x-ndjson")
            .body(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        Self::answer(req.send().await.context("ingest unreachable")?).await
    }

    async fn action(&self, id: uuid::Uuid, action: &str) -> anyhow::Result<()> {
        let res = self
            .http
            .post(format!("{}/v1/campaigns/{id}/{action}", self.url))
            .bearer_auth(&self.key)
            .send()
            .await
            .context("ingest unreachable")?;
        let body = Self::answer(res).await?;
        println!(
            "campaign {id}: {} ({} messages changed)",
            body["status"].as_str().unwrap_or_default(),
            body["messages_changed"]
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_is_given_as_a_list_or_all_and_one_sender_as_before() {
        assert_eq!(senders_field(&[]), Value::Null);
        assert_eq!(senders_field(&["all".into()]), json!("all"));
        assert_eq!(
            senders_field(&["1601".into(), "1602".into()]),
            json!(["1601", "1602"])
        );
    }
}
