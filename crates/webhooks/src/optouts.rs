//! Opt-outs, recorded from four sources: an inbound message that asks to stop (or START to
//! resume; the rule is `stop_words`) (scope `all`), the API (`POST`/`DELETE /v1/opt-outs`, in
//! ingest), Meta's marketing stop reported as a 131050 failure, and the
//! `user_preferences` webhook (scope `marketing`, stop and resume). Each change that alters
//! `opt_outs` emits `optout.<tenant>`. Enforcement at dispatch reads `opt_outs`.

use crate::{
    fields::{Dead, FieldChange, is_newest, str_at, unix_time},
    outbox,
    stop_words::StopRules,
};
use chrono::{DateTime, Utc};
use wafleet_core::{contract::OptOutEvent, domain::TenantId};

pub const SCOPE_ALL: &str = "all";
pub const SCOPE_MARKETING: &str = "marketing";

/// One opt-out or opt-in of a recipient.
#[derive(Debug, Clone)]
pub struct OptOutChange {
    /// E.164, or the business-scoped user id when Meta gave no number.
    pub recipient: String,
    pub scope: &'static str,
    pub opt_out: bool,
    pub source: &'static str,
    pub at: DateTime<Utc>,
}

/// Applies changes in order; a change older than the last one applied for the same recipient
/// and scope changes nothing. Returns how many changed `opt_outs`.
pub async fn record(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    changes: &[OptOutChange],
) -> Result<usize, sqlx::Error> {
    let mut events = Vec::new();
    for c in changes {
        let subject = format!("optout:{}:{}", c.recipient, c.scope);
        if !is_newest(tx, tenant, &subject, c.at).await? {
            continue;
        }
        let done = if c.opt_out {
            sqlx::query(
                "INSERT INTO opt_outs (tenant_id, recipient, scope, source, created_at)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(&c.recipient)
            .bind(c.scope)
            .bind(c.source)
            .bind(c.at)
            .execute(&mut *tx)
            .await?
        } else {
            sqlx::query(
                "DELETE FROM opt_outs WHERE tenant_id = $1 AND recipient = $2 AND scope = $3",
            )
            .bind(tenant)
            .bind(&c.recipient)
            .bind(c.scope)
            .execute(&mut *tx)
            .await?
        };
        if done.rows_affected() == 0 {
            continue;
        }
        tracing::info!(
            tenant = %tenant,
            recipient = %wafleet_core::domain::mask_phone(&c.recipient),
            scope = c.scope,
            opt_out = c.opt_out,
            source = c.source,
            "opt-out recorded"
        );
        events.push(OptOutEvent {
            tenant_id: tenant,
            recipient: c.recipient.clone(),
            scope: c.scope.to_owned(),
            action: if c.opt_out { "opted_out" } else { "opted_in" }.to_owned(),
            source: c.source.to_owned(),
            at: c.at,
        });
    }
    metrics::counter!("wafleet_optout_changes_total").increment(events.len() as u64);
    outbox::enqueue(tx, "optout", tenant, &events).await?;
    Ok(events.len())
}

/// `user_preferences`: `stop` / `resume` of marketing messages, per user.
pub async fn user_preferences(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    change: &FieldChange,
) -> Result<Dead, sqlx::Error> {
    let mut dead = Dead::new();
    let mut changes = Vec::new();
    let items = change
        .value
        .get("user_preferences")
        .and_then(|v| v.as_array());
    let Some(items) = items else {
        return Ok(vec![(
            "bad_change:user_preferences".into(),
            change.raw.clone(),
        )]);
    };
    for item in items {
        let recipient = str_at(item, "wa_id")
            .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
            .map(|w| format!("+{w}"))
            .or_else(|| str_at(item, "user_id").map(str::to_owned));
        let opt_out = match str_at(item, "value") {
            Some("stop") => Some(true),
            Some("resume") => Some(false),
            _ => None,
        };
        let marketing = str_at(item, "category").is_none_or(|c| c == "marketing_messages");
        match (recipient, opt_out, marketing) {
            (Some(recipient), Some(opt_out), true) => changes.push(OptOutChange {
                recipient,
                scope: SCOPE_MARKETING,
                opt_out,
                source: "user_preferences",
                at: unix_time(item.get("timestamp")).unwrap_or(change.at),
            }),
            _ => dead.push(("bad_user_preference".into(), item.clone())),
        }
    }
    changes.sort_by_key(|c| c.at);
    record(tx, tenant, &changes).await?;
    Ok(dead)
}

/// The tenant's keyword lists as `stop_words` rules, read once per payload that needs them.
pub struct Keywords {
    rules: StopRules,
}

impl Keywords {
    pub async fn load(tx: &mut sqlx::PgConnection, tenant: TenantId) -> Result<Self, sqlx::Error> {
        // A tenant without a settings row gets one with the default multilingual lists.
        sqlx::query("INSERT INTO tenant_settings (tenant_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(tenant)
            .execute(&mut *tx)
            .await?;
        let (stop, start): (Vec<String>, Vec<String>) = sqlx::query_as(
            "SELECT optout_keywords, optin_keywords FROM tenant_settings WHERE tenant_id = $1",
        )
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?;
        Ok(Self {
            rules: StopRules::new(&stop, &start),
        })
    }

    /// `Some(true)` when one of `texts` asks to stop, `Some(false)` when one asks to start
    /// again (the rule: `stop_words`).
    pub fn classify<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> Option<bool> {
        texts.into_iter().find_map(|t| self.rules.classify(t))
    }
}

#[cfg(test)]
mod tests {
    use super::{Keywords, StopRules};

    #[test]
    fn a_button_payload_or_the_text_may_carry_the_keyword() {
        let k = Keywords {
            rules: StopRules::new(&["STOP", "ARRÊT"], &["START"]),
        };
        assert_eq!(k.classify([" stop "]), Some(true));
        assert_eq!(k.classify(["arrêt"]), Some(true));
        assert_eq!(k.classify(["Start"]), Some(false));
        assert_eq!(k.classify(["stop by tomorrow"]), None);
        assert_eq!(k.classify(["hello", "STOP"]), Some(true));
    }
}
