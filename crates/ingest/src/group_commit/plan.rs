//! The group commit's decisions: what a batch's requests are resolved against (read once per
//! batch), and, per request, the row to write or the answer to give without one. Pure but for
//! `Lookups::load`.

use super::{Job, Plan, Row};
use crate::{
    accept::{Accepted, Reply, problem_body},
    resolve::{self, SenderRow, TemplateInfo, TemplateKey},
    sticky,
    validate::{self, Draft, DraftBody},
};
use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use wafleet_core::{
    contract::{Content, Kind},
    domain::{SenderId, TenantId, state},
    http::Problem,
};

/// What the batch's requests are resolved against, read once per batch.
#[derive(Default)]
pub(super) struct Lookups {
    tenants: HashSet<TenantId>,
    senders: HashMap<TenantId, Vec<SenderRow>>,
    allowed: HashMap<TenantId, Vec<String>>,
    templates: HashMap<TemplateKey, TemplateInfo>,
    /// The number each single message's recipient last wrote to (sticky sender).
    wrote_to: HashMap<sticky::ContactKey, String>,
}

impl Lookups {
    /// Reads what the batch's requests need: which tenants exist, their senders and allowed
    /// countries, the templates named, and the numbers recipients last wrote to (open at `now`).
    pub(super) async fn load(
        pool: &PgPool,
        jobs: &[Job],
        drafts: &[Result<Draft, Problem>],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Self, sqlx::Error> {
        let mut tenants: Vec<TenantId> = jobs.iter().map(|j| j.tenant).collect();
        tenants.sort();
        tenants.dedup();
        let ids: Vec<uuid::Uuid> = tenants.iter().map(|t| t.0).collect();
        let existing: Vec<TenantId> =
            sqlx::query_scalar("SELECT id FROM tenants WHERE id = ANY($1)")
                .bind(&ids)
                .fetch_all(pool)
                .await?;
        let mut keys: Vec<TemplateKey> = jobs
            .iter()
            .zip(drafts)
            .filter_map(|(j, draft)| match &draft.as_ref().ok()?.body {
                DraftBody::Template { name, language, .. } => {
                    Some((j.tenant, name.clone(), language.clone()))
                }
                DraftBody::Free(_) => None,
            })
            .collect();
        keys.sort();
        keys.dedup();
        let mut contacts: Vec<sticky::ContactKey> = jobs
            .iter()
            .zip(drafts)
            .filter_map(|(j, draft)| {
                let draft = draft.as_ref().ok()?;
                sticky::wants_sticky(draft).then(|| (j.tenant, draft.to.as_str().to_owned()))
            })
            .collect();
        contacts.sort();
        contacts.dedup();
        Ok(Self {
            wrote_to: sticky::load_last_written(pool, &contacts, now).await?,
            tenants: existing.into_iter().collect(),
            senders: resolve::load_senders(pool, &tenants).await?,
            allowed: resolve::load_allowed_countries(pool, &tenants).await?,
            templates: resolve::load_templates(pool, &keys).await?,
        })
    }
}

/// Decides one validated request against the batch's lookups: pure.
pub(super) fn plan(job: &Job, draft: Result<Draft, Problem>, lookups: &Lookups) -> Plan {
    if !lookups.tenants.contains(&job.tenant) {
        return Plan::Answered(Ok(refusal(&Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_tenant",
            format!("no tenant {}", job.tenant),
        ))));
    }
    let record = validate::record_of(&job.request);
    let resolved = draft.and_then(|draft| resolve_draft(job, draft, lookups));
    let id = job.id;
    match resolved {
        Ok((draft, sender, content)) => {
            let bulk = draft.kind == Kind::Bulk;
            // Bulk waits in PostgreSQL for the feeder (SPEC §3 principle 5): never published here.
            let state = if bulk { state::QUEUED } else { state::ACCEPTED };
            let body = json!(Accepted { id, status: state });
            Plan::Write(Box::new(Row {
                id,
                kind: draft.kind.as_str(),
                sender: Some(sender),
                recipient: Some(draft.to.as_str().to_owned()),
                record: draft.record,
                user_id: draft.user_id,
                content: Some(content),
                state,
                reason: None,
                detail: None,
                not_after: draft.not_after,
                reply: Reply {
                    status: StatusCode::ACCEPTED,
                    body,
                    replay: false,
                },
                publish: !bulk,
            }))
        }
        Err(problem) => {
            metrics::counter!("wafleet_intake_rejected_total", "channel" => "http", "code" => problem.code).increment(1);
            wafleet_core::metrics::message_state(state::REJECTED, Some(problem.code));
            let Some(record) = record else {
                // Nothing to file it under: the caller gets the problem and nothing is written.
                return Plan::Answered(Ok(refusal(&problem)));
            };
            let mut body = problem_body(&problem);
            body["id"] = json!(id);
            Plan::Write(Box::new(Row {
                id,
                kind: Kind::Single.as_str(),
                sender: None,
                recipient: None,
                record,
                user_id: None,
                content: None,
                state: state::REJECTED,
                reason: Some(problem.code),
                detail: Some(json!({ "detail": problem.detail, "field": problem.field })),
                not_after: None,
                reply: Reply {
                    status: problem.status,
                    body,
                    replay: false,
                },
                publish: false,
            }))
        }
    }
}

fn refusal(problem: &Problem) -> Reply {
    Reply {
        status: problem.status,
        body: problem_body(problem),
        replay: false,
    }
}

/// The sender, the country check and the template binding, over the batch's lookups.
fn resolve_draft(
    job: &Job,
    draft: Draft,
    lookups: &Lookups,
) -> Result<(Draft, (SenderId, String), Content), Problem> {
    let template = match &draft.body {
        DraftBody::Template { name, language, .. } => {
            lookups
                .templates
                .get(&(job.tenant, name.clone(), language.clone()))
        }
        DraftBody::Free(_) => None,
    };
    let (sender, content) = resolve::resolve_draft(
        &draft,
        lookups
            .senders
            .get(&job.tenant)
            .map(Vec::as_slice)
            .unwrap_or_default(),
        lookups
            .allowed
            .get(&job.tenant)
            .map(Vec::as_slice)
            .unwrap_or_default(),
        template,
        lookups
            .wrote_to
            .get(&(job.tenant, draft.to.as_str().to_owned()))
            .map(String::as_str),
    )?;
    Ok((draft, sender, content))
}
