//! Opt-outs by hand (issue 16): `GET /v1/opt-outs` (paged, by number), `POST /v1/opt-outs` (a
//! number opted out with a reason), `DELETE /v1/opt-outs/{phone}` (opted back in), and
//! `GET /v1/consent/audit`. The same `opt_outs` rows the webhook consumer writes from STOP
//! replies and Meta's marketing stop, and the dispatcher enforces; every change made here is
//! audited (`consent::audit`) and notified on `optout.<tenant>` with source `api`.

use super::paging::{PageQuery, bad_cursor, not_found};
use crate::{
    auth::Principal,
    consent::{self, AuditEntry},
    state::AppState,
};
use axum::{
    Json,
    extract::{Path, Query, State, rejection::JsonRejection},
    http::StatusCode,
};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use wafleet_core::{
    domain::{PhoneNumber, Role},
    http::Problem,
};

/// An opt-out as the API shows it.
#[derive(Debug, Serialize, sqlx::FromRow, JsonSchema)]
pub struct OptOutView {
    /// E.164 (or Meta's business-scoped user id for a user known without a number).
    #[sqlx(rename = "recipient")]
    pub phone: String,
    /// `all` (no template at all) or `marketing` (no marketing template).
    pub scope: String,
    /// `api`, `keyword` (a STOP reply), `meta_131050` or `user_preferences`.
    pub source: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct OptOutList {
    /// By number, then scope.
    pub opt_outs: Vec<OptOutView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn invalid(status: StatusCode, code: &'static str, field: &str, detail: &str) -> Problem {
    Problem::new(status, code, detail.to_owned()).field(field)
}

fn scope_of(raw: Option<&str>, field: &str) -> Result<Option<&'static str>, Problem> {
    match raw {
        None => Ok(None),
        Some("all") => Ok(Some("all")),
        Some("marketing") => Ok(Some("marketing")),
        Some(_) => Err(invalid(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            field,
            "scope is all or marketing",
        )),
    }
}

fn phone_of(raw: &str, field: &str) -> Result<PhoneNumber, Problem> {
    PhoneNumber::parse(raw).map_err(|e| {
        invalid(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_recipient",
            field,
            &format!("{field} is not a valid E.164 number: {e}"),
        )
    })
}

/// `GET /v1/opt-outs?limit=&cursor=`: the tenant's opt-outs in number order (the primary key).
#[tracing::instrument(name = "GET /v1/opt-outs", skip_all, fields(otel.kind = "server", tenant))]
pub async fn list(
    State(st): State<AppState>,
    principal: Principal,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<OptOutList>, Problem> {
    principal.require(Role::Reader)?;
    let page = PageQuery::parse(&query)?;
    let after = page
        .cursor
        .map(|c| c.rsplit_once('|').ok_or_else(bad_cursor))
        .transpose()?;
    let mut opt_outs: Vec<OptOutView> = sqlx::query_as(
        "SELECT recipient, scope, source, reason, created_at FROM opt_outs
         WHERE tenant_id = $1 AND ($2::text IS NULL OR (recipient, scope) > ($2, $3))
         ORDER BY recipient, scope
         LIMIT $4",
    )
    .bind(principal.tenant_id)
    .bind(after.map(|a| a.0))
    .bind(after.map(|a| a.1))
    .bind(page.limit + 1)
    .fetch_all(&st.pool)
    .await?;
    let next_cursor = if opt_outs.len() as i64 > page.limit {
        opt_outs.truncate(page.limit as usize);
        opt_outs.last().map(|o| format!("{}|{}", o.phone, o.scope))
    } else {
        None
    };
    Ok(Json(OptOutList {
        opt_outs,
        next_cursor,
    }))
}

/// The body of `POST /v1/opt-outs`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddOptOut {
    /// E.164.
    pub phone: String,
    /// `all` (default: no template at all) or `marketing`.
    pub scope: Option<String>,
    /// Why (shown in the list and the audit), 1 to 500 characters.
    pub reason: String,
}

/// `POST /v1/opt-outs`: `201` with the opt-out (`200` when it was there already, unchanged).
#[tracing::instrument(name = "POST /v1/opt-outs", skip_all, fields(otel.kind = "server", tenant))]
pub async fn add(
    State(st): State<AppState>,
    principal: Principal,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<OptOutView>), Problem> {
    principal.require(Role::Sender)?;
    let Json(body) =
        body.map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))?;
    let text = |field: &str| -> Result<Option<&str>, Problem> {
        match body.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(invalid(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                field,
                &format!("{field} is a string"),
            )),
        }
    };
    let missing = |field: &str| {
        invalid(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_field",
            field,
            &format!("{field} is required"),
        )
    };
    let phone = phone_of(text("phone")?.ok_or_else(|| missing("phone"))?, "phone")?;
    let scope = scope_of(text("scope")?, "scope")?.unwrap_or("all");
    let reason = text("reason")?.map(str::trim).unwrap_or_default();
    if reason.is_empty() {
        return Err(missing("reason"));
    }
    if reason.chars().count() > 500 {
        return Err(invalid(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "reason",
            "reason is at most 500 characters",
        ));
    }
    let now = st.clock.now();
    let mut tx = st.pool.begin().await?;
    let inserted: Option<OptOutView> = sqlx::query_as(
        "INSERT INTO opt_outs (tenant_id, recipient, scope, source, reason, created_at)
         VALUES ($1, $2, $3, 'api', $4, $5) ON CONFLICT DO NOTHING
         RETURNING recipient, scope, source, reason, created_at",
    )
    .bind(principal.tenant_id)
    .bind(phone.as_str())
    .bind(scope)
    .bind(reason)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(view) = inserted else {
        // Already opted out: nothing changes, nothing is audited.
        tx.rollback().await?;
        let existing: OptOutView = sqlx::query_as(
            "SELECT recipient, scope, source, reason, created_at FROM opt_outs
             WHERE tenant_id = $1 AND recipient = $2 AND scope = $3",
        )
        .bind(principal.tenant_id)
        .bind(phone.as_str())
        .bind(scope)
        .fetch_one(&st.pool)
        .await?;
        return Ok((StatusCode::OK, Json(existing)));
    };
    let entry = AuditEntry {
        action: "opt_out_added",
        recipient: Some(phone.as_str()),
        record: None,
        detail: json!({ "scope": scope, "reason": reason }),
    };
    consent::audit(&mut tx, &principal, entry).await?;
    consent::opt_out_changed(
        &mut tx,
        principal.tenant_id,
        phone.as_str(),
        scope,
        true,
        now,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(recipient = %wafleet_core::domain::mask_phone(phone.as_str()), scope, "opt-out added");
    Ok((StatusCode::CREATED, Json(view)))
}

/// The answer to `DELETE /v1/opt-outs/{phone}`: what was removed.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RemovedOptOuts {
    pub removed: Vec<OptOutView>,
}

/// `DELETE /v1/opt-outs/{phone}?scope=`: the number is messaged again (every scope, or the one
/// given); `404` when it had no such opt-out.
#[tracing::instrument(name = "DELETE /v1/opt-outs/{phone}", skip_all, fields(otel.kind = "server", tenant))]
pub async fn remove(
    State(st): State<AppState>,
    principal: Principal,
    Path(phone): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<RemovedOptOuts>, Problem> {
    principal.require(Role::Admin)?;
    let phone = phone_of(&phone, "phone")?;
    let scope = scope_of(query.get("scope").map(String::as_str), "scope")?;
    let now = st.clock.now();
    let mut tx = st.pool.begin().await?;
    let removed: Vec<OptOutView> = sqlx::query_as(
        "DELETE FROM opt_outs WHERE tenant_id = $1 AND recipient = $2 AND ($3::text IS NULL OR scope = $3)
         RETURNING recipient, scope, source, reason, created_at",
    )
    .bind(principal.tenant_id)
    .bind(phone.as_str())
    .bind(scope)
    .fetch_all(&mut *tx)
    .await?;
    if removed.is_empty() {
        return Err(not_found("opt-out for that number"));
    }
    for r in &removed {
        let entry = AuditEntry {
            action: "opt_out_removed",
            recipient: Some(phone.as_str()),
            record: None,
            detail: json!({ "scope": r.scope, "source": r.source, "reason": r.reason }),
        };
        consent::audit(&mut tx, &principal, entry).await?;
        consent::opt_out_changed(
            &mut tx,
            principal.tenant_id,
            phone.as_str(),
            &r.scope,
            false,
            now,
        )
        .await?;
    }
    tx.commit().await?;
    tracing::info!(recipient = %wafleet_core::domain::mask_phone(phone.as_str()), n = removed.len(), "opt-out removed");
    Ok(Json(RemovedOptOuts { removed }))
}

/// One entry of the consent audit.
#[derive(Debug, Serialize, sqlx::FromRow, JsonSchema)]
pub struct AuditView {
    pub at: DateTime<Utc>,
    /// `apikey:<prefix> (label)`.
    pub actor: String,
    pub api_key_id: Option<uuid::Uuid>,
    /// `opt_out_added`, `opt_out_removed` or `record_erased`.
    pub action: String,
    /// The number concerned (null once it was erased).
    pub phone: Option<String>,
    pub record_type: Option<String>,
    pub record_id: Option<String>,
    pub detail: Value,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ConsentAudit {
    /// Newest first, at most 200.
    pub entries: Vec<AuditView>,
}

/// `GET /v1/consent/audit`: who changed consent or erased a record, newest first.
#[tracing::instrument(name = "GET /v1/consent/audit", skip_all, fields(otel.kind = "server", tenant))]
pub async fn audit_trail(
    State(st): State<AppState>,
    principal: Principal,
) -> Result<Json<ConsentAudit>, Problem> {
    principal.require(Role::Admin)?;
    let entries: Vec<AuditView> = sqlx::query_as(
        "SELECT at, actor, api_key_id, action, recipient AS phone, record_type, record_id, detail
         FROM consent_audit WHERE tenant_id = $1 ORDER BY id DESC LIMIT 200",
    )
    .bind(principal.tenant_id)
    .fetch_all(&st.pool)
    .await?;
    Ok(Json(ConsentAudit { entries }))
}
