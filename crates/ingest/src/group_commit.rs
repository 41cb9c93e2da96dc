//! Group commit for single-message intake. `POST /v1/messages` and AMQP intake hand each
//! request to one collector, which gathers what arrives while the previous batch is written (up
//! to `batch_max`, lingering `batch_linger` for more) and accepts it as one batch:
//!
//! 1. one read of the stored idempotency replies, one read per table to resolve the batch's
//!    tenants, senders, allowed countries and templates (so nothing is cached, nothing is
//!    stale, and the cost is per batch, not per request);
//! 2. one transaction with a multi-row insert per table: idempotency keys first (a key a
//!    concurrent batch took wins there, and its request is answered with the stored reply),
//!    then the message rows, their conversations and their first events;
//! 3. after the commit, the batch's confirmed publishes, all in flight at once (a window of
//!    outstanding confirms), and only then each caller's own answer.
//!
//! So the guarantees of the one-at-a-time path hold — the row exists before anyone hears 202, a
//! failed publish is left to the outbox sweep, a replay answers as the first request did — at
//! one commit per batch instead of several per message.

mod plan;
mod write;

use crate::{
    accept::{self, Idempotency, Reply},
    publish::DispatchPublisher,
    validate::{self, Draft},
};
use axum::http::StatusCode;
use futures_util::future::join_all;
use plan::{Lookups, plan};
use serde_json::Value;
use sqlx::PgPool;
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;
use wafleet_core::{
    contract::{Content, SendRequest},
    domain::{MessageId, RecordRef, SenderId, TenantId, state},
    http::Problem,
};
use write::{insert_conversations, insert_events, insert_messages, remember_replies};

/// How the collector batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    pub max: usize,
    pub linger: Duration,
    pub writers: usize,
}

/// The handle callers submit to; cheap to clone.
#[derive(Clone)]
pub struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

/// One caller's request, waiting for its batch.
struct Job {
    /// The id the message gets if it is written (chosen by the caller, so its span names it).
    id: MessageId,
    tenant: TenantId,
    request: SendRequest,
    idempotency: Option<Idempotency>,
    /// The caller's span: the publish is traced under it, and the row keeps its traceparent.
    span: tracing::Span,
    traceparent: Option<String>,
    done: oneshot::Sender<Result<Reply, Problem>>,
}

impl Job {
    fn answer(self, result: Result<Reply, Problem>) {
        // A caller that went away (client disconnect) no longer needs the answer; its row
        // stands and a retry with the same key replays it.
        let _ = self.done.send(result);
    }
}

impl GroupCommit {
    /// Starts the collector; it runs until `cancel`, then accepts what was already submitted.
    pub fn start(
        pool: PgPool,
        dispatch: DispatchPublisher,
        clock: wafleet_core::clock::SharedClock,
        settings: BatchSettings,
        cancel: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(settings.max.max(1) * settings.writers.max(1) * 4);
        let writer = Arc::new(Writer {
            pool,
            dispatch,
            clock,
        });
        let task = tokio::spawn(collect(writer, rx, settings, cancel));
        (Self { jobs: tx }, task)
    }

    /// Accepts (or refuses) one request, in the next batch. `Err` is for failures of ours
    /// (database down): nothing is stored, and the caller may retry.
    #[tracing::instrument(name = "accept message", skip_all, fields(tenant = %tenant, message_id))]
    pub async fn accept(
        &self,
        tenant: TenantId,
        request: SendRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<Reply, Problem> {
        let (done, answer) = oneshot::channel();
        let id = MessageId::new();
        tracing::Span::current().record("message_id", tracing::field::display(id));
        let job = Job {
            id,
            tenant,
            request,
            idempotency,
            span: tracing::Span::current(),
            traceparent: wafleet_core::amqp::current_traceparent(),
            done,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| Problem::unavailable("the service is shutting down; retry shortly"))?;
        answer.await.map_err(|_| Problem::internal())?
    }
}

/// Gathers batches: a writer slot first, then whatever is waiting (lingering briefly for more),
/// so under load each batch takes everything that arrived while the previous one was written.
async fn collect(
    writer: Arc<Writer>,
    mut rx: mpsc::Receiver<Job>,
    settings: BatchSettings,
    cancel: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(settings.writers.max(1)));
    let batches = TaskTracker::new();
    loop {
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let first = tokio::select! {
            job = rx.recv() => job,
            _ = cancel.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + settings.linger;
        while batch.len() < settings.max {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => batch.push(job),
                    _ => break,
                },
            }
        }
        let writer = writer.clone();
        batches.spawn(async move {
            writer.accept_batch(batch).await;
            drop(slot);
        });
    }
    // Shutting down: whatever callers already submitted is still accepted.
    rx.close();
    let mut rest = Vec::new();
    while let Some(job) = rx.recv().await {
        rest.push(job);
    }
    for chunk in chunks(rest, settings.max) {
        writer.accept_batch(chunk).await;
    }
    batches.close();
    batches.wait().await;
}

fn chunks(mut jobs: Vec<Job>, max: usize) -> Vec<Vec<Job>> {
    let mut out = Vec::new();
    while !jobs.is_empty() {
        let rest = jobs.split_off(jobs.len().min(max.max(1)));
        out.push(std::mem::replace(&mut jobs, rest));
    }
    out
}

struct Writer {
    pool: PgPool,
    dispatch: DispatchPublisher,
    /// Whether a recipient's service window is still open (sticky sender).
    clock: wafleet_core::clock::SharedClock,
}

/// What the batch decided for one request, before anything is written.
enum Plan {
    /// Answered without a write (a replay, a conflict, a refusal with no record to file it in).
    Answered(Result<Reply, Problem>),
    /// A row to write.
    Write(Box<Row>),
}

/// One message row (and its first event) to insert.
struct Row {
    id: MessageId,
    kind: &'static str,
    sender: Option<(SenderId, String)>,
    recipient: Option<String>,
    record: RecordRef,
    user_id: Option<String>,
    content: Option<Content>,
    state: &'static str,
    reason: Option<&'static str>,
    /// The event's detail (a refusal's problem).
    detail: Option<Value>,
    not_after: Option<chrono::DateTime<chrono::Utc>>,
    reply: Reply,
    publish: bool,
}

impl Writer {
    #[tracing::instrument(name = "accept batch", skip_all, fields(batch.size = jobs.len()))]
    async fn accept_batch(&self, jobs: Vec<Job>) {
        metrics::histogram!("wafleet_intake_batch_size").record(jobs.len() as f64);
        match self.try_batch(jobs).await {
            Ok(()) => {}
            Err((jobs, err)) if is_data_error(&err) && jobs.len() > 1 => {
                // One request's data was refused by PostgreSQL (it rolls back the whole
                // transaction): accept the others one by one so only that one fails.
                tracing::warn!(error = %err, n = jobs.len(), "a batch was refused; accepting its requests one by one");
                for job in jobs {
                    if let Err((jobs, err)) = self.try_batch(vec![job]).await {
                        fail(jobs, err);
                    }
                }
            }
            Err((jobs, err)) => fail(jobs, err),
        }
    }

    /// Accepts a batch; on a database failure before the commit, hands the jobs back.
    async fn try_batch(&self, jobs: Vec<Job>) -> Result<(), (Vec<Job>, sqlx::Error)> {
        // Requests repeating a key of the same batch follow the first one's answer.
        let mut leaders: Vec<Job> = Vec::with_capacity(jobs.len());
        let mut followers: Vec<(usize, Job)> = Vec::new();
        let mut seen: HashMap<(TenantId, String), usize> = HashMap::new();
        for job in jobs {
            match job
                .idempotency
                .as_ref()
                .map(|i| (job.tenant, i.key.clone()))
            {
                Some(key) if seen.contains_key(&key) => followers.push((seen[&key], job)),
                Some(key) => {
                    seen.insert(key, leaders.len());
                    leaders.push(job);
                }
                None => leaders.push(job),
            }
        }
        let stored = match stored_replies(&self.pool, &leaders).await {
            Ok(s) => s,
            Err(err) => return Err((rejoin(leaders, followers), err)),
        };
        let drafts: Vec<Result<Draft, Problem>> = leaders
            .iter()
            .map(|job| validate::validate(job.request.clone()))
            .collect();
        let now = self.clock.now();
        let lookups = match Lookups::load(&self.pool, &leaders, &drafts, now).await {
            Ok(l) => l,
            Err(err) => return Err((rejoin(leaders, followers), err)),
        };
        let plans: Vec<Plan> = leaders
            .iter()
            .zip(drafts)
            .map(|(job, draft)| {
                let key = job
                    .idempotency
                    .as_ref()
                    .map(|i| (job.tenant, i.key.clone()));
                match key.and_then(|k| stored.get(&k)) {
                    Some(reply) => Plan::Answered(replayed(reply, job)),
                    None => plan(job, draft, &lookups),
                }
            })
            .collect();
        let taken = match self.write(&leaders, &plans).await {
            Ok(taken) => taken,
            Err(err) => return Err((rejoin(leaders, followers), err)),
        };
        self.finish(leaders, plans, followers, taken).await;
        Ok(())
    }

    /// Writes the batch's rows in one transaction. Returns the keys a concurrent request took
    /// first (their rows were not written).
    async fn write(
        &self,
        jobs: &[Job],
        plans: &[Plan],
    ) -> Result<HashSet<(TenantId, String)>, sqlx::Error> {
        let rows: Vec<(&Job, &Row)> = jobs
            .iter()
            .zip(plans)
            .filter_map(|(job, plan)| match plan {
                Plan::Write(row) => Some((job, &**row)),
                Plan::Answered(_) => None,
            })
            .collect();
        if rows.is_empty() {
            return Ok(HashSet::new());
        }
        let mut tx = self.pool.begin().await?;
        let taken = remember_replies(&mut tx, &rows).await?;
        let rows: Vec<(&Job, &Row)> = rows
            .into_iter()
            .filter(|(job, _)| !is_taken(&taken, job))
            .collect();
        insert_messages(&mut tx, &rows).await?;
        insert_conversations(&mut tx, &rows).await?;
        insert_events(&mut tx, &rows).await?;
        tx.commit().await?;
        Ok(taken)
    }

    /// After the commit: counts, publishes the single messages (all in flight at once), then
    /// answers every caller.
    async fn finish(
        &self,
        jobs: Vec<Job>,
        plans: Vec<Plan>,
        followers: Vec<(usize, Job)>,
        taken: HashSet<(TenantId, String)>,
    ) {
        let publishes = jobs
            .iter()
            .zip(&plans)
            .filter_map(|(job, plan)| match plan {
                Plan::Write(row) if row.publish && !is_taken(&taken, job) => {
                    let (_, phone_number_id) = row.sender.as_ref().expect("a sendable row has one");
                    // Polled inside the caller's span, so the publish is traced under it.
                    let publish = self.dispatch.publish(job.tenant, row.id, phone_number_id);
                    Some(publish.instrument(job.span.clone()))
                }
                _ => None,
            });
        for result in join_all(publishes).await {
            if let Err(err) = result {
                // The row is durable; the outbox sweep publishes it once the broker is back.
                tracing::warn!(error = %err, "publish to dispatch failed; left for the outbox sweep");
            }
        }
        let lost: Vec<&Job> = jobs.iter().filter(|j| is_taken(&taken, j)).collect();
        let winners = match stored_replies(&self.pool, &lost).await {
            Ok(w) => w,
            Err(err) => {
                tracing::error!(error = %err, "could not read the replies of concurrent requests");
                HashMap::new()
            }
        };
        let mut answers: Vec<Result<Reply, Problem>> = Vec::with_capacity(jobs.len());
        for (job, plan) in jobs.iter().zip(plans) {
            let answer = if is_taken(&taken, job) {
                // A concurrent request with the same key won the race: answer as it did.
                let key = job
                    .idempotency
                    .as_ref()
                    .map(|i| (job.tenant, i.key.clone()));
                match key.and_then(|k| winners.get(&k)) {
                    Some(reply) => replayed(reply, job),
                    None => Err(Problem::internal()),
                }
            } else {
                match plan {
                    Plan::Answered(answer) => answer,
                    Plan::Write(row) => {
                        count(&row);
                        Ok(row.reply)
                    }
                }
            };
            answers.push(answer);
        }
        for (leader, job) in followers {
            let answer = match (&answers[leader], &jobs[leader].idempotency) {
                (Ok(reply), Some(idem)) => replayed(
                    &Stored {
                        hash: idem.request_hash.clone(),
                        reply: reply.clone(),
                    },
                    &job,
                ),
                (Err(p), _) => Err(p.clone()),
                (Ok(_), None) => Err(Problem::internal()),
            };
            job.answer(answer);
        }
        for (job, answer) in jobs.into_iter().zip(answers) {
            job.answer(answer);
        }
    }
}

fn rejoin(mut leaders: Vec<Job>, followers: Vec<(usize, Job)>) -> Vec<Job> {
    leaders.extend(followers.into_iter().map(|(_, job)| job));
    leaders
}

fn fail(jobs: Vec<Job>, err: sqlx::Error) {
    let problem = Problem::from(err);
    for job in jobs {
        job.answer(Err(problem.clone()));
    }
}

/// PostgreSQL refused the data itself (class 22: a NUL in a text, a value out of range; 23: a
/// constraint; 54: a value too large), as opposed to being unreachable.
fn is_data_error(err: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    db.code()
        .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("54"))
}

fn is_taken(taken: &HashSet<(TenantId, String)>, job: &Job) -> bool {
    job.idempotency
        .as_ref()
        .is_some_and(|i| taken.contains(&(job.tenant, i.key.clone())))
}

/// A stored reply with the hash of the request it answered.
struct Stored {
    hash: Vec<u8>,
    reply: Reply,
}

/// The stored answer for `job`'s key, or `409` if its body differed.
fn replayed(stored: &Stored, job: &Job) -> Result<Reply, Problem> {
    let idem = job.idempotency.as_ref().expect("a replay has a key");
    if stored.hash != idem.request_hash {
        return Err(accept::idempotency_conflict());
    }
    Ok(Reply {
        replay: true,
        ..stored.reply.clone()
    })
}

/// The stored replies for the keys of `jobs`, in one query.
async fn stored_replies<J: std::borrow::Borrow<Job>>(
    pool: &PgPool,
    jobs: &[J],
) -> Result<HashMap<(TenantId, String), Stored>, sqlx::Error> {
    let (tenants, keys): (Vec<uuid::Uuid>, Vec<&str>) = jobs
        .iter()
        .filter_map(|j| {
            let j = j.borrow();
            Some((j.tenant.0, j.idempotency.as_ref()?.key.as_str()))
        })
        .unzip();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(TenantId, String, Vec<u8>, i16, Value)> = sqlx::query_as(
        "SELECT i.tenant_id, i.key, i.request_hash, i.response_status, i.response_body
         FROM unnest($1::uuid[], $2::text[]) AS k(tenant_id, key)
         JOIN idempotency_keys i ON i.tenant_id = k.tenant_id AND i.key = k.key",
    )
    .bind(&tenants)
    .bind(&keys)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(tenant, key, hash, status, body)| {
            let status = StatusCode::from_u16(status as u16).ok()?;
            let reply = Reply {
                status,
                body,
                replay: true,
            };
            Some(((tenant, key), Stored { hash, reply }))
        })
        .collect())
}

/// Counts an accepted or refused row once it is durable.
fn count(row: &Row) {
    metrics::counter!("wafleet_intake_accepted_total")
        .increment(u64::from(row.reply.status.is_success()));
    if row.state != state::REJECTED {
        wafleet_core::metrics::message_state(row.state, None);
    }
}
