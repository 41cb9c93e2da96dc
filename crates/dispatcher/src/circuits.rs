//! Circuit breakers per sender, template and tenant account, and recipient holds (131049).
//!
//! A sender belongs to one dispatcher process (single active consumer per shard), but templates
//! and accounts span processes, so breaker state lives in PostgreSQL (`circuits`, one row per
//! open or half-open breaker; closing deletes the row). Each batch loads the breakers and holds
//! that concern it in two queries: that snapshot is the in-process cache, fresh per batch.
//! While a breaker is open its messages are held (deferred rows the releaser brings back), never
//! failed. Once `until` has passed it is half-open: one probe at a time is let through (an
//! atomic `probe_at` claim); a success closes it, a halting failure opens it again.
//! Meta's asynchronous signals hold messages the same way: `templates.paused_until` and
//! `tenant_settings.account_restricted_until` (written by the webhooks side) count as open
//! breakers until then, with no probe needed afterwards. A paused sender
//! (`senders.paused_until`) is a policy of its own (`deferred: sender_paused`, see `policy`).

use crate::store::Claimed;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use wafleet_core::{contract::Content, domain::TenantId};

/// What a breaker covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Sender,
    Template,
    Account,
}

impl Scope {
    /// The `circuits.scope` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Sender => "sender",
            Scope::Template => "template",
            Scope::Account => "account",
        }
    }

    /// The hold reason of messages waiting on this breaker.
    pub fn hold_reason(self) -> &'static str {
        match self {
            Scope::Sender => "circuit_sender",
            Scope::Template => "circuit_template",
            Scope::Account => "circuit_account",
        }
    }
}

/// The breaker keys a message passes through: its account, its sender, its template if any.
pub fn keys_of(claimed: &Claimed) -> Vec<(Scope, String)> {
    let mut keys = vec![
        (Scope::Account, String::new()),
        (Scope::Sender, claimed.phone_number_id.clone()),
    ];
    if let Content::Template { name, language, .. } = &claimed.content.0 {
        keys.push((Scope::Template, format!("{name}:{language}")));
    }
    keys
}

/// One open or half-open breaker.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Circuit {
    pub tenant_id: TenantId,
    pub scope: String,
    pub key: String,
    pub until: DateTime<Utc>,
}

/// The breakers and recipient holds that concern one batch.
#[derive(Debug, Default)]
pub struct Gates {
    circuits: Vec<Circuit>,
    holds: Vec<(TenantId, String, DateTime<Utc>)>,
}

/// What the gates say about one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    /// Send it. `breakers` lists the half-open breakers this send probes (closed on success).
    Pass { breakers: Vec<(Scope, String)> },
    /// Hold it until then, for this reason (never `retry`).
    Hold {
        until: DateTime<Utc>,
        reason: &'static str,
    },
}

impl Gates {
    /// Loads the breakers of the batch's tenants and the live holds on its recipients.
    pub async fn load(
        pool: &PgPool,
        batch: &[Claimed],
        now: DateTime<Utc>,
    ) -> Result<Self, sqlx::Error> {
        if batch.is_empty() {
            return Ok(Self::default());
        }
        let tenants: Vec<uuid::Uuid> = batch.iter().map(|c| c.tenant_id.0).collect();
        let recipients: Vec<&str> = batch.iter().map(|c| c.recipient.as_str()).collect();
        let circuits = sqlx::query_as(
            "SELECT tenant_id, scope, key, until FROM circuits WHERE tenant_id = ANY($1)
             UNION ALL
             SELECT tenant_id, 'template', name || ':' || language, paused_until FROM templates
             WHERE tenant_id = ANY($1) AND paused_until > $2
             UNION ALL
             SELECT tenant_id, 'account', '', account_restricted_until FROM tenant_settings
             WHERE tenant_id = ANY($1) AND account_restricted_until > $2",
        )
        .bind(&tenants)
        .bind(now)
        .fetch_all(pool)
        .await?;
        let holds = sqlx::query_as(
            "SELECT h.tenant_id, h.recipient, h.until FROM recipient_holds h
             JOIN unnest($1::uuid[], $2::text[]) AS b(tenant_id, recipient)
               ON h.tenant_id = b.tenant_id AND h.recipient = b.recipient
             WHERE h.until > $3",
        )
        .bind(&tenants)
        .bind(&recipients)
        .bind(now)
        .fetch_all(pool)
        .await?;
        Ok(Self { circuits, holds })
    }

    /// Decides for one message: a recipient hold or an open breaker holds it; a half-open
    /// breaker lets it through only if it wins the probe.
    pub async fn check(
        &self,
        pool: &PgPool,
        claimed: &Claimed,
        now: DateTime<Utc>,
        probe_wait: chrono::Duration,
    ) -> Result<Gate, sqlx::Error> {
        if let Some((_, _, until)) = self
            .holds
            .iter()
            .find(|(t, r, _)| *t == claimed.tenant_id && *r == claimed.recipient)
        {
            return Ok(Gate::Hold {
                until: *until,
                reason: "recipient_hold",
            });
        }
        let mut breakers = Vec::new();
        for (scope, key) in keys_of(claimed) {
            let matching = self.circuits.iter().filter(|c| {
                c.tenant_id == claimed.tenant_id && c.scope == scope.as_str() && c.key == key
            });
            let mut any = false;
            let mut open_until = None;
            for c in matching {
                any = true;
                if c.until > now {
                    open_until = open_until.max(Some(c.until));
                }
            }
            if let Some(until) = open_until {
                return Ok(Gate::Hold {
                    until,
                    reason: scope.hold_reason(),
                });
            }
            if !any {
                continue;
            }
            if !claim_probe(pool, claimed.tenant_id, scope, &key, now, probe_wait).await? {
                return Ok(Gate::Hold {
                    until: now + probe_wait,
                    reason: scope.hold_reason(),
                });
            }
            breakers.push((scope, key));
        }
        Ok(Gate::Pass { breakers })
    }
}

/// Takes the half-open breaker's single probe slot; a probe silent for `probe_wait` is presumed
/// lost (a crash), so the slot frees itself.
async fn claim_probe(
    pool: &PgPool,
    tenant: TenantId,
    scope: Scope,
    key: &str,
    now: DateTime<Utc>,
    probe_wait: chrono::Duration,
) -> Result<bool, sqlx::Error> {
    let won = sqlx::query(
        "UPDATE circuits SET probe_at = $4
         WHERE tenant_id = $1 AND scope = $2 AND key = $3 AND until <= $4
           AND (probe_at IS NULL OR probe_at <= $5)",
    )
    .bind(tenant)
    .bind(scope.as_str())
    .bind(key)
    .bind(now)
    .bind(now - probe_wait)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(won == 1)
}

/// Opens (or re-opens) a breaker until `until`, with Meta's error (its `code` is kept apart for
/// display); logs and counts it.
pub async fn open(
    pool: &PgPool,
    tenant: TenantId,
    scope: Scope,
    key: &str,
    error: &Value,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let code = error.get("code").and_then(Value::as_i64);
    sqlx::query(
        "INSERT INTO circuits (tenant_id, scope, key, code, error, opened_at, until)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (tenant_id, scope, key) DO UPDATE
         SET code = EXCLUDED.code, error = EXCLUDED.error, opened_at = EXCLUDED.opened_at,
             until = GREATEST(circuits.until, EXCLUDED.until), probe_at = NULL",
    )
    .bind(tenant)
    .bind(scope.as_str())
    .bind(key)
    .bind(code)
    .bind(error)
    .bind(now)
    .bind(until)
    .execute(pool)
    .await?;
    metrics::counter!(wafleet_core::metrics::CIRCUIT_OPENED, "scope" => scope.as_str())
        .increment(1);
    // The key is a phone number id or a template name, never a recipient's phone.
    tracing::error!(
        tenant = %tenant, scope = scope.as_str(), key, meta.error.code = ?code, %until,
        "circuit opened: its messages are held until a probe succeeds"
    );
    if scope == Scope::Account {
        note_connection(pool, tenant, error, now).await;
    }
    Ok(())
}

/// An error that halts the account says what the connection is (`token_invalid`,
/// `account_restricted`): recorded with Meta's message, for `GET /v1/settings/meta`.
async fn note_connection(pool: &PgPool, tenant: TenantId, error: &Value, now: DateTime<Utc>) {
    let Some(code) = error.get("code").and_then(Value::as_i64) else {
        return;
    };
    let message = error.get("message").and_then(Value::as_str).unwrap_or("");
    let Some(seen) = wafleet_core::connection::Observation::of_error(code, message) else {
        return;
    };
    if let Err(err) = wafleet_core::connection::record(pool, tenant, &seen, now).await {
        // The breaker holds the messages either way; the next check records the status.
        tracing::warn!(error = %err, "could not record the connection's status");
    }
}

/// Closes the breakers a successful probe passed through.
pub async fn close(
    pool: &PgPool,
    tenant: TenantId,
    breakers: &[(Scope, String)],
) -> Result<(), sqlx::Error> {
    for (scope, key) in breakers {
        let closed =
            sqlx::query("DELETE FROM circuits WHERE tenant_id = $1 AND scope = $2 AND key = $3")
                .bind(tenant)
                .bind(scope.as_str())
                .bind(key)
                .execute(pool)
                .await?
                .rows_affected();
        if closed > 0 {
            metrics::counter!(wafleet_core::metrics::CIRCUIT_CLOSED, "scope" => scope.as_str())
                .increment(1);
            tracing::info!(tenant = %tenant, scope = scope.as_str(), key, "circuit closed");
        }
    }
    Ok(())
}

/// Holds a recipient after Meta's 131049 until `until`.
pub async fn hold_recipient(
    pool: &PgPool,
    tenant: TenantId,
    recipient: &str,
    until: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO recipient_holds (tenant_id, recipient, until, reason) VALUES ($1, $2, $3, 'meta_131049')
         ON CONFLICT (tenant_id, recipient) DO UPDATE SET until = GREATEST(recipient_holds.until, EXCLUDED.until),
             reason = EXCLUDED.reason",
    )
    .bind(tenant)
    .bind(recipient)
    .bind(until)
    .execute(pool)
    .await?;
    Ok(())
}
