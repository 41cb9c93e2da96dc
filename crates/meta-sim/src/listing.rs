//! Graph listings: `GET /{version}/{waba_id}/message_templates` and `.../phone_numbers`.
//!
//! Both answer Meta's `{data:[...], paging:{cursors:{before,after}, next?}}` shape with `limit`
//! (default 25) and opaque `after` cursors; `paging` is left out when `data` is empty.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use crate::auth::require_bearer;
use crate::errors::GraphError;
use crate::state::{Inner, Sim};
use crate::types::SimNumber;

/// Page size when the request gives no `limit`.
const DEFAULT_LIMIT: usize = 25;

/// `GET /{version}/{waba_id}/message_templates`, filterable by `name` and `status`.
pub(crate) async fn templates(
    State(sim): State<Arc<Sim>>,
    Path((version, waba_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, GraphError> {
    require_bearer(&sim, &headers)?;
    let name = query.get("name");
    let status = query.get("status").map(|s| s.to_uppercase());
    let items: Vec<Value> = sim
        .lock()
        .templates
        .iter()
        .filter(|stored| stored.template.waba_id == waba_id)
        .filter(|stored| name.is_none_or(|n| *n == stored.template.name))
        .filter(|stored| status.as_ref().is_none_or(|s| *s == stored.template.status))
        .map(|stored| {
            let t = &stored.template;
            json!({
                "name": t.name,
                "language": t.language,
                "status": t.status,
                "category": t.category,
                "parameter_format": t.parameter_format,
                "components": components_of(t),
                "id": stored.id,
            })
        })
        .collect();
    let next_base = format!("{}/{version}/{waba_id}/message_templates", sim.base_url);
    Ok(Json(paginate(items, &query, &next_base)))
}

/// `GET /{version}/{waba_id}/phone_numbers`.
pub(crate) async fn phone_numbers(
    State(sim): State<Arc<Sim>>,
    Path((version, waba_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, GraphError> {
    require_bearer(&sim, &headers)?;
    let inner = sim.lock();
    // Meta answers 100/33 for a WABA id it does not know: that is what a wrong id looks like.
    if !inner.knows_waba(&waba_id) {
        return Err(GraphError::unknown_object(&waba_id));
    }
    let items: Vec<Value> = inner
        .numbers
        .iter()
        .filter(|n| n.waba_id == waba_id)
        .map(|n| number_fields(&inner, n))
        .collect();
    drop(inner);
    let next_base = format!("{}/{version}/{waba_id}/phone_numbers", sim.base_url);
    Ok(Json(paginate(items, &query, &next_base)))
}

/// A number as Graph shows it (`GET /{waba}/phone_numbers`, `GET /{phone_number_id}`):
/// `status` is `CONNECTED` once registered (`PENDING` before, `DISCONNECTED` after a
/// deregistration), `platform_type` `CLOUD_API` then (else `NOT_APPLICABLE`); `name_status` is
/// the current display name's review, `new_display_name` / `new_name_status` a pending change.
pub(crate) fn number_fields(inner: &Inner, n: &SimNumber) -> Value {
    let mps = n.mps.unwrap_or(inner.default_mps);
    let registered = inner.onboarding.is_registered(&n.phone_number_id);
    let mut fields = json!({
        "id": n.phone_number_id,
        "display_phone_number": n.display_phone_number,
        "verified_name": n.verified_name.clone().unwrap_or_default(),
        "quality_rating": n.quality_rating.clone().unwrap_or_else(|| "GREEN".to_owned()),
        "status": inner.onboarding.status_of(&n.phone_number_id),
        "platform_type": if registered { "CLOUD_API" } else { "NOT_APPLICABLE" },
        "code_verification_status": crate::verification::status_of(inner, &n.phone_number_id),
        "name_status": "APPROVED",
        "throughput": {"level": if mps > 80 { "HIGH" } else { "STANDARD" }},
    });
    if let Some(names) = inner.onboarding.names.get(&n.phone_number_id) {
        names.show(&mut fields);
    }
    fields
}

/// One page of `items` after the `after` cursor, with Meta's `paging` object.
fn paginate(items: Vec<Value>, query: &HashMap<String, String>, next_base: &str) -> Value {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(DEFAULT_LIMIT);
    let start = query
        .get("after")
        .and_then(|c| decode_cursor(c))
        .map_or(0, |i| i + 1);
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    if page.is_empty() {
        return json!({"data": []});
    }
    let last = start + page.len() - 1;
    let mut paging =
        json!({"cursors": {"before": encode_cursor(start), "after": encode_cursor(last)}});
    if last + 1 < total {
        paging["next"] = json!(format!(
            "{next_base}?limit={limit}&after={}",
            encode_cursor(last)
        ));
    }
    json!({"data": page, "paging": paging})
}

/// An opaque cursor for a position in a listing.
fn encode_cursor(index: usize) -> String {
    hex::encode(format!("cursor:{index}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let text = String::from_utf8(hex::decode(cursor).ok()?).ok()?;
    text.strip_prefix("cursor:")?.parse().ok()
}

/// Number of distinct `{{1}}` / `{{name}}` placeholders in a template text.
pub(crate) fn placeholder_count(text: &str) -> usize {
    let mut seen = HashSet::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else { break };
        let name = after[..close].trim();
        if !name.is_empty() {
            seen.insert(name.to_owned());
        }
        rest = &after[close + 2..];
    }
    seen.len()
}

/// A template's components as Meta lists them: the header, the body and the buttons.
fn components_of(t: &crate::types::SimTemplate) -> Vec<Value> {
    let mut components = Vec::new();
    if let Some(h) = &t.header {
        let mut header = json!({"type": "HEADER", "format": h.format});
        if let Some(text) = &h.text {
            header["text"] = json!(text);
        }
        components.push(header);
    }
    components.push(json!({"type": "BODY", "text": t.body_text}));
    if !t.buttons.is_empty() {
        let buttons: Vec<Value> = t
            .buttons
            .iter()
            .map(|b| {
                let mut button = json!({"type": b.kind, "text": b.text});
                if let Some(url) = &b.url {
                    button["url"] = json!(url);
                }
                button
            })
            .collect();
        components.push(json!({"type": "BUTTONS", "buttons": buttons}));
    }
    components
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_and_named_placeholders_are_counted_once_each() {
        assert_eq!(placeholder_count("Hi {{1}}, your code is {{2}}."), 2);
        assert_eq!(placeholder_count("Hi {{first_name}} / {{first_name}}"), 1);
        assert_eq!(placeholder_count("No variables"), 0);
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("zz"), None);
    }
}
