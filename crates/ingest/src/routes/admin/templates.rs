//! `/v1/templates`: the tenant's templates as synced from Meta (reader), a sync from Graph
//! (admin) and the merge-field bindings of a template (admin).

use super::caller::{AdminCaller, audit};
use crate::{
    auth::Principal,
    state::AppState,
    templates::{self, SyncError, placeholders},
};
use axum::{
    Json,
    extract::{Path, State, rejection::JsonRejection},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wafleet_core::{domain::Role, http::Problem};

#[derive(Debug, sqlx::FromRow)]
struct Row {
    name: String,
    language: String,
    category: String,
    status: String,
    parameter_format: String,
    bindings: Value,
    components: Value,
    quality_score: Option<String>,
    updated_at: DateTime<Utc>,
}

/// A component of a template (`HEADER`, `BODY`…) and its parameters.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ComponentParameters {
    /// As Meta gives it: `HEADER`, `BODY`, `FOOTER`, `BUTTONS`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub parameter_count: usize,
    /// `1`, `2`… (positional) or names (NAMED), in text order.
    pub parameters: Vec<String>,
}

/// Each component's type and its parameters (`{{1}}` or `{{name}}`), in text order.
fn component_parameters(components: &Value) -> Vec<ComponentParameters> {
    components
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let text = c.get("text").and_then(Value::as_str).unwrap_or_default();
            let parameters = placeholders(text);
            ComponentParameters {
                kind: c.get("type").and_then(Value::as_str).map(str::to_owned),
                parameter_count: parameters.len(),
                parameters,
            }
        })
        .collect()
}

/// A template as synced from Meta, with its merge-field bindings.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TemplateView {
    pub name: String,
    pub language: String,
    pub category: String,
    pub status: String,
    /// `POSITIONAL` or `NAMED`.
    pub parameter_format: String,
    pub components: Vec<ComponentParameters>,
    #[schemars(with = "Vec<Binding>")]
    pub bindings: Value,
    pub quality_score: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateView>,
}

/// `GET /v1/templates` (reader).
pub async fn list(
    State(st): State<AppState>,
    principal: Principal,
) -> Result<Json<TemplateList>, Problem> {
    principal.require(Role::Reader)?;
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT name, language, category, status, parameter_format, bindings, components, quality_score, updated_at
         FROM templates WHERE tenant_id = $1 ORDER BY name, language",
    )
    .bind(principal.tenant_id)
    .fetch_all(&st.pool)
    .await?;
    let templates = rows
        .into_iter()
        .map(|r| TemplateView {
            components: component_parameters(&r.components),
            name: r.name,
            language: r.language,
            category: r.category,
            status: r.status,
            parameter_format: r.parameter_format,
            bindings: r.bindings,
            quality_score: r.quality_score,
            updated_at: r.updated_at,
        })
        .collect();
    Ok(Json(TemplateList { templates }))
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TemplateSync {
    /// How many templates Meta listed.
    pub synced: usize,
}

/// `POST /v1/templates/sync` (admin): every page of Meta's templates.
pub async fn sync(
    State(st): State<AppState>,
    caller: AdminCaller,
) -> Result<Json<TemplateSync>, Problem> {
    let secrets = st.graph.secrets()?;
    let n = templates::sync(
        &st.pool,
        secrets,
        &st.graph.http,
        &st.graph.base_url,
        &st.graph.version,
        caller.principal.tenant_id,
    )
    .await
    .map_err(|e| match e {
        SyncError::NotConnected => {
            Problem::new(StatusCode::CONFLICT, "meta_not_connected", e.to_string())
        }
        SyncError::Meta { .. } => {
            Problem::new(StatusCode::BAD_GATEWAY, "meta_error", e.to_string())
        }
        SyncError::Http(_) => {
            Problem::new(StatusCode::BAD_GATEWAY, "meta_unreachable", e.to_string())
        }
        SyncError::Database(e) => e.into(),
        SyncError::Tenant(e) => {
            tracing::error!(error = %e, "opening the Meta connection");
            Problem::internal()
        }
    })?;
    Ok(Json(TemplateSync { synced: n }))
}

/// A body parameter bound to a merge code.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
pub struct Binding {
    /// `1`, `2`… or a NAMED template's parameter name.
    pub param: String,
    /// Letters, digits and `_`, e.g. `KNOWNAS`.
    pub merge_code: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BindTemplate")]
pub struct BindRequest {
    pub bindings: Vec<Binding>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct TemplateBindings {
    pub name: String,
    pub language: String,
    pub bindings: Vec<Binding>,
}

/// `PUT /v1/templates/{name}/{language}/bindings` (admin): body parameter → merge code. Every
/// parameter named must exist in the template's body.
pub async fn bind(
    State(st): State<AppState>,
    caller: AdminCaller,
    Path((name, language)): Path<(String, String)>,
    body: Result<Json<BindRequest>, JsonRejection>,
) -> Result<Json<TemplateBindings>, Problem> {
    let invalid = |field: String, detail: String| {
        Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", detail).field(field)
    };
    let Json(req) = body.map_err(|e| invalid("bindings".into(), e.body_text()))?;
    let tenant = caller.principal.tenant_id;
    let components: Option<Value> = sqlx::query_scalar(
        "SELECT components FROM templates WHERE tenant_id = $1 AND name = $2 AND language = $3",
    )
    .bind(tenant)
    .bind(&name)
    .bind(&language)
    .fetch_optional(&st.pool)
    .await?;
    let components = components.ok_or_else(|| {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such template; sync first",
        )
    })?;
    let body_params: Vec<String> = component_parameters(&components)
        .into_iter()
        .filter(|c| {
            c.kind
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case("BODY"))
        })
        .flat_map(|c| c.parameters)
        .collect();
    let mut pairs = Vec::new();
    for (i, b) in req.bindings.iter().enumerate() {
        if !body_params.contains(&b.param) {
            return Err(invalid(
                format!("bindings[{i}].param"),
                format!(
                    "the template body has no parameter {:?} (it has {body_params:?})",
                    b.param
                ),
            ));
        }
        let code = b.merge_code.trim();
        if code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(
                format!("bindings[{i}].merge_code"),
                "a merge code is letters, digits and _ (e.g. KNOWNAS)".into(),
            ));
        }
        pairs.push((b.param.clone(), code.to_owned()));
    }
    templates::bind(&st.pool, tenant, &name, &language, &pairs).await?;
    let mut conn = st.pool.acquire().await?;
    audit(
        &mut conn,
        &caller,
        json!({ "template_bindings": { "name": name, "language": language, "bindings": pairs } }),
    )
    .await?;
    let bindings = pairs
        .into_iter()
        .map(|(param, merge_code)| Binding { param, merge_code })
        .collect();
    Ok(Json(TemplateBindings {
        name,
        language,
        bindings,
    }))
}
