//! Writing a campaign's batches: valid recipients as `messages` rows with one `COPY` per batch,
//! refused ones as `campaign_rejections` with one `unnest` insert, on a task of their own in
//! the campaign's transaction, so PostgreSQL writes one batch while ingest validates the next.

use sqlx::{Postgres, Transaction};
use tokio::sync::mpsc;
use wafleet_core::{domain::TenantId, http::Problem};

/// One validated batch, ready to write.
pub(super) struct Batch {
    pub(super) rows: String,
    pub(super) rejections: Rejections,
}

type Written = Result<Transaction<'static, Postgres>, Problem>;

/// Writes batches in the campaign's transaction on its own task, so PostgreSQL writes one batch
/// while the next is read and validated. At most two batches wait (bounded memory).
pub(super) struct Writer {
    batches: Option<mpsc::Sender<Batch>>,
    task: tokio::task::JoinHandle<Written>,
}

impl Writer {
    pub(super) fn spawn(
        tx: Transaction<'static, Postgres>,
        campaign: uuid::Uuid,
        tenant: TenantId,
    ) -> Self {
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

    pub(super) async fn send(&mut self, batch: Batch) -> Result<(), Problem> {
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
    pub(super) async fn finish(mut self) -> Written {
        self.batches = None;
        self.task.await.map_err(|_| Problem::internal())?
    }
}

/// Appends one CSV row (`None` = NULL: an unquoted empty field; values are always quoted).
pub(super) fn csv_row(out: &mut String, fields: &[Option<&str>]) {
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
pub(super) struct Given {
    pub(super) to: Option<String>,
    pub(super) record: Option<wafleet_core::domain::RecordRef>,
}

/// One batch's rejections, column by column for an `unnest` insert.
#[derive(Default)]
pub(super) struct Rejections {
    pub(super) positions: Vec<i32>,
    recipients: Vec<Option<String>>,
    record_types: Vec<Option<&'static str>>,
    record_ids: Vec<Option<String>>,
    codes: Vec<&'static str>,
    fields: Vec<Option<String>>,
    details: Vec<String>,
}

impl Rejections {
    pub(super) fn push(&mut self, position: i32, given: Given, problem: Problem) {
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

    pub(super) async fn write(
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
