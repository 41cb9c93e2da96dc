//! The webhook emitter: batches due events into signed POSTs, like Meta does.
//!
//! Events (statuses, inbound messages) are queued with the instant they fall due. When the first
//! one falls due the emitter waits one `batch_window`, then sends everything due by then in ONE
//! POST per callback: grouped by WABA into `entry[]` and by phone number into `changes[]`. It can
//! duplicate every Nth event into a later batch and shuffle events within a batch. Non-200
//! answers are retried with backoff; on shutdown, pending events are flushed best-effort.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use rand::seq::SliceRandom as _;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::{Sim, Stats};

/// One webhook event for one business number.
#[derive(Debug, Clone)]
pub(crate) struct WebhookEvent {
    /// When the event happens; it is not sent before.
    pub due: Instant,
    pub waba_id: String,
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub payload: EventPayload,
    /// A copy made by `duplicate_every`; never duplicated again.
    pub duplicate: bool,
}

/// What goes into `changes[].value`.
#[derive(Debug, Clone)]
pub(crate) enum EventPayload {
    /// One element of `statuses[]`.
    Status(Value),
    /// One element of `contacts[]` and one of `messages[]`.
    Message { contact: Value, message: Value },
}

/// Runs until `cancel` fires, then flushes every pending event regardless of when it is due.
pub(crate) async fn run_emitter(
    sim: Arc<Sim>,
    mut rx: mpsc::UnboundedReceiver<WebhookEvent>,
    cancel: CancellationToken,
    tracker: TaskTracker,
) {
    let mut pending: BTreeMap<(Instant, u64), WebhookEvent> = BTreeMap::new();
    let mut seq: u64 = 0;
    let mut counted: u64 = 0;
    // Set once the earliest event is due: the batch is sent when this passes.
    let mut batch_deadline: Option<Instant> = None;
    loop {
        let wake = batch_deadline.or_else(|| pending.keys().next().map(|(due, _)| *due));
        tokio::select! {
            () = cancel.cancelled() => break,
            received = rx.recv() => match received {
                Some(event) => {
                    seq += 1;
                    pending.insert((event.due, seq), event);
                }
                None => break,
            },
            () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {
                if batch_deadline.take().is_some() {
                    let now = Instant::now();
                    let due = take_due(&mut pending, |due| due <= now);
                    let copies = duplicates(&sim, &due, &mut counted, now);
                    for copy in copies {
                        seq += 1;
                        pending.insert((copy.due, seq), copy);
                    }
                    send_batch(&sim, &tracker, &cancel, due);
                } else {
                    batch_deadline = Some(Instant::now() + sim.lock().config.batch_window);
                }
            }
        }
    }
    while let Ok(event) = rx.try_recv() {
        seq += 1;
        pending.insert((event.due, seq), event);
    }
    let rest = take_due(&mut pending, |_| true);
    send_batch(&sim, &tracker, &cancel, rest);
}

/// Removes and returns (in due order) the pending events selected by `is_due`.
fn take_due(
    pending: &mut BTreeMap<(Instant, u64), WebhookEvent>,
    is_due: impl Fn(Instant) -> bool,
) -> Vec<WebhookEvent> {
    let keys: Vec<_> = pending
        .keys()
        .take_while(|(due, _)| is_due(*due))
        .copied()
        .collect();
    keys.iter().filter_map(|key| pending.remove(key)).collect()
}

/// Copies of every Nth original event, due one batch window later (so in a later batch).
fn duplicates(
    sim: &Sim,
    events: &[WebhookEvent],
    counted: &mut u64,
    now: Instant,
) -> Vec<WebhookEvent> {
    let (every, window) = {
        let inner = sim.lock();
        (inner.config.duplicate_every, inner.config.batch_window)
    };
    let Some(every) = every.filter(|n| *n > 0) else {
        return Vec::new();
    };
    let mut copies = Vec::new();
    for event in events.iter().filter(|e| !e.duplicate) {
        *counted += 1;
        if counted.is_multiple_of(u64::from(every)) {
            let mut copy = event.clone();
            copy.duplicate = true;
            copy.due = now + window + Duration::from_millis(1);
            copies.push(copy);
        }
    }
    copies
}

/// Groups a batch by callback target and spawns one signed POST per target.
fn send_batch(
    sim: &Arc<Sim>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
    mut events: Vec<WebhookEvent>,
) {
    if events.is_empty() {
        return;
    }
    let (reorder, retry_delays) = {
        let inner = sim.lock();
        (inner.config.reorder, inner.config.retry_delays.clone())
    };
    if reorder {
        events.shuffle(&mut rand::rng());
    }
    // Target (url, secret) → events, in first-seen order.
    let mut targets: Vec<((String, String), Vec<WebhookEvent>)> = Vec::new();
    for event in events {
        let Some(target) = sim.lock().webhook_target(&event.waba_id) else {
            Stats::add(&sim.stats.webhook_events_dropped, 1);
            continue;
        };
        match targets.iter_mut().find(|(t, _)| *t == target) {
            Some((_, batch)) => batch.push(event),
            None => targets.push((target, vec![event])),
        }
    }
    for ((url, secret), batch) in targets {
        let count = batch.len() as u64;
        let body = serde_json::to_vec(&envelope(&batch)).unwrap_or_default();
        let signature = sign(&secret, &body);
        let sim = Arc::clone(sim);
        let cancel = cancel.clone();
        let delays = retry_delays.clone();
        tracker.spawn(async move {
            deliver(&sim, &url, body, &signature, count, &delays, &cancel).await;
        });
    }
}

/// The `whatsapp_business_account` envelope: WABA → `entry`, phone number → `change`.
pub(crate) fn envelope(events: &[WebhookEvent]) -> Value {
    let mut entries: Vec<(String, Vec<(String, Value)>)> = Vec::new();
    for event in events {
        let entry_index = match entries.iter().position(|(waba, _)| *waba == event.waba_id) {
            Some(i) => i,
            None => {
                entries.push((event.waba_id.clone(), Vec::new()));
                entries.len() - 1
            }
        };
        let changes = &mut entries[entry_index].1;
        let change_index = match changes
            .iter()
            .position(|(id, _)| *id == event.phone_number_id)
        {
            Some(i) => i,
            None => {
                changes.push((
                    event.phone_number_id.clone(),
                    json!({
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": event.display_phone_number,
                            "phone_number_id": event.phone_number_id,
                        },
                    }),
                ));
                changes.len() - 1
            }
        };
        let value = &mut changes[change_index].1;
        match &event.payload {
            EventPayload::Status(status) => push(value, "statuses", status.clone()),
            EventPayload::Message { contact, message } => {
                push(value, "contacts", contact.clone());
                push(value, "messages", message.clone());
            }
        }
    }
    let entry: Vec<Value> = entries
        .into_iter()
        .map(|(waba, changes)| {
            let changes: Vec<Value> = changes
                .into_iter()
                .map(|(_, value)| json!({"field": "messages", "value": value}))
                .collect();
            json!({"id": waba, "changes": changes})
        })
        .collect();
    json!({"object": "whatsapp_business_account", "entry": entry})
}

/// Appends to the array `value[key]`, creating it.
fn push(value: &mut Value, key: &str, item: Value) {
    match value.get_mut(key).and_then(Value::as_array_mut) {
        Some(items) => items.push(item),
        None => value[key] = json!([item]),
    }
}

/// `sha256=<lowercase hex HMAC-SHA256(secret, body)>`, the `X-Hub-Signature-256` header value.
pub(crate) fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any size"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs one batch, retrying non-200 answers with the configured delays.
async fn deliver(
    sim: &Sim,
    url: &str,
    body: Vec<u8>,
    signature: &str,
    count: u64,
    delays: &[Duration],
    cancel: &CancellationToken,
) {
    let mut attempt = 0;
    loop {
        let result = sim
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(response) if response.status() == reqwest::StatusCode::OK => {
                Stats::add(&sim.stats.webhooks_posted, 1);
                Stats::add(&sim.stats.webhook_events, count);
                return;
            }
            Ok(response) => {
                tracing::debug!(status = %response.status(), attempt, "webhook POST refused");
            }
            Err(err) => tracing::debug!(error = %err, attempt, "webhook POST failed"),
        }
        Stats::add(&sim.stats.webhooks_failed, 1);
        // After shutdown began, one attempt is all a batch gets.
        let Some(delay) = delays.get(attempt).filter(|_| !cancel.is_cancelled()) else {
            tracing::warn!(events = count, "webhook batch dropped after retries");
            Stats::add(&sim.stats.webhook_events_dropped, count);
            return;
        };
        tokio::select! {
            () = sleep(*delay) => {}
            () = cancel.cancelled() => {}
        }
        attempt += 1;
    }
}
