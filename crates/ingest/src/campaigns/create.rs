//! Creating a campaign: the header is checked once (sender pool, template), then recipients
//! stream through in batches of `ingest.campaign_batch` — each validated with the rules of
//! `POST /v1/messages` (`rows`), given its number of the pool (`pool`), the valid ones written
//! with `COPY`, the invalid ones recorded as rejections with one `unnest` insert. A writer task
//! (`write`) does the writing, so the database takes one batch while the next is validated.
//! A campaign message's event trail starts when the feeder releases it (its creation is
//! `created_at`): no event rows at intake, which halves what the database writes for a large
//! list. All of it is one transaction: a campaign exists whole or not at all, and memory stays
//! bounded by one batch however long the list.

use super::{
    CampaignHeader, RecipientInput,
    pool::SenderPool,
    write::{Batch, Given, Rejections, Writer},
};
use crate::{
    accept::{self, Idempotency, Reply},
    resolve::{self, TemplateInfo},
    state::AppState,
};
use axum::http::StatusCode;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use wafleet_core::{
    amqp,
    campaign::status,
    contract::{ButtonInput, HeaderInput},
    domain::{MessageId, TenantId, state},
    http::Problem,
    metrics::CAMPAIGN_RECIPIENTS,
};

mod dry_run;
mod rows;

pub use dry_run::DryRun;

/// The `202` to `POST /v1/campaigns`: what was accepted and what was refused.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Created {
    pub id: uuid::Uuid,
    /// `active`: the feeder starts releasing it.
    pub status: &'static str,
    /// Recipients given.
    pub recipients: u32,
    /// Messages created (one per distinct valid recipient).
    pub accepted: u32,
    /// Recipients refused; list them with `GET /v1/campaigns/{id}/rejections`.
    pub rejected: u32,
    /// Recipients listed again in the same campaign (sent once).
    pub duplicates: u32,
    /// Refused recipients per reason code.
    pub rejected_by_code: BTreeMap<&'static str, u32>,
}

/// A campaign being created: its transaction, what it sends, and the batch not yet written.
pub struct Intake {
    /// The task writing batches in the campaign's transaction while the next one is validated.
    writer: Writer,
    /// Reads recipients' earlier conversations (outside the campaign's transaction).
    db: sqlx::PgPool,
    tenant: TenantId,
    id: uuid::Uuid,
    /// The numbers the campaign sends from; each recipient is given one.
    senders: SenderPool,
    template_name: String,
    template_language: String,
    template: TemplateInfo,
    template_header: Option<HeaderInput>,
    template_buttons: Option<Vec<ButtonInput>>,
    /// The tenant's allowed countries, read once (empty = worldwide).
    allowed_countries: Vec<String>,
    user_id: Option<String>,
    not_after: Option<chrono::DateTime<chrono::Utc>>,
    traceparent: Option<String>,
    batch_size: usize,
    batch: Vec<(i32, Result<RecipientInput, Problem>)>,
    next_position: i32,
    given: u32,
    accepted: u32,
    rejected: u32,
    by_code: BTreeMap<&'static str, u32>,
    /// Recipients already in the campaign (about 40 bytes each: 4 MB per 100,000).
    seen: HashSet<String>,
    /// A dry run's estimate: batches are priced, not written.
    dry_run: Option<dry_run::Tally>,
}

fn unprocessable(code: &'static str, field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail).field(field)
}

impl Intake {
    /// Checks the header and writes the campaign row (uncommitted). The inner `Err` is a problem
    /// with the campaign as a whole (422); the outer one a failure of ours. A `dry_run` goes
    /// through the same checks and writes nothing that outlives it.
    pub async fn open(
        st: &AppState,
        tenant: TenantId,
        header: CampaignHeader,
        dry_run: bool,
    ) -> Result<Result<Self, Problem>, Problem> {
        let name = header.name.as_deref().map(str::trim).unwrap_or_default();
        if name.is_empty() || name.chars().count() > 200 {
            return Ok(Err(unprocessable(
                "missing_field",
                "name",
                "`name` is required (1 to 200 characters)",
            )));
        }
        let template = header.template.unwrap_or(super::CampaignTemplate {
            name: None,
            language: None,
            header: None,
            buttons: None,
        });
        let (template_header, template_buttons) = (template.header, template.buttons);
        let Some(template_name) = template.name.filter(|n| !n.trim().is_empty()) else {
            return Ok(Err(unprocessable(
                "missing_field",
                "template.name",
                "`template.name` is required",
            )));
        };
        let Some(template_language) = template.language.filter(|l| !l.trim().is_empty()) else {
            return Ok(Err(unprocessable(
                "missing_field",
                "template.language",
                "`template.language` is required, e.g. \"en_GB\"",
            )));
        };
        // Checked once here, so a wrong header or button refuses the campaign, not each row.
        if let Some(h) = &template_header
            && let Err(problem) = crate::validate::rich::header(h)
        {
            return Ok(Err(problem));
        }
        if let Err(problem) =
            crate::validate::rich::buttons(template_buttons.as_deref().unwrap_or_default())
        {
            return Ok(Err(problem));
        }
        let user_id = header.user_id.filter(|u| !u.is_empty());
        let now = st.clock.now();
        if header.not_after.is_some_and(|t| t <= now) {
            return Ok(Err(unprocessable(
                "invalid_field",
                "not_after",
                "`not_after` is in the past: nothing could be sent",
            )));
        }
        // A named pool is kept on the campaign even with one number (it was asked for).
        let named_pool = header.senders.is_some();
        let senders = match SenderPool::resolve(
            &st.pool,
            tenant,
            header.sender.as_deref(),
            header.senders,
            user_id.as_deref(),
        )
        .await?
        {
            Ok(found) => found,
            Err(problem) => return Ok(Err(problem)),
        };
        let info =
            resolve::load_template(&st.pool, tenant, &template_name, &template_language).await?;
        let Some(info) = info else {
            return Ok(Err(unprocessable(
                "template_not_approved",
                "template.name",
                format!(
                    "template {template_name} ({template_language}) is not synced: sync templates first"
                ),
            )));
        };
        if info.status != "APPROVED" {
            return Ok(Err(unprocessable(
                "template_not_approved",
                "template.name",
                format!(
                    "template {template_name} ({template_language}) is {}, not APPROVED",
                    info.status
                ),
            )));
        }

        let allowed_countries = resolve::allowed_countries(&st.pool, tenant).await?;
        let dry_run = if dry_run {
            let category: String = sqlx::query_scalar(
                "SELECT category FROM templates WHERE tenant_id = $1 AND name = $2 AND language = $3",
            )
            .bind(tenant)
            .bind(&template_name)
            .bind(&template_language)
            .fetch_one(&st.pool)
            .await?;
            Some(dry_run::Tally::new(
                st.rate_card.clone(),
                now.date_naive(),
                &category,
            ))
        } else {
            None
        };
        let id = uuid::Uuid::now_v7();
        let mut tx = st.pool.begin().await?;
        sqlx::query(
            "INSERT INTO campaigns (id, tenant_id, name, template_name, template_language, sender_id,
                 phone_number_id, senders, user_id, status, not_after, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'active', $10, $11, $11)",
        )
        .bind(id)
        .bind(tenant)
        .bind(name)
        .bind(&template_name)
        .bind(&template_language)
        .bind(senders.first().sender_id)
        .bind(&senders.first().phone_number_id)
        .bind(named_pool.then(|| senders.phone_number_ids()))
        .bind(&user_id)
        .bind(header.not_after)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let batch_size = st.campaigns.batch;
        Ok(Ok(Self {
            writer: Writer::spawn(tx, id, tenant),
            db: st.pool.clone(),
            tenant,
            id,
            senders,
            template_name,
            template_language,
            template: info,
            template_header,
            template_buttons,
            allowed_countries,
            user_id,
            not_after: header.not_after,
            traceparent: amqp::current_traceparent(),
            batch_size,
            batch: Vec::with_capacity(batch_size),
            next_position: 0,
            given: 0,
            accepted: 0,
            rejected: 0,
            by_code: BTreeMap::new(),
            seen: HashSet::new(),
            dry_run,
        }))
    }

    pub fn id(&self) -> uuid::Uuid {
        self.id
    }

    /// Adds one recipient (or a line that could not be read, as its problem); writes a batch
    /// when one is full.
    pub async fn push(
        &mut self,
        recipient: Result<RecipientInput, Problem>,
    ) -> Result<(), Problem> {
        self.batch.push((self.next_position, recipient));
        self.next_position += 1;
        self.given += 1;
        if self.batch.len() >= self.batch_size {
            self.flush().await?;
        }
        Ok(())
    }

    /// Validates the batch and writes it: valid recipients as held bulk messages (a recipient
    /// the campaign already has is skipped by the unique index), the rest as rejections.
    async fn flush(&mut self) -> Result<(), Problem> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        let mut ids = Vec::with_capacity(batch.len());
        let mut recipients = Vec::with_capacity(batch.len());
        let mut record_types = Vec::with_capacity(batch.len());
        let mut record_ids = Vec::with_capacity(batch.len());
        let mut contents = Vec::with_capacity(batch.len());
        let mut rejections = Rejections::default();
        for (position, recipient) in batch {
            let checked = match recipient {
                Ok(r) => self.check(r),
                Err(problem) => Err(Box::new((
                    problem,
                    Given {
                        to: None,
                        record: None,
                    },
                ))),
            };
            match checked {
                // A recipient listed twice is messaged once (counted in `duplicates`).
                Ok(valid) if !self.seen.insert(valid.to.clone()) => {}
                Ok(valid) => {
                    ids.push(MessageId::new().0);
                    recipients.push(valid.to);
                    record_types.push(valid.record_type);
                    record_ids.push(valid.record_id);
                    contents.push(valid.content);
                }
                Err(refused) => {
                    let (problem, given) = *refused;
                    *self.by_code.entry(problem.code).or_default() += 1;
                    rejections.push(position, given, problem);
                }
            }
        }
        if let Some(tally) = &mut self.dry_run {
            for to in &recipients {
                tally.add(to);
            }
            self.accepted += ids.len() as u32;
            self.rejected += rejections.positions.len() as u32;
            return Ok(());
        }
        let numbers = self
            .senders
            .assign(&self.db, self.tenant, &recipients)
            .await?;
        let rows = self.rows_csv(
            &ids,
            &recipients,
            &numbers,
            &record_types,
            &record_ids,
            &contents,
        );
        self.accepted += ids.len() as u32;
        self.rejected += rejections.positions.len() as u32;
        self.writer.send(Batch { rows, rejections }).await
    }

    /// Writes the last batch and the counts, records the idempotency key, and commits. A
    /// concurrent request with the same key that committed first wins: its answer is returned.
    pub async fn finish(
        mut self,
        st: &AppState,
        idempotency: Option<Idempotency>,
    ) -> Result<Reply, Problem> {
        self.flush().await?;
        let mut tx = self.writer.finish().await?;
        if self.given == 0 {
            return Ok(problem_reply(unprocessable(
                "missing_field",
                "recipients",
                "a campaign needs at least one recipient",
            )));
        }
        if let Some(tally) = self.dry_run.take() {
            tx.rollback().await?;
            let body = tally.finish(self.given, self.accepted, self.rejected, self.by_code);
            return Ok(Reply {
                status: StatusCode::OK,
                body: json!(body),
                replay: false,
            });
        }
        let duplicates = self.given - self.accepted - self.rejected;
        sqlx::query(
            "UPDATE campaigns SET recipients_given = $3, accepted = $4, rejected = $5, duplicates = $6
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(self.tenant)
        .bind(self.id)
        .bind(self.given as i32)
        .bind(self.accepted as i32)
        .bind(self.rejected as i32)
        .bind(duplicates as i32)
        .execute(&mut *tx)
        .await?;
        // The conversations of every message the batches wrote, in one statement.
        wafleet_core::conversation::record_campaign(&mut tx, self.tenant, self.id).await?;
        let body = json!(Created {
            id: self.id,
            status: status::ACTIVE,
            recipients: self.given,
            accepted: self.accepted,
            rejected: self.rejected,
            duplicates,
            rejected_by_code: self.by_code.clone(),
        });
        let reply = Reply {
            status: StatusCode::ACCEPTED,
            body,
            replay: false,
        };
        if let Some(idem) = &idempotency
            && !accept::remember_reply(&mut tx, self.tenant, idem, &reply).await?
        {
            tx.rollback().await?;
            return accept::stored_reply(st, self.tenant, idem)
                .await?
                .ok_or_else(Problem::internal);
        }
        tx.commit().await?;
        metrics::counter!(CAMPAIGN_RECIPIENTS, "outcome" => "accepted")
            .increment(u64::from(self.accepted));
        metrics::counter!(CAMPAIGN_RECIPIENTS, "outcome" => "rejected")
            .increment(u64::from(self.rejected));
        metrics::counter!(CAMPAIGN_RECIPIENTS, "outcome" => "duplicate")
            .increment(u64::from(duplicates));
        wafleet_core::metrics::message_state(state::QUEUED, Some("campaign"));
        tracing::info!(campaign = %self.id, accepted = self.accepted, rejected = self.rejected, duplicates, "campaign created");
        Ok(reply)
    }
}

/// A problem as a reply (not stored for idempotent replay: nothing was created).
pub fn problem_reply(problem: Problem) -> Reply {
    Reply {
        status: problem.status,
        body: accept::problem_body(&problem),
        replay: false,
    }
}
