//! The webhook consumer: takes raw verified bodies from `<p>.webhooks` and handles every entry,
//! change, status and message in them, in one transaction per body. One bad item is kept raw in
//! `dead_webhooks` and never stops the others. Notifications for upstream are written to the
//! events outbox in the same transaction (the drainer publishes them), and the delivery is
//! acked only after the commit.

use crate::{
    fields, inbound, parking,
    payload::{self, Parsed},
    statuses,
};
use lapin::{
    Channel,
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
};
use serde_json::Value;
use std::{sync::Arc, time::Duration};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wafleet_core::{
    amqp::{self, Topology},
    contract::TENANT_HEADER,
    domain::TenantId,
};

/// What the consumer needs: the database, and the drainer to wake after a commit.
pub struct ConsumerCtx {
    pub pool: sqlx::PgPool,
    pub topology: Arc<Topology>,
    pub events_ready: Arc<Notify>,
}

/// The seam: handles one raw body in one transaction. `Err` only when the database failed
/// (the delivery is retried); anything wrong with the body itself is kept raw.
pub async fn handle(
    ctx: &ConsumerCtx,
    tenant_hint: Option<TenantId>,
    body: &[u8],
) -> Result<(), HandleError> {
    let mut tx = ctx.pool.begin().await?;
    let parsed = match serde_json::from_slice::<Value>(body) {
        Ok(payload) => payload::parse(&mut tx, tenant_hint, &payload).await?,
        Err(_) => Parsed {
            dead: vec![(tenant_hint, "invalid_json".into(), Value::Null)],
            ..Default::default()
        },
    };
    let mut dead = parsed.dead;
    for (tenant, items) in parsed.statuses {
        crate::observe::statuses_received(&items);
        let raw: Vec<Value> = items.iter().map(|i| i.raw.clone()).collect();
        let result = isolated(&mut tx, async |sp| {
            statuses::apply(sp, tenant, items, true).await
        });
        if let Err(reason) = result.await? {
            dead.extend(
                raw.into_iter()
                    .map(|r| (Some(tenant), format!("unstorable_status: {reason}"), r)),
            );
        }
    }
    for (tenant, items) in parsed.inbound {
        let result = isolated(&mut tx, async |sp| inbound::apply(sp, tenant, &items).await);
        if let Err(reason) = result.await? {
            dead.extend(items.into_iter().map(|i| {
                (
                    Some(tenant),
                    format!("unstorable_message: {reason}"),
                    i.content,
                )
            }));
        }
    }
    for (tenant, change) in parsed.changes {
        match isolated(&mut tx, async |sp| fields::apply(sp, tenant, &change).await).await? {
            Ok(items) => dead.extend(items.into_iter().map(|(r, v)| (Some(tenant), r, v))),
            Err(reason) => dead.push((
                Some(tenant),
                format!("unstorable_change: {reason}"),
                change.raw,
            )),
        }
    }
    for (tenant, reason, item) in &dead {
        // Malformed JSON keeps the whole body; otherwise the offending item.
        let raw = if item.is_null() {
            body.to_vec()
        } else {
            serde_json::to_vec(item).unwrap_or_default()
        };
        sqlx::query("INSERT INTO dead_webhooks (tenant_id, reason, body) VALUES ($1, $2, $3)")
            .bind(tenant)
            .bind(reason)
            .bind(raw)
            .execute(&mut *tx)
            .await?;
        metrics::counter!("wafleet_webhook_dead_items_total", "reason" => reason.clone())
            .increment(1);
    }
    tx.commit().await?;
    ctx.events_ready.notify_one();
    Ok(())
}

/// Runs `work` inside a savepoint. PostgreSQL refusing the data (a `\u0000` in a text, a
/// value out of range) rolls back only this work and returns `Ok(Err(reason))`, so the item is
/// kept raw and the rest of the payload proceeds; a lost connection is a real error (retry).
async fn isolated<T>(
    tx: &mut sqlx::PgConnection,
    work: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, sqlx::Error>,
) -> Result<Result<T, String>, sqlx::Error> {
    use sqlx::Connection;
    let mut sp = tx.begin().await?;
    match work(&mut sp).await {
        Ok(v) => {
            sp.commit().await?;
            Ok(Ok(v))
        }
        Err(sqlx::Error::Database(err)) => {
            sp.rollback().await?;
            tracing::warn!(error = %err, "a webhook item was refused by the database; kept raw");
            Ok(Err(err.code().map(|c| c.into_owned()).unwrap_or_default()))
        }
        Err(err) => Err(err),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Consumes `<p>.webhooks` until cancelled.
pub async fn run(
    ctx: Arc<ConsumerCtx>,
    channel: Channel,
    prefetch: u16,
    cancel: CancellationToken,
) -> Result<(), lapin::Error> {
    let queue = ctx.topology.webhooks_queue();
    wafleet_core::consume::consume_concurrently(
        &channel,
        &queue,
        "wafleet-webhooks",
        prefetch,
        cancel,
        |delivery| process(&ctx, delivery),
    )
    .await
}

#[tracing::instrument(name = "process wafleet.webhooks", skip_all, fields(
    otel.kind = "consumer", messaging.system = "rabbitmq", messaging.operation.type = "process",
))]
async fn process(ctx: &ConsumerCtx, delivery: Delivery) {
    amqp::adopt_trace_context(&tracing::Span::current(), &delivery.properties);
    amqp::record_consumer_lag("webhooks", &delivery.properties);
    let hint = amqp::header_str(&delivery.properties, TENANT_HEADER).and_then(|t| t.parse().ok());
    let result = match handle(ctx, hint, &delivery.data).await {
        Ok(()) => delivery.ack(BasicAckOptions::default()).await,
        Err(err) => {
            tracing::warn!(error = %err, "webhook could not be applied now; will retry");
            tokio::time::sleep(Duration::from_secs(1)).await;
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await
        }
    };
    if let Err(err) = result {
        tracing::warn!(error = %err, "could not settle a webhook delivery; it will be redelivered");
    }
}

/// Every `interval`, applies parked statuses whose send has since been recorded.
pub async fn run_unparker(ctx: Arc<ConsumerCtx>, interval: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match parking::unpark(&ctx.pool).await {
            Ok(0) => {}
            Ok(_) => ctx.events_ready.notify_one(),
            Err(err) => tracing::warn!(error = %err, "unparking statuses failed; will retry"),
        }
    }
}
