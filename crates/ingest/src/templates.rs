//! Templates: synced from Meta (`GET /{waba}/message_templates`, all pages) into the tenant's
//! table, with the number of body parameters counted; merge-field bindings (body parameter →
//! merge code such as KNOWNAS) are the tenant's own and survive re-syncs.

use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::BTreeSet;
use wafleet_core::{
    domain::TenantId,
    secrets::SecretBox,
    tenant::{TenantError, load_connection},
};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the tenant has no Meta connection")]
    NotConnected,
    #[error("Meta answered HTTP {status}: {body}")]
    Meta { status: u16, body: String },
    #[error("could not reach Meta: {0}")]
    Http(#[from] reqwest::Error),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    data: Vec<MetaTemplate>,
    paging: Option<Paging>,
}

#[derive(Debug, Deserialize)]
struct Paging {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct MetaTemplate {
    name: String,
    language: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    category: String,
    parameter_format: Option<String>,
    #[serde(default)]
    components: Vec<Value>,
}

/// Fetches every page of the tenant's templates and upserts them; returns how many.
pub async fn sync(
    pool: &PgPool,
    secrets: &SecretBox,
    http: &reqwest::Client,
    base_url: &str,
    version: &str,
    tenant: TenantId,
) -> Result<usize, SyncError> {
    let conn = load_connection(pool, secrets, tenant)
        .await?
        .ok_or(SyncError::NotConnected)?;
    let mut url = format!(
        "{}/{version}/{}/message_templates?limit=100",
        base_url.trim_end_matches('/'),
        conn.waba_id
    );
    let mut count = 0;
    loop {
        let response = http
            .get(&url)
            .bearer_auth(conn.access_token.expose())
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(SyncError::Meta {
                status: status.as_u16(),
                body,
            });
        }
        let page: Page = response.json().await?;
        for t in &page.data {
            upsert(pool, tenant, t).await?;
            count += 1;
        }
        match page.paging.and_then(|p| p.next) {
            Some(next) if !page.data.is_empty() => url = next,
            _ => break,
        }
    }
    Ok(count)
}

async fn upsert(pool: &PgPool, tenant: TenantId, t: &MetaTemplate) -> Result<(), sqlx::Error> {
    let body = t
        .components
        .iter()
        .find(|c| {
            c.get("type")
                .and_then(Value::as_str)
                .is_some_and(|k| k.eq_ignore_ascii_case("BODY"))
        })
        .and_then(|c| c.get("text"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    sqlx::query(
        "INSERT INTO templates (tenant_id, name, language, category, status, parameter_format, body_param_count, components)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, name, language) DO UPDATE SET
             category = EXCLUDED.category, status = EXCLUDED.status,
             parameter_format = EXCLUDED.parameter_format, body_param_count = EXCLUDED.body_param_count,
             components = EXCLUDED.components, updated_at = now()",
    )
    .bind(tenant)
    .bind(&t.name)
    .bind(&t.language)
    .bind(&t.category)
    .bind(&t.status)
    .bind(t.parameter_format.as_deref().unwrap_or("POSITIONAL"))
    .bind(placeholders(body).len() as i32)
    .bind(json!(t.components))
    .execute(pool)
    .await?;
    Ok(())
}

/// The distinct `{{…}}` placeholders of a template text, in order of first appearance.
pub fn placeholders(text: &str) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let name = after[..end].trim().to_owned();
        if !name.is_empty() && seen.insert(name.clone()) {
            out.push(name);
        }
        rest = &after[end + 2..];
    }
    out
}

/// Binds body parameters to merge codes: `[(param, merge_code)]`, e.g. `[("1", "KNOWNAS")]`.
/// Returns false if the tenant has no such template.
pub async fn bind(
    pool: &PgPool,
    tenant: TenantId,
    name: &str,
    language: &str,
    bindings: &[(String, String)],
) -> Result<bool, sqlx::Error> {
    let value: Vec<Value> = bindings
        .iter()
        .map(|(param, code)| json!({ "param": param, "merge_code": code }))
        .collect();
    let updated = sqlx::query(
        "UPDATE templates SET bindings = $4, updated_at = now() WHERE tenant_id = $1 AND name = $2 AND language = $3",
    )
    .bind(tenant)
    .bind(name)
    .bind(language)
    .bind(json!(value))
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_counted_once_each_in_order() {
        assert_eq!(placeholders("Hi {{1}}, {{2}} here. {{1}}!"), vec!["1", "2"]);
        assert_eq!(placeholders("Hello {{first_name}}"), vec!["first_name"]);
        assert!(placeholders("no variables").is_empty());
    }
}
