//! Creating a campaign: the header is checked once (sender, template), then recipients stream
//! through in batches of `ingest.campaign_batch` — each validated with the rules of
//! `POST /v1/messages`, the valid ones written with `COPY`, the invalid ones recorded as
//! rejections with one `unnest` insert. A writer task does the writing, so the database takes
//! one batch while the next is validated. A campaign message's event trail starts when the
//! feeder releases it (its creation is `created_at`): no event rows at intake, which halves
//! what the database writes for a large list. All of
//! it is one transaction: a campaign exists whole or not at all, and memory stays bounded by one
//! batch however long the list.

use super::{CampaignHeader, RecipientInput};
use crate::{
    accept::{self, Idempotency, Reply},
    resolve::{self, TemplateInfo},
    state::AppState,
    validate,
};
use axum::http::StatusCode;
use serde_json::json;
use sqlx::{Postgres, Transaction};
use std::collections::{BTreeMap, HashSet};
use tokio::sync::mpsc;
use wafleet_core::{
    amqp,
    campaign::status,
    contract::{Content, Kind, SendRequest, TemplateInput},
    domain::{MessageId, SenderId, TenantId, state},
    http::Problem,
    metrics::CAMPAIGN_RECIPIENTS,
};

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
    tenant: TenantId,
    id: uuid::Uuid,
    phone_number_id: String,
    sender_id: SenderId,
    template_name: String,
    template_language: String,
    template: TemplateInfo,
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
}

fn unprocessable(code: &'static str, field: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail).field(field)
}

impl Intake {
    /// Checks the header and writes the campaign row (uncommitted). The inner `Err` is a problem
    /// with the campaign as a whole (422); the outer one a failure of ours.
    pub async fn open(
        st: &AppState,
        tenant: TenantId,
        header: CampaignHeader,
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
        });
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
        if let Some(sender) = &header.sender
            && (sender.is_empty() || !sender.chars().all(|c| c.is_ascii_digit()))
        {
            return Ok(Err(unprocessable(
                "invalid_field",
                "sender",
                "`sender` is a sender's phone number id (digits)",
            )));
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
        let (sender_id, phone_number_id) = match resolve::find_sender(
            &st.pool,
            tenant,
            header.sender.as_deref(),
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
        let id = uuid::Uuid::now_v7();
        let mut tx = st.pool.begin().await?;
        sqlx::query(
            "INSERT INTO campaigns (id, tenant_id, name, template_name, template_language, sender_id,
                 phone_number_id, user_id, status, not_after, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $10, $10)",
        )
        .bind(id)
        .bind(tenant)
        .bind(name)
        .bind(&template_name)
        .bind(&template_language)
        .bind(sender_id)
        .bind(&phone_number_id)
        .bind(&user_id)
        .bind(header.not_after)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let batch_size = st.campaigns.batch;
        Ok(Ok(Self {
            writer: Writer::spawn(tx, id, tenant),
            tenant,
            id,
            phone_number_id,
            sender_id,
            template_name,
            template_language,
            template: info,
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
        let rows = self.rows_csv(&ids, &recipients, &record_types, &record_ids, &contents);
        self.accepted += ids.len() as u32;
        self.rejected += rejections.positions.len() as u32;
        self.writer.send(Batch { rows, rejections }).await
    }

    /// A batch of valid recipients as `COPY` CSV rows of `messages`.
    fn rows_csv(
        &self,
        ids: &[uuid::Uuid],
        recipients: &[String],
        record_types: &[&'static str],
        record_ids: &[String],
        contents: &[String],
    ) -> String {
        let tenant = self.tenant.to_string();
        let campaign = self.id.to_string();
        let sender = self.sender_id.to_string();
        let not_after = self.not_after.map(|t| t.to_rfc3339());
        let mut rows = String::with_capacity(ids.len() * 400);
        for (i, id) in ids.iter().enumerate() {
            csv_row(
                &mut rows,
                &[
                    Some(&id.to_string()),
                    Some(&tenant),
                    Some("out"),
                    Some("bulk"),
                    Some(&campaign),
                    Some(&sender),
                    Some(&self.phone_number_id),
                    Some(&recipients[i]),
                    Some(record_types[i]),
                    Some(&record_ids[i]),
                    self.user_id.as_deref(),
                    Some("template"),
                    Some(&contents[i]),
                    Some(state::QUEUED),
                    not_after.as_deref(),
                    self.traceparent.as_deref(),
                ],
            );
        }
        rows
    }

    /// One recipient through the rules of `POST /v1/messages`, with the campaign's template.
    fn check(&self, r: RecipientInput) -> Result<Valid, Box<(Problem, Given)>> {
        let given = Given {
            to: r.to.clone(),
            record: None,
        };
        let request = SendRequest {
            to: r.to,
            record: r.record,
            user_id: self.user_id.clone(),
            sender: None,
            template: Some(TemplateInput {
                name: Some(self.template_name.clone()),
                language: Some(self.template_language.clone()),
                parameters: r.parameters,
            }),
            merge_fields: r.merge_fields,
            text: None,
            not_after: None,
            kind: Some(Kind::Bulk),
            campaign_id: Some(self.id),
        };
        let record = validate::record_of(&request);
        let given = Given { record, ..given };
        let draft = validate::validate(request).map_err(|p| Box::new((p, given.clone())))?;
        if let Some(p) = resolve::country_refusal(&self.allowed_countries, &draft.to) {
            return Err(Box::new((p, given)));
        }
        let validate::DraftBody::Template {
            parameters,
            merge_fields,
            ..
        } = &draft.body
        else {
            unreachable!("a campaign recipient is always a template send");
        };
        let params = resolve::bind_template(
            Some(&self.template),
            &self.template_name,
            &self.template_language,
            parameters,
            merge_fields,
        )
        .map_err(|p| Box::new((p, given)))?;
        let content = Content::Template {
            name: self.template_name.clone(),
            language: self.template_language.clone(),
            parameters: params,
        };
        Ok(Valid {
            to: draft.to.as_str().to_owned(),
            record_type: draft.record.kind.as_str(),
            record_id: draft.record.id,
            content: serde_json::to_string(&content).expect("content serialises"),
        })
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

/// One validated batch, ready to write.
struct Batch {
    rows: String,
    rejections: Rejections,
}

type Written = Result<Transaction<'static, Postgres>, Problem>;

/// Writes batches in the campaign's transaction on its own task, so PostgreSQL writes one batch
/// while the next is read and validated. At most two batches wait (bounded memory).
struct Writer {
    batches: Option<mpsc::Sender<Batch>>,
    task: tokio::task::JoinHandle<Written>,
}

impl Writer {
    fn spawn(tx: Transaction<'static, Postgres>, campaign: uuid::Uuid, tenant: TenantId) -> Self {
        let (batches, mut rx) = mpsc::channel::<Batch>(2);
        let task = tokio::spawn(async move {
            let mut tx = tx;
            while let Some(batch) = rx.recv().await {
                if !batch.rows.is_empty() {
                    let mut copy = tx
                        .copy_in_raw(
                            "COPY messages (id, tenant_id, direction, kind, campaign_id, sender_id,
                                 phone_number_id, recipient, record_type, record_id, user_id,
                                 content_type, content, state, not_after, trace_context)
                             FROM STDIN WITH (FORMAT csv)",
                        )
                        .await?;
                    copy.send(batch.rows.into_bytes()).await?;
                    copy.finish().await?;
                }
                batch.rejections.write(&mut tx, campaign, tenant).await?;
            }
            Ok(tx)
        });
        Self {
            batches: Some(batches),
            task,
        }
    }

    async fn send(&mut self, batch: Batch) -> Result<(), Problem> {
        let sent = match &self.batches {
            Some(batches) => batches.send(batch).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The writer stopped: its error says why.
        self.batches = None;
        match (&mut self.task).await {
            Ok(Err(problem)) => Err(problem),
            _ => Err(Problem::internal()),
        }
    }

    /// Waits for every batch to be written and hands the transaction back.
    async fn finish(mut self) -> Written {
        self.batches = None;
        self.task.await.map_err(|_| Problem::internal())?
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

/// A recipient that passed, ready to insert.
struct Valid {
    to: String,
    record_type: &'static str,
    record_id: String,
    /// The stored content as JSON text.
    content: String,
}

/// Appends one CSV row (`None` = NULL: an unquoted empty field; values are always quoted).
fn csv_row(out: &mut String, fields: &[Option<&str>]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if let Some(v) = field {
            out.push('"');
            for c in v.chars() {
                if c == '"' {
                    out.push('"');
                }
                out.push(c);
            }
            out.push('"');
        }
    }
    out.push('\n');
}

/// What a refused recipient gave, for its rejection row.
#[derive(Clone)]
struct Given {
    to: Option<String>,
    record: Option<wafleet_core::domain::RecordRef>,
}

/// One batch's rejections, column by column for an `unnest` insert.
#[derive(Default)]
struct Rejections {
    positions: Vec<i32>,
    recipients: Vec<Option<String>>,
    record_types: Vec<Option<&'static str>>,
    record_ids: Vec<Option<String>>,
    codes: Vec<&'static str>,
    fields: Vec<Option<String>>,
    details: Vec<String>,
}

impl Rejections {
    fn push(&mut self, position: i32, given: Given, problem: Problem) {
        self.positions.push(position);
        // As given, cut to a sane length (it may be anything).
        self.recipients
            .push(given.to.map(|t| t.chars().take(64).collect()));
        self.record_types
            .push(given.record.as_ref().map(|r| r.kind.as_str()));
        self.record_ids.push(given.record.map(|r| r.id));
        self.codes.push(problem.code);
        self.fields.push(problem.field);
        self.details.push(problem.detail);
    }

    async fn write(
        self,
        tx: &mut sqlx::PgConnection,
        campaign: uuid::Uuid,
        tenant: TenantId,
    ) -> Result<(), sqlx::Error> {
        if self.positions.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO campaign_rejections (campaign_id, tenant_id, position, recipient, record_type, record_id,
                 code, field, detail)
             SELECT $1, $2, u.* FROM unnest($3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[])
                  AS u(position, recipient, record_type, record_id, code, field, detail)",
        )
        .bind(campaign)
        .bind(tenant)
        .bind(&self.positions)
        .bind(&self.recipients)
        .bind(&self.record_types)
        .bind(&self.record_ids)
        .bind(&self.codes)
        .bind(&self.fields)
        .bind(&self.details)
        .execute(tx)
        .await?;
        Ok(())
    }
}
