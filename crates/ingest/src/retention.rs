//! The retention sweeper (`retention.messages`, off by default): messages older than the
//! retention period are anonymised as an erasure does (`erasure::anonymise`: content, number
//! and Meta's details go; counts and billing stay), in batches, like the outbox sweep beside
//! it. Message ids are UUIDv7, time-ordered, so the sweep walks the primary key from where it
//! stopped (`retention_sweeps.swept_through`) up to the first id of the cut-off instant: no
//! index of its own on the hottest table, and each message is looked at once. A message still
//! on its way (accepted, queued, deferred, dispatching) is passed over and keeps its content.
//! Safe in every ingest replica: the progress row is locked for the batch.

use crate::erasure;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wafleet_core::{Settings, clock::SharedClock};

/// The name of the messages' row in `retention_sweeps`.
const MESSAGES: &str = "messages";

/// The smallest UUIDv7 of the instant `at`: every id generated before `at` sorts below it
/// (PostgreSQL compares uuids byte by byte; a v7 id starts with its milliseconds, big-endian).
pub fn first_id_at(at: DateTime<Utc>) -> uuid::Uuid {
    let ms = at.timestamp_millis().max(0) as u64;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    uuid::Uuid::from_bytes(bytes)
}

/// One batch: anonymises final messages among the next `batch` ids older than `now - keep`;
/// returns (ids looked at, messages anonymised).
pub async fn sweep_once(
    pool: &PgPool,
    keep: Duration,
    batch: i64,
    now: DateTime<Utc>,
) -> Result<(usize, usize), sqlx::Error> {
    let keep = chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let bound = first_id_at(
        now.checked_sub_signed(keep)
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    );
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO retention_sweeps (name, swept_through) VALUES ($1, '00000000-0000-0000-0000-000000000000')
         ON CONFLICT DO NOTHING",
    )
    .bind(MESSAGES)
    .execute(&mut *tx)
    .await?;
    // FOR UPDATE: two replicas take turns instead of sweeping the same ids.
    let from: uuid::Uuid =
        sqlx::query_scalar("SELECT swept_through FROM retention_sweeps WHERE name = $1 FOR UPDATE")
            .bind(MESSAGES)
            .fetch_one(&mut *tx)
            .await?;
    // A range of the primary key, bounded on both sides.
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE id > $1 AND id < $2 ORDER BY id LIMIT $3",
    )
    .bind(from)
    .bind(bound)
    .bind(batch)
    .fetch_all(&mut *tx)
    .await?;
    let Some(last) = ids.last().copied() else {
        tx.rollback().await?;
        return Ok((0, 0));
    };
    let done = erasure::anonymise(&mut tx, &ids, true, now).await?;
    sqlx::query("UPDATE retention_sweeps SET swept_through = $2 WHERE name = $1")
        .bind(MESSAGES)
        .bind(last)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics::counter!(wafleet_core::metrics::RETENTION_ANONYMISED).increment(done.len() as u64);
    Ok((ids.len(), done.len()))
}

/// Sweeps until cancelled when `retention.messages` is set: batch after batch while there is a
/// backlog, then every `retention.interval`.
pub async fn run(pool: PgPool, settings: Settings, clock: SharedClock, cancel: CancellationToken) {
    let Some(keep) = settings.retention.messages else {
        return;
    };
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = settings.retention.interval;
        match sweep_once(&pool, keep, settings.retention.batch, clock.now()).await {
            Ok((seen, done)) => {
                if done > 0 {
                    tracing::info!(anonymised = done, "retention sweep anonymised messages");
                }
                if seen as i64 == settings.retention.batch {
                    wait = Duration::ZERO;
                }
            }
            Err(err) => tracing::warn!(error = %err, "retention sweep failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::first_id_at;

    #[test]
    fn every_id_made_before_an_instant_sorts_below_its_first_id() {
        let before = uuid::Uuid::now_v7();
        let bound = first_id_at(chrono::Utc::now() + chrono::Duration::milliseconds(2));
        let after = uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            (chrono::Utc::now() + chrono::Duration::seconds(1)).timestamp() as u64,
            0,
        ));
        assert!(before.as_bytes() < bound.as_bytes());
        assert!(bound.as_bytes() < after.as_bytes());
    }
}
