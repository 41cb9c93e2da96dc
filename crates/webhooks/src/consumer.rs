//! The webhook consumer: takes raw verified bodies from `<p>.webhooks` in batches of
//! deliveries and handles every entry, change, status and message in them, in one transaction
//! per batch. The status items of the whole batch are applied per tenant in one pass (one set
//! of multi-row statements, see `statuses::apply`); inbound messages and field changes per body.
//! One bad item is kept raw in `dead_webhooks` and never stops the others. Notifications for
//! upstream are written to the events outbox in the same transaction (the drainer publishes
//! them), and the deliveries are acked only after the commit.

use crate::{
    fields, inbound, parking,
    payload::{self, Parsed},
    statuses::{self, StatusItem},
};
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
};
use serde_json::Value;
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use wafleet_core::{
    amqp::{self, Broker, Topology},
    consume::Batching,
    contract::TENANT_HEADER,
    domain::TenantId,
};

/// What the consumer needs: the database, and the drainer to wake after a commit.
pub struct ConsumerCtx {
    pub pool: sqlx::PgPool,
    pub topology: Arc<Topology>,
    pub events_ready: Arc<Notify>,
}

/// An item kept raw: its tenant, why, and the item (`Value::Null`: the whole body).
type Dead = (Option<TenantId>, String, Value);

/// The seam: handles one raw body (a batch of one). `Err` only when the database failed (the
/// delivery is retried); anything wrong with the body itself is kept raw.
pub async fn handle(
    ctx: &ConsumerCtx,
    tenant_hint: Option<TenantId>,
    body: &[u8],
) -> Result<(), HandleError> {
    handle_batch(ctx, &[(tenant_hint, body)]).await
}

/// Handles a batch of raw bodies in one transaction. `Err` only when the database failed
/// (every delivery of the batch is retried); anything wrong with a body is kept raw.
pub async fn handle_batch(
    ctx: &ConsumerCtx,
    bodies: &[(Option<TenantId>, &[u8])],
) -> Result<(), HandleError> {
    let mut tx = ctx.pool.begin().await?;
    let mut dead: Vec<(usize, Dead)> = Vec::new();
    // Status items of the whole batch by tenant, each with the body it came in. Tenants in a
    // fixed order, so two batches in flight lock their rows in the same order.
    let mut statuses: BTreeMap<TenantId, Vec<(usize, StatusItem)>> = BTreeMap::new();
    let mut others = Vec::with_capacity(bodies.len());
    for (n, (hint, body)) in bodies.iter().enumerate() {
        let parsed = match serde_json::from_slice::<Value>(body) {
            Ok(payload) => payload::parse(&mut tx, *hint, &payload).await?,
            Err(_) => Parsed {
                dead: vec![(*hint, "invalid_json".into(), Value::Null)],
                ..Default::default()
            },
        };
        dead.extend(parsed.dead.into_iter().map(|d| (n, d)));
        for (tenant, items) in parsed.statuses {
            statuses
                .entry(tenant)
                .or_default()
                .extend(items.into_iter().map(|i| (n, i)));
        }
        others.push((n, parsed.inbound, parsed.changes));
    }
    for (tenant, items) in statuses {
        apply_statuses(&mut tx, tenant, items, &mut dead).await?;
    }
    for (n, inbound, changes) in others {
        for (tenant, items) in inbound {
            let result = isolated(&mut tx, async |sp| inbound::apply(sp, tenant, &items).await);
            if let Err(reason) = result.await? {
                dead.extend(items.into_iter().map(|i| {
                    let why = format!("unstorable_message: {reason}");
                    (n, (Some(tenant), why, i.content))
                }));
            }
        }
        for (tenant, change) in changes {
            match isolated(&mut tx, async |sp| fields::apply(sp, tenant, &change).await).await? {
                Ok(items) => dead.extend(items.into_iter().map(|(r, v)| (n, (Some(tenant), r, v)))),
                Err(reason) => dead.push((
                    n,
                    (
                        Some(tenant),
                        format!("unstorable_change: {reason}"),
                        change.raw,
                    ),
                )),
            }
        }
    }
    keep_dead(&mut tx, bodies, &dead).await?;
    tx.commit().await?;
    ctx.events_ready.notify_one();
    Ok(())
}

/// Applies one tenant's status items of the batch in one pass. If PostgreSQL refuses the data,
/// each body's items are applied again on their own, so one bad item spoils only its body's.
async fn apply_statuses(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    items: Vec<(usize, StatusItem)>,
    dead: &mut Vec<(usize, Dead)>,
) -> Result<(), sqlx::Error> {
    let all: Vec<StatusItem> = items.iter().map(|(_, i)| i.clone()).collect();
    crate::observe::statuses_received(&all);
    if isolated(tx, async |sp| statuses::apply(sp, tenant, all, true).await)
        .await?
        .is_ok()
    {
        return Ok(());
    }
    let mut by_body: HashMap<usize, Vec<StatusItem>> = HashMap::new();
    for (n, item) in items {
        by_body.entry(n).or_default().push(item);
    }
    for (n, items) in by_body {
        let raw: Vec<Value> = items.iter().map(|i| i.raw.clone()).collect();
        let result = isolated(tx, async |sp| {
            statuses::apply(sp, tenant, items, true).await
        });
        if let Err(reason) = result.await? {
            dead.extend(
                raw.into_iter()
                    .map(|r| (n, (Some(tenant), format!("unstorable_status: {reason}"), r))),
            );
        }
    }
    Ok(())
}

/// Stores the items kept raw, in one statement: malformed JSON keeps the whole body, anything
/// else the offending item.
async fn keep_dead(
    tx: &mut sqlx::PgConnection,
    bodies: &[(Option<TenantId>, &[u8])],
    dead: &[(usize, Dead)],
) -> Result<(), sqlx::Error> {
    if dead.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Option<uuid::Uuid>> = dead.iter().map(|(_, d)| d.0.map(|t| t.0)).collect();
    let reasons: Vec<&str> = dead.iter().map(|(_, d)| d.1.as_str()).collect();
    let raws: Vec<Vec<u8>> = dead
        .iter()
        .map(|(n, (_, _, item))| {
            if item.is_null() {
                bodies[*n].1.to_vec()
            } else {
                serde_json::to_vec(item).unwrap_or_default()
            }
        })
        .collect();
    sqlx::query(
        "INSERT INTO dead_webhooks (tenant_id, reason, body)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::bytea[])",
    )
    .bind(&tenants)
    .bind(&reasons)
    .bind(&raws)
    .execute(&mut *tx)
    .await?;
    for reason in reasons {
        metrics::counter!("wafleet_webhook_dead_items_total", "reason" => reason.to_owned())
            .increment(1);
    }
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
        // A deadlock or serialization failure says nothing about the data: the whole batch is
        // retried (the deliveries are requeued), the item is never filed as unusable.
        Err(err) if wafleet_core::db::is_transient(&err) => Err(err),
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

/// Consumes `<p>.webhooks` until cancelled, in batches of deliveries, on a new channel after
/// every reconnect.
pub async fn run(
    ctx: Arc<ConsumerCtx>,
    broker: Broker,
    batching: Batching,
    cancel: CancellationToken,
) {
    let queue = ctx.topology.webhooks_queue();
    wafleet_core::consume::consume_batches(
        &broker,
        &queue,
        "wafleet-webhooks",
        batching,
        cancel,
        |deliveries| process(ctx.clone(), deliveries),
    )
    .await
}

#[tracing::instrument(name = "process wafleet.webhooks", skip_all, fields(
    otel.kind = "consumer", messaging.system = "rabbitmq", messaging.operation.type = "process",
    messaging.batch.message_count = deliveries.len(),
))]
async fn process(ctx: Arc<ConsumerCtx>, deliveries: Vec<Delivery>) {
    if let Some(first) = deliveries.first() {
        amqp::adopt_trace_context(&tracing::Span::current(), &first.properties);
    }
    let bodies: Vec<(Option<TenantId>, &[u8])> = deliveries
        .iter()
        .map(|d| {
            amqp::record_consumer_lag("webhooks", &d.properties);
            amqp::link_trace_context(&tracing::Span::current(), &d.properties);
            let hint = amqp::header_str(&d.properties, TENANT_HEADER).and_then(|t| t.parse().ok());
            (hint, d.data.as_slice())
        })
        .collect();
    metrics::histogram!("wafleet_webhook_batch_size").record(bodies.len() as f64);
    let handled = handle_batch(&ctx, &bodies).await;
    if let Err(err) = &handled {
        tracing::warn!(error = %err, n = deliveries.len(), "webhooks could not be applied now; will retry");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for delivery in deliveries {
        let result = match handled {
            Ok(()) => delivery.ack(BasicAckOptions::default()).await,
            Err(_) => {
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
