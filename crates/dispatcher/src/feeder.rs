//! The bulk feeder (SPEC §3 principle 5): bulk messages wait in PostgreSQL (`queued`,
//! `published_at` NULL) and the feeder releases them to their sender's dispatch shard in small
//! windows, so a single message published to the same shard never queues behind a campaign.
//!
//! Every `feeder_interval`, per sender with waiting bulk:
//! - nothing leaves during the tenant's quiet time, or while the cap's bulk share has no
//!   headroom left for what is already in flight (`core::policy::cap::usage`);
//! - at most `sender_rate × feeder_window` of the sender's bulk is in its shard at once
//!   (released and not yet settled by a dispatcher): the window is topped up, oldest first;
//! - messages of paused or cancelled campaigns stay where they are.
//!
//! Several dispatcher processes run the feeder safely: a sender is fed under a transaction-scoped
//! advisory lock (one feeder per sender at a time, so the window is exact), rows are taken with
//! `FOR UPDATE SKIP LOCKED`, and a row is marked released (`published_at`) in the same
//! transaction only after the broker confirmed its publish. A crash between the confirm and the
//! commit publishes it again later, which the dispatcher's claim makes harmless.
//!
//! Held bulk whose `not_after` passed ends `expired` here, without reaching a shard.

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use sqlx::PgPool;
use std::{collections::HashMap, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use wafleet_core::{
    amqp::{self, Outgoing, Publisher, Topology},
    campaign,
    clock::SharedClock,
    contract::DispatchEnvelope,
    domain::{MessageId, TenantId},
    metrics::{BULK_ENDED, FEEDER_HELD, FEEDER_RELEASED},
    policy::cap,
};

/// What the feeder needs.
#[derive(Clone)]
pub struct Feeder {
    pub pool: PgPool,
    pub publisher: Publisher,
    pub topology: Arc<Topology>,
    pub clock: SharedClock,
    /// Messages per second of a sender without its own `senders.rate_mps`.
    pub sender_rate: u32,
    /// How much of the rate may be in a shard at once.
    pub window: Duration,
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub released: usize,
    pub expired: u64,
}

/// Expired rows handled per statement.
const EXPIRE_BATCH: i64 = 5000;

impl Feeder {
    /// The most of one sender's bulk in its shard at once, for a sender at `rate_mps` (its own
    /// setting; `None` = the default rate).
    pub fn capacity(&self, rate_mps: Option<i32>) -> i64 {
        let rate = rate_mps.map_or(self.sender_rate, |r| r.clamp(1, 1000) as u32);
        ((f64::from(rate) * self.window.as_secs_f64()).ceil() as i64).max(1)
    }

    /// Feeds every `interval` until cancelled.
    pub async fn run(self, interval: Duration, cancel: CancellationToken) {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if let Err(err) = self.feed_once().await {
                tracing::warn!(error = %err, "feeder round failed; retrying next tick");
            }
        }
    }

    /// One round over every sender with waiting bulk.
    pub async fn feed_once(&self) -> Result<Round, sqlx::Error> {
        let now = self.clock.now();
        let mut round = Round {
            expired: self.expire_due(now).await?,
            ..Round::default()
        };
        let senders = self.waiting_senders().await?;
        if senders.is_empty() {
            return Ok(round);
        }
        let in_flight = self.in_flight().await?;
        let mut tenants: HashMap<TenantId, Option<i64>> = HashMap::new();
        for (phone_number_id, tenant) in senders {
            let allowance = match tenants.get(&tenant) {
                Some(a) => *a,
                None => {
                    let tenant_in_flight = in_flight
                        .iter()
                        .filter(|(_, (t, _))| *t == tenant)
                        .map(|(_, (_, n))| *n)
                        .sum();
                    let a = self.tenant_allowance(tenant, tenant_in_flight, now).await?;
                    tenants.insert(tenant, a);
                    a
                }
            };
            // `None`: held for the whole tenant this round (quiet time, no cap headroom).
            let Some(allowance) = allowance else { continue };
            let released = self
                .feed_sender(&phone_number_id, tenant, allowance, now)
                .await?;
            if let Some(a) = tenants.get_mut(&tenant).and_then(Option::as_mut) {
                *a = (*a - released as i64).max(0);
            }
            round.released += released;
        }
        Ok(round)
    }

    /// How many new bulk messages the tenant may release now (`i64::MAX` = no cap limit), or
    /// `None` when quiet time or the cap holds its bulk back.
    async fn tenant_allowance(
        &self,
        tenant: TenantId,
        in_flight: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>, sqlx::Error> {
        let quiet = campaign::quiet_rule(&self.pool, tenant).await?;
        if quiet.as_ref().is_some_and(|q| q.is_quiet(now)) {
            metrics::counter!(FEEDER_HELD, "reason" => "quiet_time").increment(1);
            return Ok(None);
        }
        let usage = cap::usage(&self.pool, tenant, now).await?;
        match usage.bulk_headroom() {
            None => Ok(Some(i64::MAX)),
            Some(headroom) => {
                let left = i64::from(headroom) - in_flight;
                if left <= 0 {
                    metrics::counter!(FEEDER_HELD, "reason" => "messaging_limit").increment(1);
                    return Ok(None);
                }
                Ok(Some(left))
            }
        }
    }

    /// Senders with bulk waiting to be released, and the tenant of each. A loose index scan
    /// over `messages_bulk_waiting`: one probe per sender however many rows wait.
    async fn waiting_senders(&self) -> Result<Vec<(String, TenantId)>, sqlx::Error> {
        // Cross-tenant by design (an operator task): each sender's own tenant goes with it.
        sqlx::query_as(
            "WITH RECURSIVE s(p) AS (
                 (SELECT phone_number_id FROM messages
                  WHERE kind = 'bulk' AND state = 'queued' AND published_at IS NULL
                  ORDER BY phone_number_id LIMIT 1)
                 UNION ALL
                 SELECT (SELECT phone_number_id FROM messages
                         WHERE kind = 'bulk' AND state = 'queued' AND published_at IS NULL
                           AND phone_number_id > s.p
                         ORDER BY phone_number_id LIMIT 1)
                 FROM s WHERE s.p IS NOT NULL)
             SELECT s.p, t.tenant_id FROM s
             CROSS JOIN LATERAL (SELECT tenant_id FROM messages
                                 WHERE kind = 'bulk' AND state = 'queued' AND published_at IS NULL
                                   AND phone_number_id = s.p LIMIT 1) t
             WHERE s.p IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await
    }

    /// Bulk in each sender's shard now: released, not yet settled.
    async fn in_flight(&self) -> Result<HashMap<String, (TenantId, i64)>, sqlx::Error> {
        let rows: Vec<(String, TenantId, i64)> = sqlx::query_as(
            "SELECT phone_number_id, tenant_id, count(*) FROM messages
             WHERE kind = 'bulk' AND state IN ('queued', 'dispatching') AND published_at IS NOT NULL
             GROUP BY phone_number_id, tenant_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(p, t, n)| (p, (t, n))).collect())
    }

    /// Tops up one sender's window (at most `allowance` messages); returns how many left. Each
    /// number of a campaign's sender pool is a sender here: its own window at its own rate.
    async fn feed_sender(
        &self,
        phone_number_id: &str,
        tenant: TenantId,
        allowance: i64,
        now: DateTime<Utc>,
    ) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        // One feeder per sender at a time, across processes: the window count below is exact.
        let (locked,): (bool,) = sqlx::query_as(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('wafleet-feeder:' || $1, 0))",
        )
        .bind(phone_number_id)
        .fetch_one(&mut *tx)
        .await?;
        if !locked {
            return Ok(0);
        }
        let (in_flight, rate_mps): (i64, Option<i32>) = sqlx::query_as(
            "SELECT count(*),
                    (SELECT rate_mps FROM senders WHERE tenant_id = $2 AND phone_number_id = $1)
             FROM messages
             WHERE kind = 'bulk' AND state IN ('queued', 'dispatching') AND published_at IS NOT NULL
               AND phone_number_id = $1 AND tenant_id = $2",
        )
        .bind(phone_number_id)
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?;
        let room = (self.capacity(rate_mps) - in_flight).min(allowance);
        if room <= 0 {
            metrics::counter!(FEEDER_HELD, "reason" => "window").increment(1);
            return Ok(0);
        }
        let rows: Vec<(MessageId, TenantId)> = sqlx::query_as(
            "SELECT m.id, m.tenant_id FROM messages m
             WHERE m.phone_number_id = $1 AND m.tenant_id = $4 AND m.kind = 'bulk' AND m.state = 'queued'
               AND m.published_at IS NULL
               AND (m.not_after IS NULL OR m.not_after > $3)
               AND (m.campaign_id IS NULL OR EXISTS (
                        SELECT 1 FROM campaigns c
                        WHERE c.id = m.campaign_id AND c.tenant_id = m.tenant_id AND c.status = 'active'))
             ORDER BY m.id LIMIT $2
             FOR UPDATE OF m SKIP LOCKED",
        )
        .bind(phone_number_id)
        .bind(room)
        .bind(now)
        .bind(tenant)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let shard = amqp::shard_key(self.topology.shard_for(phone_number_id));
        let confirmed = join_all(
            rows.iter()
                .map(|(id, tenant)| self.publish(&shard, phone_number_id, *id, *tenant)),
        )
        .await;
        let released: Vec<uuid::Uuid> = rows
            .iter()
            .zip(confirmed)
            .filter_map(|((id, _), ok)| ok.then_some(id.0))
            .collect();
        // The release starts the message's event trail (campaign intake writes no events).
        sqlx::query(
            "WITH released AS (
                 UPDATE messages SET published_at = $2 WHERE id = ANY($1) AND (tenant_id = $3) IS TRUE
                 RETURNING id, tenant_id)
             INSERT INTO message_events (message_id, tenant_id, state, reason, at)
             SELECT id, tenant_id, 'queued', 'released', $2 FROM released",
        )
        .bind(&released)
        .bind(now)
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        metrics::counter!(FEEDER_RELEASED).increment(released.len() as u64);
        Ok(released.len())
    }

    /// Publishes one envelope to `shard`; `false` if the broker did not confirm it.
    async fn publish(&self, shard: &str, sender: &str, id: MessageId, tenant: TenantId) -> bool {
        let body = serde_json::to_vec(&DispatchEnvelope {
            message_id: id,
            tenant_id: tenant,
            phone_number_id: Some(sender.to_owned()),
        })
        .expect("envelope serialises");
        let mut headers = Default::default();
        amqp::inject_trace_context(&mut headers);
        let result = self
            .publisher
            .publish(Outgoing {
                exchange: &self.topology.dispatch_exchange(),
                routing_key: shard,
                body: &body,
                properties: amqp::json_properties(&id.to_string(), headers),
                mandatory: true,
            })
            .await;
        if let Err(err) = &result {
            tracing::warn!(error = %err, message_id = %id, "could not release a bulk message; next round");
        }
        result.is_ok()
    }

    /// Ends held bulk whose `not_after` passed as `expired` (with its event and the upstream
    /// `status` notification), a batch at a time. Bulk already in a shard is expired by the
    /// dispatcher's claim instead.
    async fn expire_due(&self, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        let mut total = 0;
        loop {
            let n = sqlx::query(
                "WITH due AS (
                     SELECT id FROM messages
                     WHERE kind = 'bulk' AND state IN ('queued', 'deferred') AND not_after <= $1
                       AND ((state = 'queued' AND published_at IS NULL)
                            OR (state = 'deferred' AND reason IS DISTINCT FROM 'retry'))
                     ORDER BY not_after LIMIT $2
                     FOR UPDATE SKIP LOCKED),
                 moved AS (
                     UPDATE messages m SET state = 'expired', reason = 'not_after_passed',
                            not_before = NULL, updated_at = $1
                     FROM due WHERE m.id = due.id
                     RETURNING m.id, m.tenant_id, m.wamid, m.record_type, m.record_id, m.error),
                 events AS (
                     INSERT INTO message_events (message_id, tenant_id, state, reason, at)
                     SELECT id, tenant_id, 'expired', 'not_after_passed', $1 FROM moved)
                 INSERT INTO outbound_events (tenant_id, routing_key, body)
                 SELECT tenant_id, 'status.' || tenant_id::text, jsonb_build_object(
                            'tenant_id', tenant_id, 'message_id', id, 'wamid', wamid,
                            'status', 'expired', 'reason', 'not_after_passed',
                            'record', CASE WHEN record_type IS NULL THEN NULL
                                           ELSE jsonb_build_object('type', record_type, 'id', record_id) END,
                            'at', $1::timestamptz, 'error', error)
                 FROM moved",
            )
            .bind(now)
            .bind(EXPIRE_BATCH)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += n;
            if n < EXPIRE_BATCH as u64 {
                break;
            }
        }
        if total > 0 {
            metrics::counter!(BULK_ENDED, "reason" => "not_after_passed").increment(total);
            metrics::counter!(wafleet_core::metrics::MESSAGES, "state" => "expired", "reason" => "not_after_passed")
                .increment(total);
            tracing::info!(expired = total, "held bulk messages expired");
        }
        Ok(total)
    }
}
