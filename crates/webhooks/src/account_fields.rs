//! Sender and account health from Meta: `phone_number_quality_update` (quality, throughput
//! upgrade, tier), `phone_number_name_update` (display-name decision),
//! `business_capability_update` (the portfolio's messaging tier) and `account_update`
//! (restrictions that halt the account's business-initiated sending). A raised tier makes the
//! messages held for the messaging limit due at once (`core::limit_holds`).

use crate::fields::{FieldChange, is_newest, str_at, unix_time};
use chrono::{DateTime, Utc};
use serde_json::Value;
use wafleet_core::{
    domain::TenantId,
    limit_holds::{self, Limits},
};

/// Throughput of a number after Meta's `THROUGHPUT_UPGRADE` (messages per second).
const UPGRADED_MPS: i32 = 1000;

/// "Until Meta lifts it": a restriction without an expiration.
fn until_lifted() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_214_400, 0).expect("9999-12-31")
}

/// The messaging tier in either form Meta sends: an integer (`2000`, `-1` = unlimited), a
/// numeric string, or a `TIER_*` name. `None` for `TIER_NOT_SET` and anything unknown.
pub fn parse_tier(v: &Value) -> Option<i32> {
    match v {
        Value::Number(n) => n.as_i64().and_then(|n| i32::try_from(n).ok()),
        Value::String(s) => s.parse().ok().or(match s.as_str() {
            "TIER_50" => Some(50),
            "TIER_250" => Some(250),
            "TIER_1K" => Some(1_000),
            "TIER_2K" => Some(2_000),
            "TIER_10K" => Some(10_000),
            "TIER_100K" => Some(100_000),
            "TIER_UNLIMITED" => Some(-1),
            _ => None,
        }),
        _ => None,
    }
}

/// `+<digits>` of a display number such as `"+44 20 7183 8750"` or `"442071838750"`.
fn e164(display: &str) -> Option<String> {
    let digits: String = display.chars().filter(char::is_ascii_digit).collect();
    (!digits.is_empty()).then(|| format!("+{digits}"))
}

async fn set_tier(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    tier: i32,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    if !is_newest(tx, tenant, "meta_tier", at).await? {
        return Ok(());
    }
    // The limits before, with the row locked so a concurrent admin change can't slip between
    // this read and the update (no row yet: Meta's default tier and the default reserve).
    let before: Option<(Option<i32>, Option<i32>, i32)> = sqlx::query_as(
        "SELECT meta_tier, tier_override, bulk_reserve_percent FROM tenant_settings
         WHERE tenant_id = $1 FOR UPDATE",
    )
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    let (after,): (Option<i32>,) = sqlx::query_as(
        "INSERT INTO tenant_settings (tenant_id, meta_tier) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET meta_tier = EXCLUDED.meta_tier, updated_at = now()
         RETURNING tier_override",
    )
    .bind(tenant)
    .bind(tier)
    .fetch_one(&mut *tx)
    .await?;
    tracing::info!(tenant = %tenant, tier, "messaging tier updated by Meta");
    let (meta_before, tier_override, reserve) = before.unwrap_or((None, after, 10));
    let raised = Limits::of(meta_before, tier_override, reserve).raised_by(Limits::of(
        Some(tier),
        tier_override,
        reserve,
    ));
    if raised {
        // The webhooks service has no injected clock: `release_on_raise` never sets a time
        // later than the hold's own, so the dispatcher's releaser finds it due either way.
        limit_holds::release_on_raise(tx, tenant, Utc::now()).await?;
    }
    Ok(())
}

/// Quality (`FLAGGED` = low, `UNFLAGGED` = back to high, or an explicit `quality_rating`),
/// the throughput upgrade, and the tier it carries.
pub async fn quality_update(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    change: &FieldChange,
) -> Result<bool, sqlx::Error> {
    let v = &change.value;
    let Some(phone) = str_at(v, "display_phone_number").and_then(e164) else {
        return Ok(false);
    };
    let event = str_at(v, "event").unwrap_or_default();
    let quality = str_at(v, "quality_rating")
        .or(match event {
            "FLAGGED" => Some("RED"),
            "UNFLAGGED" => Some("GREEN"),
            _ => None,
        })
        .map(str::to_ascii_uppercase);
    let mps = (event == "THROUGHPUT_UPGRADE").then_some(UPGRADED_MPS);
    if is_newest(tx, tenant, &format!("sender_quality:{phone}"), change.at).await? {
        sqlx::query(
            "UPDATE senders SET quality_rating = COALESCE($3, quality_rating),
                 throughput_mps = COALESCE($4, throughput_mps)
             WHERE tenant_id = $1 AND phone_e164 = $2",
        )
        .bind(tenant)
        .bind(&phone)
        .bind(&quality)
        .bind(mps)
        .execute(&mut *tx)
        .await?;
    }
    let tier = v
        .get("max_daily_conversations_per_business")
        .or_else(|| v.get("current_limit"))
        .and_then(parse_tier);
    if let Some(tier) = tier {
        set_tier(tx, tenant, tier, change.at).await?;
    }
    Ok(true)
}

/// The display-name decision (Meta's "Display names": `decision` `APPROVED`, `REJECTED` — the
/// number's `name_status` then reads `DECLINED` — or `DEFERRED`). It concerns the name under
/// review when the sender has one (`new_display_name`), else its current name. An approved
/// name becomes the sender's display name and the review is over. Meta shows an approved new
/// name once the number is registered again (`POST /v1/senders/{id}/register`).
pub async fn name_update(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    change: &FieldChange,
) -> Result<bool, sqlx::Error> {
    let v = &change.value;
    let (Some(phone), Some(decision)) = (
        str_at(v, "display_phone_number").and_then(e164),
        str_at(v, "decision").or(str_at(v, "name_status")),
    ) else {
        return Ok(false);
    };
    if !is_newest(tx, tenant, &format!("sender_name:{phone}"), change.at).await? {
        return Ok(true);
    }
    let approved_name = (decision == "APPROVED")
        .then(|| str_at(v, "requested_verified_name"))
        .flatten();
    sqlx::query(
        "UPDATE senders SET
             display_name = CASE WHEN $3 = 'APPROVED' THEN COALESCE($4, display_name)
                                 ELSE display_name END,
             name_status = CASE WHEN $3 = 'APPROVED' THEN 'APPROVED'
                                WHEN new_display_name IS NULL THEN $5 ELSE name_status END,
             new_name_status = CASE WHEN $3 = 'APPROVED' THEN NULL
                                    WHEN new_display_name IS NOT NULL THEN $5
                                    ELSE new_name_status END,
             new_display_name = CASE WHEN $3 = 'APPROVED' THEN NULL ELSE new_display_name END
         WHERE tenant_id = $1 AND phone_e164 = $2",
    )
    .bind(tenant)
    .bind(&phone)
    .bind(decision)
    .bind(approved_name)
    .bind(name_status_of(decision))
    .execute(&mut *tx)
    .await?;
    Ok(true)
}

/// The `name_status` a decision leaves, as Graph spells it (a rejected name is `DECLINED`).
fn name_status_of(decision: &str) -> &str {
    match decision {
        "REJECTED" => "DECLINED",
        other => other,
    }
}

/// The portfolio's messaging tier (v24+ `max_daily_conversations_per_business`, or the legacy
/// per-phone figure). A change about other capabilities only is fine and changes nothing.
pub async fn capability_update(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    change: &FieldChange,
) -> Result<bool, sqlx::Error> {
    let v = &change.value;
    let tier = v
        .get("max_daily_conversations_per_business")
        .or_else(|| v.get("max_daily_conversation_per_phone"))
        .and_then(parse_tier);
    if let Some(tier) = tier {
        set_tier(tx, tenant, tier, change.at).await?;
    }
    Ok(true)
}

/// Restrictions of business-initiated messaging (and bans) set
/// `tenant_settings.account_restricted_until`; a restriction without messaging limits, or a
/// reinstatement, clears it. Other events (pricing tiers, partner changes) change nothing.
pub async fn account_update(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    change: &FieldChange,
) -> Result<bool, sqlx::Error> {
    let v = &change.value;
    let Some(event) = str_at(v, "event") else {
        return Ok(false);
    };
    let until: Option<Option<DateTime<Utc>>> = match event {
        "ACCOUNT_RESTRICTION" => {
            let messaging: Vec<&Value> = v
                .get("restriction_info")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|r| str_at(r, "restriction_type").is_some_and(|t| t.contains("MESSAGING")))
                .collect();
            let ends = messaging
                .iter()
                .map(|r| unix_time(r.get("expiration")).unwrap_or_else(until_lifted))
                .max();
            Some(ends)
        }
        "DISABLED_UPDATE" => match v
            .pointer("/ban_info/waba_ban_state")
            .and_then(Value::as_str)
        {
            Some("DISABLE") => Some(Some(until_lifted())),
            Some("REINSTATE") => Some(None),
            _ => None,
        },
        _ => None,
    };
    let Some(until) = until else {
        tracing::info!(tenant = %tenant, event, "account update needs no action");
        return Ok(true);
    };
    if !is_newest(tx, tenant, "account_restriction", change.at).await? {
        return Ok(true);
    }
    sqlx::query(
        "INSERT INTO tenant_settings (tenant_id, account_restricted_until) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE
         SET account_restricted_until = EXCLUDED.account_restricted_until, updated_at = now()",
    )
    .bind(tenant)
    .bind(until)
    .execute(&mut *tx)
    .await?;
    tracing::warn!(tenant = %tenant, event, ?until, "Meta changed the account's messaging restriction");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tier_is_read_from_an_integer_a_number_string_or_a_tier_name() {
        assert_eq!(parse_tier(&json!(2000)), Some(2000));
        assert_eq!(parse_tier(&json!("10000")), Some(10_000));
        assert_eq!(parse_tier(&json!("TIER_2K")), Some(2000));
        assert_eq!(parse_tier(&json!("TIER_UNLIMITED")), Some(-1));
        assert_eq!(parse_tier(&json!(-1)), Some(-1));
        assert_eq!(parse_tier(&json!("TIER_NOT_SET")), None);
    }

    #[test]
    fn a_rejected_name_reads_declined_as_graph_shows_it() {
        assert_eq!(name_status_of("REJECTED"), "DECLINED");
        assert_eq!(name_status_of("APPROVED"), "APPROVED");
        assert_eq!(name_status_of("DEFERRED"), "DEFERRED");
    }

    #[test]
    fn a_display_number_becomes_e164() {
        assert_eq!(e164("+44 20 7183-8750").as_deref(), Some("+442071838750"));
        assert_eq!(e164(""), None);
    }
}
