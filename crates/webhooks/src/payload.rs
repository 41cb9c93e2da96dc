//! Splits a verified webhook body into its items, per tenant and kind: statuses and inbound
//! messages of the `messages` field, changes of the other fields, and what cannot be used
//! (kept raw in `dead_webhooks` by the consumer). Tenants are found by the entry's WABA id; a
//! webhook that came through a tenant's own route must name that tenant's WABA.

use crate::{
    fields::{self, FieldChange},
    inbound::InboundItem,
    statuses::StatusItem,
};
use chrono::Utc;
use serde_json::Value;
use std::collections::HashMap;
use wafleet_core::domain::TenantId;

/// What one payload held, per tenant.
#[derive(Default)]
pub struct Parsed {
    pub statuses: HashMap<TenantId, Vec<StatusItem>>,
    pub inbound: HashMap<TenantId, Vec<InboundItem>>,
    /// Changes of the other fields, in payload order.
    pub changes: Vec<(TenantId, FieldChange)>,
    /// Items kept raw: (tenant, reason, item); `Value::Null` means the whole body.
    pub dead: Vec<(Option<TenantId>, String, Value)>,
}

/// Sorts a payload's items by tenant and kind.
pub async fn parse(
    tx: &mut sqlx::PgConnection,
    hint: Option<TenantId>,
    payload: &Value,
) -> Result<Parsed, sqlx::Error> {
    let mut out = Parsed::default();
    if payload.get("object").and_then(Value::as_str) != Some("whatsapp_business_account") {
        out.dead
            .push((hint, "unknown_object".into(), payload.clone()));
        return Ok(out);
    }
    let entries = payload
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for entry in entries {
        let waba = entry.get("id").and_then(Value::as_str).unwrap_or_default();
        let owner: Option<(TenantId,)> =
            sqlx::query_as("SELECT tenant_id FROM meta_connections WHERE waba_id = $1")
                .bind(waba)
                .fetch_optional(&mut *tx)
                .await?;
        let tenant = match (hint, owner) {
            (Some(h), Some((o,))) if h == o => h,
            (None, Some((o,))) => o,
            (Some(_), Some(_)) => {
                out.dead
                    .push((hint, "waba_of_another_tenant".into(), entry.clone()));
                continue;
            }
            (_, None) => {
                out.dead.push((hint, "unknown_waba".into(), entry.clone()));
                continue;
            }
        };
        sort_entry(&mut out, tenant, entry);
    }
    Ok(out)
}

/// Sorts the items of one entry whose tenant is known. No I/O (only the clock, for an entry
/// without `time`), so the fuzzer runs it directly.
pub fn sort_entry(out: &mut Parsed, tenant: TenantId, entry: &Value) {
    let at = fields::unix_time(entry.get("time")).unwrap_or_else(Utc::now);
    for change in entry
        .get("changes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = change
            .get("field")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let value = change.get("value").cloned().unwrap_or(Value::Null);
        if field == "messages" {
            messages(out, tenant, &value);
        } else if fields::HANDLED.contains(&field) {
            out.changes.push((
                tenant,
                FieldChange {
                    field: field.to_owned(),
                    value,
                    at,
                    raw: change.clone(),
                },
            ));
        } else {
            out.dead.push((
                Some(tenant),
                format!("unhandled_field:{field}"),
                change.clone(),
            ));
        }
    }
}

/// The `messages` field: statuses, inbound messages and `value.errors`.
fn messages(out: &mut Parsed, tenant: TenantId, value: &Value) {
    let pnid = value
        .pointer("/metadata/phone_number_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let list = |key: &str| {
        value
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    for raw in list("statuses") {
        match StatusItem::parse(raw) {
            Some(item) => out.statuses.entry(tenant).or_default().push(item),
            None => out
                .dead
                .push((Some(tenant), "bad_status".into(), raw.clone())),
        }
    }
    for raw in list("messages") {
        match InboundItem::parse(raw, pnid) {
            Some(item) => out.inbound.entry(tenant).or_default().push(item),
            None => out
                .dead
                .push((Some(tenant), "bad_message".into(), raw.clone())),
        }
    }
    for raw in list("errors") {
        tracing::error!(tenant = %tenant, error = %raw, "Meta reported an account-level error");
        out.dead
            .push((Some(tenant), "meta_error".into(), raw.clone()));
    }
}
