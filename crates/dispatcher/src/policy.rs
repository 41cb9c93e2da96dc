//! The policy step of a batch (SPEC §4), after the claim and before any Graph call: what the
//! rules need is read for the whole batch in a few queries (tenant settings, opt-outs, service
//! windows, template categories, senders), then `wafleet_core::policy::decide` judges each
//! message. Only the cap (`cap`) writes anything.

use crate::store::Claimed;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use wafleet_core::{
    contract::Content,
    domain::TenantId,
    policy::{
        self, Decision, Facts, Rules, countries, optout,
        quiet_time::{QuietRule, QuietTime},
    },
};

/// A tenant's settings as the rules read them.
#[derive(Debug, Default)]
pub struct TenantRules {
    pub allowed_countries: Vec<String>,
    pub quiet_time: Option<QuietRule>,
}

/// A sender's state as the rules and the rate limiter read it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SenderRow {
    pub tenant_id: TenantId,
    pub phone_number_id: String,
    pub status: String,
    pub paused_until: Option<DateTime<Utc>>,
    pub rate_mps: Option<i32>,
    pub registered: bool,
}

/// Everything the rules need for one batch.
#[derive(Debug, Default)]
pub struct Inputs {
    tenants: HashMap<TenantId, TenantRules>,
    opt_outs: HashMap<(TenantId, String), Vec<optout::Scope>>,
    windows: HashMap<(TenantId, String, String), DateTime<Utc>>,
    categories: HashMap<(TenantId, String, String), String>,
    senders: HashMap<(TenantId, String), SenderRow>,
}

impl Inputs {
    /// Reads the batch's settings, opt-outs, windows, template categories and senders.
    pub async fn load(pool: &sqlx::PgPool, batch: &[Claimed]) -> Result<Self, sqlx::Error> {
        if batch.is_empty() {
            return Ok(Self::default());
        }
        let tenants: Vec<uuid::Uuid> = batch.iter().map(|c| c.tenant_id.0).collect();
        let recipients: Vec<&str> = batch.iter().map(|c| c.recipient.as_str()).collect();
        let senders: Vec<&str> = batch.iter().map(|c| c.phone_number_id.as_str()).collect();
        let mut conn = pool.acquire().await?;

        let settings: Vec<(TenantId, Vec<String>, Option<sqlx::types::Json<QuietTime>>)> =
            sqlx::query_as(
                "SELECT tenant_id, allowed_countries, quiet_time FROM tenant_settings
                 WHERE tenant_id = ANY($1)",
            )
            .bind(&tenants)
            .fetch_all(&mut *conn)
            .await?;
        let tenants_map = settings
            .into_iter()
            .map(|(tenant, allowed_countries, quiet)| {
                let quiet_time = quiet.and_then(|q| match QuietRule::parse(&q.0) {
                    Ok(rule) => Some(rule),
                    Err(err) => {
                        // The settings API validates; a bad stored rule holds nothing back.
                        tracing::warn!(tenant = %tenant, error = %err, "unusable quiet time setting ignored");
                        None
                    }
                });
                (
                    tenant,
                    TenantRules {
                        allowed_countries,
                        quiet_time,
                    },
                )
            })
            .collect();

        let opt_rows: Vec<(TenantId, String, String)> = sqlx::query_as(
            "SELECT o.tenant_id, o.recipient, o.scope FROM opt_outs o
             JOIN unnest($1::uuid[], $2::text[]) AS b(tenant_id, recipient)
               ON o.tenant_id = b.tenant_id AND o.recipient = b.recipient",
        )
        .bind(&tenants)
        .bind(&recipients)
        .fetch_all(&mut *conn)
        .await?;
        let mut opt_outs: HashMap<(TenantId, String), Vec<optout::Scope>> = HashMap::new();
        for (tenant, recipient, scope) in opt_rows {
            if let Some(scope) = optout::Scope::parse(&scope) {
                opt_outs.entry((tenant, recipient)).or_default().push(scope);
            }
        }

        let window_rows: Vec<(TenantId, String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT w.tenant_id, w.phone_number_id, w.recipient, w.last_inbound_at
             FROM service_windows w
             JOIN unnest($1::uuid[], $2::text[], $3::text[]) AS b(tenant_id, phone_number_id, recipient)
               ON w.tenant_id = b.tenant_id AND w.phone_number_id = b.phone_number_id
              AND w.recipient = b.recipient",
        )
        .bind(&tenants)
        .bind(&senders)
        .bind(&recipients)
        .fetch_all(&mut *conn)
        .await?;
        let windows = window_rows
            .into_iter()
            .map(|(t, s, r, at)| ((t, s, r), at))
            .collect();

        let (mut t_tenants, mut t_names, mut t_languages) = (Vec::new(), Vec::new(), Vec::new());
        for c in batch {
            if let Content::Template { name, language, .. } = &c.content.0 {
                t_tenants.push(c.tenant_id.0);
                t_names.push(name.as_str());
                t_languages.push(language.as_str());
            }
        }
        let template_rows: Vec<(TenantId, String, String, String)> = if t_names.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(
                "SELECT t.tenant_id, t.name, t.language, t.category FROM templates t
                 JOIN unnest($1::uuid[], $2::text[], $3::text[]) AS b(tenant_id, name, language)
                   ON t.tenant_id = b.tenant_id AND t.name = b.name AND t.language = b.language",
            )
            .bind(&t_tenants)
            .bind(&t_names)
            .bind(&t_languages)
            .fetch_all(&mut *conn)
            .await?
        };
        let categories = template_rows
            .into_iter()
            .map(|(t, n, l, c)| ((t, n, l), c))
            .collect();

        let sender_rows: Vec<SenderRow> = sqlx::query_as(
            "SELECT tenant_id, phone_number_id, status, paused_until, rate_mps,
                    registration = 'registered' AS registered FROM senders
             WHERE tenant_id = ANY($1) AND phone_number_id = ANY($2)
               AND status NOT IN ('rejected', 'removed')",
        )
        .bind(&tenants)
        .bind(&senders)
        .fetch_all(&mut *conn)
        .await?;
        let senders = sender_rows
            .into_iter()
            .map(|s| ((s.tenant_id, s.phone_number_id.clone()), s))
            .collect();
        Ok(Self {
            tenants: tenants_map,
            opt_outs,
            windows,
            categories,
            senders,
        })
    }

    /// The sender's own rate setting, if it has one.
    pub fn sender_rate(&self, claimed: &Claimed) -> Option<u32> {
        self.senders
            .get(&(claimed.tenant_id, claimed.phone_number_id.clone()))
            .and_then(|s| s.rate_mps)
            .and_then(|r| u32::try_from(r).ok())
    }

    /// The rules' decision for one claimed message at `now`.
    pub fn decide(
        &self,
        claimed: &Claimed,
        now: DateTime<Utc>,
        sender_recheck: chrono::Duration,
    ) -> Decision {
        let tenant = claimed.tenant_id;
        let no_rules = TenantRules::default();
        let settings = self.tenants.get(&tenant).unwrap_or(&no_rules);
        let country = countries::country_of(&claimed.recipient);
        let category = match &claimed.content.0 {
            Content::Template { name, language, .. } => self
                .categories
                .get(&(tenant, name.clone(), language.clone()))
                .map(String::as_str),
            _ => None,
        };
        let sender = self.senders.get(&(tenant, claimed.phone_number_id.clone()));
        let facts = Facts {
            bulk: claimed.kind == "bulk",
            country: country.as_deref(),
            template: matches!(claimed.content.0, Content::Template { .. }),
            template_category: category,
            opt_outs: self
                .opt_outs
                .get(&(tenant, claimed.recipient.clone()))
                .map_or(&[], Vec::as_slice),
            last_inbound: self
                .windows
                .get(&(
                    tenant,
                    claimed.phone_number_id.clone(),
                    claimed.recipient.clone(),
                ))
                .copied(),
            sender_approved: sender.is_some_and(|s| s.status == "approved"),
            sender_paused_until: sender.and_then(|s| s.paused_until),
            sender_registered: sender.is_some_and(|s| s.registered),
        };
        let rules = Rules {
            allowed_countries: &settings.allowed_countries,
            quiet_time: settings.quiet_time,
            sender_recheck,
        };
        policy::decide(&facts, &rules, now)
    }
}
