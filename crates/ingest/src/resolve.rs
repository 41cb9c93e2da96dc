//! What a send request is resolved against before it is stored, shared by `POST /v1/messages`,
//! AMQP intake and campaign intake: the sender (named; else sticky, the number the recipient
//! last wrote to while that window is open; else the user's own; else the company's), the
//! tenant's allowed countries, and the synced template with its merge-field bindings. The
//! choices themselves are pure functions over rows loaded once, so a batch of requests is
//! resolved with one read per table, not one per request.

mod templates;

pub use templates::{TemplateInfo, TemplateKey, bind_template, load_template, load_templates};

use crate::validate::{Draft, DraftBody};
use axum::http::StatusCode;
use std::collections::HashMap;
use wafleet_core::{
    contract::Content,
    domain::{PhoneNumber, SenderId, TenantId},
    http::Problem,
    policy::countries,
};

/// A sender as intake chooses between them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SenderRow {
    pub tenant_id: TenantId,
    pub id: SenderId,
    pub phone_number_id: String,
    pub status: String,
    pub owner_user_id: Option<String>,
    pub is_company_default: bool,
    /// The module switch of the sender's tenant (`tenants.whatsapp_enabled`).
    pub whatsapp_enabled: bool,
}

impl SenderRow {
    /// Holds a place among the 20 (neither rejected nor removed).
    fn is_live(&self) -> bool {
        self.status != "rejected" && self.status != "removed"
    }
}

/// Every sender of `tenants`, grouped by tenant (a company has at most 20), each with its
/// tenant's module switch.
pub async fn load_senders(
    pool: &sqlx::PgPool,
    tenants: &[TenantId],
) -> Result<HashMap<TenantId, Vec<SenderRow>>, sqlx::Error> {
    let ids: Vec<uuid::Uuid> = tenants.iter().map(|t| t.0).collect();
    let rows: Vec<SenderRow> = sqlx::query_as(
        "SELECT s.tenant_id, s.id, s.phone_number_id, s.status, s.owner_user_id,
                s.is_company_default, t.whatsapp_enabled
         FROM senders s JOIN tenants t ON t.id = s.tenant_id
         WHERE s.tenant_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut by_tenant: HashMap<TenantId, Vec<SenderRow>> = HashMap::new();
    for row in rows {
        by_tenant.entry(row.tenant_id).or_default().push(row);
    }
    Ok(by_tenant)
}

/// The sender a request goes out from, among the tenant's `senders`: the named one; else the
/// sticky one (`wrote_to`: the number the recipient last wrote to, while that window is open,
/// when it is approved and is the company's or the user's own); else the user's own; else the
/// company's. `Err` is the caller's mistake (unknown or unapproved sender), or the tenant is
/// switched off for WhatsApp (`whatsapp_disabled`).
pub fn pick_sender(
    senders: &[SenderRow],
    named: Option<&str>,
    user_id: Option<&str>,
    wrote_to: Option<&str>,
) -> Result<(SenderId, String), Problem> {
    if senders.iter().any(|s| !s.whatsapp_enabled) {
        return Err(whatsapp_disabled());
    }
    // Sticky sender: a reply goes out in the chat the candidate wrote in, so it stays in that
    // number's open service window (free-form text is allowed there and only there). Never
    // another consultant's own number, and never a number that could not send now.
    let sticky = wrote_to.filter(|_| named.is_none()).and_then(|number| {
        senders.iter().find(|s| {
            s.phone_number_id == number
                && s.is_live()
                && s.status == "approved"
                && (s.owner_user_id.is_none() || s.owner_user_id.as_deref() == user_id)
        })
    });
    if let Some(sender) = sticky {
        return Ok((sender.id, sender.phone_number_id.clone()));
    }
    let unprocessable = |code, detail: String| {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail).field("sender")
    };
    let chosen = match named {
        // A number re-added after a rejection or removal has two rows: the live one wins.
        Some(phone_number_id) => senders
            .iter()
            .filter(|s| s.phone_number_id == phone_number_id)
            .min_by_key(|s| !s.is_live()),
        // An approved sender first (the user's own, else the company's); a pending one only
        // when there is nothing approved, to say why it can't be used.
        None => senders
            .iter()
            .filter(|s| {
                s.is_live()
                    && (s.is_company_default
                        || (user_id.is_some() && s.owner_user_id.as_deref() == user_id))
            })
            .max_by_key(|s| {
                (
                    s.status == "approved",
                    s.owner_user_id.as_deref() == user_id,
                )
            }),
    };
    let Some(sender) = chosen else {
        return Err(unprocessable(
            "unknown_sender",
            match named {
                Some(_) => "no sender with that phone number id belongs to this company".into(),
                None => "no sender given and the company has no default sender".into(),
            },
        ));
    };
    if sender.status != "approved" {
        return Err(unprocessable(
            "sender_not_approved",
            format!("the sender is {}, not approved for sending", sender.status),
        ));
    }
    Ok((sender.id, sender.phone_number_id.clone()))
}

/// The refusal of a send for a tenant switched off for WhatsApp (its webhooks are still
/// recorded).
pub fn whatsapp_disabled() -> Problem {
    Problem::new(
        StatusCode::FORBIDDEN,
        "whatsapp_disabled",
        "WhatsApp is switched off for this company; an operator switches it on again",
    )
}

/// [`pick_sender`] over the tenant's senders as they are now.
/// The inner `Err` is the caller's mistake (unknown or unapproved sender).
pub async fn find_sender(
    pool: &sqlx::PgPool,
    tenant: TenantId,
    named: Option<&str>,
    user_id: Option<&str>,
) -> Result<Result<(SenderId, String), Problem>, Problem> {
    let senders = load_senders(pool, &[tenant]).await?;
    let senders = senders.get(&tenant).map(Vec::as_slice).unwrap_or_default();
    Ok(pick_sender(senders, named, user_id, None))
}

/// The tenant's allowed countries (ISO 3166-1 alpha-2; empty = worldwide).
pub async fn allowed_countries(
    pool: &sqlx::PgPool,
    tenant: TenantId,
) -> Result<Vec<String>, sqlx::Error> {
    Ok(load_allowed_countries(pool, &[tenant])
        .await?
        .remove(&tenant)
        .unwrap_or_default())
}

/// The allowed countries of each of `tenants` that has settings (absent = worldwide).
pub async fn load_allowed_countries(
    pool: &sqlx::PgPool,
    tenants: &[TenantId],
) -> Result<HashMap<TenantId, Vec<String>>, sqlx::Error> {
    let ids: Vec<uuid::Uuid> = tenants.iter().map(|t| t.0).collect();
    let rows: Vec<(TenantId, Vec<String>)> = sqlx::query_as(
        "SELECT tenant_id, allowed_countries FROM tenant_settings WHERE tenant_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// `country_not_allowed` when the recipient's country is not in `allowed`.
pub fn country_refusal(allowed: &[String], to: &PhoneNumber) -> Option<Problem> {
    (!countries::allowed(allowed, to.country())).then(|| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "country_not_allowed",
            format!(
                "the recipient's country ({}) is not in the company's allowed countries ({})",
                to.country().unwrap_or("unknown"),
                allowed.join(", ")
            ),
        )
        .field("to")
    })
}

/// A draft's sender, country check and template binding, over rows already read: the one rule
/// shared by the group commit (rows read per batch) and the one-at-a-time path. `template` is
/// the synced template the draft names (`None` for text, or when it was never synced);
/// `wrote_to` the number the recipient last wrote to (`sticky::load_last_written`).
pub fn resolve_draft(
    draft: &Draft,
    senders: &[SenderRow],
    allowed: &[String],
    template: Option<&TemplateInfo>,
    wrote_to: Option<&str>,
) -> Result<((SenderId, String), Content), Problem> {
    let wrote_to = wrote_to.filter(|_| crate::sticky::wants_sticky(draft));
    let sender = pick_sender(
        senders,
        draft.sender.as_deref(),
        draft.user_id.as_deref(),
        wrote_to,
    )?;
    if let Some(problem) = country_refusal(allowed, &draft.to) {
        return Err(problem);
    }
    let content = match &draft.body {
        DraftBody::Free(content) => content.clone(),
        DraftBody::Template {
            name,
            language,
            parameters,
            merge_fields,
            header,
            buttons,
        } => {
            let parameters = bind_template(template, name, language, parameters, merge_fields)?;
            let components = template
                .map(|t| t.components.as_slice())
                .unwrap_or_default();
            let (header, buttons) = crate::template_components::bind(
                name,
                components,
                header.as_ref(),
                buttons,
                merge_fields.as_ref(),
            )?;
            Content::Template {
                name: name.clone(),
                language: language.clone(),
                parameters,
                header,
                buttons,
            }
        }
    };
    Ok((sender, content))
}
