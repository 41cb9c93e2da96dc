//! AMQP intake: upstream services publish send requests to `<p>.intake` (key `send`) with the
//! tenant in a `tenant` header and their idempotency key as `message_id`. Each is accepted like
//! an HTTP request; an invalid one is republished to `<p>.intake.rejected` with an
//! `x-wafleet-reason` header (and filed in its record's history) — never dropped. The delivery
//! is acked only after that durable effect.

use crate::{
    accept::{Idempotency, Reply, problem_body, submit},
    state::AppState,
};
use axum::http::StatusCode;
use lapin::{
    message::Delivery,
    options::{BasicAckOptions, BasicNackOptions},
};
use serde::Deserialize;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use wafleet_core::{
    amqp::{self, Broker, Outgoing, Publisher},
    contract::{REASON_HEADER, SendRequest, TENANT_HEADER},
    domain::TenantId,
    http::Problem,
};

/// What became of one intake delivery.
#[derive(Debug)]
pub enum IntakeOutcome {
    Accepted(Reply),
    /// Refused; goes to the rejected queue with this reason code.
    Rejected {
        code: String,
        detail: String,
    },
}

/// The deterministic seam: handles one delivery's properties and body. `Err` means a failure of
/// ours (database down): the delivery must be retried, not rejected.
pub async fn handle(
    st: &AppState,
    props: &lapin::BasicProperties,
    body: &[u8],
) -> Result<IntakeOutcome, Problem> {
    let rejected = |code: &str, detail: String| {
        Ok(IntakeOutcome::Rejected {
            code: code.to_owned(),
            detail,
        })
    };
    let Some(tenant) = amqp::header_str(props, TENANT_HEADER) else {
        return rejected("missing_tenant", "the `tenant` header is required".into());
    };
    let Ok(tenant) = tenant.parse::<TenantId>() else {
        return rejected(
            "unknown_tenant",
            "the `tenant` header is not a tenant id".into(),
        );
    };
    // Whether the tenant exists is checked with the rest of its batch (`group_commit`).
    // The contract says JSON; a publisher that says otherwise is told so, not guessed at.
    if let Some(ct) = props.content_type().as_ref().map(|c| c.as_str())
        && !is_json(ct)
    {
        return rejected(
            "invalid_content_type",
            format!("content_type is {ct:?}; intake takes application/json"),
        );
    }
    let raw: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return rejected("invalid_json", format!("the body is not valid JSON: {e}")),
    };
    let request = match SendRequest::deserialize(&raw) {
        Ok(r) => r,
        Err(e) => {
            return rejected(
                "invalid_request",
                format!("the body does not match the message schema: {e}"),
            );
        }
    };
    let idempotency = match props.message_id().as_ref().map(|id| id.as_str()) {
        Some(key) if !key.is_empty() => match Idempotency::new(key.to_owned(), &raw) {
            Ok(i) => Some(i),
            Err(p) => return rejected(p.code, p.detail),
        },
        _ => None,
    };
    let reply = match submit(st, tenant, request, idempotency).await {
        Ok(reply) => reply,
        Err(p) if p.status == StatusCode::CONFLICT => return rejected(p.code, p.detail),
        Err(p) => return Err(p),
    };
    if reply.status.is_success() {
        Ok(IntakeOutcome::Accepted(reply))
    } else {
        let code = reply.code().unwrap_or("rejected").to_owned();
        let detail = reply
            .body
            .get("detail")
            .and_then(|d| d.as_str())
            .unwrap_or("")
            .to_owned();
        Ok(IntakeOutcome::Rejected { code, detail })
    }
}

/// `application/json`, with or without parameters (`; charset=utf-8`).
fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// Consumes `<p>.intake` until cancelled (on a new channel after every reconnect); up to
/// `concurrency` deliveries are handled at once, each waiting in the group commit, so a busy
/// queue is accepted in batches of that size.
pub async fn run(
    st: AppState,
    broker: Broker,
    publisher: Publisher,
    concurrency: u16,
    cancel: CancellationToken,
) {
    let queue = st.topology.intake_queue();
    wafleet_core::consume::consume_concurrently(
        &broker,
        &queue,
        "wafleet-ingest",
        concurrency,
        cancel,
        |delivery| process(&st, &publisher, delivery),
    )
    .await
}

#[tracing::instrument(name = "process wafleet.intake", skip_all, fields(
    otel.kind = "consumer",
    messaging.system = "rabbitmq",
    messaging.operation.type = "process",
    messaging.message.id = delivery.properties.message_id().as_ref().map(|m| m.as_str()).unwrap_or(""),
))]
async fn process(st: &AppState, publisher: &Publisher, delivery: Delivery) {
    amqp::adopt_trace_context(&tracing::Span::current(), &delivery.properties);
    amqp::record_consumer_lag("intake", &delivery.properties);
    let outcome = handle(st, &delivery.properties, &delivery.data).await;
    let settled = match outcome {
        Ok(IntakeOutcome::Accepted(_)) => true,
        Ok(IntakeOutcome::Rejected { code, detail }) => {
            metrics::counter!("wafleet_intake_rejected_total", "channel" => "amqp", "code" => code.clone()).increment(1);
            match reject(st, publisher, &delivery, &code, &detail).await {
                Ok(()) => true,
                Err(err) => {
                    tracing::error!(error = %err, "could not park a rejected intake message; will retry");
                    false
                }
            }
        }
        Err(problem) => {
            tracing::warn!(
                code = problem.code,
                "intake message could not be handled now; will retry"
            );
            false
        }
    };
    let result = if settled {
        delivery.ack(BasicAckOptions::default()).await
    } else {
        // Back off before handing it back so an outage does not become a hot loop.
        tokio::time::sleep(Duration::from_secs(1)).await;
        delivery
            .nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            })
            .await
    };
    if let Err(err) = result {
        // After a reconnect the old delivery tag is void; the broker redelivers it and the
        // idempotency key makes the second handling a replay.
        tracing::warn!(error = %err, "could not settle intake delivery");
    }
}

/// Republishes the original message, with its reason, to `<p>.intake.rejected`.
async fn reject(
    st: &AppState,
    publisher: &Publisher,
    delivery: &Delivery,
    code: &str,
    detail: &str,
) -> Result<(), amqp::PublishError> {
    let mut headers = delivery.properties.headers().clone().unwrap_or_default();
    amqp::set_header(&mut headers, REASON_HEADER, code);
    amqp::set_header(&mut headers, "x-wafleet-detail", detail);
    let queue = st.topology.intake_rejected_queue();
    publisher
        .publish(Outgoing {
            exchange: "",
            routing_key: &queue,
            body: &delivery.data,
            properties: delivery.properties.clone().with_headers(headers),
            mandatory: true,
        })
        .await
}

/// The problem body for a rejection (used by tests and docs).
pub fn rejection_body(problem: &Problem) -> serde_json::Value {
    problem_body(problem)
}
