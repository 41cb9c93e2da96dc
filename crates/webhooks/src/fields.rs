//! Webhook fields other than `messages`: template status and category, sender quality and
//! name, the portfolio's messaging tier, account restrictions and users' marketing
//! preferences. Each change gets a durable key (Meta retries it, every subscribed app gets a
//! copy), and each subject remembers the newest Meta time applied, so a late, older update
//! changes nothing.

use crate::{account_fields, optouts, template_fields};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use wafleet_core::domain::TenantId;

/// The fields this module handles; any other field is kept raw in `dead_webhooks`.
pub const HANDLED: &[&str] = &[
    "message_template_status_update",
    "template_category_update",
    "phone_number_quality_update",
    "phone_number_name_update",
    "business_capability_update",
    "account_update",
    "user_preferences",
];

/// Items that could not be used, with the reason they are kept raw.
pub type Dead = Vec<(String, Value)>;

/// One `changes[]` item of an entry.
#[derive(Debug, Clone)]
pub struct FieldChange {
    pub field: String,
    pub value: Value,
    /// The entry's `time`, or when we received it if Meta gave none.
    pub at: DateTime<Utc>,
    /// The whole change, kept raw if it can't be used.
    pub raw: Value,
}

impl FieldChange {
    /// The durable key: the same change delivered again (retry, another app) has the same key.
    fn key(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(self.at.timestamp().to_be_bytes());
        hash.update(self.value.to_string().as_bytes());
        format!("{}:{}", self.field, hex::encode(hash.finalize()))
    }
}

/// Applies one change for `tenant` inside `tx`; returns the items to keep raw.
pub async fn apply(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    change: &FieldChange,
) -> Result<Dead, sqlx::Error> {
    if !first_receipt(tx, tenant, &change.key()).await? {
        metrics::counter!("wafleet_webhook_duplicates_total").increment(1);
        return Ok(Dead::new());
    }
    let bad = |reason: &str| Ok(vec![(reason.to_owned(), change.raw.clone())]);
    if !change.value.is_object() {
        return bad(&format!("bad_change:{}", change.field));
    }
    let ok = match change.field.as_str() {
        "message_template_status_update" => {
            template_fields::status_update(tx, tenant, change).await?
        }
        "template_category_update" => template_fields::category_update(tx, tenant, change).await?,
        "phone_number_quality_update" => account_fields::quality_update(tx, tenant, change).await?,
        "phone_number_name_update" => account_fields::name_update(tx, tenant, change).await?,
        "business_capability_update" => {
            account_fields::capability_update(tx, tenant, change).await?
        }
        "account_update" => account_fields::account_update(tx, tenant, change).await?,
        "user_preferences" => return optouts::user_preferences(tx, tenant, change).await,
        other => return bad(&format!("unhandled_field:{other}")),
    };
    metrics::counter!("wafleet_webhook_field_changes_total", "field" => change.field.clone())
        .increment(1);
    if ok {
        Ok(Dead::new())
    } else {
        bad(&format!("bad_change:{}", change.field))
    }
}

/// Records the key; `false` when the change was seen before.
async fn first_receipt(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    key: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO webhook_receipts (tenant_id, key) VALUES ($1, $2) ON CONFLICT DO NOTHING",
    )
    .bind(tenant)
    .bind(key)
    .execute(&mut *tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves `subject`'s clock to `at`; `false` when a newer update was already applied, so this
/// one must change nothing. The row lock also orders concurrent updates of one subject.
pub async fn is_newest(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    subject: &str,
    at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(
        "INSERT INTO webhook_subjects (tenant_id, subject, last_at) VALUES ($1, $2, $3)
         ON CONFLICT (tenant_id, subject) DO UPDATE SET last_at = EXCLUDED.last_at
         WHERE webhook_subjects.last_at <= EXCLUDED.last_at",
    )
    .bind(tenant)
    .bind(subject)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(moved.rows_affected() == 1)
}

/// Unix seconds, as Meta sends them: a string or a number.
pub fn unix_time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    let secs = match v? {
        Value::String(s) => s.parse().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    DateTime::from_timestamp(secs, 0)
}

/// A string member of `v`.
pub fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}
