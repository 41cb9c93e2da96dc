//! `DELETE /v1/records/{type}/{id}`: erases a candidate's or contact's history (admin). The
//! messages stay, anonymised, for counts and billing; the number goes from every table that
//! kept it unless another record still uses it; its opt-outs go only with `opt_outs=forget`.
//! The erasure is audited in `consent_audit` (counts, never the number). `crate::erasure` has
//! what is kept and what goes.

use super::paging::not_found;
use crate::{
    auth::Principal,
    consent::{self, AuditEntry},
    erasure::{self, ErasureReport},
    state::AppState,
};
use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::HashMap;
use wafleet_core::{
    domain::{RecordType, Role},
    http::Problem,
};

/// The answer to an erasure.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Erased {
    pub record_type: String,
    pub record_id: String,
    /// `kept` (default) or `forgotten`.
    pub opt_outs: &'static str,
    #[serde(flatten)]
    pub report: ErasureReport,
}

#[tracing::instrument(name = "DELETE /v1/records/{type}/{id}", skip_all, fields(otel.kind = "server", tenant))]
pub async fn erase(
    State(st): State<AppState>,
    principal: Principal,
    Path((kind, record_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Erased>, Problem> {
    principal.require(Role::Admin)?;
    let kind =
        RecordType::parse(&kind).ok_or_else(|| not_found("record type (candidate or contact)"))?;
    let forget = match query.get("opt_outs").map(String::as_str) {
        None | Some("keep") => false,
        Some("forget") => true,
        Some(_) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "opt_outs is keep (the default: a STOP stays honoured) or forget",
            )
            .field("opt_outs"));
        }
    };
    let now = st.clock.now();
    let mut tx = st.pool.begin().await?;
    let record = (kind.as_str(), record_id.as_str());
    let report = erasure::erase_record(&mut tx, principal.tenant_id, record, forget, now)
        .await?
        .ok_or_else(|| not_found("record"))?;
    let entry = AuditEntry {
        action: "record_erased",
        recipient: None,
        record: Some(record),
        detail: erasure::audit_detail(&report, forget),
    };
    consent::audit(&mut tx, &principal, entry).await?;
    tx.commit().await?;
    tracing::info!(
        record_type = kind.as_str(),
        messages = report.messages_erased,
        numbers = report.numbers_erased,
        "record erased"
    );
    Ok(Json(Erased {
        record_type: kind.as_str().to_owned(),
        record_id,
        opt_outs: if forget { "forgotten" } else { "kept" },
        report,
    }))
}
