//! The evidence behind a finding: for a few of the messages a finding names, the row's event
//! trail (time, state, reason, Meta's error) and every send Meta recorded for it. Message ids
//! and wamids only; no phone number is printed.

use super::audit::TenantAudit;
use crate::measure::RecordedSend;
use chrono::{DateTime, Utc};

/// One row of `message_events`: time, state, reason, detail.
type Event = (
    DateTime<Utc>,
    String,
    Option<String>,
    Option<serde_json::Value>,
);

/// Messages traced per finding and tenant.
const PER_FINDING: usize = 3;

/// One message's story.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Trail {
    pub finding: &'static str,
    pub message_id: String,
    pub events: Vec<String>,
    pub sends: Vec<String>,
}

impl Trail {
    pub fn render(&self) -> String {
        let mut out = format!("{} {}:", self.finding, self.message_id);
        for line in self.events.iter().chain(&self.sends) {
            out.push_str("\n    ");
            out.push_str(line);
        }
        out
    }
}

/// Traces the first few messages of each finding of `audit`.
pub async fn trails(
    pool: &sqlx::PgPool,
    audit: &TenantAudit,
    sends: &[RecordedSend],
) -> anyhow::Result<Vec<Trail>> {
    let mut out = Vec::new();
    for (finding, ids) in [
        ("stuck", &audit.stuck.sample),
        ("given up", &audit.given_up.sample),
        ("sent twice", &audit.duplicate_sends.sample),
        ("statuses missing", &audit.statuses_missing.sample),
    ] {
        for id in ids.iter().take(PER_FINDING) {
            out.push(trail(pool, finding, id, sends).await?);
        }
    }
    Ok(out)
}

async fn trail(
    pool: &sqlx::PgPool,
    finding: &'static str,
    id: &str,
    sends: &[RecordedSend],
) -> anyhow::Result<Trail> {
    let message: uuid::Uuid = id.parse()?;
    let events: Vec<Event> = sqlx::query_as(
        "SELECT at, state, reason, detail FROM message_events WHERE message_id = $1 ORDER BY id",
    )
    .bind(message)
    .fetch_all(pool)
    .await?;
    let events = events
        .into_iter()
        .map(|(at, state, reason, detail)| {
            let detail = detail.map_or(String::new(), |d| format!(" {d}"));
            crate::report::mask_phone_numbers(&format!(
                "event {} {state} {}{detail}",
                at.format("%H:%M:%S%.3f"),
                reason.unwrap_or_default()
            ))
        })
        .collect();
    let sends = sends
        .iter()
        .filter(|s| s.biz_opaque_callback_data.as_deref() == Some(id))
        .map(|s| {
            format!(
                "meta  {} {}",
                s.at.format("%H:%M:%S%.3f"),
                s.wamid.as_deref().map_or_else(
                    || format!("refused {}", s.error_code.unwrap_or_default()),
                    |w| format!("accepted {w}")
                )
            )
        })
        .collect();
    Ok(Trail {
        finding,
        message_id: id.to_owned(),
        events,
        sends,
    })
}
