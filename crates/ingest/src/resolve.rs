//! What a send request is resolved against before it is stored, shared by `POST /v1/messages`,
//! AMQP intake and campaign intake: the sender (named, the user's own, else the company's), the
//! tenant's allowed countries, and the synced template with its merge-field bindings.

use axum::http::StatusCode;
use serde_json::Value;
use wafleet_core::{
    contract::{ResolvedParameters, TemplateParameters},
    domain::{PhoneNumber, SenderId, TenantId},
    http::Problem,
    policy::countries,
};

/// The sender a request goes out from: the named one; else the user's own; else the company's.
/// The inner `Err` is the caller's mistake (unknown or unapproved sender).
pub async fn find_sender(
    pool: &sqlx::PgPool,
    tenant: TenantId,
    named: Option<&str>,
    user_id: Option<&str>,
) -> Result<Result<(SenderId, String), Problem>, Problem> {
    let unprocessable = |code, detail: String| {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail).field("sender")
    };
    let sender: Option<(SenderId, String, String)> = match named {
        Some(phone_number_id) => {
            sqlx::query_as(
                "SELECT id, phone_number_id, status FROM senders WHERE tenant_id = $1 AND phone_number_id = $2
                 ORDER BY (status = 'rejected') LIMIT 1",
            )
            .bind(tenant)
            .bind(phone_number_id)
            .fetch_optional(pool)
            .await?
        }
        None => {
            sqlx::query_as(
                "SELECT id, phone_number_id, status FROM senders
                 WHERE tenant_id = $1 AND status <> 'rejected'
                   AND (owner_user_id = $2 OR is_company_default)
                 -- An approved sender first (the user's own, else the company's); a pending
                 -- one only when there is nothing approved, to say why it can't be used.
                 ORDER BY status = 'approved' DESC, (owner_user_id IS NOT DISTINCT FROM $2) DESC
                 LIMIT 1",
            )
            .bind(tenant)
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        }
    };
    let Some((sender_id, phone_number_id, sender_status)) = sender else {
        return Ok(Err(unprocessable(
            "unknown_sender",
            match named {
                Some(_) => "no sender with that phone number id belongs to this company".into(),
                None => "no sender given and the company has no default sender".into(),
            },
        )));
    };
    if sender_status != "approved" {
        return Ok(Err(unprocessable(
            "sender_not_approved",
            format!("the sender is {sender_status}, not approved for sending"),
        )));
    }
    Ok(Ok((sender_id, phone_number_id)))
}

/// The tenant's allowed countries (ISO 3166-1 alpha-2; empty = worldwide).
pub async fn allowed_countries(
    pool: &sqlx::PgPool,
    tenant: TenantId,
) -> Result<Vec<String>, sqlx::Error> {
    Ok(
        sqlx::query_scalar("SELECT allowed_countries FROM tenant_settings WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(pool)
            .await?
            .unwrap_or_default(),
    )
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

/// A template as synced from Meta, with the tenant's merge-field bindings.
#[derive(Debug, Clone)]
pub struct TemplateInfo {
    pub status: String,
    pub parameter_format: String,
    pub body_param_count: i32,
    bindings: Vec<Binding>,
}

/// Reads a synced template (`None` if it was never synced).
pub async fn load_template(
    pool: &sqlx::PgPool,
    tenant: TenantId,
    name: &str,
    language: &str,
) -> Result<Option<TemplateInfo>, sqlx::Error> {
    let row: Option<(String, String, i32, Value)> = sqlx::query_as(
        "SELECT status, parameter_format, body_param_count, bindings FROM templates
         WHERE tenant_id = $1 AND name = $2 AND language = $3",
    )
    .bind(tenant)
    .bind(name)
    .bind(language)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(
        |(status, parameter_format, body_param_count, bindings)| TemplateInfo {
            status,
            parameter_format,
            body_param_count,
            bindings: serde_json::from_value(bindings).unwrap_or_default(),
        },
    ))
}

/// Checks that the template is synced and APPROVED, binds merge fields through its bindings and
/// checks the parameter count, so nothing Meta would refuse for these reasons is ever sent.
/// Pure: campaigns bind every recipient with one template read.
pub fn bind_template(
    known: Option<&TemplateInfo>,
    name: &str,
    language: &str,
    parameters: &Option<TemplateParameters>,
    merge_fields: &Option<std::collections::BTreeMap<String, String>>,
) -> Result<ResolvedParameters, Problem> {
    let mismatch = |field: &str, detail: String| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "template_parameters_mismatch",
            detail,
        )
        .field(field)
    };
    let Some(t) = known else {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "template_not_approved",
            format!(
                "template {name} ({language}) is unknown: it is not among the company's synced \
                 templates (sync them with POST /v1/templates/sync)"
            ),
        )
        .field("template.name"));
    };
    if t.status != "APPROVED" {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "template_not_approved",
            format!("template {name} ({language}) is {}, not APPROVED", t.status),
        )
        .field("template.name"));
    }
    let resolved = match (parameters, merge_fields) {
        (Some(TemplateParameters::Positional(values)), _) => {
            ResolvedParameters::Positional(values.clone())
        }
        (Some(TemplateParameters::Named(values)), _) => {
            ResolvedParameters::Named(values.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        }
        (None, Some(fields)) => {
            let mut values = Vec::with_capacity(t.bindings.len());
            for b in &t.bindings {
                let Some(v) = fields.get(&b.merge_code) else {
                    return Err(mismatch(
                        &format!("merge_fields.{}", b.merge_code),
                        format!("template {name} needs merge field {}", b.merge_code),
                    ));
                };
                values.push((b.param.clone(), v.clone()));
            }
            if t.parameter_format == "NAMED" {
                ResolvedParameters::Named(values)
            } else {
                ResolvedParameters::Positional(values.into_iter().map(|(_, v)| v).collect())
            }
        }
        (None, None) => ResolvedParameters::Positional(Vec::new()),
    };
    let given = match &resolved {
        ResolvedParameters::Positional(v) => v.len(),
        ResolvedParameters::Named(v) => v.len(),
    };
    if given != t.body_param_count as usize {
        return Err(mismatch(
            "template.parameters",
            format!(
                "template {name} takes {} body parameters, {given} given",
                t.body_param_count
            ),
        ));
    }
    Ok(resolved)
}

/// One merge-field binding of a template: body parameter (position or name) → merge code.
#[derive(Debug, Clone, serde::Deserialize)]
struct Binding {
    param: String,
    merge_code: String,
}
