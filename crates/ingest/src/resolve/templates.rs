//! The synced templates intake binds against: read in one query per batch, then bound purely
//! (approval, merge fields through the template's bindings, the body's parameter count).

use axum::http::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use wafleet_core::{
    contract::{ResolvedParameters, TemplateParameters},
    domain::TenantId,
    http::Problem,
};

/// A template as synced from Meta, with the tenant's merge-field bindings.
#[derive(Debug, Clone)]
pub struct TemplateInfo {
    pub status: String,
    pub parameter_format: String,
    pub body_param_count: i32,
    bindings: Vec<Binding>,
    /// Meta's component definitions (header format, buttons), for header and button parameters.
    pub components: Vec<Value>,
}

/// Reads a synced template (`None` if it was never synced).
pub async fn load_template(
    pool: &sqlx::PgPool,
    tenant: TenantId,
    name: &str,
    language: &str,
) -> Result<Option<TemplateInfo>, sqlx::Error> {
    let key = (tenant, name.to_owned(), language.to_owned());
    Ok(load_templates(pool, std::slice::from_ref(&key))
        .await?
        .remove(&key))
}

/// A template's key: tenant, name and language.
pub type TemplateKey = (TenantId, String, String);

/// Reads the synced templates among `keys` in one query (the ones never synced are absent).
pub async fn load_templates(
    pool: &sqlx::PgPool,
    keys: &[TemplateKey],
) -> Result<HashMap<TemplateKey, TemplateInfo>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let tenants: Vec<uuid::Uuid> = keys.iter().map(|k| k.0.0).collect();
    let names: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let languages: Vec<&str> = keys.iter().map(|k| k.2.as_str()).collect();
    // Driven by the templates primary key (tenant, name, language), whatever the statistics.
    type Row = (TenantId, String, String, String, String, i32, Value, Value);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT t.tenant_id, t.name, t.language, t.status, t.parameter_format, t.body_param_count,
                t.bindings, t.components
         FROM unnest($1::uuid[], $2::text[], $3::text[]) AS k(tenant_id, name, language)
         JOIN templates t
           ON t.tenant_id = k.tenant_id AND t.name = k.name AND t.language = k.language",
    )
    .bind(&tenants)
    .bind(&names)
    .bind(&languages)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                tenant,
                name,
                language,
                status,
                parameter_format,
                body_param_count,
                bindings,
                components,
            )| {
                let info = TemplateInfo {
                    status,
                    parameter_format,
                    body_param_count,
                    bindings: serde_json::from_value(bindings).unwrap_or_default(),
                    components: serde_json::from_value(components).unwrap_or_default(),
                };
                ((tenant, name, language), info)
            },
        )
        .collect())
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
