//! The webhook consumer: takes raw verified bodies from `<p>.webhooks` and handles every entry,
//! change, status and message in them. One bad item is kept raw in `dead_webhooks` and never
//! stops the others; notifications for upstream are published (confirmed) before the
//! transaction commits, and the delivery is acked only after the commit.

use crate::{
    inbound::{self, InboundItem},
    statuses::{self, StatusItem},
};
use futures_util::StreamExt;
use lapin::{
    Channel,
    message::Delivery,
    options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions},
    types::FieldTable,
};
use serde::Serialize;
use serde_json::Value;
use std::{collections::HashMap, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;
use wafleet_core::{
    amqp::{self, Outgoing, Publisher, Topology},
    contract::TENANT_HEADER,
    domain::TenantId,
};

pub struct ConsumerCtx {
    pub pool: sqlx::PgPool,
    pub publisher: Publisher,
    pub topology: Arc<Topology>,
}

/// What one payload held, per tenant.
#[derive(Default)]
struct Parsed {
    statuses: HashMap<TenantId, Vec<StatusItem>>,
    inbound: HashMap<TenantId, Vec<InboundItem>>,
    /// Items kept raw: (tenant, reason, item).
    dead: Vec<(Option<TenantId>, String, Value)>,
}

/// The seam: handles one raw body. `Err` only when the database or broker failed (retry).
pub async fn handle(
    ctx: &ConsumerCtx,
    tenant_hint: Option<TenantId>,
    body: &[u8],
) -> Result<(), HandleError> {
    let mut tx = ctx.pool.begin().await?;
    let parsed = match serde_json::from_slice::<Value>(body) {
        Ok(payload) => parse(&mut tx, tenant_hint, &payload).await?,
        Err(_) => Parsed {
            dead: vec![(tenant_hint, "invalid_json".into(), Value::Null)],
            ..Default::default()
        },
    };
    for (tenant, reason, item) in &parsed.dead {
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
    for (tenant, items) in parsed.statuses {
        crate::observe::statuses_received(&mut tx, tenant, &items).await?;
        for note in statuses::apply(&mut tx, tenant, items, true).await? {
            if note.status != wafleet_core::domain::state::SENT {
                // `sent` is counted by the dispatcher when Meta accepts the send.
                wafleet_core::metrics::message_state(&note.status, None);
            }
            notify(ctx, "status", tenant, &note).await?;
        }
    }
    for (tenant, items) in parsed.inbound {
        for note in inbound::apply(&mut tx, tenant, &items).await? {
            notify(ctx, "inbound", tenant, &note).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Publish(#[from] amqp::PublishError),
}

/// Sorts a payload's items by tenant and kind; what cannot be understood goes to `dead`.
async fn parse(
    tx: &mut sqlx::PgConnection,
    hint: Option<TenantId>,
    payload: &Value,
) -> Result<Parsed, sqlx::Error> {
    let mut out = Parsed::default();
    if payload.get("object").and_then(Value::as_str) != Some("whatsapp_business_account") {
        out.dead
            .push((hint, "unknown_object".into(), payload.clone()));
        return Ok(out);
    }
    let entries = payload
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for entry in entries {
        let waba = entry.get("id").and_then(Value::as_str).unwrap_or_default();
        let owner: Option<(TenantId,)> =
            sqlx::query_as("SELECT tenant_id FROM meta_connections WHERE waba_id = $1")
                .bind(waba)
                .fetch_optional(&mut *tx)
                .await?;
        let tenant = match (hint, owner) {
            (Some(h), Some((o,))) if h == o => h,
            (None, Some((o,))) => o,
            (Some(_), Some(_)) => {
                out.dead
                    .push((hint, "waba_of_another_tenant".into(), entry.clone()));
                continue;
            }
            (_, None) => {
                out.dead.push((hint, "unknown_waba".into(), entry.clone()));
                continue;
            }
        };
        for change in entry
            .get("changes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let field = change
                .get("field")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let value = change.get("value").cloned().unwrap_or(Value::Null);
            if field != "messages" {
                out.dead.push((
                    Some(tenant),
                    format!("unhandled_field:{field}"),
                    change.clone(),
                ));
                continue;
            }
            let pnid = value
                .pointer("/metadata/phone_number_id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            for raw in value
                .get("statuses")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match StatusItem::parse(raw) {
                    Some(item) => out.statuses.entry(tenant).or_default().push(item),
                    None => out
                        .dead
                        .push((Some(tenant), "bad_status".into(), raw.clone())),
                }
            }
            for raw in value
                .get("messages")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match InboundItem::parse(raw, pnid) {
                    Some(item) => out.inbound.entry(tenant).or_default().push(item),
                    None => out
                        .dead
                        .push((Some(tenant), "bad_message".into(), raw.clone())),
                }
            }
            for raw in value
                .get("errors")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                tracing::error!(tenant = %tenant, error = %raw, "Meta reported an account-level error");
                out.dead
                    .push((Some(tenant), "meta_error".into(), raw.clone()));
            }
        }
    }
    Ok(out)
}

/// Publishes a notification on `<p>.events` with key `<kind>.<tenant>`.
async fn notify<T: Serialize>(
    ctx: &ConsumerCtx,
    kind: &str,
    tenant: TenantId,
    event: &T,
) -> Result<(), amqp::PublishError> {
    let body = serde_json::to_vec(event).expect("event serialises");
    let key = format!("{kind}.{tenant}");
    let exchange = ctx.topology.events_exchange();
    let mut headers = Default::default();
    amqp::inject_trace_context(&mut headers);
    ctx.publisher
        .publish(Outgoing {
            exchange: &exchange,
            routing_key: &key,
            body: &body,
            properties: amqp::json_properties(&uuid::Uuid::now_v7().to_string(), headers),
            // A topic with no subscriber yet is not an error: upstream binds what it wants.
            mandatory: false,
        })
        .await
}

/// Consumes `<p>.webhooks` until cancelled.
pub async fn run(
    ctx: Arc<ConsumerCtx>,
    channel: Channel,
    prefetch: u16,
    cancel: CancellationToken,
) -> Result<(), lapin::Error> {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let queue = ctx.topology.webhooks_queue();
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "wafleet-webhooks".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    consumer
        .take_until(cancel.cancelled_owned())
        .for_each_concurrent(usize::from(prefetch), |delivery| {
            let ctx = ctx.clone();
            let channel = channel.clone();
            async move {
                match delivery {
                    Ok(d) => process(&ctx, d).await,
                    Err(err) => {
                        tracing::warn!(error = %err, "webhook consumer error; waiting for recovery");
                        let _ = channel.wait_for_recovery(err).await;
                    }
                }
            }
        })
        .await;
    Ok(())
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
        match statuses::unpark(&ctx.pool).await {
            Ok(notes) => {
                for note in notes {
                    if let Err(err) = notify(&ctx, "status", note.tenant_id, &note).await {
                        tracing::warn!(error = %err, "could not notify an unparked status");
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "unparking statuses failed; will retry"),
        }
    }
}
