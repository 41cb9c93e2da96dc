//! `message_template_status_update` and `template_category_update`: keep the synced template's
//! status, pause and category as Meta reports them, so sending (and the template circuit
//! breaker) sees a paused, disabled or recategorised template without waiting for a sync.

use crate::fields::{FieldChange, is_newest, str_at};
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use wafleet_core::domain::TenantId;

/// What a status event does to the template row.
#[derive(Debug, PartialEq)]
struct StatusChange {
    /// The new `status`, or `None` to keep it (`FLAGGED` only warns).
    status: Option<&'static str>,
    /// `Some(x)`: set `paused_until` to `x` (None clears it); `None`: leave it.
    paused_until: Option<Option<DateTime<Utc>>>,
}

/// Meta pauses a template for 3 h the first time and 6 h the second; a pacing pause
/// (`RATE_LIMITING_PAUSE`) lasts until Meta unpauses it, so it gets no end time.
fn status_change(event: &str, title: Option<&str>, at: DateTime<Utc>) -> Option<StatusChange> {
    let set = |status, paused_until| {
        Some(StatusChange {
            status: Some(status),
            paused_until: Some(paused_until),
        })
    };
    match event {
        "PAUSED" => set(
            "PAUSED",
            match title {
                Some("SECOND_PAUSE") => Some(at + Duration::hours(6)),
                Some("RATE_LIMITING_PAUSE") => None,
                _ => Some(at + Duration::hours(3)),
            },
        ),
        "APPROVED" | "REINSTATED" | "UNARCHIVED" => set("APPROVED", None),
        "FLAGGED" | "LOCKED" => Some(StatusChange {
            status: None,
            paused_until: None,
        }),
        "REJECTED" => set("REJECTED", None),
        "PENDING" => set("PENDING", None),
        "DISABLED" => set("DISABLED", None),
        "IN_APPEAL" => set("IN_APPEAL", None),
        "LIMIT_EXCEEDED" => set("LIMIT_EXCEEDED", None),
        "ARCHIVED" => set("ARCHIVED", None),
        "PENDING_DELETION" => set("PENDING_DELETION", None),
        "DELETED" => set("DELETED", None),
        _ => None,
    }
}

/// Applies a status event; `false` when the change lacks what we need.
pub async fn status_update(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    change: &FieldChange,
) -> Result<bool, sqlx::Error> {
    let v = &change.value;
    let (Some(name), Some(language), Some(event)) = (
        str_at(v, "message_template_name"),
        str_at(v, "message_template_language"),
        str_at(v, "event"),
    ) else {
        return Ok(false);
    };
    let title = v.pointer("/other_info/title").and_then(Value::as_str);
    let Some(effect) = status_change(event, title, change.at) else {
        return Ok(false);
    };
    if !is_newest(
        tx,
        tenant,
        &format!("template_status:{name}:{language}"),
        change.at,
    )
    .await?
    {
        return Ok(true);
    }
    // A template not synced yet has no row: the next sync brings its status.
    sqlx::query(
        "UPDATE templates SET status = COALESCE($4, status),
             paused_until = CASE WHEN $5 THEN $6 ELSE paused_until END,
             category = COALESCE($7, category), updated_at = now()
         WHERE tenant_id = $1 AND name = $2 AND language = $3",
    )
    .bind(tenant)
    .bind(name)
    .bind(language)
    .bind(effect.status)
    .bind(effect.paused_until.is_some())
    .bind(effect.paused_until.flatten())
    .bind(str_at(v, "message_template_category"))
    .execute(&mut *tx)
    .await?;
    tracing::info!(tenant = %tenant, template = name, language, event, "template status updated by Meta");
    Ok(true)
}

/// Applies a category change (Meta recategorised a UTILITY template as MARKETING…).
pub async fn category_update(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    change: &FieldChange,
) -> Result<bool, sqlx::Error> {
    let v = &change.value;
    let (Some(name), Some(language), Some(category)) = (
        str_at(v, "message_template_name"),
        str_at(v, "message_template_language"),
        str_at(v, "new_category"),
    ) else {
        return Ok(false);
    };
    if !is_newest(
        tx,
        tenant,
        &format!("template_category:{name}:{language}"),
        change.at,
    )
    .await?
    {
        return Ok(true);
    }
    sqlx::query(
        "UPDATE templates SET category = $4, updated_at = now()
         WHERE tenant_id = $1 AND name = $2 AND language = $3",
    )
    .bind(tenant)
    .bind(name)
    .bind(language)
    .bind(category.to_ascii_uppercase())
    .execute(&mut *tx)
    .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_pause_lasts_three_hours_and_a_second_six() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let first = status_change("PAUSED", Some("FIRST_PAUSE"), at).unwrap();
        let second = status_change("PAUSED", Some("SECOND_PAUSE"), at).unwrap();
        assert_eq!(first.paused_until, Some(Some(at + Duration::hours(3))));
        assert_eq!(second.paused_until, Some(Some(at + Duration::hours(6))));
    }

    #[test]
    fn an_unpause_or_reinstatement_approves_and_clears_the_pause() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        for event in ["APPROVED", "REINSTATED"] {
            let c = status_change(event, Some("UNPAUSE"), at).unwrap();
            assert_eq!(c.status, Some("APPROVED"));
            assert_eq!(c.paused_until, Some(None));
        }
        assert_eq!(status_change("FLAGGED", None, at).unwrap().status, None);
        assert!(status_change("SOMETHING_NEW", None, at).is_none());
    }
}
