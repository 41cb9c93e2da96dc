//! Group commit for dispatch outcomes. Each sender's Graph calls end on their own (a slow
//! sender never holds up another), so a busy process has many small groups of outcomes to
//! record at once; the recorder writes whatever groups are waiting in one transaction
//! (`store::record`), so the commits follow the database's pace, not the number of senders.
//! Each submitter is answered only once its outcomes are durable, and only then acks its
//! deliveries. A transient failure (a busy pool, a deadlock, a restart) is retried with backoff
//! for about 6 s; any other failure of a combined write is retried group by group, so one
//! group's bad data never fails another's.

use crate::store::{self, Outcome};
use sqlx::PgPool;
use std::{sync::Arc, time::Duration};
use tokio::sync::{Semaphore, mpsc, oneshot};
use wafleet_core::clock::SharedClock;

/// Outcomes written together at most.
const MAX_OUTCOMES: usize = 2000;
/// Transactions in flight at once.
const WRITERS: usize = 2;
/// Attempts at a write before its submitters are told it failed.
const TRIES: u32 = 6;

/// The handle submitters use; cheap to clone.
#[derive(Clone)]
pub struct Recorder {
    jobs: mpsc::Sender<Job>,
}

struct Job {
    outcomes: Vec<Outcome>,
    done: oneshot::Sender<Result<(), String>>,
}

impl Recorder {
    /// Starts the recorder; it stops once every handle is dropped, after writing what it has.
    pub fn start(pool: PgPool, clock: SharedClock) -> Self {
        let (jobs, rx) = mpsc::channel(1024);
        tokio::spawn(run(pool, clock, rx));
        Self { jobs }
    }

    /// Records `outcomes` durably (with the others waiting). `Err` once the write failed for
    /// good: the caller requeues the deliveries, and the claim makes their redelivery harmless.
    pub async fn record(&self, outcomes: Vec<Outcome>) -> Result<(), String> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        self.jobs
            .send(Job { outcomes, done })
            .await
            .map_err(|_| "the recorder has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the recorder has stopped".to_owned())?
    }
}

async fn run(pool: PgPool, clock: SharedClock, mut rx: mpsc::Receiver<Job>) {
    let slots = Arc::new(Semaphore::new(WRITERS));
    while let Some(first) = rx.recv().await {
        let mut size = first.outcomes.len();
        let mut jobs = vec![first];
        while size < MAX_OUTCOMES {
            match rx.try_recv() {
                Ok(job) => {
                    size += job.outcomes.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let slot = slots.clone().acquire_owned().await.expect("never closed");
        let (pool, clock) = (pool.clone(), clock.clone());
        tokio::spawn(async move {
            metrics::histogram!("wafleet_dispatch_record_batch_size").record(size as f64);
            write(&pool, &clock, jobs).await;
            drop(slot);
        });
    }
    // Every handle is gone: wait for the writes in flight.
    let _ = slots.acquire_many(WRITERS as u32).await;
}

/// Writes the jobs together; if that fails for a reason other than a passing fault, each job on
/// its own.
async fn write(pool: &PgPool, clock: &SharedClock, jobs: Vec<Job>) {
    let all: Vec<Outcome> = jobs.iter().flat_map(|j| j.outcomes.clone()).collect();
    match write_with_retries(pool, clock, &all).await {
        Ok(()) => answer(jobs, Ok(())),
        Err(err) if jobs.len() > 1 && !wafleet_core::db::is_transient(&err) => {
            tracing::warn!(error = %err, groups = jobs.len(), "recording outcomes together failed; recording each group alone");
            for job in jobs {
                let result = write_with_retries(pool, clock, &job.outcomes).await;
                answer(vec![job], result.map_err(|e| e.to_string()));
            }
        }
        Err(err) => answer(jobs, Err(err.to_string())),
    }
}

async fn write_with_retries(
    pool: &PgPool,
    clock: &SharedClock,
    outcomes: &[Outcome],
) -> Result<(), sqlx::Error> {
    let mut backoff = Duration::from_millis(200);
    let mut tries = 0;
    loop {
        tries += 1;
        match store::record(pool, outcomes, clock.now()).await {
            Ok(()) => return Ok(()),
            Err(err) if tries < TRIES && wafleet_core::db::is_transient(&err) => {
                tracing::warn!(error = %err, tries, "recording outcomes failed; trying again");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(err) => return Err(err),
        }
    }
}

fn answer(jobs: Vec<Job>, result: Result<(), String>) {
    for job in jobs {
        // A submitter that went away (shutdown) no longer needs the answer.
        let _ = job.done.send(result.clone());
    }
}
