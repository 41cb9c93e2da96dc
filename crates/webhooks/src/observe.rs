//! What SREs see of status webhooks: the processing span links to the trace of each send it
//! reports on (the `traceparent` stored with the message at intake), and Meta's status time →
//! now is recorded as webhook lag.

use crate::statuses::StatusItem;
use wafleet_core::domain::TenantId;

/// Records lag for `items` and links the current span to their sends' traces.
pub async fn statuses_received(
    tx: &mut sqlx::PgConnection,
    tenant: TenantId,
    items: &[StatusItem],
) -> Result<(), sqlx::Error> {
    let now = chrono::Utc::now();
    for item in items {
        let lag = (now - item.at).to_std().unwrap_or_default();
        wafleet_core::metrics::webhook_lag(&item.status, lag);
    }
    let wamids: Vec<&str> = items.iter().map(|i| i.wamid.as_str()).collect();
    let callbacks: Vec<uuid::Uuid> = items
        .iter()
        .filter_map(|i| i.callback.as_deref()?.parse().ok())
        .collect();
    let sends: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT trace_context FROM messages
         WHERE tenant_id = $1 AND direction = 'out' AND (wamid = ANY($2) OR id = ANY($3))
           AND trace_context IS NOT NULL",
    )
    .bind(tenant)
    .bind(&wamids)
    .bind(&callbacks)
    .fetch_all(&mut *tx)
    .await?;
    let span = tracing::Span::current();
    for (traceparent,) in sends {
        wafleet_core::telemetry::link_to_traceparent(&span, &traceparent);
    }
    Ok(())
}
